// The DiT condition from a VLM's taps (the UniFusion graph inputs of graphs/unifusion.ts):
//   hidden_states.<i>  f32 [batch, seq, hE]   one row per prompt, its condition tokens packed
//                                              from position 0 (image tokens first, in prompt
//                                              order, then the text tokens), zeros after
//   condition_mask     bool [batch, seq]      true on a row's condition tokens
// seq = the longest row's token count, at least 1. A row without condition tokens (the empty
// prompt: classifier-free guidance's dropped condition) is all zeros with an all-false mask; the
// UniFusion graph masks those keys (test/vlm-condition.test.ts runs it).
//
// Which tokens (VERIFI, paper §3): with rewriting, the generated tokens (stop token and stop
// string excluded) plus every image token of the prompt; without (`--no-rewrite`), the user
// text's own tokens plus the image tokens, the chat template's fixed prefix and suffix dropped
// (keepable).
import type { HostTensor } from '../../src/io/host.ts';

/** Our rewriting system prompt (`--system-prompt` replaces it at inference, as the paper does). */
export const DEFAULT_SYSTEM_PROMPT =
  'You rewrite requests for an image generator. Reply with one detailed, literal description of the target image: ' +
  'the subjects and their count, attributes, colours, materials, positions and sizes, the background, the lighting, ' +
  'the camera view and the style. When images are given, describe the image that results from applying the request ' +
  'to them, keeping everything the request does not change. Reply with the description only.';

export interface ConditionRow {
  /** taps by hidden_states index, one vector per token of the row's token list */
  taps: ReadonlyMap<number, readonly Float32Array[]>;
  /** indices into that token list, in condition order */
  select: readonly number[];
}

/** Pack rows into hidden_states.<i> / condition_mask (file header). */
export function assembleCondition(rows: readonly ConditionRow[], taps: readonly number[], hidden: number): { tensors: Record<string, HostTensor>; lengths: number[] } {
  const B = rows.length;
  const lengths = rows.map((r) => r.select.length);
  const S = Math.max(1, ...lengths);
  const tensors: Record<string, HostTensor> = {};
  for (const i of taps) {
    const data = new Float32Array(B * S * hidden);
    rows.forEach((r, b) => {
      if (!r.select.length) return;
      const vecs = r.taps.get(i);
      if (!vecs) throw new Error(`condition row ${b} has no hidden_states.${i}`);
      r.select.forEach((t, j) => {
        const v = vecs[t];
        if (!v || v.length !== hidden) throw new Error(`condition row ${b}: no hidden_states.${i} vector for token ${t}`);
        data.set(v, (b * S + j) * hidden);
      });
    });
    tensors[`hidden_states.${i}`] = { dtype: 'f32', shape: [B, S, hidden], data };
  }
  const mask = new Uint8Array(B * S);
  lengths.forEach((n, b) => mask.fill(1, b * S, b * S + n));
  tensors.condition_mask = { dtype: 'bool', shape: [B, S], data: mask };
  return { tensors, lengths };
}
