// A thin wrapper over onnxruntime-node: load a model, describe its inputs and outputs in the
// IR's terms, and run it on HostTensors, checking the feeds first so that a wrong input is
// reported by name instead of as an opaque native error.
import { constants as fsConstants, promises as fs } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { DTYPE_INFO, dtypeFromOnnx, dtypeFromOrt, isDType, type DType } from '../src/ir/dtype.ts';
import { allocStorage, numel, storageFromBytes, type HostTensor, type Storage } from '../src/io/host.ts';
import { decodeModel, type ModelProto, type ValueInfoProto } from '../codegen/onnx/proto.ts';
import { checkExternalData, externalRefs } from '../codegen/onnx/external.ts';
import { ortLogging, ortSeverity } from './log.ts';
import { explainLoadError, explainRunError, indexModel, setKnownDevices, type ModelIndex } from './ort-errors.ts';
import * as path from 'node:path';

/** A dimension: a size, a symbolic name (ONNX dim_param, e.g. 'batch'), or null where the model leaves it unnamed. */
export type Dim = number | string | null;

export interface ValueMeta {
  name: string;
  /** False for sequences/maps/optionals, which this wrapper cannot feed or fetch. */
  isTensor: boolean;
  /** The IR dtype, or onnxruntime's type name (e.g. 'uint8') where the IR has none. */
  dtype: DType | string;
  /** null when the model does not declare a rank. */
  shape: Dim[] | null;
}

export type Device = 'cpu' | 'webgpu' | 'cuda' | (string & {});

export interface SessionOptions {
  /** Execution provider name, passed through to onnxruntime (default 'cpu'). */
  device?: Device;
  intraOpThreads?: number;
  graphOptimization?: 'all' | 'basic' | 'disabled';
  /** Where outputs stay (onnxruntime-web style EPs); non-CPU outputs are downloaded by run(). */
  preferredOutputLocation?: ort.InferenceSession.SessionOptions['preferredOutputLocation'];
  /**
   * Load a model compiled with `--weights skeleton` anyway (its weights are an unwritten sparse
   * file: every output would be wrong). Only for timing or structure checks.
   */
  allowSkeleton?: boolean;
  /** warn about NaN/inf in float feeds and outputs (default true) */
  checkFinite?: boolean;
  /** where warnings go (default: stderr, as 'warning: ...') */
  onWarning?: (message: string) => void;
}

/** Loading or running failed for a reason other than a bad feed. */
export class SessionError extends Error {
  override name = 'SessionError';
}

/** A feed (or fetch) was rejected before onnxruntime saw it. `tensor` names the culprit. */
export class RuntimeInputError extends SessionError {
  override name = 'RuntimeInputError';
  readonly tensor: string;
  constructor(tensor: string, message: string) {
    super(message);
    this.tensor = tensor;
  }
}

export class Session {
  readonly inputs: readonly ValueMeta[];
  readonly outputs: readonly ValueMeta[];
  /** The model path, or '<buffer>'. */
  readonly source: string;
  readonly device: string;
  private ort: ort.InferenceSession | undefined;
  private readonly model: string | Uint8Array;
  private readonly opts: SessionOptions;
  private index: ModelIndex | null | undefined;

  private constructor(s: ort.InferenceSession, model: string | Uint8Array, source: string, device: string, inputs: ValueMeta[], outputs: ValueMeta[], opts: SessionOptions) {
    this.ort = s;
    this.model = model;
    this.source = source;
    this.device = device;
    this.inputs = inputs;
    this.outputs = outputs;
    this.opts = opts;
  }

  /** The model's nodes by name, read again from the file only when an error needs explaining. */
  private async modelIndex(): Promise<ModelIndex | undefined> {
    if (this.index === undefined) {
      try {
        this.index = indexModel(decodeModel(typeof this.model === 'string' ? await fs.readFile(this.model) : this.model));
      } catch {
        this.index = null;
      }
    }
    return this.index ?? undefined;
  }

