// ada-rms-norm: rms_norm(x, w) * (1 + scale) + shift -> ai.unifusion.AdaRMSNorm, the DiT's adaLN
// modulation (its hottest pattern; no standard op). scale/shift must broadcast the way the CUDA
// kernel indexes them: the leading axes of x, then size-1 axes, then the channels ([B, 1, D] for
// x [B, S, D]).
import { dimEq } from '../../ir/dims.ts';
import type { Node } from '../../ir/node.ts';
import { fused } from '../../dsl/fused.ts';
import { defineRule, describe } from './rule.ts';

type V = 'x' | 'w' | 'scale' | 'shift';

/** why `t` does not broadcast into x as [x.shape[:k], 1, ..., 1, D] for some k, or undefined */
export function rowGroupReason(t: Node, x: Node, what: string): string | undefined {
  if (t.dtype !== x.dtype) return `${what} is ${t.dtype} but x is ${x.dtype}`;
  const s = [...Array.from({ length: x.rank - t.rank }, () => 1), ...t.shape];
  if (s.length !== x.rank || !dimEq(s[s.length - 1]!, x.shape[x.rank - 1]!)) return `${what} ${describe(t)} does not give one value per channel of x ${describe(x)}`;
  let k = 0;
  while (k < x.rank - 1 && dimEq(s[k]!, x.shape[k]!) && s[k] !== 1) k++;
  for (let i = k; i < x.rank - 1; i++) if (s[i] !== 1) return `${what} ${describe(t)} broadcasts over x ${describe(x)} in a way AdaRMSNorm cannot express (it needs x's leading axes, then size-1 axes, then the channels)`;
  return undefined;
}

export const adaRmsNormRule = defineRule<V>({
  name: 'ada-rms-norm',
  doc: 'rms_norm(x, w) * (1 + scale) + shift -> ai.unifusion.AdaRMSNorm',
  vars: { x: ['B', 'S', 'D'], w: ['D'], scale: ['B', 1, 'D'], shift: ['B', 1, 'D'] },
  patterns: [
    { name: 'weighted', build: (v, tag) => tag('norm', fused.rmsNorm(v.x, v.w)).mul(v.scale.add(1)).add(v.shift) },
    { name: 'plain', build: (v, tag) => tag('norm', fused.rmsNorm(v.x, undefined)).mul(v.scale.add(1)).add(v.shift) },
  ],
  loose: ['rms_norm'],
  check(m) {
    const x = m.v('x');
    return rowGroupReason(m.v('scale'), x, 'scale') ?? rowGroupReason(m.v('shift'), x, 'shift');
  },
  rewrite(m, cx) {
    const norm = m.n('norm') as Node<'rms_norm'>;
    const ins = [cx.map(m.v('x')), ...(norm.params.weight ? [cx.map(m.v('w'))] : []), cx.map(m.v('scale')), cx.map(m.v('shift'))];
    return cx.fuse('ada_rms_norm', { eps: norm.params.eps, weight: norm.params.weight }, ins);
  },
});
