// `unifusion demo`: the README's main job, UniFusion's tiny preset end to end on CPU.
//  1. compile the rectified-flow AdamW train step of examples/train-unifusion-tiny.ts (a frozen
//     tiny Qwen2 tapped at hidden_states 1..4 in the graph -> LAP -> refiner -> DiT) and train it
//     with the runtime Trainer (checkpoints, metrics);
//  2. compile the forward pipeline (token ids + latents + timestep -> velocity) with the trained
//     weights and check onnxruntime against the float64 reference interpreter on a padded batch;
//  3. sample every training prompt with Euler steps of the learned flow (noise at t = 1 -> t = 0)
//     and measure whether each sample landed nearer its own prompt's latent than the others'.
// Everything it makes stays in --out, which is written as a whole (src/io/outdir.ts): staged
// beside it and renamed into place at the end, so an earlier demo's folder is replaced exactly,
// a failed or interrupted demo leaves the previous one as it was, and a folder holding files the
// demo did not write is refused (with --force they are kept).
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileGraph, writeCompiled } from '../compiler.ts';
import { trace } from '../dsl/index.ts';
import { evaluate } from '../ir/evaluate.ts';
import { Rng } from '../ir/init.ts';
import { fromFloat64, numel, toFloat64, toRefTensor, type HostTensor } from '../io/host.ts';
import { writeSafetensors } from '../io/safetensors.ts';
import { Session } from '../../runtime/session.ts';
import { decoderLMEncoder, uniFusionForward } from '../../graphs/unifusion.ts';
import { decoderConfigFromHF } from '../../graphs/vlm/index.ts';
import trainDef, { BATCH, CONFIG, dataset, LATENT, SEQ, TINY_VLM_CONFIG } from '../../examples/train-unifusion-tiny.ts';
import { trainCommand } from './train.ts';
import { displayPath, preflightOutputDir, writeOutputDir, type OutputTarget } from '../io/outdir.ts';
import { UsageError } from './errors.ts';

const TRAIN_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples/train-unifusion-tiny.ts');

export interface DemoOptions {
  out: string;
  device?: string;
  /** training steps (default 500) */
  steps?: number | string;
  /** Euler steps of the sampler (default 20) */
  sampleSteps?: number | string;
  quiet?: boolean;
  /** write into a folder that holds files the demo did not write (they are kept) */
  force?: boolean;
}