  private warn(message: string): void {
    if (this.opts.onWarning) this.opts.onWarning(message);
    else process.stderr.write(`warning: ${message}\n`);
  }

  /**
   * Load from a path (external data is then resolved next to the model file, by onnxruntime) or
   * from bytes (external data, if any, would resolve against the working directory).
   */
  static async load(model: string | Uint8Array, opts: SessionOptions = {}): Promise<Session> {
    const source = typeof model === 'string' ? model : '<buffer>';
    const device = opts.device ?? 'cpu';
    if (typeof model === 'string') {
      await assertReadableFile(model);
      // A hostile model must not make onnxruntime read files outside its folder.
      let proto;
      try {
        proto = decodeModel(await fs.readFile(model));
      } catch (e) {
        throw new SessionError(`cannot load model '${source}' on device '${device}': not an ONNX model (${e instanceof Error ? e.message : String(e)})`);
      }
      checkExternalData(model, proto);
      if (!opts.allowSkeleton) await refuseSkeleton(model, proto);
    } else if (!opts.allowSkeleton) {
      let proto: ModelProto | undefined;
      try {
        proto = decodeModel(model);
      } catch {
        /* onnxruntime will say what is wrong with the bytes */
      }
      if (proto) await refuseSkeleton(source, proto);
    }
    configureOrt();
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: [device],
      logSeverityLevel: ortSeverity(),
      graphOptimizationLevel: opts.graphOptimization ?? 'all',
      ...(opts.intraOpThreads !== undefined ? { intraOpNumThreads: opts.intraOpThreads } : {}),
      ...(opts.preferredOutputLocation !== undefined ? { preferredOutputLocation: opts.preferredOutputLocation } : {}),
    };
    // Read the proto at most once, and only when onnxruntime's own answer is not enough.
    let ios: Promise<ProtoIO> | undefined;
    const protoIO = () => (ios ??= readProtoIO(model));

    let s: ort.InferenceSession;
    try {
      // Two calls because create() is overloaded on path vs bytes.
      s = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
    } catch (e) {
      throw new SessionError(`cannot load model '${source}' on device '${device}': ${await explainTypeError(e, protoIO, device)}`);
    }
    try {
      const inputs = await Promise.all(s.inputMetadata.map((m) => metaFromOrt(m, protoIO, 'input')));
      const outputs = await Promise.all(s.outputMetadata.map((m) => metaFromOrt(m, protoIO, 'output')));
      return new Session(s, model, source, device, inputs, outputs, opts);
    } catch (e) {
      await s.release();
      throw e;
    }
  }

  /**
   * Run on `feeds` (exactly the model's inputs) and return `fetches` (default: every output) as
   * HostTensors. Feeds are handed to onnxruntime without copying their storage.
   */
  async run(feeds: Record<string, HostTensor>, fetches?: readonly string[]): Promise<Record<string, HostTensor>> {
    const s = this.ort;
    if (s === undefined) throw new SessionError(`session for '${this.source}' has been released`);
    checkFeeds(this.inputs, feeds);
    const wanted = fetches ?? this.outputs.map((o) => o.name);
    for (const name of wanted) checkFetch(this.outputs, name);

    const checkFinite = this.opts.checkFinite ?? true;
    if (checkFinite) for (const m of this.inputs) warnNonFinite(`input '${m.name}'`, feeds[m.name]!, (w) => this.warn(w));
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const m of this.inputs) ortFeeds[m.name] = toOrt(m.name, feeds[m.name]!);
    let results: ort.InferenceSession.ReturnType;
    try {
      results = await s.run(ortFeeds, [...wanted], { logSeverityLevel: ortSeverity() });
    } catch (e) {
      throw new SessionError(`running '${this.source}' failed: ${explainRunError(errorMessage(e), await this.modelIndex(), feeds)}`);
    }
    const out: Record<string, HostTensor> = {};
    for (const name of wanted) {
      const v = results[name];
      if (!(v instanceof ort.Tensor)) throw new SessionError(`output '${name}' is not a tensor`);
      out[name] = await fromOrt(name, v);
      if (checkFinite) warnNonFinite(`output '${name}'`, out[name]!, (w) => this.warn(w));
    }
    return out;
  }

  /** Free the native session. Idempotent; run() afterwards throws. */
  async release(): Promise<void> {
    const s = this.ort;
    this.ort = undefined;
    if (s !== undefined) await s.release();
  }
}

