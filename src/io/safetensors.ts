// safetensors reader/writer (https://github.com/huggingface/safetensors).
//
// Layout: u64 little-endian header length N | N bytes of UTF-8 JSON header | data buffer.
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative
// to the data buffer) plus an optional "__metadata__": {string: string}.
//
// Files are untrusted input (downloaded checkpoints), so the reader validates the whole header
// before touching tensor data, never sizes an allocation from an unvalidated number, and reports
// every problem as a SafetensorsError naming the file and, where one is involved, the tensor.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { DTYPE_INFO, DTYPES, type DType, dtypeFromSafetensors, isDType } from '../ir/dtype.ts';
import { type HostTensor, numel, storageBytes, storageFromBytes } from './host.ts';

/** Same cap as the reference implementation: no real header comes close, hostile ones might. */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

/** Label used in error messages for in-memory buffers that have no file path. */
const BUFFER_LABEL = '<buffer>';

// dtypes the format defines but the IR has no storage for. Told apart from typos so the error can
// say "unsupported" rather than "unknown".
const FOREIGN_DTYPES: ReadonlySet<string> = new Set([
  'U8', 'I8', 'I16', 'U16', 'U32', 'U64', 'C64',
  'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4',
]);

// Typed arrays use the platform byte order, safetensors is little-endian. Every platform Node
// ships on today is little-endian; refuse loudly rather than silently byte-swap-corrupt elsewhere.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
  /** File path, or '<buffer>' for in-memory data. */
  readonly file: string;
  readonly tensor: string | undefined;

  constructor(file: string, detail: string, tensor?: string) {
    super(tensor === undefined ? `${file}: ${detail}` : `${file}: tensor ${JSON.stringify(tensor)}: ${detail}`);
    this.file = file;
    this.tensor = tensor;
  }
}

export interface TensorInfo {
  dtype: DType;
  shape: number[];
  byteLength: number;
  /** Byte offset of the tensor's first byte from the start of the file (not of the data buffer). */
  offset: number;
}

export interface SafetensorsContents {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
}

export type TensorSet = Record<string, HostTensor> | ReadonlyMap<string, HostTensor>;

// ---------------------------------------------------------------------------------------------
// Header validation (pure: shared by the file reader and the in-memory parser)
// ---------------------------------------------------------------------------------------------

