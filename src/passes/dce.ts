// dce: a graph holds only what its outputs reach (plus declared inputs), so
// dead code is whatever rewrites orphaned; this step materialises that and
// also drops declared inputs nothing reads when asked to.
import { Graph } from '../ir/graph.ts';
import type { Pass } from './pass.ts';

export function dceWith(opts: { dropUnusedInputs?: boolean } = {}): Pass {
  return {
    name: 'dce',
    run(g) {
      if (!opts.dropUnusedInputs) return { graph: g, changed: false };
      const used = new Set(new Graph(g.name, [], g.outputs).nodes());
      const inputs = g.inputs.filter((i) => used.has(i));
      const dropped = g.inputs.length - inputs.length;
      return { graph: dropped ? new Graph(g.name, inputs, g.outputs) : g, changed: dropped > 0, note: dropped ? `dropped ${dropped} unused inputs` : undefined };
    },
  };
}

export const dce = dceWith();
