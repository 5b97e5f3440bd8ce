// UniFusion presets. Only types are imported here, so lap.ts, dit.ts and
// unifusion.ts can all build their graph presets from this table.
//
// What is published and what is chosen:
// - ablation-5b (paper §2.2): frozen Llama-3.1-8B, DiT of 32 layers x 4096 x 32 heads,
//   "5B". The FFN width is not published: SwiGLU 7168 (1.75 x width) puts the DiT at
//   5.09 B (dit.ts ditParamCount; tested). LAP/refiner blocks: 32 heads (App. A.1),
//   SwiGLU at Krea 2's 4x rule. Taps: every 3rd hidden state ending at the penultimate
//   (the paper's Fig. 11 shows the penultimate among the pooled layers), 1, 4, ..., 31.
// - unifusion-8b (paper §4): InternVL3-8B, whose LLM is Qwen2.5-7B (28 layers, hidden
//   3584, 28 heads / 4 kv heads, head dim 128); taps every 3rd, 0, 3, ..., 27. The 8B
//   DiT's shape is not published: 32 layers x 5120 x 40 heads, SwiGLU 8960 -> 7.95 B.
// - krea2: Krea 2 as public code has it (ComfyUI comfy/ldm/krea2): Qwen3-VL-4B text
//   model (36 layers, hidden 2560, 32 / 8 heads), taps 2, 5, ..., 35 (12); its
//   TextFusionTransformer (20 heads, multiplier 4, gated attention) = our LAP + refiner;
//   its single-stream DiT: 28 layers x 6144, 48 heads / 12 kv heads, multiplier 4
//   (SwiGLU 16384), tdim 256, RoPE theta 1000 on axes [32, 48, 48], gated attention,
//   16 latent channels, patch 2.
// - tiny: CPU-sized, DiT shaped like the VLM so that every variant (kv-fusion, hsi)
//   runs on it. tiny-pixel: the same in pixel space (3 channels, patch 4; no VAE).
import type { Conditioning, UniFusionConfig, VlmSpec } from './unifusion.ts';

/** Krea 2's SwiGLU width: int(2 * dim / 3) * multiplier, rounded up to a multiple of 128. */
export function swigluWidth(width: number, multiplier: number, multiple = 128): number {
  const w = Math.floor((2 * width) / 3) * multiplier;
  return multiple * Math.ceil(w / multiple);
}

/** hidden_states indices offset, offset + k, ... below `layers` (every k-th layer). */
export function tapsEvery(k: number, offset: number, layers: number): number[] {
  const out: number[] = [];
  for (let i = offset; i < layers; i += k) out.push(i);
  return out;
}

/** A config with another conditioning variant (the one switch). */
export function withConditioning(cfg: UniFusionConfig, conditioning: Conditioning): UniFusionConfig {
  return { ...cfg, conditioning };
}

export const VLMS = {
  'llama-3.1-8b': { name: 'llama-3.1-8b', layers: 32, hidden: 4096, heads: 32, kvHeads: 8, headDim: 128, intermediate: 14336, vocab: 128256, ropeTheta: 500000 },
  'internvl3-8b': { name: 'internvl3-8b (qwen2.5-7b)', layers: 28, hidden: 3584, heads: 28, kvHeads: 4, headDim: 128, intermediate: 18944, vocab: 151674, ropeTheta: 1000000 },
  'qwen3-vl-4b': { name: 'qwen3-vl-4b', layers: 36, hidden: 2560, heads: 32, kvHeads: 8, headDim: 128, intermediate: 9728, vocab: 151936, ropeTheta: 5000000 },
  tiny: { name: 'tiny', layers: 4, hidden: 32, heads: 2, kvHeads: 1, headDim: 16, intermediate: 64, vocab: 64, ropeTheta: 10000 },
} satisfies Record<string, VlmSpec>;

/**
 * transformers config.json of a Qwen2 with the tiny VLM's shapes: the stand-in encoder of the tiny
 * preset when the VLM runs in the graph (graphs/vlm via decoderConfigFromHF), as `import-hf` reads it.
 */
export const TINY_QWEN2_CONFIG = {
  model_type: 'qwen2',
  vocab_size: VLMS.tiny.vocab,
  hidden_size: VLMS.tiny.hidden,
  intermediate_size: VLMS.tiny.intermediate,
  num_hidden_layers: VLMS.tiny.layers,
  num_attention_heads: VLMS.tiny.heads,
  num_key_value_heads: VLMS.tiny.kvHeads,
  rms_norm_eps: 1e-6,
  rope_theta: VLMS.tiny.ropeTheta,
  hidden_act: 'silu',
};

const paperDiT = { channels: 16, patch: 2, tdim: 256, theta: 10000, gate: false };

export const PRESETS: Record<string, UniFusionConfig> = {
  tiny: {
    conditioning: 'lap',
    vlm: VLMS.tiny,
    taps: [1, 2, 3, 4],
    lap: { heads: 2, kvHeads: 1, ffn: 64 },
    refiner: { blocks: 2, heads: 2, ffn: 64 },
    dit: { hidden: 32, depth: 4, heads: 2, kvHeads: 1, ffn: 64, channels: 4, patch: 2, tdim: 32, theta: 10000, ropeAxes: [4, 6, 6], gate: true },
  },
  // pixel space (no VAE): the DiT's latent is RGB in [-1, 1] (3 channels); patch 4 makes a 48 x 48
  // image 12 x 12 tokens (the shapes-world demo's size). Shapes of the tiny preset otherwise.
  'tiny-pixel': {
    conditioning: 'lap',
    vlm: VLMS.tiny,
    taps: [1, 2, 3, 4],
    lap: { heads: 2, kvHeads: 1, ffn: 64 },
    refiner: { blocks: 2, heads: 2, ffn: 64 },
    dit: { hidden: 32, depth: 4, heads: 2, kvHeads: 1, ffn: 64, channels: 3, patch: 4, tdim: 32, theta: 10000, ropeAxes: [4, 6, 6], gate: true },
  },
  'ablation-5b': {
    conditioning: 'lap',
    vlm: VLMS['llama-3.1-8b'],
    taps: tapsEvery(3, 1, 32),
    lap: { heads: 32, ffn: swigluWidth(4096, 4) },
    refiner: { blocks: 2, heads: 32, ffn: swigluWidth(4096, 4) },
    dit: { ...paperDiT, ropeAxes: [64, 64], hidden: 4096, depth: 32, heads: 32, ffn: 7168 },
  },
  'unifusion-8b': {
    conditioning: 'lap',
    vlm: VLMS['internvl3-8b'],
    taps: tapsEvery(3, 0, 28),
    lap: { heads: 32, ffn: swigluWidth(3584, 4) },
    refiner: { blocks: 2, heads: 32, ffn: swigluWidth(3584, 4) },
    dit: { ...paperDiT, ropeAxes: [64, 64], hidden: 5120, depth: 32, heads: 40, ffn: 8960 },
  },
  krea2: {
    conditioning: 'lap',
    vlm: VLMS['qwen3-vl-4b'],
    taps: tapsEvery(3, 2, 36),
    lap: { heads: 20, ffn: swigluWidth(2560, 4), gate: true },
    refiner: { blocks: 2, heads: 20, ffn: swigluWidth(2560, 4), gate: true },
    dit: { hidden: 6144, depth: 28, heads: 48, kvHeads: 12, ffn: swigluWidth(6144, 4), channels: 16, patch: 2, tdim: 256, theta: 1000, ropeAxes: [32, 48, 48], gate: true },
  },
};
