// layer-norm: c = x - mean(x); c * rsqrt(mean(c^2) + eps) [* w] [+ b] over the last axis
// -> layer_norm (LayerNormalization-17). Runs before rms-norm, whose pattern is its inner half.
import { dimEq } from '../../ir/dims.ts';
import type { Node } from '../../ir/node.ts';
import type { Tensor } from '../../dsl/tensor.ts';
import { defineRule, describe, notConstReason, type PatternDef } from './rule.ts';
import { lastAxisMeanReason } from './rms-norm.ts';

type V = 'x' | 'w' | 'b' | 'eps';
type Affine = 'plain' | 'w' | 'wb';

const norms: [string, (c: Tensor, ms: Tensor, eps: Tensor) => Tensor][] = [
  ['rsqrt', (c, ms, eps) => c.mul(ms.add(eps).rsqrt())],
  ['div-sqrt', (c, ms, eps) => c.div(ms.add(eps).sqrt())],
];
const squares: [string, (c: Tensor) => Tensor][] = [['c*c', (c) => c.square()], ['pow2', (c) => c.pow(2)]];

const patterns: PatternDef<V>[] = [];
for (const affine of ['wb', 'w', 'plain'] as Affine[])
  for (const [sn, sq] of squares)
    for (const [nn, norm] of norms)
      patterns.push({
        name: `${affine}/${sn}/${nn}`,
        build: (v, tag) => {
          const c = v.x.sub(tag('mean1', v.x.mean(-1, true)));
          let y = norm(c, tag('mean2', sq(c).mean(-1, true)), v.eps);
          if (affine !== 'plain') y = y.mul(v.w);
          if (affine === 'wb') y = y.add(v.b);
          return y;
        },
      });

export const layerNormRule = defineRule<V>({
  name: 'layer-norm',
  doc: '(x - mean) * rsqrt(var + eps) [* w] [+ b] over the last axis -> layer_norm',
  vars: { x: ['B', 'S', 'D'], w: ['D'], b: ['D'], eps: [] },
  patterns,
  loose: ['reduce_mean'],
  check(m) {
    const r = lastAxisMeanReason(m, 'mean1') ?? lastAxisMeanReason(m, 'mean2') ?? notConstReason(m.v('eps'), 'eps');
    if (r) return r;
    const x = m.v('x'), D = x.shape[x.rank - 1]!;
    const affine = m.pattern.split('/')[0] as Affine;
    for (const name of affine === 'wb' ? (['w', 'b'] as const) : affine === 'w' ? (['w'] as const) : []) {
      const t = m.v(name);
      if (t.rank !== 1 || !dimEq(t.shape[0]!, D)) return `the ${name === 'w' ? 'weight' : 'bias'} ${describe(t)} is not per channel of the last axis`;
      if (t.dtype !== x.dtype) return `the ${name === 'w' ? 'weight' : 'bias'} is ${t.dtype} but x is ${x.dtype}`;
    }
    return undefined;
  },
  rewrite(m, cx) {
    const affine = m.pattern.split('/')[0] as Affine;
    const eps = (m.v('eps') as Node<'constant'>).params.value.data[0]!;
    const ins = [cx.map(m.v('x')), ...(affine !== 'plain' ? [cx.map(m.v('w'))] : []), ...(affine === 'wb' ? [cx.map(m.v('b'))] : [])];
    return cx.fuse('layer_norm', { eps, weight: affine !== 'plain', bias: affine === 'wb' }, ins);
  },
});
