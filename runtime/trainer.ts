// The training loop around one compiled AdamW step graph (src/train/step.ts): feed params, moments,
// `step`, `lr` and a batch; take `loss`, `grad_norm` and the `next.*` state; carry the state into the
// next iteration by reference; reject non-finite steps; checkpoint and resume bit-identically.
//
// Copies. On CPU the carried `next.*` outputs become the next iteration's inputs as they are (the
// ort.Tensor objects onnxruntime returned; an input is handed to onnxruntime without a copy).
// onnxruntime-node 1.30 does accept pre-allocated output tensors in run()'s fetches and fills
// them, but its binding still returns a freshly allocated copy of every output (it converts each
// output OrtValue into a new JS ArrayBuffer), so pre-allocating saves nothing on CPU: measured no
// difference, and the trainer just swaps references. With device 'webgpu' the carried outputs are
// requested with preferredOutputLocation 'gpu-buffer' and stay on the GPU between iterations
// (only loss and grad_norm come back to the CPU; checkpoints download with getData()). The WebGPU
// path is UNTESTED: no GPU was available where it was written.
//
// Determinism. Everything an iteration consumes is a function of the seed and the iteration index:
// lr = schedule(iteration), the batch = data(iteration, rng) with rng a seeded xoshiro128** whose
// state is checkpointed, t = accepted updates + 1. Resuming from a checkpoint therefore replays the
// same iterations bit for bit (onnxruntime CPU kernels are deterministic for a fixed thread count).
import * as fs from 'node:fs';
import * as path from 'node:path';
import cliProgress from 'cli-progress';
import * as ort from 'onnxruntime-node';
import { DTYPE_INFO, dtypeFromOrt, isDType, type DType } from '../src/ir/dtype.ts';
import { Rng } from '../src/ir/init.ts';
import { allocStorage, numel, storageFromBytes, type HostTensor, type Storage } from '../src/io/host.ts';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { STEP_INPUTS, STEP_OUTPUTS, stateName, type CompiledTrainStep, type TrainStepSpec } from '../src/train/step.ts';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { CheckpointError, checkpointMetadata, checkpointPath, configHash, latestCheckpoint, listCheckpoints, readCheckpoint, removeStaleTemps, writeCheckpoint, type CheckpointMeta, type TensorExpectation } from './checkpoint.ts';
import { constantLr, type LrSchedule } from './schedule.ts';
import type { RunDir } from '../src/io/outdir.ts';
import { ortLogging, ortSeverity } from './log.ts';
import { explainLoadError, explainRunError, indexModel } from './ort-errors.ts';
import { decodeModel } from '../codegen/onnx/proto.ts';

export type Batch = Record<string, HostTensor>;

export interface DataContext {
  /** the run's seed (the same one the rng was seeded with) */
  seed: number;
}

/**
 * One batch per iteration. `step` is the 0-based iteration index; `rng` is the trainer's seeded
 * generator (checkpointed), for noise. The batch must depend only on (seed, step, what it drew
 * from rng): that is what makes a resumed run bit-identical.
 */
export type DataSource = (step: number, rng: Rng, ctx: DataContext) => Batch | Promise<Batch>;

/**
 * Batches of `batchSize` examples from a fixed dataset, reshuffled every epoch with a permutation
 * drawn from Rng(seed, 'epoch:<e>'): the order depends only on the seed and the iteration index.
 * The last partial batch of an epoch is dropped.
 */
export function shuffledBatches<T>(examples: readonly T[], batchSize: number, collate: (items: T[], step: number, rng: Rng) => Batch): DataSource {
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  const perEpoch = Math.floor(examples.length / batchSize);
  if (perEpoch < 1) throw new RangeError(`dataset of ${examples.length} examples has no full batch of ${batchSize}`);
  let cached: { seed: number; epoch: number; perm: Uint32Array } | undefined;
  return (step, rng, ctx) => {
    const epoch = Math.floor(step / perEpoch);
    if (cached?.epoch !== epoch || cached.seed !== ctx.seed) {
      const r = new Rng(ctx.seed, `epoch:${epoch}`);
      const perm = Uint32Array.from({ length: examples.length }, (_, i) => i);
      for (let i = perm.length - 1; i > 0; i--) {
        const j = r.nextU32() % (i + 1);
        const tmp = perm[i]!;
        perm[i] = perm[j]!;
        perm[j] = tmp;
      }
      cached = { seed: ctx.seed, epoch, perm };
    }
    const start = (step % perEpoch) * batchSize;
    return collate(Array.from(cached.perm.subarray(start, start + batchSize), (i) => examples[i]!), step, rng);
  };
}

