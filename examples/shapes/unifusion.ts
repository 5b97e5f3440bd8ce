// The shapes demo's tiny UniFusion and its conditions (phase-1 prototype of the diffusion side).
//
// Model: LAP over hidden states 0, 2, 4 of the shapes VLM (image features / embeddings, the middle
// and the last layer), the 2-block bidirectional refiner, and a pixel-space DiT (3 channels,
// 48 x 48, 8 x 8 patches -> 36 image tokens, 2 x 2 per cell of the world). Pixel space, not a VAE: the world is flat colours on black
// at 48 x 48 (6,912 values an image), an 8 x 8 patch is 192 values, so a VAE would save the
// DiT little while costing a second model to train, a decode per sample, and a reconstruction
// error floor of its own on exactly the edges the scorer reads. The DiT predicts x0 (the graph
// still outputs the velocity): with 192-value patches and width 96, v-prediction cannot carry the
// noise through (measured: v-loss stuck near 0.6 and pure-noise samples after 500 steps).
//
// Conditions (VERIFI, paper §3): the VLM reads
//   <|im_start|>system\n{REWRITE_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n[<img>9 x <IMG_CONTEXT></img>\n][prompt]<|im_end|>\n<|im_start|>assistant\n{answer}
// and the DiT is conditioned on the taps of the answer tokens (the rewritten caption; not its
// stop token) and of every image token. Without rewriting ('no-rewrite') it is conditioned on the
// prompt's own tokens (and the image tokens) of the same sequence up to the generation prompt.
// The selected tokens are packed to the front; the refiner's 1D RoPE numbers them in that packed
// order (the DiT gives condition tokens no positions), the same at training and at sampling. The dropped condition for
// CFG is the empty one: no token (one zero row, mask false).
import type { UniFusionConfig } from '../../graphs/unifusion.ts';
import { fromFloat64, type HostTensor } from '../../src/io/host.ts';
import type { Session } from '../../runtime/session.ts';
import { applyChatTemplate, expandImages, IMG_CONTEXT, REWRITE_SYSTEM_PROMPT, userContent } from '../../runtime/shapes/prompts.ts';
import { render, SIZE, type Scene } from '../../runtime/shapes/world.ts';
import { pixelValuesOf, shapesTokenizer } from './vlm.ts';

export const TAPS = [0, 2, 4];
export const VLM_HIDDEN = 96;

export function shapesUniFusionConfig(over: Partial<UniFusionConfig['dit']> = {}, refiner: Partial<UniFusionConfig['refiner']> = {}): UniFusionConfig {
  return {
    conditioning: 'lap',
    prediction: 'x0',
    vlm: { name: 'shapes-vlm (qwen2 4 x 96)', layers: 4, hidden: VLM_HIDDEN, heads: 4, kvHeads: 2, headDim: 24 },
    taps: TAPS,
    lap: { heads: 2, ffn: 64 },
    // 1D RoPE over the packed condition order (graphs/refiner.ts): with it (and 30 % partial captions) the DiT
    // alone scored fresh scenes 93 % vs 76 %, held-out pairs 38 % vs 30 % at 4800 steps (examples/shapes/NOTES.md, phase 4)
    refiner: { blocks: 2, heads: 2, ffn: 192, rope: { theta: 10000 }, ...refiner },
    dit: { hidden: 96, depth: 4, heads: 4, ffn: 256, channels: 3, patch: 8, tdim: 64, theta: 10000, ropeAxes: [12, 12], gate: false, ...over },
  };
}

/** The config train-unifusion.ts trains: SHAPES_UF_DIT / SHAPES_UF_REFINER (JSON) override the defaults (experiments). */
export function shapesConfigFromEnv(env: NodeJS.ProcessEnv = process.env): UniFusionConfig {
  return shapesUniFusionConfig(JSON.parse(env.SHAPES_UF_DIT ?? '{}'), JSON.parse(env.SHAPES_UF_REFINER ?? '{}'));
}

export type ConditionMode = 'rewrite' | 'no-rewrite';

export interface ConditionRequest {
  /** the user's text (none for reconstruction) */
  prompt?: string;
  /** images in the VLM prompt (edits, reconstruction) */
  images: Scene[];
  /** rewrite mode: the VLM's answer (generated, or the canonical caption when teacher-forced) */
  answer?: string;
  mode: ConditionMode;
}