// ---------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------

interface ProtoIO {
  inputs: Map<string, ValueInfoProto>;
  outputs: Map<string, ValueInfoProto>;
}

async function readProtoIO(model: string | Uint8Array): Promise<ProtoIO> {
  // Only the .onnx file: external data holds initializer bytes, never value infos.
  const bytes = typeof model === 'string' ? await fs.readFile(model) : model;
  const g = decodeModel(bytes).graph;
  const byName = (vs: ValueInfoProto[] | null | undefined) => new Map((vs ?? []).map((v) => [v.name ?? '', v]));
  return { inputs: byName(g?.input), outputs: byName(g?.output) };
}

async function metaFromOrt(m: ort.InferenceSession.ValueMetadata, protoIO: () => Promise<ProtoIO>, kind: 'input' | 'output'): Promise<ValueMeta> {
  if (!m.isTensor) return { name: m.name, isTensor: false, dtype: 'non-tensor', shape: null };
  const dtype = dtypeFromOrt(m.type) ?? m.type;
  // onnxruntime reports an unnamed dim as '' ...
  let shape: Dim[] | null = m.shape.map((d) => (d === '' ? null : d));
  // ... and both "scalar" and "rank not declared" as []; only the proto tells them apart.
  if (shape.length === 0) {
    try {
      const io = await protoIO();
      const vi = (kind === 'input' ? io.inputs : io.outputs).get(m.name);
      shape = vi === undefined ? null : shapeFromProto(vi);
    } catch {
      // Proto unreadable here (onnxruntime read it, so e.g. a .onnx over fs.readFile's 2 GiB):
      // "rank unknown" only skips the rank check, where guessing "scalar" could reject good feeds.
      shape = null;
    }
  }
  return { name: m.name, isTensor: true, dtype, shape };
}

function shapeFromProto(vi: ValueInfoProto): Dim[] | null {
  const shape = vi.type?.tensorType?.shape;
  if (shape === null || shape === undefined) return null;
  return (shape.dim ?? []).map((d): Dim => {
    if (d.dimParam) return d.dimParam;
    // dimValue defaults to 0 when unset, so only trust it when it was actually present.
    if (d.dimValue !== null && d.dimValue !== undefined && 'value' in d && d.value === 'dimValue') return Number(d.dimValue);
    return null;
  });
}

/** onnxruntime-node names no tensor when a graph input/output has a type it has no JS type for (bf16). */
async function explainTypeError(e: unknown, protoIO: () => Promise<ProtoIO>, device: string): Promise<string> {
  const msg = errorMessage(e);
  const m = /Unsupported data type: (\d+)/.exec(msg);
  if (m === null) return explainLoadError(msg, device);
  const code = Number(m[1]);
  const typeName = dtypeFromOnnx(code) ?? `ONNX data type ${code}`;
  let named: string[] = [];
  try {
    const io = await protoIO();
    const culprits = (kind: string, vs: Map<string, ValueInfoProto>) =>
      [...vs.values()].filter((v) => v.type?.tensorType?.elemType === code).map((v) => `${kind} '${v.name}'`);
    named = [...culprits('input', io.inputs), ...culprits('output', io.outputs)];
  } catch {
    /* unreadable proto: onnxruntime read it, so this is unlikely; fall back to the bare type */
  }
  const who = named.length ? named.join(', ') : 'a graph input or output';
  return `${who} has dtype ${typeName}, which onnxruntime-node cannot exchange with JavaScript (it has no JS tensor type); cast to f32 or f16 at the graph boundary`;
}

