// Prototype training of the shapes demo's UniFusion (examples/shapes/unifusion.ts) on the cached
// VLM conditions (examples/shapes/build-cache.ts): rectified flow with logit-normal t, condition
// dropout (the empty condition) so CFG works, AdamW, through defineTrainStep + the Trainer.
// Issue 10's `unifusion train` on a dataset folder replaces this file in phase 2.
//
//   SHAPES_CACHE=out/shapes-cache npx unifusion train examples/shapes/train-unifusion.ts --out out/shapes-uf-run
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sampleLogitNormal, uniFusionTrainStep } from '../../graphs/unifusion.ts';
import { defineTrainStep } from '../../src/cli/train.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { shuffledBatches } from '../../runtime/trainer.ts';
import { SIZE } from '../../runtime/shapes/world.ts';
import type { CacheRow } from './build-cache.ts';
import { conditionBatch, EMPTY_CONDITION, shapesConfigFromEnv, TAPS, toLatent, VLM_HIDDEN, type PackedCondition } from './unifusion.ts';

export const BATCH = Number(process.env.SHAPES_UF_BATCH ?? 32);
export const DROPOUT = Number(process.env.SHAPES_UF_DROPOUT ?? 0.1);
/**
 * Logit-normal t = sigmoid(mean + std z), t = 1 pure noise. Mean 1 (not SD3's 0): pixel space at
 * 48 x 48 flat colours keeps the scene readable up to t ~ 0.9, so with mean 0 the model rarely
 * meets the noise-only end where sampling starts (measured after 600 steps: x0_hat from t = 1 had
 * MSE 0.24 and no correct object, from t = 0.7 MSE 0.015).
 */
export const T_MEAN = Number(process.env.SHAPES_UF_T_MEAN ?? 1);
const CACHE = process.env.SHAPES_CACHE ?? 'out/shapes-cache';
export const CONFIG = shapesConfigFromEnv();

interface Example {
  cond: PackedCondition;
  target: CacheRow['target'];
}

function loadCache(dir: string): Example[] {
  const { tensors } = readSafetensors(path.join(dir, 'cache.safetensors'));
  const offsets = tensors.get('offsets')!.data as BigInt64Array;
  const rows = fs.readFileSync(path.join(dir, 'rows.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as CacheRow);
  const taps = TAPS.map((k) => tensors.get(`hidden_states.${k}`)!.data as Float32Array);
  return rows.map((r, i) => {
    const a = Number(offsets[i]!), b = Number(offsets[i + 1]!);
    return { cond: { n: b - a, taps: taps.map((t) => t.subarray(a * VLM_HIDDEN, b * VLM_HIDDEN)) }, target: r.target };
  });
}

const step = uniFusionTrainStep(CONFIG, { name: 'shapes_unifusion_train', seed: 5 });
const examples = fs.existsSync(path.join(CACHE, 'cache.safetensors')) ? loadCache(CACHE) : [];

export default defineTrainStep({
  name: step.name,
  description: `shapes UniFusion (LAP 3 taps x 96 -> refiner -> pixel DiT ${CONFIG.dit.depth} x ${CONFIG.dit.hidden}, patch ${CONFIG.dit.patch}), rectified flow, condition dropout ${DROPOUT}`,
  batch: step.batch,
  loss: step.loss,
  seed: 5,
  data: shuffledBatches(examples.length ? examples : [{ cond: EMPTY_CONDITION, target: [] }], examples.length ? BATCH : 1, (items, _s, rng) => {
    if (!examples.length) throw new Error(`no feature cache at '${CACHE}' (build it with examples/shapes/build-cache.ts)`);
    const n = 3 * SIZE * SIZE;
    const conds = items.map((it) => (rng.uniform() < DROPOUT ? EMPTY_CONDITION : it.cond));
    const latents = new Float32Array(items.length * n);
    items.forEach((it, i) => toLatent(it.target, latents, i * n));
    const noise = Float32Array.from({ length: items.length * n }, () => rng.normal());
    const shape = [items.length, 3, SIZE, SIZE];
    return {
      ...conditionBatch(conds),
      latents: { dtype: 'f32', shape, data: latents },
      noise: { dtype: 'f32', shape, data: noise },
      timestep: { dtype: 'f32', shape: [items.length], data: Float32Array.from(sampleLogitNormal(rng, items.length, { mean: T_MEAN })) },
    };
  }),
  optimizer: { clipNorm: 1, weightDecay: 0.01 },
  defaults: { steps: 3000, lr: 1e-3, warmup: 100, minLr: 5e-5, checkpointEvery: 500, keep: 2 },
});
