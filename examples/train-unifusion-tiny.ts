// The UniFusion pipeline of the `tiny` preset, trained end to end on CPU: a frozen tiny Qwen2
// (graphs/vlm's DecoderLM, seeded random weights, HF names under `vlm.`) runs in the graph and is
// tapped at hidden_states 1..4; LAP pools the taps per token, the refiner and projection map them
// to the DiT width, and the DiT (4 x 32) predicts the rectified-flow velocity of 4 x 8 x 8 latents.
// Only the adapter and the DiT train (AdamW); the encoder has no gradient path.
//
// Data: 8 "prompts" (seeded token ids, 4..8 tokens, right-padded to 8) each paired with one
// "image" latent, a smooth pattern whose frequencies and phases depend on the prompt; per step
// a shuffled batch of 4 pairs, fresh noise and logit-normal timesteps from the trainer's seeded
// Rng (so a resumed run sees the same batches).
//
//   npx unifusion train examples/train-unifusion-tiny.ts --steps 300 --out out/unifusion-tiny
//   npx unifusion train examples/train-unifusion-tiny.ts --steps 600 --out out/unifusion-tiny --resume
import { decoderConfigFromHF } from '../graphs/vlm/index.ts';
import { PRESETS, TINY_QWEN2_CONFIG, VLMS } from '../graphs/presets.ts';
import { decoderLMEncoder, sampleLogitNormal, uniFusionTrainStep, type UniFusionConfig } from '../graphs/unifusion.ts';
import { defineTrainStep } from '../src/cli/train.ts';
import { Rng } from '../src/ir/init.ts';
import { fromFloat64 } from '../src/io/host.ts';
import { shuffledBatches } from '../runtime/trainer.ts';

export const CONFIG: UniFusionConfig = PRESETS.tiny!;
/** transformers config.json of the stand-in VLM (what `import-hf` would read) */
export const TINY_VLM_CONFIG = TINY_QWEN2_CONFIG;
export const BATCH = 4;
export const SEQ = 8;
/** latent grid: 8 x 8 (= 4 x 4 patches of 2 x 2) */
export const LATENT = 8;
export const PAIRS = 8;

export interface Pair {
  ids: number[];
  mask: number[];
  latent: Float64Array;
}

/** The dataset: deterministic (seed 7), independent of the training seed. */
export function dataset(): Pair[] {
  const rng = new Rng(7, 'unifusion-tiny-data');
  const C = CONFIG.dit.channels;
  return Array.from({ length: PAIRS }, () => {
    const len = 4 + Math.floor(rng.uniform() * 5);
    const ids = Array.from({ length: SEQ }, (_, j) => (j < len ? 1 + Math.floor(rng.uniform() * (VLMS.tiny.vocab - 1)) : 0));
    const mask = Array.from({ length: SEQ }, (_, j) => (j < len ? 1 : 0));
    const fy = 0.3 + rng.uniform(), fx = 0.3 + rng.uniform();
    const phase = Array.from({ length: C }, () => 2 * Math.PI * rng.uniform());
    const latent = new Float64Array(C * LATENT * LATENT);
    for (let c = 0; c < C; c++)
      for (let y = 0; y < LATENT; y++) for (let x = 0; x < LATENT; x++) latent[(c * LATENT + y) * LATENT + x] = Math.SQRT2 * Math.sin(fy * y + fx * x + phase[c]!);
    return { ids, mask, latent };
  });
}

const encoder = decoderLMEncoder(decoderConfigFromHF(TINY_VLM_CONFIG), CONFIG, { prefix: 'vlm' });
const step = uniFusionTrainStep(CONFIG, { encoder, name: 'unifusion_tiny_train', seed: 1 });

export default defineTrainStep({
  name: step.name,
  description: 'tiny UniFusion (frozen tiny Qwen2 taps 1..4 -> LAP -> refiner -> DiT 4x32), rectified flow on 8 prompt/latent pairs',
  batch: step.batch,
  loss: step.loss,
  seed: 1,
  data: shuffledBatches(dataset(), BATCH, (items, _step, rng) => {
    const n = CONFIG.dit.channels * LATENT * LATENT;
    const noise = Float64Array.from({ length: BATCH * n }, () => rng.normal());
    const latents = new Float64Array(BATCH * n);
    items.forEach((p, i) => latents.set(p.latent, i * n));
    const lat = [BATCH, CONFIG.dit.channels, LATENT, LATENT];
    return {
      input_ids: fromFloat64('i64', [BATCH, SEQ], items.flatMap((p) => p.ids)),
      attention_mask: fromFloat64('i64', [BATCH, SEQ], items.flatMap((p) => p.mask)),
      latents: fromFloat64('f32', lat, latents),
      noise: fromFloat64('f32', lat, noise),
      timestep: fromFloat64('f32', [BATCH], sampleLogitNormal(rng, BATCH)),
    };
  }),
  optimizer: { clipNorm: 1, weightDecay: 0.01 },
  defaults: { steps: 300, lr: 3e-3, warmup: 20, minLr: 3e-4, checkpointEvery: 100, keep: 2 },
});
