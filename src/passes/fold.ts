// fold: evaluate nodes whose inputs are all constants with the float64
// reference, rounding to the node's dtype. Bounded so that folding never
// materialises a large tensor the runtime would compute on the fly.
import { isStatic } from '../ir/dims.ts';
import { opDef } from '../ir/optable.ts';
import type { Node } from '../ir/node.ts';
import { rounded } from '../ir/ref.ts';
import { rebuild, type Pass } from './pass.ts';

export const FOLD_LIMIT = 1 << 16;

export function foldWith(limit = FOLD_LIMIT): Pass {
  return {
    name: 'fold',
    run(g) {
      let folded = 0;
      const { graph } = rebuild(g, (n, ins, b) => {
        if (n.is('input') || n.is('param') || n.is('constant')) return undefined;
        // leaves with no inputs (range) fold too, when their size is static
        if (!ins.every((i) => i.is('constant'))) return undefined;
        if (!n.shape.every(isStatic)) return undefined;
        const size = (n.shape as number[]).reduce((a, d) => a * d, 1);
        if (size > limit) return undefined;
        const vals = ins.map((i) => (i as Node<'constant'>).params.value);
        const out = opDef(n.op).eval(n.params as never, vals, { dim: (d) => (isStatic(d) ? d : NaN) }, n as never);
        folded++;
        const r = rounded(out, n.dtype);
        return b.apply('constant', { value: { dtype: n.dtype, shape: r.shape, data: r.data } }, [], n.site, n.scope);
      });
      return { graph, changed: folded > 0, note: folded ? `folded ${folded} nodes` : undefined };
    },
  };
}

export const fold = foldWith();
