// `unifusion train <train-graph.ts> --steps N --out DIR [--resume] [--lr X] [--warmup N] [--min-lr X]
//   [--seed N] [--checkpoint-every K] [--keep N] [--max-rejections M] [--device EP]`
//
// The .ts file default-exports defineTrainStep({...}): a batch spec, a loss over it, AdamW options
// and a data source. The command compiles the AdamW step graph, then trains with the runtime
// Trainer. DIR gets:
//   train-step.onnx, train-spec.json   the step graph (usable again via Trainer.create({model, spec}))
//   checkpoints/step-NNNNNNNNN.safetensors   the last --keep checkpoints
//   metrics.jsonl                     one line per iteration
//   params.safetensors                the trained params (and EMA) at the end
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DType } from '../ir/dtype.ts';
import type { Tensor } from '../dsl/tensor.ts';
import { compileTrainStep, type AdamWOptions, type BatchTensorSpec, type CompiledTrainStep } from '../train/step.ts';
import type { DataSource, StepRecord } from '../../runtime/trainer.ts';
import type { HostTensor } from '../io/host.ts';
import { importUserModule } from './user-module.ts';
import { writeTrainStepBindings } from './bindings.ts';

export const TRAIN_DEFINITION = Symbol.for('unifusion.train-definition');

export interface TrainDefaults {
  steps?: number;
  lr?: number;
  warmup?: number;
  /** cosine floor, absolute (default 0.1 * lr) */
  minLr?: number;
  /** data order and noise */
  seed?: number;
  checkpointEvery?: number;
  keep?: number;
}

export interface TrainDefinition {
  name: string;
  description?: string;
  /** batch inputs, by name (no micro-batch axis; AdamW's `accumulate` adds it) */
  batch: Record<string, BatchTensorSpec>;
  /** scalar loss of one batch; build the modules outside (at module level) */
  loss: (batch: Record<string, Tensor>) => Tensor;
  /** one batch per iteration, a function of (iteration, seeded rng) */
  data: DataSource;
  optimizer?: AdamWOptions;
  /** param initialisation seed */
  seed?: number;
  computeDtype?: DType;
  /** CLI defaults (flags override) */
  defaults?: TrainDefaults;
}

export type DefinedTrainStep = TrainDefinition & { [TRAIN_DEFINITION]: true; compile(): CompiledTrainStep };

export function defineTrainStep(def: TrainDefinition): DefinedTrainStep {
  return Object.assign(def, {
    [TRAIN_DEFINITION]: true as const,
    compile(): CompiledTrainStep {
      return compileTrainStep({ name: def.name, batch: def.batch, loss: def.loss, seed: def.seed, computeDtype: def.computeDtype }, def.optimizer ?? {});
    },
  });
}

export async function loadTrainFile(file: string): Promise<DefinedTrainStep> {
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) throw new Error(`train file '${file}' does not exist`);
  // Bundled like a graph file, so it loads in plain Node (the CLI from dist/) and shares this DSL instance.
  const mod = await importUserModule(abs, 'train file');
  const def = mod.default as Partial<DefinedTrainStep> | undefined;
  if (!def || typeof def !== 'object' || !(TRAIN_DEFINITION in def)) throw new Error(`train file '${file}' must default-export defineTrainStep({...})`);
  return def as DefinedTrainStep;
}

export interface TrainCommandOptions {
  steps?: string | number;
  out: string;
  resume?: boolean;
  lr?: string | number;
  warmup?: string | number;
  minLr?: string | number;
  seed?: string | number;
  checkpointEvery?: string | number;
  keep?: string | number;
  maxRejections?: string | number;
  device?: string;
  /** progress bar: default on a TTY only */
  progress?: boolean;
  quiet?: boolean;
  intraOpThreads?: number;
  /** also write typed TypeScript bindings <out>/train-step.ts */
  bindings?: boolean;
}

function num(flag: string, v: string | number | undefined, fallback: number | undefined, kind: 'int' | 'posint' | 'float'): number | undefined {
  if (v === undefined) return fallback;
  const n = Number(v);
  const ok = kind === 'float' ? Number.isFinite(n) && n >= 0 : Number.isSafeInteger(n) && (kind === 'int' ? n >= 0 : n >= 1);
  if (!ok) throw new Error(`--${flag} must be a ${kind === 'float' ? 'non-negative number' : kind === 'int' ? 'non-negative integer' : 'positive integer'}, got '${v}'`);
  return n;
}

