// layer-pool: LAP's pooling over the layer axis, Linear(n -> 1, no bias) applied to x^T and squeezed,
// (x [..., n, C] swapped to [..., C, n]) @ w^T [n, 1] -> [..., C] -> ai.unifusion.LayerPool.
import { dimEq } from '../../ir/dims.ts';
import type { Node } from '../../ir/node.ts';
import { defineRule, describe } from './rule.ts';

type V = 'x' | 'w';

const swapsLastTwo = (t: Node<'transpose'>) => t.params.perm.every((p, i, a) => (i < a.length - 2 ? p === i : i === a.length - 2 ? p === a.length - 1 : p === a.length - 2));

export const layerPoolRule = defineRule<V>({
  name: 'layer-pool',
  doc: 'squeeze(swap(x) @ w^T, -1) with w [1, n] -> ai.unifusion.LayerPool',
  vars: { x: ['B', 'S', 'N', 'C'], w: [1, 'N'] },
  patterns: [{ name: 'linear', build: (v, tag) => tag('xT', v.x.swap(-1, -2)).matmul(tag('wT', v.w.T)).squeeze(-1) }],
  loose: ['transpose', 'reshape'],
  check(m) {
    const x = m.v('x'), w = m.v('w');
    if (!swapsLastTwo(m.n('xT') as Node<'transpose'>) || !swapsLastTwo(m.n('wT') as Node<'transpose'>)) return 'the transposes do not swap the last two axes';
    if (x.rank < 2 || w.rank !== 2 || w.shape[0] !== 1 || !dimEq(w.shape[1]!, x.shape[x.rank - 2]!)) return `the pooling weight ${describe(w)} is not [1, n] for x ${describe(x)}`;
    if (x.dtype !== w.dtype) return `x is ${x.dtype} but the weight is ${w.dtype}`;
    const out = m.root.shape, want = [...x.shape.slice(0, -2), x.shape[x.rank - 1]!];
    if (out.length !== want.length || !out.every((d, i) => dimEq(d, want[i]!))) return `the result ${describe(m.root)} is not x without its layer axis`;
    return undefined;
  },
  rewrite: (m, cx) => cx.fuse('layer_pool', {}, [cx.map(m.v('x')), cx.map(m.v('w'))]),
});
