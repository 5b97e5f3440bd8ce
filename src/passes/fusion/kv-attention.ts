// kv-attention: sdpa(q, concat([past_k, k], 2), concat([past_v, v], 2), mask?) whose concats are
// the grown cache (the generation graphs' present.* outputs, graphs/vlm/generation.ts) -> the
// kv_sdpa triple (output, present key, present value), lowered to ONE attention node with
// past -> present (Attention-23 on cuda, MultiHeadAttention on webgpu when H == KV). Not run for
// cpu (no measured gain over Concat + Attention-23, targets.ts) or portable. Runs after sdpa.
import { dimEq } from '../../ir/dims.ts';
import type { Node } from '../../ir/node.ts';
import { concat } from '../../dsl/index.ts';
import { fused } from '../../dsl/fused.ts';
import { defineRule, describe, type Match, type RewriteCtx } from './rule.ts';

type V = 'q' | 'k' | 'v' | 'pk' | 'pv' | 'm';

const sdpaOf = (m: Match<V>) => m.root as Node<'sdpa'>;

function catAxisReason(n: Node, what: string): string | undefined {
  const c = n as Node<'concat'>;
  return (c.params.axis + c.rank) % c.rank === 2 ? undefined : `the ${what} concat is along axis ${c.params.axis}, not the sequence axis 2 of [B, KV, S, D]`;
}

export const kvAttentionRule = defineRule<V>({
  name: 'kv-attention',
  doc: 'sdpa(q, concat(past_k, k), concat(past_v, v), mask) with the concats as the grown cache -> kv_sdpa (output, present_k, present_v)',
  vars: { q: ['B', 4, 'S', 8], k: ['B', 2, 'S', 8], v: ['B', 2, 'S', 8], pk: ['B', 2, 'P', 8], pv: ['B', 2, 'P', 8], m: { shape: ['B', 1, 1, 1], dtype: 'bool' } },
  patterns: [
    { name: 'masked', build: (v, tag) => fused.sdpa(v.q, tag('key', concat([v.pk, v.k], 2)), tag('value', concat([v.pv, v.v], 2)), { mask: v.m }) },
    { name: 'plain', build: (v, tag) => fused.sdpa(v.q, tag('key', concat([v.pk, v.k], 2)), tag('value', concat([v.pv, v.v], 2))) },
  ],
  loose: ['sdpa', 'concat'],
  check(m) {
    const r = catAxisReason(m.n('key'), 'key') ?? catAxisReason(m.n('value'), 'value');
    if (r) return r;
    const k = m.v('k'), pk = m.v('pk'), v = m.v('v'), pv = m.v('pv');
    if (k.rank !== 4 || pk.rank !== 4 || v.rank !== 4 || pv.rank !== 4) return `the cache pieces must be [B, KV, S, D]; got ${describe(pk)} + ${describe(k)}`;
    // (which piece is the cache does not matter to the semantics, concat(first, second) is what
    // past -> present computes; but the value pieces must have the key pieces' lengths)
    if (!dimEq(k.shape[0]!, pk.shape[0]!) || !dimEq(k.shape[1]!, pk.shape[1]!) || !dimEq(v.shape[2]!, k.shape[2]!) || !dimEq(pv.shape[2]!, pk.shape[2]!)) return `the key and value caches do not line up (${describe(pk)} + ${describe(k)}, ${describe(pv)} + ${describe(v)})`;
    if (m.v('q').dtype !== k.dtype || k.dtype !== pk.dtype || v.dtype !== pv.dtype) return `dtypes differ: q ${m.v('q').dtype}, k ${k.dtype}, past ${pk.dtype}`;
    return undefined;
  },
  rewrite(m, cx) {
    return cx.fuse('kv_sdpa', { scale: sdpaOf(m).params.scale, mask: m.pattern === 'masked', index: 0 }, ins(m, cx));
  },
  alsoReplace(m) {
    const p = sdpaOf(m).params;
    return (['key', 'value'] as const).map((label, i) => ({
      node: m.n(label),
      rewrite: (cx: RewriteCtx) => cx.fuse('kv_sdpa', { scale: p.scale, mask: m.pattern === 'masked', index: (i + 1) as 1 | 2 }, ins(m, cx)),
    }));
  },
});

function ins(m: Match<V>, cx: { map(n: Node): Node }): Node[] {
  return [m.v('q'), m.v('k'), m.v('v'), m.v('pk'), m.v('pv'), ...(m.pattern === 'masked' ? [m.v('m')] : [])].map((n) => cx.map(n));
}
