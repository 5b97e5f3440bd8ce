// rms-norm: x * rsqrt(mean(x^2, -1) + eps) [* w] -> rms_norm (RMSNormalization-23 on cpu/cuda/webgpu/portable).
// Forms: the DSL's (x*x, rsqrt), torch's (pow 2, rsqrt), ORT's canonical (pow 2, sqrt, div) and
// 1/sqrt; the weight may be any [D] expression (Gemma's and Krea 2's (1 + scale) included).
import { dimEq } from '../../ir/dims.ts';
import type { Tensor } from '../../dsl/tensor.ts';
import { defineRule, describe, notConstReason, type Match, type PatternDef } from './rule.ts';

type V = 'x' | 'w' | 'eps';

const squares: [string, (x: Tensor) => Tensor][] = [['x*x', (x) => x.square()], ['pow2', (x) => x.pow(2)]];
const norms: [string, (x: Tensor, ms: Tensor, eps: Tensor) => Tensor][] = [
  ['rsqrt', (x, ms, eps) => x.mul(ms.add(eps).rsqrt())],
  ['div-sqrt', (x, ms, eps) => x.div(ms.add(eps).sqrt())],
  ['reciprocal-sqrt', (x, ms, eps) => x.mul(ms.add(eps).sqrt().reciprocal())],
];

const patterns: PatternDef<V>[] = [];
for (const weighted of [true, false])
  for (const [sn, sq] of squares)
    for (const [nn, norm] of norms)
      patterns.push({
        name: `${weighted ? 'weighted' : 'plain'}/${sn}/${nn}`,
        build: (v, tag) => {
          const y = norm(v.x, tag('mean', sq(v.x).mean(-1, true)), v.eps);
          return weighted ? y.mul(v.w) : y;
        },
      });

/** Shared by rms-norm and layer-norm: the statistic is a mean over the last axis only, kept. */
export function lastAxisMeanReason(m: Match<string>, label: string): string | undefined {
  const mean = m.n(label) as import('../../ir/node.ts').Node<'reduce_mean'>;
  const r = mean.inputs[0]!.rank;
  if (mean.params.axes.length !== 1 || (mean.params.axes[0]! + r) % r !== r - 1) return `the mean reduces axes [${mean.params.axes}] of a rank-${r} tensor, not the last axis alone`;
  if (!mean.params.keepdims) return 'the mean does not keep the reduced axis';
  return undefined;
}

export const rmsNormRule = defineRule<V>({
  name: 'rms-norm',
  doc: 'x * rsqrt(mean(x^2, -1) + eps) [* w] -> rms_norm',
  vars: { x: ['B', 'S', 'D'], w: ['D'], eps: [] },
  patterns,
  loose: ['reduce_mean'],
  check(m) {
    const x = m.v('x');
    if (x.dtype !== 'f32' && x.dtype !== 'f64' && x.dtype !== 'f16' && x.dtype !== 'bf16') return `x is ${x.dtype}, not a float`;
    const r = lastAxisMeanReason(m, 'mean') ?? notConstReason(m.v('eps'), 'eps');
    if (r) return r;
    if (m.pattern.startsWith('weighted')) {
      const w = m.v('w');
      const D = x.shape[x.rank - 1]!;
      if (w.rank !== 1 || !dimEq(w.shape[0]!, D)) return `the weight ${describe(w)} is not [${typeof D === 'number' ? D : D.key}]: RMSNorm scales each channel of the last axis by one weight`;
      if (w.dtype !== x.dtype) return `the weight is ${w.dtype} but x is ${x.dtype}`;
    }
    return undefined;
  },
  rewrite(m, cx) {
    const weighted = m.pattern.startsWith('weighted');
    const eps = (m.v('eps') as import('../../ir/node.ts').Node<'constant'>).params.value.data[0]!;
    return cx.fuse('rms_norm', { eps, weight: weighted }, weighted ? [cx.map(m.v('x')), cx.map(m.v('w'))] : [cx.map(m.v('x'))]);
  },
});