export interface DemoResult {
  lossFirst: number;
  lossLast: number;
  forwardRelErr: number;
  /** per prompt: mean squared distance of its sample to its own latent, and the mean over the other latents */
  sampleOwn: number[];
  sampleOthers: number[];
  /** prompts whose sample is nearer its own latent than every other prompt's */
  matched: number;
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export async function demoCommand(opts: DemoOptions): Promise<DemoResult> {
  const steps = Number(opts.steps ?? 500);
  const sampleSteps = Number(opts.sampleSteps ?? 20);
  if (!(Number.isInteger(steps) && steps >= 20)) throw new UsageError(`demo: --steps must be an integer >= 20, got ${opts.steps}`);
  if (!(Number.isInteger(sampleSteps) && sampleSteps >= 1)) throw new UsageError(`demo: --sample-steps must be a positive integer, got ${opts.sampleSteps}`);
  const target: OutputTarget = { out: opts.out, force: opts.force, command: 'demo' };
  await preflightOutputDir(target);
  const device = opts.device ?? 'cpu';
  const final = path.resolve(opts.out);
  const { result } = await writeOutputDir(target, (stage) => runDemo(stage, final, { steps, sampleSteps, device, quiet: opts.quiet }));
  return result;
}

async function runDemo(out: string, final: string, opts: { steps: number; sampleSteps: number; device: string; quiet?: boolean }): Promise<DemoResult> {
  const say = (s: string) => {
    if (!opts.quiet) process.stdout.write(s + '\n');
  };
  const { steps, sampleSteps, device } = opts;
  // paths as they will be once the staging folder is in place
  const rel = (p: string) => displayPath(path.join(final, path.relative(out, p)));

  // 1. train: the `unifusion train` path on the example file (type-checked by the package's own tsc)
  const trainDir = path.join(out, 'train');
  const run = await trainCommand(TRAIN_FILE, { steps, out: trainDir, device, quiet: true, progress: opts.quiet ? false : undefined, typecheck: false });
  const step = run.compiled;
  const params = run.params;
  const losses = run.records.filter((r) => !r.rejected).map((r) => r.loss);
  const nTrain = step.spec.params.reduce((a, p) => a + numel(p.shape), 0);
  say(`1. compiled the tiny UniFusion train step (frozen tiny Qwen2 taps ${CONFIG.taps.join(', ')} -> LAP -> refiner -> DiT ${CONFIG.dit.depth} x ${CONFIG.dit.hidden}; AdamW): ${nTrain.toLocaleString('en-US')} trainable params, ${step.spec.frozen.length} frozen tensors, ${step.emitted.model.graph!.node!.length} ONNX nodes in ${run.compileMs.toFixed(0)} ms`);
  const k = Math.min(20, Math.floor(losses.length / 2));
  const lossFirst = mean(losses.slice(0, k)), lossLast = mean(losses.slice(-k));
  say(`2. trained ${steps} steps (batch ${BATCH}, rectified flow, fresh noise and logit-normal t per step) in ${run.records.reduce((a, r) => a + r.dt, 0).toFixed(1)} s: mean loss of the first ${k} steps ${lossFirst.toFixed(3)} -> last ${k} ${lossLast.toFixed(3)}`);
  say(`   -> ${rel(trainDir)}/ (params.safetensors, checkpoints/, metrics.jsonl)`);
  if (!(lossLast < 0.8 * lossFirst)) throw new Error(`demo: the training loss did not fall (${lossFirst} -> ${lossLast})`);

  // 2. forward pipeline with the trained weights, checked against the float64 reference
  const t2 = performance.now();
  const graph = trace('unifusion_tiny', () => {
    const encoder = decoderLMEncoder(decoderConfigFromHF(TINY_VLM_CONFIG), CONFIG, { prefix: 'vlm' });
    return { velocity: uniFusionForward(CONFIG, { encoder }).velocity };
  }, { seed: trainDef.seed });
  const compiled = compileGraph(graph, { paramValues: params, preset: 'tiny', weights: 'embed' });
  const written = await writeCompiled(out, compiled);
  const m = compiled.manifest;
  say(`3. compiled the forward pipeline with the trained weights: ${m.inputs.map((i) => `${i.name} ${i.dtype}[${i.shape.join(', ')}]`).join(', ')} -> velocity; ${m.paramCount.toLocaleString('en-US')} params, ${m.onnxNodes} ONNX nodes in ${(performance.now() - t2).toFixed(0)} ms -> ${rel(written.onnxPath)}`);

  const pairs = dataset();
  const C = CONFIG.dit.channels, n = C * LATENT * LATENT, P = pairs.length;
  const rng = new Rng(2026, 'demo');
  const ids = fromFloat64('i64', [P, SEQ], pairs.flatMap((p) => p.ids));
  const mask = fromFloat64('i64', [P, SEQ], pairs.flatMap((p) => p.mask));
  const lat = [P, C, LATENT, LATENT];
  const check: Record<string, HostTensor> = {
    input_ids: ids,
    attention_mask: mask,
    latents: fromFloat64('f32', lat, Float64Array.from({ length: P * n }, () => rng.normal())),
    timestep: fromFloat64('f32', [P], Float64Array.from({ length: P }, () => rng.uniform())),
  };
  writeSafetensors(path.join(out, 'inputs.safetensors'), check);
  const session = await Session.load(written.onnxPath, { device, checkFinite: false });
  let forwardRelErr: number;
  const samples = new Float64Array(P * n);
  try {
    const got = toFloat64((await session.run(check)).velocity!);
    const refFeeds = Object.fromEntries(Object.entries(check).map(([key, v]) => [key, toRefTensor(v)]));
    const refParams = new Map([...params].map(([key, v]) => [key, toRefTensor(v)]));
    const want = evaluate(compiled.graph, refFeeds, { params: refParams }).velocity!.data;
    let maxAbs = 0, maxRef = 0;
    for (let i = 0; i < got.length; i++) (maxAbs = Math.max(maxAbs, Math.abs(got[i]! - want[i]!))), (maxRef = Math.max(maxRef, Math.abs(want[i]!)));
    forwardRelErr = maxAbs / maxRef;
    say(`4. onnxruntime (${device}) vs the float64 reference on ${P} prompts (${pairs.filter((p) => p.mask.includes(0)).length} padded), random x_t and t: max |ort - ref| = ${maxAbs.toExponential(2)} (${forwardRelErr.toExponential(2)} of max |ref|) ${forwardRelErr < 1e-4 ? 'OK' : 'MISMATCH'}`);
    if (!(forwardRelErr < 1e-4)) throw new Error(`demo: onnxruntime and the reference disagree (relative error ${forwardRelErr})`);

    // 3. sample: x_1 = noise, x_{t - dt} = x_t - dt v(x_t, t) (v predicts noise - x0)
    const t3 = performance.now();
    const x = Float64Array.from({ length: P * n }, () => rng.normal());
    for (let s = 0; s < sampleSteps; s++) {
      const t = 1 - s / sampleSteps, dt = 1 / sampleSteps;
      const v = toFloat64((await session.run({ input_ids: ids, attention_mask: mask, latents: fromFloat64('f32', lat, x), timestep: fromFloat64('f32', [P], new Float64Array(P).fill(t)) })).velocity!);
      for (let i = 0; i < x.length; i++) x[i] -= dt * v[i]!;
    }
    samples.set(x);
    say(`5. sampled all ${P} prompts with ${sampleSteps} Euler steps in ${(performance.now() - t3).toFixed(0)} ms -> ${rel(path.join(out, 'samples.safetensors'))}`);
  } finally {
    await session.release();
  }
  writeSafetensors(path.join(out, 'samples.safetensors'), { samples: fromFloat64('f32', lat, samples), targets: fromFloat64('f32', lat, pairs.flatMap((p) => [...p.latent])) });

  const dist = (i: number, j: number) => {
    let s = 0;
    for (let e = 0; e < n; e++) s += (samples[i * n + e]! - pairs[j]!.latent[e]!) ** 2;
    return s / n;
  };
  const sampleOwn: number[] = [], sampleOthers: number[] = [];
  let matched = 0;
  for (let i = 0; i < P; i++) {
    const ds = pairs.map((_, j) => dist(i, j));
    sampleOwn.push(ds[i]!);
    sampleOthers.push(mean(ds.filter((_, j) => j !== i)));
    if (ds.every((v, j) => j === i || v > ds[i]!)) matched++;
  }
  say(`6. each sample vs the latents: mean squared distance to its own prompt's latent ${mean(sampleOwn).toFixed(3)}, to the other prompts' ${mean(sampleOthers).toFixed(3)}; ${matched} of ${P} samples are nearest their own prompt's latent`);
  return { lossFirst, lossLast, forwardRelErr, sampleOwn, sampleOthers, matched };
}