interface ParsedHeader {
  /** Sorted by name; `offset` already includes 8 + N. */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/**
 * Validate the 8-byte prefix against the total size and return N.
 * N is a u64: read it as a bigint and range-check before converting, or 2^64-1 would round.
 */
function headerLength(label: string, prefix: Uint8Array, totalSize: number): number {
  if (totalSize < 8) throw new SafetensorsError(label, `file is ${totalSize} bytes, shorter than the 8-byte header length prefix`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(label, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt or not a safetensors file)`);
  }
  const len = Number(n);
  if (len > totalSize - 8) {
    throw new SafetensorsError(label, `header length ${len} runs past the end of the file (${totalSize - 8} bytes after the prefix)`);
  }
  return len;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function resolveDType(label: string, name: string, s: unknown): DType {
  if (typeof s !== 'string') throw new SafetensorsError(label, `"dtype" must be a string, got ${describe(s)}`, name);
  const d = dtypeFromSafetensors(s);
  if (d !== undefined) return d;
  const supported = DTYPES.map((t) => DTYPE_INFO[t].safetensors).join(', ');
  const what = FOREIGN_DTYPES.has(s) ? 'unsupported dtype' : 'unknown dtype';
  throw new SafetensorsError(label, `${what} ${JSON.stringify(s)} (supported: ${supported})`, name);
}

/** Shape dims must be safe non-negative integers, and so must their product times the element size. */
function checkedByteLength(label: string, name: string, shape: unknown, dtype: DType): { shape: number[]; bytes: number } {
  if (!Array.isArray(shape)) throw new SafetensorsError(label, `"shape" must be an array, got ${describe(shape)}`, name);
  let n = 1;
  for (const [i, d] of shape.entries()) {
    if (!isCount(d)) throw new SafetensorsError(label, `shape dim ${i} is ${describe(d)}, not a non-negative integer`, name);
    n *= d;
    // Checked per step: once past 2^53 the product is inexact but stays unsafe, so this catches it.
    if (!Number.isSafeInteger(n)) throw new SafetensorsError(label, `shape [${shape.join(', ')}] has too many elements`, name);
  }
  const bytes = n * DTYPE_INFO[dtype].bytes;
  if (!Number.isSafeInteger(bytes)) throw new SafetensorsError(label, `shape [${shape.join(', ')}] is too large`, name);
  return { shape: shape as number[], bytes };
}

function parseMetadata(label: string, v: unknown): Record<string, string> {
  if (v === null || v === undefined) return {};
  if (!isPlainObject(v)) throw new SafetensorsError(label, `"${METADATA_KEY}" must be an object of strings, got ${describe(v)}`);
  const out: [string, string][] = [];
  for (const [k, s] of Object.entries(v)) {
    if (typeof s !== 'string') throw new SafetensorsError(label, `"${METADATA_KEY}" value for key ${JSON.stringify(k)} must be a string, got ${describe(s)}`);
    out.push([k, s]);
  }
  // fromEntries defines own properties, so a "__proto__" key stays data instead of a prototype.
  return Object.fromEntries(out);
}

/**
 * Parse and validate the JSON header. `dataSize` is the size of the data buffer that follows it.
 * Besides per-entry checks this enforces what the reference does: the tensors, sorted by offset,
 * tile the data buffer exactly (no gaps, no overlaps, no trailing bytes), so every byte of the
 * file is accounted for.
 */
function parseHeader(label: string, headerBytes: Uint8Array, dataSize: number): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(label, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(label, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) throw new SafetensorsError(label, `header JSON must be an object, got ${describe(json)}`);

  const metadata = parseMetadata(label, json[METADATA_KEY]);
  const entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  // Object.entries only yields own enumerable keys; JSON.parse makes "__proto__" an own key, so a
  // tensor of that name is handled like any other. (Duplicate names: JSON.parse keeps the last;
  // the dropped one's bytes then show up as a gap below.)
  for (const [name, raw] of Object.entries(json)) {
    if (name === METADATA_KEY) continue;
    if (!isPlainObject(raw)) throw new SafetensorsError(label, `entry must be an object, got ${describe(raw)}`, name);
    if (!('dtype' in raw)) throw new SafetensorsError(label, 'missing "dtype"', name);
    if (!('shape' in raw)) throw new SafetensorsError(label, 'missing "shape"', name);
    if (!('data_offsets' in raw)) throw new SafetensorsError(label, 'missing "data_offsets"', name);
    const dtype = resolveDType(label, name, raw.dtype);
    const { shape, bytes } = checkedByteLength(label, name, raw.shape, dtype);
    const offs = raw.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2) {
      throw new SafetensorsError(label, `"data_offsets" must be [begin, end], got ${describe(offs)}`, name);
    }
    const [begin, end] = offs as unknown[];
    if (!isCount(begin) || !isCount(end)) {
      throw new SafetensorsError(label, `data_offsets [${describe(begin)}, ${describe(end)}] must be non-negative integers`, name);
    }
    if (end < begin) throw new SafetensorsError(label, `data_offsets [${begin}, ${end}]: end is before begin`, name);
    if (end - begin !== bytes) {
      throw new SafetensorsError(
        label,
        `data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${DTYPE_INFO[dtype].safetensors} shape [${shape.join(', ')}] needs ${bytes}`,
        name,
      );
    }
    if (end > dataSize) {
      throw new SafetensorsError(label, `data_offsets [${begin}, ${end}] run past the end of the data buffer (${dataSize} bytes; file truncated?)`, name);
    }
    entries.push({ name, dtype, shape: [...shape], begin, end });
  }

  // Tiling check. Sorting by (begin, end) puts zero-length tensors before a tensor at the same
  // offset, so they don't read as overlaps.
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: string | undefined;
  for (const e of byOffset) {
    if (e.begin > pos) {
      const after = prev === undefined ? 'at the start of the data buffer' : `after tensor ${JSON.stringify(prev)}`;
      throw new SafetensorsError(label, `gap of ${e.begin - pos} bytes ${after} (data_offsets must be contiguous)`, e.name);
    }
    if (e.begin < pos) {
      throw new SafetensorsError(label, `data_offsets [${e.begin}, ${e.end}] overlap tensor ${JSON.stringify(prev)} (which ends at ${pos})`, e.name);
    }
    pos = e.end;
    prev = e.name;
  }
  if (pos !== dataSize) {
    throw new SafetensorsError(label, `${dataSize - pos} trailing bytes after the last tensor (data buffer is ${dataSize} bytes, tensors cover ${pos})`);
  }

  const base = 8 + headerBytes.byteLength;
  const tensors = new Map<string, TensorInfo>();
  for (const e of [...entries].sort((a, b) => compareNames(a.name, b.name))) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, byteLength: e.end - e.begin, offset: base + e.begin });
  }
  return { tensors, metadata };
}

/** Build a HostTensor from exactly its bytes (fresh, so alignment is right and nothing aliases). */
function toHostTensor(label: string, name: string, info: TensorInfo, bytes: Uint8Array): HostTensor {
  if (!LITTLE_ENDIAN) throw new SafetensorsError(label, 'big-endian hosts are not supported', name);
  if (info.dtype === 'bool') {
    // Anything but 0/1 breaks the HostTensor invariant and usually means a mislabeled U8 tensor.
    const bad = bytes.findIndex((b) => b > 1);
    if (bad >= 0) throw new SafetensorsError(label, `BOOL element ${bad} is ${bytes[bad]}, not 0 or 1`, name);
  }
  return { dtype: info.dtype, shape: [...info.shape], data: storageFromBytes(info.dtype, bytes) };
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/** Positional read of exactly `buf.length` bytes; short reads are retried, EOF is an error. */
function readFullySync(fd: number, buf: Uint8Array, position: number): boolean {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) return false;
    done += n;
  }
  return true;
}

const fsFstatAsync = promisify(fs.fstat);
const fsOpenAsync = promisify(fs.open);
const fsCloseAsync = promisify(fs.close);
const fsReadAsync = promisify(fs.read);

async function readFullyAsync(fd: number, buf: Uint8Array, position: number): Promise<boolean> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fsReadAsync(fd, buf, done, buf.length - done, position + done);
    if (bytesRead === 0) return false;
    done += bytesRead;
  }
  return true;
}

/**
 * A safetensors file opened for lazy reading: the header is read and validated at open, tensor
 * bytes are read on demand with positional reads, so a multi-GB checkpoint costs only what is used.
 * Holds a file descriptor until close().
 */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly tensors: Map<string, TensorInfo>;
  private fd: number | undefined;

  private constructor(filePath: string, fd: number, header: ParsedHeader) {
    this.path = filePath;
    this.fd = fd;
    this.tensors = header.tensors;
    this.metadata = header.metadata;
  }

  static openSync(filePath: string): SafetensorsFile {
    const fd = fs.openSync(filePath, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const prefix = new Uint8Array(8);
      // headerLength rejects size < 8 before looking at the (then unread) prefix.
      if (size >= 8 && !readFullySync(fd, prefix, 0)) throw new SafetensorsError(filePath, 'file shrank while reading the header');
      const n = headerLength(filePath, prefix, size);
      const headerBytes = new Uint8Array(n);
      if (!readFullySync(fd, headerBytes, 8)) throw new SafetensorsError(filePath, 'file shrank while reading the header');
      return new SafetensorsFile(filePath, fd, parseHeader(filePath, headerBytes, size - 8 - n));
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Like openSync but with non-blocking header I/O; tensor reads stay synchronous. */
  static async open(filePath: string): Promise<SafetensorsFile> {
    const fd = await fsOpenAsync(filePath, 'r');
    try {
      const size = (await fsFstatAsync(fd)).size;
      const prefix = new Uint8Array(8);
      if (size >= 8 && !(await readFullyAsync(fd, prefix, 0))) throw new SafetensorsError(filePath, 'file shrank while reading the header');
      const n = headerLength(filePath, prefix, size);
      const headerBytes = new Uint8Array(n);
      if (!(await readFullyAsync(fd, headerBytes, 8))) throw new SafetensorsError(filePath, 'file shrank while reading the header');
      return new SafetensorsFile(filePath, fd, parseHeader(filePath, headerBytes, size - 8 - n));
    } catch (e) {
      await fsCloseAsync(fd);
      throw e;
    }
  }

  /** Tensor names in sorted order. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) throw new SafetensorsError(this.path, 'no such tensor in file', name);
    return { ...info, shape: [...info.shape] };
  }

  /** Read one tensor's bytes (and only those). */
  read(name: string): HostTensor {
    const info = this.info(name);
    if (this.fd === undefined) throw new SafetensorsError(this.path, 'file is closed', name);
    // Safe to allocate: byteLength was checked against the file size at open.
    const bytes = new Uint8Array(info.byteLength);
    if (!readFullySync(this.fd, bytes, info.offset)) {
      throw new SafetensorsError(this.path, 'unexpected end of file (was the file truncated after it was opened?)', name);
    }
    return toHostTensor(this.path, name, info, bytes);
  }

  readAll(): Map<string, HostTensor> {
    const out = new Map<string, HostTensor>();
    for (const name of this.tensors.keys()) out.set(name, this.read(name));
    return out;
  }

  /** Idempotent. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    fs.closeSync(fd);
  }
}

/** Read every tensor and the metadata of a file. */
export function readSafetensors(filePath: string): SafetensorsContents {
  const f = SafetensorsFile.openSync(filePath);
  try {
    return { tensors: f.readAll(), metadata: { ...f.metadata } };
  } finally {
    f.close();
  }
}

/**
 * Parse a whole safetensors image held in memory. The returned tensors own copies of their bytes
 * (no aliasing of `bytes`, and alignment is guaranteed). `label` is used in error messages.
 */
export function parseSafetensors(bytes: Uint8Array, label: string = BUFFER_LABEL): SafetensorsContents {
  const n = headerLength(label, bytes.subarray(0, 8), bytes.byteLength);
  const header = parseHeader(label, bytes.subarray(8, 8 + n), bytes.byteLength - 8 - n);
  const tensors = new Map<string, HostTensor>();
  for (const [name, info] of header.tensors) {
    // Copy via the Uint8Array constructor, not bytes.slice(): on a Node Buffer (what readFile
    // returns) slice() is a view into the shared pool, which would alias and maybe misalign.
    tensors.set(name, toHostTensor(label, name, info, new Uint8Array(bytes.subarray(info.offset, info.offset + info.byteLength))));
  }
  return { tensors, metadata: header.metadata };
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

interface WritePlan {
  header: Uint8Array;
  /** Tensor data in file order (sorted names); these alias the caller's storage. */
  parts: Uint8Array[];
  totalBytes: number;
}

/**
 * Locale-independent UTF-16 code-unit order: deterministic everywhere, unlike localeCompare.
 * (The reference writer orders by dtype then name; any order is valid, this one is what we promise.)
 */
function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function entriesOf(tensors: TensorSet): [string, HostTensor][] {
  return tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
}

// Typed-array class each dtype must be stored in. Checked by tag (realm-independent) so that, say,
// an Int32Array labeled f32 is refused instead of written as garbage floats.
const STORAGE_TAG: { [D in DType]: string } = {
  f32: 'Float32Array',
  f64: 'Float64Array',
  f16: 'Uint16Array',
  bf16: 'Uint16Array',
  i64: 'BigInt64Array',
  i32: 'Int32Array',
  bool: 'Uint8Array',
};

function validateForWrite(label: string, name: string, t: HostTensor): void {
  if (name === METADATA_KEY) throw new SafetensorsError(label, 'name is reserved for metadata', name);
  if (!isDType(t.dtype)) throw new SafetensorsError(label, `unknown dtype ${JSON.stringify(t.dtype)}`, name);
  const { bytes } = checkedByteLength(label, name, t.shape, t.dtype);
  const tag = ArrayBuffer.isView(t.data) ? Object.prototype.toString.call(t.data).slice(8, -1) : typeof t.data;
  if (tag !== STORAGE_TAG[t.dtype]) {
    throw new SafetensorsError(label, `${t.dtype} data must be a ${STORAGE_TAG[t.dtype]}, got ${tag}`, name);
  }
  if (t.data.byteLength !== bytes) {
    throw new SafetensorsError(label, `data has ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${numel(t.shape)}`, name);
  }
  if (t.dtype === 'bool') {
    const bad = (t.data as Uint8Array).findIndex((b) => b > 1);
    if (bad >= 0) throw new SafetensorsError(label, `bool element ${bad} is ${t.data[bad]}, not 0 or 1`, name);
  }
}

/** Validate everything and lay out the file. Throws before any I/O happens. */
function plan(label: string, tensors: TensorSet, metadata: Record<string, string> | undefined): WritePlan {
  if (!LITTLE_ENDIAN) throw new SafetensorsError(label, 'big-endian hosts are not supported');
  const sorted = entriesOf(tensors).sort(([a], [b]) => compareNames(a, b));

  // The header is assembled by hand rather than JSON.stringify(object): JS objects enumerate
  // integer-like keys ("0", "10", "2") first in numeric order, which would break both the promised
  // name order and the offsets-ascend-with-names layout.
  const fields: string[] = [];
  const metaEntries = Object.entries(metadata ?? {}).sort(([a], [b]) => compareNames(a, b));
  if (metaEntries.length > 0) {
    for (const [k, v] of metaEntries) {
      if (typeof v !== 'string') throw new SafetensorsError(label, `metadata value for key ${JSON.stringify(k)} must be a string, got ${describe(v)}`);
    }
    fields.push(`${JSON.stringify(METADATA_KEY)}:{${metaEntries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
  }
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of sorted) {
    validateForWrite(label, name, t);
    const data = storageBytes(t.data);
    const info = { dtype: DTYPE_INFO[t.dtype].safetensors, shape: t.shape, data_offsets: [offset, offset + data.byteLength] };
    // JSON.stringify escapes lone surrogates (well-formed stringify), so odd names round-trip.
    fields.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    parts.push(data);
    offset += data.byteLength;
  }

  const json = new TextEncoder().encode(`{${fields.join(',')}}`);
  // Pad with spaces to a multiple of 8 like the reference writer, so the data buffer starts
  // 8-aligned in the file (lets mmap-based readers view f64/i64 tensors in place).
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded > MAX_HEADER_BYTES) throw new SafetensorsError(label, `header would be ${padded} bytes, over the ${MAX_HEADER_BYTES}-byte limit readers enforce`);
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + json.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, parts, totalBytes: header.byteLength + offset };
}