export interface TrainRunResult {
  compiled: CompiledTrainStep;
  compileMs: number;
  /** iterations run by this call (none when the checkpoint was already at --steps) */
  records: StepRecord[];
  /** the trained params (and EMA), as written to <out>/params.safetensors */
  params: Map<string, HostTensor>;
}

export async function trainCommand(file: string, opts: TrainCommandOptions): Promise<TrainRunResult> {
  const def = await loadTrainFile(file);
  const d = def.defaults ?? {};
  const steps = num('steps', opts.steps, d.steps, 'posint');
  if (steps === undefined) throw new Error(`--steps is required (the train file sets no default)`);
  const lr = num('lr', opts.lr, d.lr ?? 1e-3, 'float')!;
  const warmup = num('warmup', opts.warmup, d.warmup ?? 0, 'int')!;
  const minLr = num('min-lr', opts.minLr, d.minLr, 'float');
  const seed = num('seed', opts.seed, d.seed, 'int');
  const every = num('checkpoint-every', opts.checkpointEvery, d.checkpointEvery ?? 100, 'int')!;
  const keep = num('keep', opts.keep, d.keep ?? 3, 'posint')!;
  const maxRejections = num('max-rejections', opts.maxRejections, 5, 'posint')!;

  const { Trainer } = await import('../../runtime/trainer.ts');
  const { warmupCosine } = await import('../../runtime/schedule.ts');
  const { encodeModel } = await import('../../codegen/onnx/proto.ts');

  const t0 = performance.now();
  const compiled = def.compile();
  const compileMs = performance.now() - t0;
  const out = path.resolve(opts.out);
  const trainer = await Trainer.create(compiled, {
    data: def.data,
    device: opts.device,
    lr: warmupCosine({ lr, warmup: Math.min(warmup, steps), totalSteps: steps, minLr }),
    seed,
    checkpointDir: path.join(out, 'checkpoints'),
    checkpointEvery: every,
    keepLast: keep,
    maxRejections,
    metricsPath: path.join(out, 'metrics.jsonl'),
    progress: opts.progress ?? 'auto',
    resume: opts.resume ?? false,
    intraOpThreads: opts.intraOpThreads,
  });
  try {
    // Only now that any checkpoint has been accepted: the graph that the checkpoints belong to.
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, 'train-step.onnx'), encodeModel(compiled.emitted.model));
    fs.writeFileSync(path.join(out, 'train-spec.json'), JSON.stringify(compiled.spec, null, 2) + '\n');
    if (opts.bindings) await writeTrainStepBindings(out, compiled);
    const from = trainer.stepsDone;
    if (from >= steps && !opts.quiet) process.stdout.write(`${def.name}: already at step ${from} (--steps ${steps}); nothing to do\n`);
    const t1 = performance.now();
    const recs = await trainer.train(steps);
    const trainS = (performance.now() - t1) / 1000;
    const paramsPath = path.join(out, 'params.safetensors');
    const params = await trainer.exportParams(paramsPath);
    const result = { compiled, compileMs, records: recs, params };
    if (opts.quiet || recs.length === 0) return result;
    const ok = recs.filter((r) => !r.rejected);
    const rel = (p: string) => path.relative(process.cwd(), p) || p;
    const lines = [
      `trained ${def.name}: steps ${from + 1}..${trainer.stepsDone}${trainer.resumedFrom ? ` (resumed from ${rel(trainer.resumedFrom)})` : ''}, ${(recs.length / trainS).toFixed(1)} it/s, compile ${compileMs.toFixed(0)} ms`,
      `  loss:   ${ok.length ? `${ok[0]!.loss.toPrecision(4)} -> ${ok.at(-1)!.loss.toPrecision(4)}` : 'no accepted step'}${recs.length - ok.length ? `, ${recs.length - ok.length} rejected step(s)` : ''}`,
      `  params: ${rel(paramsPath)}; checkpoints: ${rel(path.join(out, 'checkpoints'))}; metrics: ${rel(path.join(out, 'metrics.jsonl'))}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    return result;
  } finally {
    await trainer.close();
  }
}
