// Training checkpoints: one safetensors file per saved iteration, holding every carried tensor of
// the step graph (trainable params, AdamW moments, EMA weights) and, in `__metadata__`, the
// iteration count, the number of accepted updates, the data RNG's state and a hash of the step
// graph's ONNX bytes + spec. Files are written atomically (temp + fsync + rename + dir fsync, by
// writeSafetensors), and older ones are pruned only after the new one is durable.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DType } from '../src/ir/dtype.ts';
import type { HostTensor } from '../src/io/host.ts';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.ts';
import type { TrainStepSpec } from '../src/train/step.ts';
import { decodeModel, encodeModel, type ModelProto } from '../codegen/onnx/proto.ts';

export const CHECKPOINT_FORMAT = 'unifusion.train-checkpoint/1';

/** A checkpoint cannot be read, or does not fit the training config. `file` names it. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
  readonly file: string;
  constructor(file: string, message: string) {
    super(message);
    this.file = file;
  }
}

export interface CheckpointMeta {
  /** iterations done (accepted + rejected): the next iteration is step + 1 */
  step: number;
  /** accepted AdamW updates: the next update feeds `step` input t = updates + 1 */
  updates: number;
  /** consecutive rejected iterations at the time of the checkpoint */
  rejectStreak: number;
  /** state of the data/noise Rng (xoshiro128**, 4 u32 words) */
  rng: number[];
  /** seed the run was started with (data order, noise) */
  seed: number;
  /** configHash() of the step graph this checkpoint belongs to */
  configHash: string;
  /** the step graph's name (informational) */
  name: string;
  /** the lr schedule the run was trained with, as JSON (runtime/schedule.ts ScheduleRecord); absent in older checkpoints */
  schedule?: string;
}

export interface TensorExpectation {
  dtype: DType;
  shape: readonly number[];
}

export interface CheckpointEntry {
  step: number;
  path: string;
}

const FILE_RE = /^step-(\d{9,})\.safetensors$/;
// writeSafetensors' temp names, and src/io/outdir.ts's ('.step-N.safetensors.tmp-PID-HEX', holding one of the former while it is written)
const TEMP_RE = /^\.?step-\d{9,}\.safetensors\.tmp-(\d+)-[0-9a-f]+(?:\.tmp-\d+-[0-9a-f]+)?$/;

export function checkpointPath(dir: string, step: number): string {
  return path.join(dir, `step-${String(step).padStart(9, '0')}.safetensors`);
}

/**
 * sha256 over the step graph and its spec (key order does not matter). Node names, doc_strings
 * (the user's file:line) and metadata are left out: moving a line of the train file, or a
 * compiler that names nodes differently, must not make a checkpoint unresumable; what is
 * computed is all that counts.
 */
export function configHash(model: Uint8Array | ModelProto, spec: TrainStepSpec): string {
  const m = model instanceof Uint8Array ? decodeModel(model) : model;
  const g = m.graph ?? {};
  const bare: ModelProto = {
    ...m,
    docString: '',
    metadataProps: [],
    graph: { ...g, node: (g.node ?? []).map((n) => ({ ...n, name: '', docString: '' })) },
  };
  const h = createHash('sha256');
  h.update(encodeModel(bare));
  h.update('\0');
  h.update(stableStringify(spec));
  return h.digest('hex');
}

function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** Checkpoints in `dir`, oldest first (temp files and other files are ignored). */
export function listCheckpoints(dir: string): CheckpointEntry[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: CheckpointEntry[] = [];
  for (const n of names) {
    const m = FILE_RE.exec(n);
    if (m) out.push({ step: Number(m[1]), path: path.join(dir, n) });
  }
  return out.sort((a, b) => a.step - b.step);
}

export function latestCheckpoint(dir: string): CheckpointEntry | undefined {
  return listCheckpoints(dir).at(-1);
}

/**
 * Remove temp files that a killed writer left behind (its pid is gone). A live writer's temp file
 * (another process training into the same dir) is left alone.
 */
