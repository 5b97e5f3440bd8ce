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
import { pathToFileURL } from 'node:url';
import type { DType } from '../ir/dtype.ts';
import type { Tensor } from '../dsl/tensor.ts';
import { compileTrainStep, type AdamWOptions, type BatchTensorSpec, type CompiledTrainStep } from '../train/step.ts';
import type { DataSource, StepRecord } from '../../runtime/trainer.ts';
import type { HostTensor } from '../io/host.ts';
import { displayPath, RunDir, type RunDirOptions } from '../io/outdir.ts';
import { asDSLError } from '../dsl/trace.ts';
import { continueSchedule, parseScheduleRecord, scheduleEnd, scheduleFromRecord, type LrSchedule, type ScheduleRecord } from '../../runtime/schedule.ts';
import { parseNumberFlag, UsageError } from './errors.ts';
import { startTypecheck, withTypecheck } from './typecheck.ts';

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
  if (!fs.existsSync(abs)) throw new UsageError(`train file '${file}' does not exist`);
  if (!fs.statSync(abs).isFile()) throw new UsageError(`train file '${file}' is not a file`);
  // The CLI runs under tsx, so the .ts file is imported as is and shares this DSL instance.
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(abs).href)) as { default?: unknown };
  } catch (e) {
    throw asDSLError(e, path.basename(file));
  }
  const def = mod.default as Partial<DefinedTrainStep> | undefined;
  if (!def || typeof def !== 'object' || !(TRAIN_DEFINITION in def)) throw new UsageError(`train file '${file}' must default-export defineTrainStep({...})`);
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
  /** write into a folder that holds files unifusion did not write (they are kept) */
  force?: boolean;
  /** type-check the train file first (default true) */
  typecheck?: boolean;
}