/** Serialize to a byte image. Output is a deterministic function of names, tensors and metadata. */
export function serializeSafetensors(tensors: TensorSet, metadata?: Record<string, string>): Uint8Array {
  const p = plan(BUFFER_LABEL, tensors, metadata);
  const out = new Uint8Array(p.totalBytes);
  out.set(p.header, 0);
  let pos = p.header.byteLength;
  for (const part of p.parts) {
    out.set(part, pos);
    pos += part.byteLength;
  }
  return out;
}

function writeAllSync(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += fs.writeSync(fd, bytes, done, bytes.byteLength - done);
}

/**
 * Write a file atomically: readers see either the old file or the complete new one, never a
 * partial write (which would otherwise look like a truncated checkpoint). Data goes to a temp file
 * in the same directory (rename is only atomic within a filesystem), is fsynced so the rename
 * cannot land before the data on a crash, then renamed over `filePath`. On any failure the temp
 * file is removed and `filePath` is left untouched. Tensor data is streamed, not copied.
 */
export function writeSafetensors(filePath: string, tensors: TensorSet, metadata?: Record<string, string>): void {
  const p = plan(filePath, tensors, metadata);
  const tmp = `${filePath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  // 'wx': never follow or clobber something already at the temp name.
  const fd = fs.openSync(tmp, 'wx', 0o644);
  let fdOpen = true;
  try {
    writeAllSync(fd, p.header);
    for (const part of p.parts) writeAllSync(fd, part);
    fs.fsyncSync(fd);
    fdOpen = false;
    fs.closeSync(fd);
    fs.renameSync(tmp, filePath);
  } catch (e) {
    if (fdOpen) {
      try { fs.closeSync(fd); } catch { /* already failing; the original error matters */ }
    }
    try { fs.unlinkSync(tmp); } catch { /* may not exist */ }
    throw e;
  }
  syncDir(path.dirname(filePath));
}

/** Persist the rename itself. Best effort: directories can't be opened for fsync on Windows. */
function syncDir(dir: string): void {
  if (process.platform === 'win32') return;
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* durability nicety only; the file is already in place */
  } finally {
    if (fd !== undefined) {
      try { fs.closeSync(fd); } catch { /* as above */ }
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** Short description of an unexpected JSON value for error messages (never the whole value). */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return String(v);
}