export function removeStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    const m = TEMP_RE.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isAlive(pid)) continue;
    try {
      fs.unlinkSync(path.join(dir, n));
      removed.push(n);
    } catch {
      /* raced with someone else's cleanup */
    }
  }
  return removed;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Write the checkpoint for `meta.step` atomically, then delete all but the newest `keepLast`
 * checkpoints of the dir. Returns the new file's path.
 */
export function writeCheckpoint(dir: string, tensors: ReadonlyMap<string, HostTensor>, meta: CheckpointMeta, keepLast: number): string {
  if (!(Number.isInteger(keepLast) && keepLast >= 1)) throw new RangeError(`keepLast must be a positive integer, got ${keepLast}`);
  makeDirsSync(dir);
  const file = checkpointPath(dir, meta.step);
  writeSafetensors(file, tensors, checkpointMetadata(meta));
  // writeSafetensors has fsynced the file and its directory: the new checkpoint is durable.
  const all = listCheckpoints(dir);
  for (const old of all.slice(0, Math.max(0, all.length - keepLast))) {
    if (old.path === file) continue;
    fs.rmSync(old.path, { force: true });
  }
  return file;
}

/** mkdir of each missing level (Node's recursive mkdir spins forever on procfs). */
function makeDirsSync(dir: string): void {
  const missing: string[] = [];
  for (let cur = path.resolve(dir); !fs.existsSync(cur); cur = path.dirname(cur)) {
    if (path.dirname(cur) === cur) break;
    missing.push(cur);
  }
  for (const d of missing.reverse()) fs.mkdirSync(d);
}

/** The safetensors __metadata__ of a checkpoint. */
export function checkpointMetadata(meta: CheckpointMeta): Record<string, string> {
  return {
    format: CHECKPOINT_FORMAT,
    step: String(meta.step),
    updates: String(meta.updates),
    reject_streak: String(meta.rejectStreak),
    rng: JSON.stringify(meta.rng),
    seed: String(meta.seed),
    config_hash: meta.configHash,
    name: meta.name,
    ...(meta.schedule !== undefined ? { lr_schedule: meta.schedule } : {}),
    saved_at: new Date().toISOString(),
  };
}

/** A checkpoint's metadata only (its header), validated as readCheckpoint does; no tensor is read. */
export function readCheckpointMeta(file: string): CheckpointMeta {
  let f: SafetensorsFile;
  try {
    f = SafetensorsFile.openSync(file);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `is unreadable (truncated or corrupt): ${(e as Error).message}`;
    throw new CheckpointError(file, `checkpoint '${file}' ${why}`);
  }
  try {
    const md = f.metadata;
    if (md.format !== CHECKPOINT_FORMAT)
      throw new CheckpointError(file, `checkpoint '${file}' is not a unifusion training checkpoint (metadata format is ${md.format === undefined ? 'missing' : JSON.stringify(md.format)}, expected ${JSON.stringify(CHECKPOINT_FORMAT)})`);
    return parseMeta(file, md);
  } finally {
    f.close();
  }
}

export interface ReadCheckpointOptions {
  configHash: string;
  /** every tensor the checkpoint must hold, with its dtype and shape */
  tensors: ReadonlyMap<string, TensorExpectation>;
  /** accept a checkpoint whose config hash differs as long as every tensor fits (fine-tuning with a changed optimizer) */
  allowConfigMismatch?: boolean;
}

