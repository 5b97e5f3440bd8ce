// The browser page's pipeline until the demo's shapes pipeline exists: one denoising step of the
// tiny preset's DiT (graphs/dit.ts), conditioned on the prompt's UTF-8 bytes through a byte
// embedding (a byte-level tokenizer needs no vocabulary file). Weights are seeded random and the
// DiT's zero initialisations (adaLN-zero, last layer) are replaced by small normal ones, so the
// untrained step is not the identity: the image is a deterministic function of prompt and seed.
//
//   npx unifusion compile examples/web/tiny-pipeline.ts --out out/web-pipeline
//   npx unifusion serve-web --pipeline out/web-pipeline
//
// The I/O is the page's denoiser contract (examples/web/pipeline.ts):
//   input_ids i64 [batch, seq] (bytes 0..255), attention_mask bool [batch, seq] (true = a byte),
//   latents f32 [batch, C, 2h, 2w] (x_t), timestep f32 [batch] (t in [0, 1]) -> velocity like latents.
import { defineGraph, dim, dims, Embedding, input, Module, Param } from '../../src/dsl/index.ts';
import { DiT, type DiTConfig } from '../../graphs/dit.ts';
import { PRESETS } from '../../graphs/presets.ts';

export const BYTE_VOCAB = 256;

/** Replace every zero-initialised param under `m` by a normal one (an untrained but non-trivial model). */
function perturbZeroInits(m: Module, std: number): void {
  const slots = m as unknown as Record<string, unknown>;
  for (const key of Object.keys(slots)) {
    const v = slots[key];
    if (v instanceof Param && v.init.kind === 'zeros') slots[key] = new Param(v.shape, { kind: 'normal', std }, v.dtype);
    else if (v instanceof Module) perturbZeroInits(v, std);
    else if (Array.isArray(v)) for (const x of v) if (x instanceof Module) perturbZeroInits(x, std);
  }
}

export class BytePromptDiT extends Module {
  embed: Embedding;
  dit: DiT;
  constructor(readonly cfg: DiTConfig) {
    super();
    this.embed = new Embedding(BYTE_VOCAB, cfg.hidden, { std: 0.5 });
    this.dit = new DiT(cfg);
    perturbZeroInits(this.dit, 0.05);
  }
}

export default defineGraph<DiTConfig>({
  name: 'tiny_dit_step',
  description: 'one denoising step of an untrained tiny DiT conditioned on UTF-8 prompt bytes: input_ids, attention_mask, latents x_t, timestep -> velocity',
  presets: { tiny: PRESETS.tiny!.dit },
  defaultPreset: 'tiny',
  seed: 12,
  build(cfg) {
    const B = dim('batch'), S = dim('seq'), h = dim('h'), w = dim('w');
    const ids = input('input_ids', 'i64', [B, S]);
    const mask = input('attention_mask', 'bool', [B, S]);
    const latents = input('latents', 'f32', [B, cfg.channels, dims.mul(h, cfg.patch), dims.mul(w, cfg.patch)]);
    const timestep = input('timestep', 'f32', [B]);
    const m = new BytePromptDiT(cfg);
    return { velocity: m.dit.forward(latents, timestep, { tokens: m.embed.forward(ids), mask }) };
  },
});