/** Token ids of the VLM pass and the indices of the tokens that condition the DiT. */
export function conditionTokens(req: ConditionRequest): { ids: number[]; selected: number[] } {
  const t = shapesTokenizer();
  const messages = [{ role: 'system' as const, content: REWRITE_SYSTEM_PROMPT }, { role: 'user' as const, content: userContent(req.prompt, req.images.length) }];
  const prefix = expandImages(applyChatTemplate(messages, true), 9);
  const pre: number[] = t.tok.encode(prefix, { add_special_tokens: false }).ids;
  const img = t.id(IMG_CONTEXT);
  const selected = pre.flatMap((x, i) => (x === img ? [i] : []));
  if (req.mode === 'rewrite') {
    if (req.answer === undefined) throw new Error('a rewrite condition needs the answer');
    const full: number[] = t.tok.encode(prefix + req.answer, { add_special_tokens: false }).ids;
    for (let i = pre.length; i < full.length; i++) selected.push(i);
    return { ids: full, selected };
  }
  if (req.prompt) {
    // the user text sits between the images' "</img>\n" (or "user\n") and "<|im_end|>"
    const before = expandImages(applyChatTemplate([messages[0]!, { role: 'user', content: userContent(undefined, req.images.length) }], false), 9).replace(/<\|im_end\|>\n$/, '');
    const start: number = t.tok.encode(before, { add_special_tokens: false }).ids.length;
    const withText: number = t.tok.encode(before + req.prompt, { add_special_tokens: false }).ids.length;
    for (let i = start; i < withText; i++) selected.push(i);
  }
  return { ids: pre, selected };
}

/** Packed condition of one request: per tap [n, hidden] rows (n may be 0 = the empty condition). */
export interface PackedCondition {
  n: number;
  taps: Float32Array[];
}

/** Run the import-hf encoder over requests (batches of `batch`) and pack the selected tokens' taps. */
export async function encodeConditions(encoder: Session, reqs: readonly ConditionRequest[], opts: { batch?: number; onBatch?: (done: number) => void } = {}): Promise<PackedCondition[]> {
  const t = shapesTokenizer();
  const pad = t.id('<|endoftext|>');
  const bs = opts.batch ?? 64;
  const out: PackedCondition[] = [];
  for (let s = 0; s < reqs.length; s += bs) {
    const chunk = reqs.slice(s, s + bs);
    const toks = chunk.map(conditionTokens);
    const S = Math.max(...toks.map((x) => x.ids.length));
    const ids = new Array<number>(chunk.length * S).fill(pad), mask = new Array<number>(chunk.length * S).fill(0);
    toks.forEach((x, b) => x.ids.forEach((v, i) => ((ids[b * S + i] = v), (mask[b * S + i] = 1))));
    const images = chunk.flatMap((r) => r.images);
    const res = await encoder.run({
      input_ids: fromFloat64('i64', [chunk.length, S], ids),
      attention_mask: fromFloat64('i64', [chunk.length, S], mask),
      pixel_values: pixelValuesOf(images, Math.max(1, images.length)),
    });
    const H = VLM_HIDDEN;
    toks.forEach((x, b) => {
      const taps = TAPS.map((k) => {
        const src = res[`hidden_states.${k}`]!.data as Float32Array;
        const dst = new Float32Array(x.selected.length * H);
        x.selected.forEach((p, j) => dst.set(src.subarray((b * S + p) * H, (b * S + p + 1) * H), j * H));
        return dst;
      });
      out.push({ n: x.selected.length, taps });
    });
    opts.onBatch?.(Math.min(s + bs, reqs.length));
  }
  return out;
}

export const EMPTY_CONDITION: PackedCondition = { n: 0, taps: TAPS.map(() => new Float32Array(0)) };

/** Batch inputs hidden_states.<i> [B, Smax, H] and condition_mask [B, Smax] from packed conditions (Smax >= 1). */
export function conditionBatch(conds: readonly PackedCondition[]): Record<string, HostTensor> {
  const B = conds.length, H = VLM_HIDDEN;
  const S = Math.max(1, ...conds.map((c) => c.n));
  const out: Record<string, HostTensor> = {};
  TAPS.forEach((k, ti) => {
    const data = new Float32Array(B * S * H);
    conds.forEach((c, b) => data.set(c.taps[ti]!, b * S * H));
    out[`hidden_states.${k}`] = { dtype: 'f32', shape: [B, S, H], data };
  });
  const mask = new Uint8Array(B * S);
  conds.forEach((c, b) => mask.fill(1, b * S, b * S + c.n));
  out.condition_mask = { dtype: 'bool', shape: [B, S], data: mask };
  return out;
}

/** Pixels in [0, 255] -> x0 in [-1, 1], [C, H, W] planes. */
export function toLatent(scene: Scene, into: Float32Array, offset: number): void {
  const img = render(scene);
  const n = SIZE * SIZE;
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) into[offset + c * n + i] = img[3 * i + c]! / 127.5 - 1;
}

/** [C, H, W] planes in [-1, 1] -> 8-bit RGB interleaved. */
export function fromLatent(x: ArrayLike<number>, offset: number): Uint8Array {
  const n = SIZE * SIZE;
  const img = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) img[3 * i + c] = Math.max(0, Math.min(255, Math.round((x[offset + c * n + i]! + 1) * 127.5)));
  return img;
}