/** Read and validate a checkpoint; throws CheckpointError naming every difference found. */
export function readCheckpoint(file: string, expect: ReadCheckpointOptions): { meta: CheckpointMeta; tensors: Map<string, HostTensor> } {
  let f: SafetensorsFile;
  try {
    f = SafetensorsFile.openSync(file);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `is unreadable (truncated or corrupt): ${(e as Error).message}`;
    throw new CheckpointError(file, `checkpoint '${file}' ${why}`);
  }
  try {
    const md = f.metadata;
    if (md.format !== CHECKPOINT_FORMAT) {
      throw new CheckpointError(file, `checkpoint '${file}' is not a unifusion training checkpoint (metadata format is ${md.format === undefined ? 'missing' : JSON.stringify(md.format)}, expected ${JSON.stringify(CHECKPOINT_FORMAT)})`);
    }
    const meta = parseMeta(file, md);
    const problems: string[] = [];
    if (meta.configHash !== expect.configHash && !expect.allowConfigMismatch) {
      problems.push(`config hash differs: checkpoint has ${meta.configHash.slice(0, 16)}… (step graph '${meta.name}'), this trainer's step graph has ${expect.configHash.slice(0, 16)}… (a different model, optimizer setting or batch spec)`);
    }
    const have = new Set(f.names());
    const missing = [...expect.tensors.keys()].filter((n) => !have.has(n));
    const extra = [...have].filter((n) => !expect.tensors.has(n));
    if (missing.length) problems.push(`missing tensor${missing.length > 1 ? 's' : ''} ${listNames(missing)}`);
    if (extra.length) problems.push(`unexpected tensor${extra.length > 1 ? 's' : ''} ${listNames(extra)}`);
    for (const [name, want] of expect.tensors) {
      if (!have.has(name)) continue;
      const info = f.info(name);
      if (info.dtype !== want.dtype || info.shape.length !== want.shape.length || info.shape.some((d, i) => d !== want.shape[i])) {
        problems.push(`tensor '${name}' is ${info.dtype}[${info.shape.join(', ')}] in the checkpoint, expected ${want.dtype}[${want.shape.join(', ')}]`);
      }
    }
    if (problems.length) {
      const shown = problems.slice(0, 8);
      if (problems.length > shown.length) shown.push(`… and ${problems.length - shown.length} more`);
      throw new CheckpointError(file, `checkpoint '${file}' does not fit this training config:\n  - ${shown.join('\n  - ')}`);
    }
    const tensors = new Map<string, HostTensor>();
    try {
      for (const name of expect.tensors.keys()) tensors.set(name, f.read(name));
    } catch (e) {
      throw new CheckpointError(file, `checkpoint '${file}' is unreadable (truncated or corrupt): ${(e as Error).message}`);
    }
    return { meta, tensors };
  } finally {
    f.close();
  }
}

function parseMeta(file: string, md: Record<string, string>): CheckpointMeta {
  const int = (key: string): number => {
    const v = md[key];
    const n = v === undefined ? NaN : Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new CheckpointError(file, `checkpoint '${file}': metadata '${key}' is ${v === undefined ? 'missing' : JSON.stringify(v)}, expected a non-negative integer`);
    return n;
  };
  let rng: unknown;
  try {
    rng = JSON.parse(md.rng ?? '');
  } catch {
    rng = undefined;
  }
  if (!Array.isArray(rng) || rng.length !== 4 || !rng.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)) {
    throw new CheckpointError(file, `checkpoint '${file}': metadata 'rng' is ${md.rng === undefined ? 'missing' : JSON.stringify(md.rng)}, expected the Rng state (4 u32 words)`);
  }
  if (typeof md.config_hash !== 'string' || !/^[0-9a-f]{64}$/.test(md.config_hash)) {
    throw new CheckpointError(file, `checkpoint '${file}': metadata 'config_hash' is ${md.config_hash === undefined ? 'missing' : JSON.stringify(md.config_hash)}`);
  }
  const seed = Number(md.seed);
  if (!Number.isSafeInteger(seed)) throw new CheckpointError(file, `checkpoint '${file}': metadata 'seed' is ${JSON.stringify(md.seed)}, expected an integer`);
  return { step: int('step'), updates: int('updates'), rejectStreak: int('reject_streak'), rng: rng as number[], seed, configHash: md.config_hash, name: md.name ?? '', ...(md.lr_schedule !== undefined ? { schedule: md.lr_schedule } : {}) };
}

function listNames(names: string[]): string {
  const shown = names.slice(0, 6).map((n) => `'${n}'`);
  return names.length > 6 ? `${shown.join(', ')} and ${names.length - 6} more` : shown.join(', ');
}