/** A compiled step graph, or a saved one: the ONNX model and its spec (object or JSON file). */
export type TrainStepSource =
  | CompiledTrainStep
  | {
      model: string | Uint8Array;
      spec: TrainStepSpec | string;
      /** initial params (safetensors file or tensors) for a fresh run; moments start at zero, EMA at the params */
      init?: string | ReadonlyMap<string, HostTensor>;
    };

export interface TrainerOptions {
  data: DataSource;
  /** onnxruntime execution provider (default 'cpu'); 'webgpu' keeps the carried state on the GPU (untested) */
  device?: string;
  /** lr per 1-based iteration, or a constant (default 1e-3) */
  lr?: LrSchedule | number;
  /** seeds the data/noise Rng (default 0); on resume it must match the checkpoint's if given */
  seed?: number;
  /** where checkpoints go; none are written without it */
  checkpointDir?: string;
  /** checkpoint every K iterations (default 0: only at the end of train()) */
  checkpointEvery?: number;
  /** checkpoints kept (default 3) */
  keepLast?: number;
  /** consecutive rejected (non-finite) iterations before the run stops with an error (default 5) */
  maxRejections?: number;
  /** JSONL metrics file, one line per iteration, appended; lines past the start step (a killed run's, about to be redone) are dropped at create */
  metricsPath?: string;
  /** when metrics lines are made durable: fdatasync after every line (default), or only at checkpoints and close */
  metricsSync?: 'step' | 'checkpoint';
  /** progress bar on stderr: 'auto' (default) shows it only on a TTY and never under a test runner or CI */
  progress?: boolean | 'auto';
  /** true: continue from the latest checkpoint in checkpointDir if there is one; a path: from that checkpoint */
  resume?: boolean | string;
  /** accept a checkpoint from a different step graph if every tensor still fits (default false) */
  allowConfigMismatch?: boolean;
  /** onnxruntime intra-op threads (default: onnxruntime's choice) */
  intraOpThreads?: number;
  /**
   * The run folder (src/io/outdir.ts) the checkpoints and metrics live in: every file is then
   * written and removed through it (recorded as ours; pruning never touches a file we did not
   * write). checkpointDir / metricsPath default to its checkpoints/ and metrics.jsonl.
   */
  runDir?: RunDir;
  /** the lr schedule as a record (runtime/schedule.ts ScheduleRecord JSON), stored in every checkpoint so a resume can continue it */
  scheduleRecord?: string;
  /** called after every iteration (after metrics, before the checkpoint) */
  onStep?: (r: StepRecord, trainer: Trainer) => void | Promise<void>;
  /** where rejection reports go (default: stderr, or the progress bar's log) */
  log?: (line: string) => void;
}

export interface StepRecord {
  /** 1-based iteration number */
  step: number;
  /** the AdamW step number fed to the graph (accepted updates before this one + 1) */
  t: number;
  loss: number;
  grad_norm: number;
  lr: number;
  /** wall-clock end of the iteration, Unix seconds */
  time: number;
  /** iteration duration, seconds */
  dt: number;
  rejected: boolean;
}

/** A training run cannot go on: bad batch, bad config, too many rejected steps. */
export class TrainerError extends Error {
  override name = 'TrainerError';
}

const fmtShape = (s: readonly (number | string)[]) => `[${s.join(', ')}]`;

interface StateSlot {
  input: string;
  output: string;
  dtype: DType;
  shape: number[];
}

export class Trainer {
  readonly spec: TrainStepSpec;
  /** sha256 of the step graph's ONNX bytes + spec, stored in every checkpoint */
  readonly configHash: string;
  readonly device: string;
  /** the checkpoint this run resumed from, if any */
  readonly resumedFrom: string | undefined;

  private session: ort.InferenceSession | undefined;
  private readonly opts: TrainerOptions;
  private readonly schedule: LrSchedule;
  private readonly slots: StateSlot[];
  private readonly fetches: string[];
  private state: Map<string, ort.Tensor>;
  private readonly rng: Rng;
  private readonly seed: number;
  private iter: number;
  private updates: number;
  private rejectStreak: number;
  private lastCheckpoint: number;
  private metricsFd: number | undefined;

