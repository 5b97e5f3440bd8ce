// sdpa: softmax(mask ? (q * scale) @ k^T : lowest) @ v, and its grouped-query form over
// [B, KV, G, S, D] views (how the DSL's sdpa broadcasts kv heads) -> sdpa (MultiHeadAttention on
// cpu/webgpu, Attention-23 on cuda). The scale may come before or after the q @ k^T product.
// Only the dtype's lowest value counts as the masked score: with -inf or -1e9 a fully masked row
// means something else (NaN, or the unmasked softmax), so those are declined.
import { dimEq, isStatic, type Dim } from '../../ir/dims.ts';
import type { Node } from '../../ir/node.ts';
import type { Tensor } from '../../dsl/tensor.ts';
import { lowestOf } from '../../ir/ops/fused.ts';
import { defineRule, describe, notConstReason, scalarConst, type Match, type PatternDef } from './rule.ts';

type V = 'q' | 'k' | 'v' | 'm' | 'scale' | 'lo';

const scores: [string, (q: Tensor, kT: Tensor, s: Tensor) => Tensor][] = [
  ['pre', (q, kT, s) => q.mul(s).matmul(kT)],
  ['post', (q, kT, s) => q.matmul(kT).mul(s)],
  ['div', (q, kT, s) => q.matmul(kT).div(s)],
];

const patterns: PatternDef<V>[] = [];
for (const masked of [true, false])
  for (const [sn, score] of scores) {
    patterns.push({
      name: `${masked ? 'masked' : 'plain'}/${sn}`,
      build: (v, tag) => {
        let s = score(v.q, tag('kT', v.k.T), v.scale);
        if (masked) s = v.m.where(s, v.lo);
        return tag('p', s.softmax(-1)).matmul(v.v);
      },
    });
    patterns.push({
      name: `${masked ? 'masked' : 'plain'}/${sn}/grouped`,
      vars: { k: ['B', 2, 'Sk', 8], v: ['B', 2, 'Sk', 8], m: { shape: ['B', 1, 1, 'Sq', 'Sk'], dtype: 'bool' } },
      build: (v, tag) => {
        const [B, , Sq, D] = v.q.shape;
        const [, , Sk] = v.k.shape;
        const q5 = tag('q5', v.q.reshape(B!, 2, 2, Sq!, D!));
        const k5 = tag('k5', v.k.reshape(B!, 2, 1, Sk!, D!));
        const v5 = tag('v5', v.v.reshape(B!, 2, 1, Sk!, D!));
        let s = score(q5, tag('kT', k5.T), v.scale);
        if (masked) s = v.m.where(s, v.lo);
        return tag('p', s.softmax(-1)).matmul(v5).reshape(B!, 4, Sq!, D!);
      },
    });
  }

function sameDims(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => dimEq(d, b[i]!));
}

function check(m: Match<V>): string | undefined {
  const [masked, form] = m.pattern.split('/') as [string, string];
  const grouped = m.pattern.endsWith('grouped');
  const q = m.v('q'), k = m.v('k'), v = m.v('v');
  for (const t of [q, k, v]) if (t.rank !== 4) return `q/k/v must be [B, H, S, D]; got ${describe(t)}`;
  if (q.dtype !== 'f32' && q.dtype !== 'f16' && q.dtype !== 'bf16' && q.dtype !== 'f64') return `q is ${q.dtype}`;
  const kT = m.n('kT') as Node<'transpose'>;
  const r = kT.rank;
  if (kT.params.perm.some((p, i) => (i < r - 2 ? p !== i : i === r - 2 ? p !== r - 1 : p !== r - 2))) return `k is transposed by [${kT.params.perm}], not by swapping its last two axes`;
  const p = m.n('p') as Node<'softmax'>;
  if ((p.params.axis + p.rank) % p.rank !== p.rank - 1) return `the softmax is over axis ${p.params.axis}, not the key axis`;
  const r1 = notConstReason(m.v('scale'), form === 'div' ? 'the score divisor' : 'the score scale');
  if (r1) return r1;
  if (masked === 'masked') {
    const lo = m.v('lo');
    const r2 = notConstReason(lo, 'the masked score');
    if (r2) return r2;
    if (scalarConst(lo) !== lowestOf(lo.dtype)) return `masked scores are set to ${scalarConst(lo)}, not ${lo.dtype}'s lowest value ${lowestOf(lo.dtype)}: a fully masked row would mean something else`;
    if (m.v('m').dtype !== 'bool') return 'the mask is not bool';
  }
  if (grouped) {
    const [B, H, Sq, D] = q.shape as [Dim, Dim, Dim, Dim];
    const KV = k.shape[1]!, Sk = k.shape[2]!;
    if (!isStatic(H) || !isStatic(KV) || H % KV) return 'the head counts are not static multiples';
    const G = H / KV;
    if (!sameDims(m.n('q5').shape, [B, KV, G, Sq, D])) return `q is not viewed as [B, KV, G, Sq, D] (${describe(m.n('q5'))})`;
    if (!sameDims(m.n('k5').shape, [k.shape[0]!, KV, 1, Sk, D]) || !sameDims(m.n('v5').shape, [v.shape[0]!, KV, 1, Sk, v.shape[3]!])) return 'k/v are not viewed as [B, KV, 1, Sk, D]';
    if (!sameDims(m.root.shape, [B, H, Sq, v.shape[3]!])) return 'the output is not merged back to [B, H, Sq, D]';
    if (masked === 'masked') {
      const ms = m.v('m').shape;
      if (ms.length !== 5 || !((ms[1] === 1 && ms[2] === 1) || (dimEq(ms[1]!, KV) && dimEq(ms[2]!, G)))) return `the grouped mask ${describe(m.v('m'))} varies per kv head but not per query head`;
    }
  }
  return undefined;
}

export const sdpaRule = defineRule<V>({
  name: 'sdpa',
  doc: 'softmax(where(mask, q k^T * scale, lowest)) v, plain or grouped-query -> sdpa',
  vars: { q: ['B', 4, 'Sq', 8], k: ['B', 4, 'Sk', 8], v: ['B', 4, 'Sk', 8], m: { shape: ['B', 1, 1, 'Sk'], dtype: 'bool' }, scale: [], lo: [] },
  patterns,
  loose: ['reshape', 'transpose', 'softmax'],
  check,
  rewrite(m, cx) {
    const masked = m.pattern.startsWith('masked');
    const sc = scalarConst(m.v('scale'))!;
    const scale = m.pattern.split('/')[1] === 'div' ? 1 / sc : sc;
    const ins = [cx.map(m.v('q')), cx.map(m.v('k')), cx.map(m.v('v'))];
    if (masked) {
      let mask = cx.map(m.v('m'));
      if (mask.rank === 5) mask = cx.nb.reshape(mask, [mask.shape[0]!, mask.shape[1] === 1 ? 1 : m.v('q').shape[1]!, mask.shape[3]!, mask.shape[4]!]);
      ins.push(mask);
    }
    return cx.fuse('sdpa', { scale, mask: masked }, ins);
  },
});