// ---------------------------------------------------------------------------------------------
// Feed validation (all before onnxruntime is called)
// ---------------------------------------------------------------------------------------------

const STORAGE_CTOR: { [D in DType]: new (n: number) => Storage } = {
  f32: Float32Array, f64: Float64Array, f16: Uint16Array, bf16: Uint16Array, i64: BigInt64Array, i32: Int32Array, bool: Uint8Array,
};

/** '[batch, 3, ?]', or '[rank unknown]'. */
export const formatShape = (s: readonly Dim[] | null): string => (s === null ? '[rank unknown]' : `[${s.map((d) => (d === null ? '?' : String(d))).join(', ')}]`);

function checkFeeds(inputs: readonly ValueMeta[], feeds: Record<string, HostTensor>): void {
  const known = new Set(inputs.map((m) => m.name));
  const list = [...known].map((n) => `'${n}'`).join(', ') || 'none';
  for (const name of Object.keys(feeds)) {
    if (!known.has(name)) throw new RuntimeInputError(name, `unknown input '${name}': the model's inputs are ${list}`);
  }
  const missing = inputs.filter((m) => !Object.hasOwn(feeds, m.name)).map((m) => m.name);
  if (missing.length) {
    throw new RuntimeInputError(missing[0]!, `missing input${missing.length > 1 ? 's' : ''} ${missing.map((n) => `'${n}'`).join(', ')} (the model's inputs are ${list})`);
  }

  // Where a symbolic dim was first bound, so that a conflict can name both sides.
  const bound = new Map<string, { value: number; input: string; axis: number; as: string; size: number }>();
  for (const m of inputs) {
    const t = feeds[m.name]!;
    const given = `${t.dtype}[${t.shape.join(', ')}]`;
    if (!m.isTensor) throw new RuntimeInputError(m.name, `input '${m.name}' is not a tensor (sequence/map inputs are not supported)`);
    if (t.dtype !== m.dtype) {
      const why = t.dtype === 'bf16' ? ' (bf16 cannot be passed to onnxruntime-node at all: convert to f32 or f16)' : '';
      throw new RuntimeInputError(m.name, `input '${m.name}': dtype mismatch: expected ${m.dtype}, given ${t.dtype}${why}`);
    }
    checkStorage(m.name, t);
    if (m.shape === null) continue;
    if (t.shape.length !== m.shape.length) {
      throw new RuntimeInputError(m.name, `input '${m.name}': rank mismatch: expected rank ${m.shape.length} ${formatShape(m.shape)}, given rank ${t.shape.length} ${given}`);
    }
    m.shape.forEach((want, axis) => {
      const got = t.shape[axis]!;
      if (typeof want === 'number' && got !== want) {
        throw new RuntimeInputError(m.name, `input '${m.name}': dim ${axis} mismatch: expected ${want}, given ${got} (expected ${formatShape(m.shape)}, given ${given})`);
      }
      if (typeof want === 'string') {
        // 'h*2' (how the compiler writes c*symbol): the size must be a multiple of 2, and h is got / 2
        const lin = /^([A-Za-z_]\w*)\*(\d+)$|^(\d+)\*([A-Za-z_]\w*)$/.exec(want);
        const [sym, coeff] = lin ? [lin[1] ?? lin[4]!, Number(lin[2] ?? lin[3])] : [want, 1];
        if (got % coeff !== 0)
          throw new RuntimeInputError(m.name, `input '${m.name}': dim ${axis} is ${got}, but the model declares it as ${want}, so it must be a multiple of ${coeff} (expected ${formatShape(m.shape)}, given ${given})`);
        const value = got / coeff;
        const prev = bound.get(sym);
        if (prev === undefined) bound.set(sym, { value, input: m.name, axis, as: want, size: got });
        else if (prev.value !== value) {
          throw new RuntimeInputError(
            m.name,
            sym === want && prev.as === want
              ? `input '${m.name}': symbolic dim '${want}' is ${got} at axis ${axis}, but ${prev.value} in input '${prev.input}' (axis ${prev.axis})`
              : `input '${m.name}': dim ${axis} (${want}) is ${got}, so ${sym} = ${value}, but input '${prev.input}' axis ${prev.axis} (${prev.as}) is ${prev.size}, so ${sym} = ${prev.value}`,
          );
        }
      }
    });
  }
}

