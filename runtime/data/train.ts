// Train a UniFusion config (taps as inputs) on an image dataset folder: encode the dataset once
// (VAE or pixel latents, VLM conditions, the dropped condition), then the rectified-flow AdamW step
// graph through the runtime Trainer with condition dropout, task mixing and logit-normal t; every K
// steps a fixed-seed sample grid (CFG against the dropped condition) and the loss curve.
//
// The run folder holds what `assemble --dit RUN` needs: unifusion.json (config, latent format,
// size, dropped condition), params.safetensors (+ EMA), null_condition.safetensors; plus
// train-step.onnx / train-spec.json, checkpoints/, metrics.jsonl, samples/step-*.png, loss.png.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { compileGraph, type Manifest } from '../../src/compiler.ts';
import { trace } from '../../src/dsl/index.ts';
import { encodeModel } from '../../codegen/onnx/proto.ts';
import { paramTensor as paramTensorOf } from '../../codegen/onnx/emit.ts';
import { compileTrainStep, type AdamWOptions } from '../../src/train/step.ts';
import { checkOverlap, writeOutputFile, type InputPath } from '../../src/io/outdir.ts';
import { parseSafetensors, serializeSafetensors } from '../../src/io/safetensors.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../../src/io/host.ts';
import { uniFusionForward, uniFusionTrainStep, type UniFusionConfig } from '../../graphs/unifusion.ts';
import { Trainer, type StepRecord } from '../trainer.ts';
import { Session } from '../session.ts';
import { warmupCosine } from '../schedule.ts';
import { encodePng, imageGrid } from '../images/png.ts';
import { Pipeline } from '../pipeline/pipeline.ts';
import type { ConditionOptions, PromptEncoder, SeqAxes } from '../pipeline/condition.ts';
import { PIPELINE_FORMAT, PIPELINE_VERSION, sha256File, type PipelineJson } from '../pipeline/format.ts';
import type { LatentCodec } from '../pipeline/latent.ts';
import { RUN_MODEL_FILE, type RunModel } from '../pipeline/assemble.ts';
import { loadDataset, problemList } from './dataset.ts';
import { aspectBuckets, type Bucket } from './buckets.ts';
import { CACHE_FILE, datasetFingerprint, deserializeEncoded, encodeDataset, serializeEncoded, type EncodedDataset, type Task } from './cache.ts';
import { imageBatches, type TimestepDistribution } from './loader.ts';
import { lossCurvePng } from './plot.ts';

export interface ImageTrainOptions {
  config: UniFusionConfig;
  /** param init seed */
  initSeed?: number;
  dataset: string;
  out: string;
  resume?: boolean;
  encoder: PromptEncoder;
  /** prompt encoding options (default: no rewriting; rows with an answer are teacher-forced rewrites); the system prompt is recorded for assembly */
  condition?: Partial<ConditionOptions>;
  codec: LatentCodec;
  /**
   * Identity of the encoder (e.g. the sha256 of the VLM package or conditions file): with it, the
   * encoded dataset is saved in the run folder and reused on resume when nothing changed.
   */
  encoderId?: string;
  /** the VAE folder the codec reads (recorded; checked again at assembly) */
  vaeDecoder?: string;
  /** training size [w, h] */
  size: [number, number];
  buckets?: boolean;
  steps: number;
  batch: number;
  lr?: number;
  warmup?: number;
  minLr?: number;
  optimizer?: AdamWOptions;
  dropout?: number;
  taskMix?: Record<Task, number>;
  t?: TimestepDistribution;
  seed?: number;
  checkpointEvery?: number;
  keep?: number;
  /** sample grid every K steps (0: only at the end) */
  sampleEvery?: number;
  samplePrompts?: string[];
  sampleSteps?: number;
  sampleGuidance?: number;
  invalid?: 'error' | 'skip';
  device?: string;
  progress?: boolean | 'auto';
  inputs?: InputPath[];
  log?: (line: string) => void;
  onStep?: (r: StepRecord) => void | Promise<void>;
}

