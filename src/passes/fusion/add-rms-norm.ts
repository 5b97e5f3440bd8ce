// add-rms-norm: rms_norm(x + r, w) where the sum also feeds the residual path -> the add_rms_norm
// pair (normed, sum), lowered to ONE com.microsoft SkipSimplifiedLayerNormalization on cuda and
// webgpu. Not run for cpu (the survey measured it no faster than Add + RMSNormalization-23 there)
// or portable (no standard op). Runs after ada-rms-norm, so adaLN modulation keeps its norms.
import { dimEq } from '../../ir/dims.ts';
import type { Node } from '../../ir/node.ts';
import { fused } from '../../dsl/fused.ts';
import { defineRule, describe, type Match } from './rule.ts';

type V = 'x' | 'r' | 'w';

const params = (m: { n(l: string): Node }) => (m.n('norm') as Node<'rms_norm'>).params;

/** The residual + norm rules' check: x and the residual add without broadcasting, in one dtype. */
export function checkResidual(m: Match<'x' | 'r'>): string | undefined {
  const x = m.v('x'), r = m.v('r');
  if (x.rank !== r.rank || !x.shape.every((d, i) => dimEq(d, r.shape[i]!))) return `the residual ${describe(r)} is broadcast onto x ${describe(x)}; the fused op adds tensors of one shape`;
  if (x.dtype !== r.dtype) return `x is ${x.dtype} but the residual is ${r.dtype}`;
  return undefined;
}

export const addRmsNormRule = defineRule<V>({
  name: 'add-rms-norm',
  doc: 'rms_norm(x + r, w) with the sum used elsewhere -> add_rms_norm (normed, sum)',
  vars: { x: ['B', 'S', 'D'], r: ['B', 'S', 'D'], w: ['D'] },
  patterns: [
    { name: 'weighted', build: (v, tag) => tag('norm', fused.rmsNorm(tag('sum', v.x.add(v.r)), v.w)) },
    { name: 'plain', build: (v, tag) => tag('norm', fused.rmsNorm(tag('sum', v.x.add(v.r)), undefined)) },
  ],
  loose: ['rms_norm'],
  check: checkResidual,
  rewrite(m, cx) {
    const p = params(m);
    const ins = [cx.map(m.v('x')), cx.map(m.v('r')), ...(p.weight ? [cx.map(m.v('w'))] : [])];
    return cx.fuse('add_rms_norm', { eps: p.eps, weight: p.weight, index: 0 }, ins);
  },
  alsoReplace(m) {
    const p = params(m);
    return [
      {
        node: m.n('sum'),
        rewrite: (cx) => cx.fuse('add_rms_norm', { eps: p.eps, weight: p.weight, index: 1 }, [cx.map(m.v('x')), cx.map(m.v('r')), ...(p.weight ? [cx.map(m.v('w'))] : [])]),
      },
    ];
  },
});