function num(flag: string, v: string | number | undefined, fallback: number | undefined, kind: 'int' | 'posint' | 'float'): number | undefined {
  return v === undefined ? fallback : parseNumberFlag(`--${flag}`, v, kind);
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
  // Flags and the output folder first: a bad --out or --resume fails in a second, not after compiling.
  for (const [flag, v, kind] of [['steps', opts.steps, 'posint'], ['lr', opts.lr, 'float'], ['warmup', opts.warmup, 'int'], ['min-lr', opts.minLr, 'float'], ['seed', opts.seed, 'int'], ['checkpoint-every', opts.checkpointEvery, 'int'], ['keep', opts.keep, 'posint'], ['max-rejections', opts.maxRejections, 'posint']] as const)
    num(flag, v, undefined, kind);
  const out = path.resolve(opts.out);
  const target: RunDirOptions = { out: opts.out, inputs: [{ path: file, what: '<train-graph>' }], force: opts.force, resume: opts.resume, command: 'train' };
  await RunDir.preflight(target);
  const { latestCheckpoint, readCheckpointMeta } = await import('../../runtime/checkpoint.ts');
  const latest = opts.resume ? latestCheckpoint(path.join(out, 'checkpoints')) : undefined;
  if (opts.resume && !latest)
    throw new UsageError(
      `--resume: ${fs.existsSync(out) ? `'${opts.out}' holds no checkpoint to resume from (${fs.existsSync(path.join(out, 'checkpoints')) ? 'checkpoints/ is empty' : 'no checkpoints/ folder'})` : `'${opts.out}' does not exist`}; run without --resume to start a new run`,
    );
  const resumedMeta = latest ? readCheckpointMeta(latest.path) : undefined;

  const check = opts.typecheck === false ? undefined : startTypecheck(file);
  const { def, compiled, compileMs } = await withTypecheck(check, 'train file', async () => {
    const def = await loadTrainFile(file);
    const t0 = performance.now();
    const compiled = def.compile();
    return { def, compiled, compileMs: performance.now() - t0 };
  }, { primary: (e) => e instanceof UsageError });
  const d = def.defaults ?? {};
  // resumed without --steps: the run goes on to the end of the schedule it recorded, not to the file's default
  const recorded = parseScheduleRecord(resumedMeta?.schedule);
  const steps = num('steps', opts.steps, recorded ? scheduleEnd(recorded) : d.steps, 'posint');
  if (steps === undefined) throw new UsageError(`--steps is required (the train file sets no default)`);
  const every = num('checkpoint-every', opts.checkpointEvery, d.checkpointEvery ?? 100, 'int')!;
  const keep = num('keep', opts.keep, d.keep ?? 3, 'posint')!;
  const maxRejections = num('max-rejections', opts.maxRejections, 5, 'posint')!;
  const seed = num('seed', opts.seed, d.seed, 'int');
  const sched = resolveSchedule(opts, d, steps, latest?.path, resumedMeta);

  const { Trainer } = await import('../../runtime/trainer.ts');
  const { encodeModel } = await import('../../codegen/onnx/proto.ts');
  const runDir = await RunDir.open(target);
  let trainer: import('../../runtime/trainer.ts').Trainer;
  try {
    trainer = await Trainer.create(compiled, {
      data: def.data,
      device: opts.device,
      lr: sched.lr,
      scheduleRecord: JSON.stringify(sched.record),
      seed,
      runDir,
      checkpointEvery: every,
      keepLast: keep,
      maxRejections,
      progress: opts.progress ?? 'auto',
      resume: latest?.path ?? false,
      intraOpThreads: opts.intraOpThreads,
    });
  } catch (e) {
    await runDir.discardIfUnused();
    throw e;
  }
  try {
    // Only now that any checkpoint has been accepted: the graph that the checkpoints belong to.
    await runDir.writeFile('train-step.onnx', encodeModel(compiled.emitted.model));
    await runDir.writeFile('train-spec.json', JSON.stringify(compiled.spec, null, 2) + '\n');
    const from = trainer.stepsDone;
    const say = (line: string) => {
      if (!opts.quiet) process.stdout.write(line + '\n');
    };
    if (sched.note) say(sched.note);
    if (from >= steps) say(`${def.name}: already at step ${from} (--steps ${steps}); nothing to do`);
    const t1 = performance.now();
    const recs = await trainer.train(steps);
    const trainS = (performance.now() - t1) / 1000;
    const paramsPath = path.join(out, 'params.safetensors');
    let params!: Map<string, HostTensor>;
    await runDir.writeFile('params.safetensors', async (tmp) => {
      params = await trainer.exportParams(tmp);
    });
    const result = { compiled, compileMs, records: recs, params };
    if (opts.quiet || recs.length === 0) return result;
    const ok = recs.filter((r) => !r.rejected);
    const rel = (p: string) => displayPath(p);
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

/**
 * The lr schedule of this run. A fresh run: warmup + cosine from the flags (or the train file's
 * defaults). A resumed run keeps the schedule its checkpoint records: --lr, --warmup and
 * --min-lr may not change it (refused, naming the recorded value), and a changed --steps
 * continues it from the lr at the checkpoint instead of re-stretching it (which would make the
 * lr jump); `note` says so.
 */
function resolveSchedule(
  opts: TrainCommandOptions,
  d: TrainDefaults,
  steps: number,
  checkpoint: string | undefined,
  meta: import('../../runtime/checkpoint.ts').CheckpointMeta | undefined,
): { lr: LrSchedule; record: ScheduleRecord; note?: string } {
  const fresh = (): ScheduleRecord => {
    const lr = num('lr', opts.lr, d.lr ?? 1e-3, 'float')!;
    const warmup = num('warmup', opts.warmup, d.warmup ?? 0, 'int')!;
    const minLr = num('min-lr', opts.minLr, d.minLr, 'float') ?? 0.1 * lr;
    if (minLr > lr) throw new UsageError(`--min-lr ${minLr} is above the peak --lr ${lr}`);
    return { segments: [{ kind: 'warmup-cosine', lr, warmup: Math.min(warmup, steps), totalSteps: steps, minLr }] };
  };
  const recorded = parseScheduleRecord(meta?.schedule);
  if (!checkpoint || !meta) {
    const record = fresh();
    return { lr: scheduleFromRecord(record), record };
  }
  if (!recorded) {
    const record = fresh();
    return { lr: scheduleFromRecord(record), record, note: `note: ${displayPath(checkpoint)} records no lr schedule (written by an older unifusion): the lr follows the flags as given` };
  }
  const base = recorded.segments[0]!;
  if (base.kind === 'warmup-cosine') {
    const ckpt = displayPath(checkpoint);
    for (const [flag, given, has] of [['--lr', opts.lr, base.lr], ['--warmup', opts.warmup, base.warmup], ['--min-lr', opts.minLr, recorded.segments.at(-1)!.minLr]] as const) {
      if (given === undefined) continue;
      const v = Number(given);
      if (Math.abs(v - has) > 1e-12 * Math.max(1, Math.abs(has)))
        throw new UsageError(`${flag} ${given} differs from the resumed run's ${has} (recorded in ${ckpt}): a resumed run keeps its learning-rate schedule so the lr stays continuous; drop ${flag}, or start a new run in another --out`);
    }
  }
  const end = scheduleEnd(recorded);
  const record = continueSchedule(recorded, meta.step, steps);
  if (record === recorded || steps <= meta.step) return { lr: scheduleFromRecord(recorded), record: recorded };
  const lrNow = scheduleFromRecord(recorded)(meta.step);
  const floor = record.segments.at(-1)!.minLr;
  const stretched = base.kind === 'warmup-cosine' ? scheduleFromRecord({ segments: [{ ...base, totalSteps: steps }] })(meta.step + 1) : undefined;
  const e = (x: number) => x.toExponential(2);
  const changedWarmup = record.segments.length === 1;
  return {
    lr: scheduleFromRecord(record),
    record,
    note: changedWarmup
      ? `resuming at step ${meta.step} (in warmup) with --steps ${steps} instead of ${end}: the cosine after warmup now ends at step ${steps}; the lr so far is unchanged`
      : `resuming at step ${meta.step} with --steps ${steps} instead of ${end}: the lr continues from ${e(lrNow)} (its value at step ${meta.step}) down a cosine to ${e(floor)} at step ${steps}, keeping it continuous${stretched !== undefined && Math.abs(stretched - lrNow) > 1e-3 * lrNow ? ` (re-stretching the original schedule would have jumped it to ${e(stretched)})` : ''}`,
  };
}