/** Catch tensors whose parts disagree, which onnxruntime would report without naming anything. */
function checkStorage(name: string, t: HostTensor): void {
  if (!(t.data instanceof STORAGE_CTOR[t.dtype])) {
    const got = (t.data as object | null)?.constructor?.name ?? typeof t.data;
    throw new RuntimeInputError(name, `input '${name}': ${t.dtype} data must be a ${STORAGE_CTOR[t.dtype].name}, given ${got}`);
  }
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new RuntimeInputError(name, `input '${name}': shape [${t.shape.join(', ')}] must be non-negative integers`);
  }
  if (numel(t.shape) !== t.data.length) {
    throw new RuntimeInputError(name, `input '${name}': shape [${t.shape.join(', ')}] needs ${numel(t.shape)} elements, data has ${t.data.length}`);
  }
}

function checkFetch(outputs: readonly ValueMeta[], name: string): void {
  const m = outputs.find((o) => o.name === name);
  if (m === undefined) {
    throw new RuntimeInputError(name, `unknown output '${name}': the model's outputs are ${outputs.map((o) => `'${o.name}'`).join(', ') || 'none'}`);
  }
  if (!m.isTensor) throw new RuntimeInputError(name, `output '${name}' is not a tensor (sequence/map outputs are not supported)`);
  if (!isDType(m.dtype)) {
    throw new RuntimeInputError(name, `output '${name}' has type ${m.dtype}, which has no HostTensor dtype`);
  }
}

// ---------------------------------------------------------------------------------------------
// HostTensor <-> ort.Tensor
// ---------------------------------------------------------------------------------------------

function toOrt(name: string, t: HostTensor): ort.Tensor {
  const type = DTYPE_INFO[t.dtype].ort;
  if (type === null) throw new RuntimeInputError(name, `input '${name}' is ${t.dtype}, which onnxruntime-node has no JS tensor type for: convert it to f32 or f16`);
  // ort.Tensor keeps a reference to the typed array; f16 goes as raw bits in a Uint16Array,
  // which is what onnxruntime's 'float16' takes where there is no Float16Array.
  return new ort.Tensor(type, t.data as ort.Tensor.DataTypeMap[typeof type], t.shape);
}

async function fromOrt(name: string, v: ort.Tensor): Promise<HostTensor> {
  const dtype = dtypeFromOrt(v.type);
  if (dtype === undefined) throw new SessionError(`output '${name}' has type ${v.type}, which has no HostTensor dtype`);
  // Outputs left on a device (preferredOutputLocation) are downloaded; CPU ones are used as is.
  const raw: unknown = v.location === 'cpu' || v.location === 'cpu-pinned' ? v.data : await v.getData(true);
  return { dtype, shape: [...v.dims], data: asStorage(dtype, raw) };
}

/** The expected typed array as is; another view of the same element size (a Float16Array for f16) reinterpreted without copying. */
function asStorage(dtype: DType, raw: unknown): Storage {
  if (raw instanceof STORAGE_CTOR[dtype]) return raw;
  if (ArrayBuffer.isView(raw)) {
    const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    return bytes.byteLength === 0 ? allocStorage(dtype, 0) : storageFromBytes(dtype, bytes);
  }
  throw new SessionError(`onnxruntime returned ${typeof raw} data for a ${dtype} tensor`);
}

// ---------------------------------------------------------------------------------------------