export interface ImageTrainResult {
  dir: string;
  records: StepRecord[];
  encoded: EncodedDataset;
  samples: string[];
  stepsDone: number;
}

export class ImageTrainError extends Error {
  override name = 'ImageTrainError';
}

export async function trainOnImages(o: ImageTrainOptions): Promise<ImageTrainResult> {
  const log = o.log ?? (() => {});
  const out = path.resolve(o.out);
  await checkOverlap({ out: o.out, inputs: [{ path: o.dataset, what: '--dataset' }, ...(o.inputs ?? [])] });
  const existing = await fs.readdir(out).catch(() => [] as string[]);
  if (existing.length && !o.resume) throw new ImageTrainError(`--out '${o.out}' is not empty (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', ...' : ''}); pass --resume to continue a run there, or choose a new folder`);
  const cfg = o.config;
  const fmt = o.codec.format;
  if (fmt.channels !== cfg.dit.channels) throw new ImageTrainError(`the DiT takes ${cfg.dit.channels} latent channels, the ${fmt.kind === 'vae' ? 'VAE gives' : 'pixel space has'} ${fmt.channels}`);
  const multiple = fmt.factor * cfg.dit.patch;
  for (const v of o.size) if (!(Number.isInteger(v) && v >= multiple && v % multiple === 0)) throw new ImageTrainError(`--size ${o.size.join('x')}: sides must be multiples of ${multiple} (VAE factor ${fmt.factor} x patch ${cfg.dit.patch})`);

  // 1. data, encoded once
  const ds = await loadDataset(o.dataset, { invalid: o.invalid });
  if (ds.skipped.length) log(`skipped ${ds.skipped.length} invalid row(s):\n${problemList(ds.skipped)}`);
  const buckets: Bucket[] = o.buckets ? aspectBuckets(o.size[0], o.size[1], multiple) : [{ width: o.size[0], height: o.size[1] }];
  const stepDef = uniFusionTrainStep(cfg, { name: `unifusion_${cfg.conditioning}_images`, seed: o.initSeed });
  const seqAxes: SeqAxes = {};
  for (const [k, s] of Object.entries(stepDef.batch)) {
    const a = s.shape.findIndex((d) => typeof d !== 'number' && 'terms' in d && [...d.terms.keys()].join() === 'seq');
    if (a >= 0) seqAxes[k] = a;
  }
  const t0 = performance.now();
  const taskMix = o.taskMix ?? { t2i: 85, recon: 5, edit: 10 };
  const tasks = (['t2i', 'recon', 'edit'] as Task[]).filter((t) => taskMix[t] > 0);
  // encoded once: reused from the run folder when nothing it depends on changed
  const fingerprint = await datasetFingerprint(ds, { buckets, latent: fmt, tasks, inputs: Object.keys(seqAxes).sort(), encoder: o.encoderId ?? null, invalid: o.invalid ?? 'error' });
  const cacheFile = path.join(out, CACHE_FILE);
  let encoded: EncodedDataset | undefined;
  if (o.resume && o.encoderId) {
    const c = await fs.readFile(cacheFile).then((b) => parseSafetensors(b, cacheFile), () => undefined);
    encoded = c && deserializeEncoded(c.tensors, c.metadata, ds, fingerprint);
    if (encoded) log(`reusing the encoded dataset in ${CACHE_FILE}`);
  }
  encoded ??= await encodeDataset(ds, { encoder: o.encoder, condition: o.condition, codec: o.codec, buckets, seqAxes, invalid: o.invalid, log, tasks });
  if (encoded.skipped.length) log(`skipped ${encoded.skipped.length} row(s) with unreadable images:\n${problemList(encoded.skipped)}`);
  log(`dataset: ${ds.rows.length} row(s) -> ${encoded.examples.length} example(s) (${(['t2i', 'recon', 'edit'] as Task[]).map((t) => `${encoded.examples.filter((e) => e.task === t).length} ${t}`).join(', ')}), encoded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const write = async (rel: string, data: Uint8Array | string) => writeOutputFile({ out: path.join(out, rel), force: true, command: 'train' }, data);
  if (o.encoderId) {
    const s = serializeEncoded(encoded, fingerprint);
    await write(CACHE_FILE, serializeSafetensors(s.tensors, s.metadata));
  }

  // 2. the step graph and the trainer
  const compiled = compileTrainStep(stepDef, o.optimizer ?? {});
  const loader = imageBatches(encoded, { batch: o.batch, dropout: o.dropout ?? 0.1, taskMix, t: o.t ?? { kind: 'logit-normal', mean: 0, std: 1 }, seqAxes });
  const lr = o.lr ?? 1e-3;
  const samples: string[] = [];
  const sampleEvery = o.sampleEvery ?? 0;
  let preview: Awaited<ReturnType<typeof previewer>> | undefined;
  const trainer = await Trainer.create(compiled, {
    data: loader.source,
    device: o.device,
    lr: warmupCosine({ lr, warmup: Math.min(o.warmup ?? 0, o.steps), totalSteps: o.steps, minLr: o.minLr }),
    seed: o.seed,
    checkpointDir: path.join(out, 'checkpoints'),
    checkpointEvery: o.checkpointEvery ?? 100,
    keepLast: o.keep ?? 3,
    metricsPath: path.join(out, 'metrics.jsonl'),
    progress: o.progress ?? 'auto',
    resume: o.resume ?? false,
    onStep: async (r, tr) => {
      await o.onStep?.(r);
      if (sampleEvery > 0 && r.step % sampleEvery === 0) samples.push(await preview!.grid(tr, r.step));
    },
  });
  try {
    // 3. what assembly needs, now that any checkpoint has been accepted
    const runModel: RunModel = {
      format: 'unifusion-run-model',
      config: cfg,
      seed: o.initSeed,
      latent: fmt,
      size: o.size,
      nullCondition: 'null_condition.safetensors',
      ...(o.condition?.systemPrompt !== undefined ? { systemPrompt: o.condition.systemPrompt } : {}),
      ...(o.vaeDecoder ? { vaeDecoderSha256: await sha256File(o.vaeDecoder) } : {}),
    };
    await write('null_condition.safetensors', serializeSafetensors(encoded.nullCondition, { what: 'the dropped condition (the empty prompt), used for condition dropout and CFG' }));
    await write(RUN_MODEL_FILE, JSON.stringify(runModel, null, 2) + '\n');
    await write('train-step.onnx', encodeModel(compiled.emitted.model));
    await write('train-spec.json', JSON.stringify(compiled.spec, null, 2) + '\n');
    await write('dataset-report.json', JSON.stringify({ rows: ds.rows.length, examples: encoded.examples.length, skipped: [...ds.skipped, ...encoded.skipped] }, null, 2) + '\n');
    preview = await previewer(o, encoded, seqAxes, write);
    const records = await trainer.train(o.steps);
    if (sampleEvery === 0 || trainer.stepsDone % sampleEvery !== 0 || records.length === 0) samples.push(await preview.grid(trainer.stepsDone === 0 ? undefined : trainer, trainer.stepsDone));
    const params = await trainer.params();
    await write('params.safetensors', serializeSafetensors(params, { step: String(trainer.stepsDone), updates: String(trainer.updatesDone), config_hash: trainer.configHash, name: compiled.spec.name }));
    await write('loss.png', await lossCurvePng(await readLoss(path.join(out, 'metrics.jsonl')), { title: `${compiled.spec.name}: loss` }));
    await preview.close();
    return { dir: out, records, encoded, samples, stepsDone: trainer.stepsDone };
  } finally {
    await preview?.close();
    await trainer.close();
  }
}

async function readLoss(file: string): Promise<{ step: number; loss: number }[]> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  const out: { step: number; loss: number }[] = [];
  for (const l of text.split('\n')) {
    if (!l) continue;
    try {
      const r = JSON.parse(l) as { step: number; loss: number | string; rejected?: boolean };
      if (!r.rejected && typeof r.loss === 'number') out.push({ step: r.step, loss: r.loss });
    } catch {
      /* torn line */
    }
  }
  return out;
}

/**
 * Fixed-seed sample grids during training: the forward graph with the weights as inputs (one
 * compile), fed the trainer's current params (EMA when the step graph keeps one), CFG against
 * the dropped condition.
 */
async function previewer(o: ImageTrainOptions, data: EncodedDataset, seqAxes: SeqAxes, write: (rel: string, b: Uint8Array) => Promise<string>) {
  const cfg = o.config;
  const graph = trace('unifusion_preview', () => ({ velocity: uniFusionForward(cfg).velocity }), { seed: o.initSeed });
  const compiled = compileGraph(graph, { weights: 'inputs' });
  const session = await Session.load(encodeModel(compiled.emitted.model), { device: o.device });
  const manifest: Manifest = compiled.manifest;
  const paramNames = new Set(compiled.graph.params().map((p) => p.params.name));
  const dit = { inputs: manifest.inputs.filter((i) => !paramNames.has(i.name)), outputs: manifest.outputs } as Manifest;
  const prompts = o.samplePrompts?.length ? o.samplePrompts : data.captions.slice(0, 4).map((c) => c.text);
  const conds = prompts.map((p) => {
    const c = data.captions.find((x) => x.text === p);
    if (!c) throw new ImageTrainError(`sample prompt ${JSON.stringify(p)} is not a caption of the dataset (previews use the cached conditions)`);
    return data.conditions[c.condition]!;
  });
  const { concatConditions } = await import('../pipeline/condition.ts');
  const conditions = conds.length ? concatConditions(conds, seqAxes) : undefined;
  const json: PipelineJson = {
    format: PIPELINE_FORMAT,
    version: PIPELINE_VERSION,
    name: 'training preview',
    parts: { vlm: null, dit: { onnx: '', manifest: '' }, vae: null },
    conditioning: { taps: cfg.taps, hidden: cfg.vlm.hidden, inputs: dit.inputs.map((i) => i.name).filter((n) => n !== 'latents' && n !== 'timestep'), dropTemplate: true, rewrite: false },
    latent: o.codec.format,
    resolutions: { multiple: o.codec.format.factor * cfg.dit.patch, default: o.size },
    scheduler: { steps: o.sampleSteps ?? 20, sampler: 'euler', guidance: o.sampleGuidance ?? 3, shift: 1 },
    files: {},
  };
  let params: Map<string, HostTensor> = new Map();
  const pipe = Pipeline.fromParts({
    json,
    ditManifest: dit,
    nullCondition: data.nullCondition,
    codec: o.codec,
    velocity: async (x, shape, sigma, cond) => {
      const B = shape[0]!;
      const feeds: Record<string, HostTensor> = { ...cond, latents: fromFloat64('f32', shape, x), timestep: fromFloat64('f32', [B], new Float64Array(B).fill(sigma)) };
      for (const n of paramNames) feeds[n] = params.get(n)!;
      return toFloat64((await session.run(feeds, ['velocity'])).velocity!);
    },
  });
  let closed = false;
  return {
    async grid(tr: Trainer | undefined, step: number): Promise<string> {
      if (!conditions) return '';
      const cur = tr ? await tr.params() : compiledInit(compiled.graph);
      params = new Map();
      for (const n of paramNames) params.set(n, cur.get(`ema.${n}`) ?? cur.get(n)!);
      const r = await pipe.generate({ prompts, conditions, seed: 0, numImages: 2, progress: false });
      const rel = `samples/step-${String(step).padStart(9, '0')}.png`;
      await write(rel, encodePng(imageGrid(r.images.map((i) => i.image), 2), { Software: 'unifusion', step: String(step), prompts: JSON.stringify(prompts), seeds: '0,1 per prompt', guidance: String(json.scheduler.guidance), steps: String(json.scheduler.steps) }));
      return rel;
    },
    async close() {
      if (closed) return;
      closed = true;
      await session.release();
    },
  };
}

/** Seeded initial values of a graph's params (a preview before any step). */
function compiledInit(graph: import('../../src/ir/graph.ts').Graph): Map<string, HostTensor> {
  return new Map(graph.params().map((p) => [p.params.name, paramTensorOf(p)]));
}

