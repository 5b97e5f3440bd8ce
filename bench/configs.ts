// Benchmark configurations shared between benchmarks (and engineers): one exported place.
import type { DiTConfig } from '../graphs/dit.ts';
import { kreaRopeAxes } from '../graphs/dit.ts';
import { swigluWidth } from '../graphs/presets.ts';

/**
 * The denoise-step config: a mid-size latent DiT, 12 blocks x 768 wide, 12 heads (head dim 64),
 * Krea 2 style (SwiGLU at its 4x rule = 2048, gated attention, 3-axis RoPE), 16 latent channels,
 * patch 2 over a 64 x 64 latent = 32 x 32 = 1024 image tokens, 256 condition tokens, and the
 * conditional and unconditional rows of CFG in one batch of 2 (the unconditional row's condition
 * is short: its mask keeps 16 tokens).
 */
export const DENOISE_STEP = {
  dit: {
    hidden: 768,
    depth: 12,
    heads: 12,
    ffn: swigluWidth(768, 4),
    channels: 16,
    patch: 2,
    tdim: 256,
    theta: 10000,
    ropeAxes: kreaRopeAxes(64),
    gate: true,
  } satisfies DiTConfig,
  /** latent side (pixels of the latent): 32 x 32 patches */
  latent: 64,
  condTokens: 256,
  /** cond + uncond */
  batch: 2,
  /** condition tokens each row attends to (cond, uncond) */
  validTokens: [256, 16] as [number, number],
  timestep: 0.7,
};