  private constructor(
    session: ort.InferenceSession,
    spec: TrainStepSpec,
    hash: string,
    opts: TrainerOptions,
    state: Map<string, ort.Tensor>,
    resume: { meta: CheckpointMeta; file: string } | undefined,
  ) {
    this.session = session;
    this.spec = spec;
    this.configHash = hash;
    this.opts = opts;
    this.device = opts.device ?? 'cpu';
    this.schedule = typeof opts.lr === 'function' ? opts.lr : constantLr(opts.lr ?? 1e-3);
    this.slots = stateSlots(spec);
    this.fetches = [STEP_OUTPUTS.loss, STEP_OUTPUTS.gradNorm, ...this.slots.map((s) => s.output)];
    this.state = state;
    this.seed = resume?.meta.seed ?? opts.seed ?? 0;
    this.rng = new Rng(this.seed, 'data');
    if (resume) this.rng.setState(resume.meta.rng);
    this.iter = resume?.meta.step ?? 0;
    this.updates = resume?.meta.updates ?? 0;
    this.rejectStreak = resume?.meta.rejectStreak ?? 0;
    this.lastCheckpoint = resume ? this.iter : -1;
    this.resumedFrom = resume?.file;
  }

  /** Load the step graph, restore or initialise the state, and open the metrics file. */
  static async create(source: TrainStepSource, options: TrainerOptions): Promise<Trainer> {
    const rd = options.runDir;
    const opts: TrainerOptions = rd
      ? { ...options, checkpointDir: options.checkpointDir ?? path.join(rd.dir, 'checkpoints'), metricsPath: options.metricsPath ?? path.join(rd.dir, 'metrics.jsonl') }
      : options;
    const device = opts.device ?? 'cpu';
    for (const [k, v] of [['checkpointEvery', opts.checkpointEvery ?? 0], ['keepLast', opts.keepLast ?? 3], ['maxRejections', opts.maxRejections ?? 5]] as const) {
      if (!(Number.isInteger(v) && v >= (k === 'checkpointEvery' ? 0 : 1))) throw new TrainerError(`trainer option ${k} must be a ${k === 'checkpointEvery' ? 'non-negative' : 'positive'} integer, got ${v}`);
    }
    if (opts.seed !== undefined && !Number.isSafeInteger(opts.seed)) throw new TrainerError(`trainer option seed must be an integer, got ${opts.seed}`);

    // The graph and its spec.
    let bytes: Uint8Array;
    let spec: TrainStepSpec;
    let initial: (() => Map<string, HostTensor>) | undefined;
    if ('emitted' in source) {
      bytes = encodeModel(source.emitted.model);
      spec = source.spec;
      initial = () => source.initialState();
    } else {
      bytes = typeof source.model === 'string' ? readFile(source.model, 'step graph') : source.model;
      spec = typeof source.spec === 'string' ? parseSpec(source.spec) : source.spec;
      const init = source.init;
      if (init !== undefined) initial = () => initialFromParams(spec, typeof init === 'string' ? readSafetensors(init).tensors : new Map(init));
    }
    const hash = configHash('emitted' in source ? source.emitted.model : bytes, spec);
    const expected = new Map<string, TensorExpectation>(stateSlots(spec).map((s) => [s.input, { dtype: s.dtype, shape: s.shape }]));

    // Which checkpoint, if any, to resume from. Nothing in the dir is touched before this is settled.
    let resume: { meta: CheckpointMeta; file: string; tensors: Map<string, HostTensor> } | undefined;
    const dir = opts.checkpointDir;
    const existing = dir ? listCheckpoints(dir) : [];
    let resumeFile: string | undefined;
    if (typeof opts.resume === 'string') resumeFile = opts.resume;
    else if (opts.resume === true) resumeFile = existing.at(-1)?.path;
    if (resumeFile !== undefined) {
      let r;
      try {
        r = readCheckpoint(resumeFile, { configHash: hash, tensors: expected, allowConfigMismatch: opts.allowConfigMismatch });
      } catch (e) {
        if (e instanceof CheckpointError && opts.resume === true) {
          const older = existing.filter((c) => c.path !== resumeFile);
          const hint = older.length ? `\n(the other checkpoints in '${dir}' were not touched; the newest of them is '${older.at(-1)!.path}': move the bad file away and resume again to continue from it)` : '';
          e.message += hint;
        }
        throw e;
      }
      if (opts.seed !== undefined && opts.seed !== r.meta.seed) {
        throw new TrainerError(`cannot resume from '${resumeFile}': it was trained with seed ${r.meta.seed}, the trainer was given seed ${opts.seed} (the data order would change)`);
      }
      const later = existing.filter((c) => c.step > r.meta.step);
      if (later.length) {
        throw new TrainerError(
          `cannot resume from '${resumeFile}' (step ${r.meta.step}): '${dir}' already holds later checkpoints (${later.map((c) => path.basename(c.path)).join(', ')}) that resuming would overwrite or prune; resume from the latest or move them away`,
        );
      }
      resume = { meta: r.meta, file: resumeFile, tensors: r.tensors };
    } else if (existing.length) {
      throw new TrainerError(`checkpoint dir '${dir}' already holds checkpoints (latest: step ${existing.at(-1)!.step}); resume from them or use another dir`);
    }
    if (initial === undefined && resume === undefined) {
      throw new TrainerError(`a step graph given as model + spec needs 'init' (initial params) or a checkpoint to resume from`);
    }
    const hostState = resume?.tensors ?? initial!();
    checkState(hostState, expected);
    if (dir) removeStaleTemps(dir);

    // The session: carried outputs stay on the GPU with webgpu; loss and grad_norm come to the CPU.
    ort.env.logLevel = ortLogging.verbose ? 'warning' : 'fatal';
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [device],
      logSeverityLevel: ortSeverity(),
      graphOptimizationLevel: 'all',
      ...(opts.intraOpThreads !== undefined ? { intraOpNumThreads: opts.intraOpThreads } : {}),
    };
    if (device === 'webgpu') {
      sessionOptions.preferredOutputLocation = Object.fromEntries([
        [STEP_OUTPUTS.loss, 'cpu'],
        [STEP_OUTPUTS.gradNorm, 'cpu'],
        ...spec.carry.map((c) => [c.output, 'gpu-buffer'] as const),
      ]);
    }
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, sessionOptions);
    } catch (e) {
      throw new TrainerError(`cannot load the step graph '${spec.name}' on device '${device}': ${explainLoadError(e instanceof Error ? e.message : String(e), device)}`);
    }
    try {
      checkGraphIO(session, spec);
    } catch (e) {
      await session.release();
      throw e;
    }
    const state = new Map<string, ort.Tensor>();
    for (const [name, t] of hostState) state.set(name, toOrt(name, t));
    const trainer = new Trainer(session, spec, hash, opts, state, resume);
    trainer.stepGraph = bytes;
    try {
      if (opts.metricsPath) {
        if (rd) await rd.claim(path.relative(rd.dir, opts.metricsPath));
        trainer.openMetrics(opts.metricsPath);
      }
    } catch (e) {
      await trainer.close();
      throw e;
    }
    return trainer;
  }

  /** Iterations done so far (accepted and rejected). */
  get stepsDone(): number {
    return this.iter;
  }

  /** Accepted updates so far. */
  get updatesDone(): number {
    return this.updates;
  }

  /** Run one iteration. Throws TrainerError on a bad batch or after maxRejections non-finite steps in a row. */
  async runStep(): Promise<StepRecord> {
    const session = this.live();
    const t0 = performance.now();
    const index = this.iter;
    const step = index + 1;
    const t = this.updates + 1;
    const lr = this.schedule(step);
    if (!Number.isFinite(lr)) throw new TrainerError(`step ${step}: the lr schedule returned ${lr}`);
    // A failed iteration leaves no trace: the rng goes back to where it was, nothing else has moved.
    const rngBefore = this.rng.state();
    let out: ort.InferenceSession.ReturnType;
    try {
      let batch: Batch;
      try {
        batch = await this.opts.data(index, this.rng, { seed: this.seed });
      } catch (e) {
        throw new TrainerError(`step ${step}: the data source failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      const feeds: Record<string, ort.Tensor> = {};
      for (const [k, v] of this.state) feeds[k] = v;
      for (const [k, v] of Object.entries(checkBatch(this.spec, batch, step))) feeds[k] = v;
      feeds[STEP_INPUTS.lr] = new ort.Tensor('float32', Float32Array.of(lr), []);
      feeds[STEP_INPUTS.step] = new ort.Tensor('float32', Float32Array.of(t), []);
      try {
        out = await session.run(feeds, this.fetches, { logSeverityLevel: ortSeverity() });
      } catch (e) {
        let index;
        try {
          index = this.stepGraph ? indexModel(decodeModel(this.stepGraph)) : undefined;
        } catch {
          index = undefined;
        }
        const batchFeeds = Object.fromEntries(Object.entries(batch).filter(([, v]) => v && typeof v === 'object' && 'dtype' in v)) as Batch;
        throw new TrainerError(`step ${step}: running the step graph '${this.spec.name}' failed: ${explainRunError(e instanceof Error ? e.message : String(e), index, batchFeeds)}`, { cause: e });
      }
    } catch (e) {
      this.rng.setState(rngBefore);
      throw e;
    }
    const loss = await scalarOf(out[STEP_OUTPUTS.loss]!);
    const gradNorm = await scalarOf(out[STEP_OUTPUTS.gradNorm]!);
    const rejected = !Number.isFinite(loss) || !Number.isFinite(gradNorm);
    if (rejected) {
      // Keep the previous tensors: the new ones are dropped (and freed where they live on a GPU).
      for (const s of this.slots) disposeIfDevice(out[s.output]);
      this.rejectStreak++;
    } else {
      for (const s of this.slots) {
        const prev = this.state.get(s.input);
        this.state.set(s.input, out[s.output]!);
        if (prev !== undefined && prev !== out[s.output]) disposeIfDevice(prev);
      }
      this.updates++;
      this.rejectStreak = 0;
    }
    this.iter = step;
    const rec: StepRecord = { step, t, loss, grad_norm: gradNorm, lr, time: Date.now() / 1000, dt: (performance.now() - t0) / 1000, rejected };
    this.writeMetrics(rec);
    if (rejected) {
      const limit = this.opts.maxRejections ?? 5;
      this.report(`step ${step} rejected: loss ${loss}, grad_norm ${gradNorm} (params and optimizer state kept; ${this.rejectStreak}/${limit} consecutive)`);
      if (this.rejectStreak >= limit) {
        throw new TrainerError(`training stopped at step ${step}: ${this.rejectStreak} consecutive steps had a non-finite loss or gradient norm (last: loss ${loss}, grad_norm ${gradNorm}); the params are those after update ${this.updates}${this.lastCheckpoint >= 0 ? `, the last checkpoint is step ${this.lastCheckpoint}` : ''}`);
      }
    }
    await this.opts.onStep?.(rec, this);
    const every = this.opts.checkpointEvery ?? 0;
    if (this.opts.checkpointDir && every > 0 && step % every === 0) await this.saveCheckpoint();
    return rec;
  }

  /** Train until `totalSteps` iterations are done (counting those before a resume), then checkpoint. */
  async train(totalSteps: number): Promise<StepRecord[]> {
    if (!(Number.isInteger(totalSteps) && totalSteps >= 0)) throw new TrainerError(`steps must be a non-negative integer, got ${totalSteps}`);
    const records: StepRecord[] = [];
    const bar = this.progressBar(totalSteps);
    try {
      // it/s over wall time (checkpoints and data included), smoothed
      let ips = 0;
      let last = performance.now();
      while (this.iter < totalSteps) {
        const r = await this.runStep();
        records.push(r);
        const now = performance.now();
        const rate = 1000 / Math.max(now - last, 1e-3);
        last = now;
        ips = ips === 0 ? rate : 0.95 * ips + 0.05 * rate;
        bar?.update(this.iter, { loss: Number.isFinite(r.loss) ? r.loss.toPrecision(4) : String(r.loss), ips: ips.toFixed(1) });
      }
      if (this.opts.checkpointDir && this.lastCheckpoint !== this.iter) await this.saveCheckpoint();
    } finally {
      bar?.stop();
      this.bar = undefined;
    }
    return records;
  }

  /** Write a checkpoint of the current state now; returns its path. */
  async saveCheckpoint(): Promise<string> {
    const dir = this.opts.checkpointDir;
    if (!dir) throw new TrainerError('no checkpointDir was given');
    // metrics up to this step first: a resumed run keeps the lines up to its checkpoint
    if (this.metricsFd !== undefined) fs.fdatasyncSync(this.metricsFd);
    const rd = this.opts.runDir;
    let file: string;
    if (rd) {
      // through the run folder: recorded as ours; only checkpoints we wrote are pruned
      const tensors = await this.snapshot();
      const meta = this.meta();
      file = await rd.writeFile(path.relative(rd.dir, checkpointPath(dir, meta.step)), async (tmp) => writeSafetensors(tmp, tensors, checkpointMetadata(meta)));
      const ours = listCheckpoints(dir).filter((c) => rd.owns(path.relative(rd.dir, c.path)));
      for (const old of ours.slice(0, Math.max(0, ours.length - (this.opts.keepLast ?? 3)))) if (old.path !== file) await rd.remove(path.relative(rd.dir, old.path));
    } else file = writeCheckpoint(dir, await this.snapshot(), this.meta(), this.opts.keepLast ?? 3);
    this.lastCheckpoint = this.iter;
    return file;
  }

  /** Every carried tensor (params, moments, EMA) on the host. CPU tensors are views, not copies: copy before the next step if you keep them. */
  async snapshot(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const s of this.slots) out.set(s.input, await fromOrt(s.input, this.state.get(s.input)!));
    return out;
  }

  /** Trainable params (and their EMA, as `ema.<name>`, when the graph keeps one). */
  async params(): Promise<Map<string, HostTensor>> {
    const all = await this.snapshot();
    const out = new Map<string, HostTensor>();
    for (const p of this.spec.params) {
      out.set(p.name, all.get(p.name)!);
      const e = all.get(stateName.ema(p.name));
      if (e) out.set(stateName.ema(p.name), e);
    }
    return out;
  }

  /** Write the params (and EMA) to a safetensors file, atomically; returns what it wrote. */
  async exportParams(file: string): Promise<Map<string, HostTensor>> {
    const params = await this.params();
    writeSafetensors(file, params, { step: String(this.iter), updates: String(this.updates), config_hash: this.configHash, name: this.spec.name });
    return params;
  }

  /** Release the session and close the metrics file. Idempotent. */
  async close(): Promise<void> {
    if (this.metricsFd !== undefined) {
      fs.fsyncSync(this.metricsFd);
      fs.closeSync(this.metricsFd);
      this.metricsFd = undefined;
    }
    for (const t of this.state.values()) disposeIfDevice(t);
    const s = this.session;
    this.session = undefined;
    if (s) await s.release();
  }

  // -------------------------------------------------------------------------------------------

  private meta(): CheckpointMeta {
    const schedule = this.opts.scheduleRecord;
    return { step: this.iter, updates: this.updates, rejectStreak: this.rejectStreak, rng: this.rng.state(), seed: this.seed, configHash: this.configHash, name: this.spec.name, ...(schedule !== undefined ? { schedule } : {}) };
  }

  /** the step graph's ONNX bytes, for explaining onnxruntime errors by node */
  private stepGraph: Uint8Array | undefined;

  private live(): ort.InferenceSession {
    if (!this.session) throw new TrainerError('the trainer has been closed');
    return this.session;
  }

  /** Open the metrics file for appending, first dropping lines past the current step (a killed run's iterations that are about to be redone) and any torn last line. */
  private openMetrics(file: string): void {
    const parent = path.dirname(path.resolve(file));
    if (!fs.existsSync(parent)) fs.mkdirSync(parent); // one level: recursive mkdir spins on procfs
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const keep: string[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const r = JSON.parse(line) as { step?: unknown };
        if (typeof r.step === 'number' && r.step <= this.iter) keep.push(line);
      } catch {
        /* torn line from a killed writer */
      }
    }
    const kept = keep.length ? keep.join('\n') + '\n' : '';
    if (kept !== text) {
      const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${Math.random().toString(16).slice(2, 10).padEnd(8, '0')}`);
      fs.writeFileSync(tmp, kept);
      const fd = fs.openSync(tmp, 'r+');
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fs.renameSync(tmp, file);
    }
    this.metricsFd = fs.openSync(file, 'a');
  }

  private writeMetrics(r: StepRecord): void {
    if (this.metricsFd === undefined) return;
    const num = (x: number) => (Number.isFinite(x) ? x : String(x));
    const line = JSON.stringify({ step: r.step, t: r.t, loss: num(r.loss), grad_norm: num(r.grad_norm), lr: r.lr, time: r.time, dt: r.dt, rejected: r.rejected }) + '\n';
    fs.writeSync(this.metricsFd, line);
    if ((this.opts.metricsSync ?? 'step') === 'step') fs.fdatasyncSync(this.metricsFd);
  }

  private bar: { log(s: string): void } | undefined;

  private report(line: string): void {
    if (this.opts.log) this.opts.log(line);
    else if (this.bar) this.bar.log(line + '\n');
    else process.stderr.write(line + '\n');
  }

  private progressBar(total: number): { update(v: number, payload: object): void; stop(): void } | undefined {
    const want = this.opts.progress ?? 'auto';
    const on = want === 'auto' ? Boolean(process.stderr.isTTY) && !process.env.VITEST && !process.env.CI : want;
    if (!on) return undefined;
    const multi = new cliProgress.MultiBar(
      {
        stream: process.stderr,
        format: `${this.spec.name} {bar} {value}/{total} | loss {loss} | {ips} it/s | ETA {eta_formatted}`,
        hideCursor: true,
        etaBuffer: 50,
        clearOnComplete: false,
        barsize: 30,
      },
      cliProgress.Presets.shades_classic,
    );
    const bar = multi.create(total, this.iter, { loss: '-', ips: '-' });
    this.bar = multi;
    return { update: (v, p) => bar.update(v, p), stop: () => multi.stop() };
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function stateSlots(spec: TrainStepSpec): StateSlot[] {
  const params = new Map(spec.params.map((p) => [p.name, p]));
  return spec.carry.map((c) => {
    const p = params.get(c.input);
    if (p) return { ...c, dtype: p.dtype, shape: [...p.shape] };
    // moments and EMA: f32, shaped like their param
    const owner = spec.params.find((q) => c.input === stateName.m(q.name) || c.input === stateName.v(q.name) || c.input === stateName.ema(q.name));
    if (!owner) throw new TrainerError(`step spec '${spec.name}': carried input '${c.input}' belongs to no param`);
    return { ...c, dtype: 'f32' as DType, shape: [...owner.shape] };
  });
}

function readFile(file: string, what: string): Uint8Array {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new TrainerError(`cannot read the ${what} '${file}': ${(e as Error).message}`);
  }
}

function parseSpec(file: string): TrainStepSpec {
  const text = new TextDecoder().decode(readFile(file, 'step spec'));
  let spec: TrainStepSpec;
  try {
    spec = JSON.parse(text) as TrainStepSpec;
  } catch (e) {
    throw new TrainerError(`step spec '${file}' is not valid JSON: ${(e as Error).message}`);
  }
  if (!spec || !Array.isArray(spec.params) || !Array.isArray(spec.carry) || !Array.isArray(spec.batch)) throw new TrainerError(`step spec '${file}' lacks params, carry or batch`);
  return spec;
}

function initialFromParams(spec: TrainStepSpec, params: Map<string, HostTensor>): Map<string, HostTensor> {
  const st = new Map<string, HostTensor>();
  for (const p of spec.params) {
    const t = params.get(p.name);
    if (!t) throw new TrainerError(`initial params lack '${p.name}'`);
    st.set(p.name, t);
    const zeros = () => ({ dtype: 'f32' as const, shape: [...p.shape], data: new Float32Array(numel(p.shape)) });
    st.set(stateName.m(p.name), params.get(stateName.m(p.name)) ?? zeros());
    st.set(stateName.v(p.name), params.get(stateName.v(p.name)) ?? zeros());
    if (spec.optimizer.ema !== null) {
      const e = params.get(stateName.ema(p.name));
      if (e) st.set(stateName.ema(p.name), e);
      else if (t.dtype === 'f32') st.set(stateName.ema(p.name), { dtype: 'f32', shape: [...t.shape], data: Float32Array.from(t.data as Float32Array) });
      else throw new TrainerError(`initial params lack 'ema.${p.name}' (needed for a ${t.dtype} param)`);
    }
  }
  return st;
}

function checkState(state: ReadonlyMap<string, HostTensor>, expected: ReadonlyMap<string, TensorExpectation>): void {
  for (const [name, want] of expected) {
    const t = state.get(name);
    if (!t) throw new TrainerError(`initial state lacks '${name}'`);
    if (t.dtype !== want.dtype || t.shape.length !== want.shape.length || t.shape.some((d, i) => d !== want.shape[i])) {
      throw new TrainerError(`initial state '${name}' is ${t.dtype}${fmtShape(t.shape)}, the step graph takes ${want.dtype}${fmtShape(want.shape)}`);
    }
  }
}

/** The model must take exactly the spec's inputs and produce its outputs (a spec JSON can be paired with the wrong model). */
function checkGraphIO(s: ort.InferenceSession, spec: TrainStepSpec): void {
  const wantIn = new Set([...spec.carry.map((c) => c.input), ...spec.batch.map((b) => b.name), STEP_INPUTS.lr, STEP_INPUTS.step]);
  const wantOut = [STEP_OUTPUTS.loss, STEP_OUTPUTS.gradNorm, ...spec.carry.map((c) => c.output)];
  const haveIn = new Set(s.inputNames);
  const haveOut = new Set(s.outputNames);
  const problems = [
    ...[...wantIn].filter((n) => !haveIn.has(n)).map((n) => `the spec's input '${n}' is not a graph input`),
    ...[...haveIn].filter((n) => !wantIn.has(n)).map((n) => `graph input '${n}' is not in the spec`),
    ...wantOut.filter((n) => !haveOut.has(n)).map((n) => `the spec's output '${n}' is not a graph output`),
  ];
  if (problems.length) throw new TrainerError(`step graph and spec '${spec.name}' do not match: ${problems.slice(0, 6).join('; ')}${problems.length > 6 ? `; … ${problems.length - 6} more` : ''}`);
}

const STORAGE_CTOR: { [D in DType]: new (n: number) => Storage } = {
  f32: Float32Array, f64: Float64Array, f16: Uint16Array, bf16: Uint16Array, i64: BigInt64Array, i32: Int32Array, bool: Uint8Array,
};

/** Check a batch against the spec (names, dtypes, shapes, symbolic dims) and wrap it for onnxruntime. */
function checkBatch(spec: TrainStepSpec, batch: Batch, step: number): Record<string, ort.Tensor> {
  const fail = (name: string, msg: string) => new TrainerError(`step ${step}: batch input '${name}': ${msg}`);
  if (batch === null || typeof batch !== 'object') throw new TrainerError(`step ${step}: the data source returned ${batch === null ? 'null' : typeof batch}, not a batch`);
  const want = new Map(spec.batch.map((b) => [b.name, b]));
  for (const name of Object.keys(batch)) {
    if (!want.has(name)) throw fail(name, `not an input of the step graph (its batch inputs are ${[...want.keys()].map((n) => `'${n}'`).join(', ')})`);
  }
  const bound = new Map<string, { value: number; input: string; axis: number }>();
  const out: Record<string, ort.Tensor> = {};
  for (const b of spec.batch) {
    const t = batch[b.name];
    if (t === undefined) throw new TrainerError(`step ${step}: batch input '${b.name}' is missing (expected ${b.dtype}${fmtShape(b.shape)})`);
    const given = `${String(t.dtype)}${Array.isArray(t.shape) ? fmtShape(t.shape) : '[?]'}`;
    if (!isDType(t.dtype) || t.dtype !== b.dtype) throw fail(b.name, `dtype mismatch: expected ${b.dtype}${fmtShape(b.shape)}, given ${given}`);
    if (!Array.isArray(t.shape) || t.shape.length !== b.shape.length) throw fail(b.name, `rank mismatch: expected ${b.dtype}${fmtShape(b.shape)}, given ${given}`);
    b.shape.forEach((d, axis) => {
      const got = t.shape[axis]!;
      if (!(Number.isSafeInteger(got) && got >= 0)) throw fail(b.name, `dim ${axis} is ${got}, not a size`);
      if (typeof d === 'number' && got !== d) throw fail(b.name, `dim ${axis} mismatch: expected ${b.dtype}${fmtShape(b.shape)}, given ${given}`);
      if (typeof d === 'string') {
        const prev = bound.get(d);
        if (!prev) bound.set(d, { value: got, input: b.name, axis });
        else if (prev.value !== got) throw fail(b.name, `symbolic dim '${d}' is ${got} at axis ${axis}, but ${prev.value} in '${prev.input}' (axis ${prev.axis})`);
      }
    });
    if (!(t.data instanceof STORAGE_CTOR[t.dtype])) throw fail(b.name, `${t.dtype} data must be a ${STORAGE_CTOR[t.dtype].name}, given ${(t.data as object | null)?.constructor?.name ?? typeof t.data}`);
    if (t.data.length !== numel(t.shape)) throw fail(b.name, `shape ${fmtShape(t.shape)} needs ${numel(t.shape)} elements, data has ${t.data.length}`);
    out[b.name] = toOrt(b.name, t);
  }
  return out;
}

function toOrt(name: string, t: HostTensor): ort.Tensor {
  const type = DTYPE_INFO[t.dtype].ort;
  if (type === null) throw new TrainerError(`'${name}' is ${t.dtype}, which onnxruntime-node cannot exchange with JavaScript`);
  return new ort.Tensor(type, t.data as ort.Tensor.DataTypeMap[typeof type], t.shape);
}

async function fromOrt(name: string, v: ort.Tensor): Promise<HostTensor> {
  const dtype = dtypeFromOrt(v.type);
  if (dtype === undefined) throw new TrainerError(`'${name}' has type ${v.type}, which has no HostTensor dtype`);
  const raw: unknown = v.location === 'cpu' || v.location === 'cpu-pinned' ? v.data : await v.getData(false);
  let data: Storage;
  if (raw instanceof STORAGE_CTOR[dtype]) data = raw;
  else if (ArrayBuffer.isView(raw)) data = raw.byteLength ? storageFromBytes(dtype, new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)) : allocStorage(dtype, 0);
  else throw new TrainerError(`onnxruntime returned ${typeof raw} data for '${name}'`);
  return { dtype, shape: [...v.dims], data };
}

async function scalarOf(v: ort.Tensor): Promise<number> {
  const d = v.location === 'cpu' || v.location === 'cpu-pinned' ? v.data : await v.getData(true);
  return Number((d as Float32Array)[0]);
}

function disposeIfDevice(t: ort.Tensor | ort.OnnxValue | undefined): void {
  if (t instanceof ort.Tensor && t.location !== 'cpu' && t.location !== 'cpu-pinned' && t.location !== 'none') t.dispose();
}