async function assertReadableFile(file: string): Promise<void> {
  let st;
  try {
    st = await fs.stat(file);
  } catch {
    throw new SessionError(`model file '${file}' does not exist`);
  }
  if (!st.isFile()) throw new SessionError(`model path '${file}' is not a file`);
  try {
    await fs.access(file, fsConstants.R_OK);
  } catch {
    throw new SessionError(`model file '${file}' is not readable`);
  }
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------------------------
// onnxruntime set-up, skeleton models, non-finite values
// ---------------------------------------------------------------------------------------------

let ortConfigured = false;
/** onnxruntime's environment logger is made with the first session: set its level before that. */
function configureOrt(): void {
  if (!ortConfigured) {
    ortConfigured = true;
    try {
      setKnownDevices(ort.listSupportedBackends().map((b) => b.name));
    } catch {
      /* older binding */
    }
  }
  ort.env.logLevel = ortLogging.verbose ? 'warning' : 'fatal';
}

/**
 * A model compiled with --weights skeleton declares its weights as an unwritten sparse file: it
 * runs, but every output is computed from zeros. Recognised by the weights entry of its
 * metadata_props, and (for models without it) by external data files with no allocated blocks.
 */
async function refuseSkeleton(model: string, proto: ModelProto): Promise<void> {
  const meta = Object.fromEntries((proto.metadataProps ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const how = `compile it with --weights embed or --weights external (seeded or given weights), or import a checkpoint with \`unifusion import-hf\``;
  if (meta.weights === 'skeleton')
    throw new SessionError(`model '${model}' was compiled with --weights skeleton: its weights were never written, so every output would be wrong; ${how}`);
  // older unifusion models carry no weights entry: recognise their skeleton data by its holes
  if (typeof model !== 'string' || model === '<buffer>' || proto.producerName !== 'unifusion' || meta.weights !== undefined) return;
  const dir = path.dirname(path.resolve(model));
  const seen = new Set<string>();
  for (const r of externalRefs(proto)) {
    if (seen.has(r.location)) continue;
    seen.add(r.location);
    const st = await fs.stat(path.join(dir, r.location)).catch(() => null);
    // a file of real weights has blocks on disk; a skeleton's is all holes
    if (st && st.size >= 1 << 20 && st.blocks === 0)
      throw new SessionError(`model '${model}': its external data '${r.location}' (${st.size} bytes) has never been written (a sparse file of zeros, as --weights skeleton leaves it), so every output would be wrong; ${how}`);
  }
}

/** Count NaN and ±inf in a float tensor; warn naming it (and the first position). */
function warnNonFinite(what: string, t: HostTensor, warn: (m: string) => void): void {
  if (!['f32', 'f64', 'f16', 'bf16'].includes(t.dtype)) return;
  let nan = 0, inf = 0, first = -1;
  const d = t.data as ArrayLike<number>;
  if (t.dtype === 'f32' || t.dtype === 'f64') {
    for (let i = 0; i < d.length; i++) {
      const v = d[i]!;
      if (v - v !== 0) {
        if (v !== v) nan++;
        else inf++;
        if (first < 0) first = i;
      }
    }
  } else {
    // half precision as raw bits: exponent all ones
    const [expMask, mantMask] = t.dtype === 'f16' ? [0x7c00, 0x03ff] : [0x7f80, 0x007f];
    for (let i = 0; i < d.length; i++) {
      const b = d[i]!;
      if ((b & expMask) === expMask) {
        if (b & mantMask) nan++;
        else inf++;
        if (first < 0) first = i;
      }
    }
  }
  if (nan + inf === 0) return;
  const pos: number[] = [];
  let r = first;
  for (let a = t.shape.length - 1; a >= 0; a--) {
    pos.unshift(r % t.shape[a]!);
    r = Math.floor(r / t.shape[a]!);
  }
  warn(`${what} ${t.dtype}[${t.shape.join(', ')}] holds ${[nan ? `${nan} NaN` : '', inf ? `${inf} inf` : ''].filter(Boolean).join(' and ')} of ${d.length} values (first at [${pos.join(', ')}])`);
}
