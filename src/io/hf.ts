// Hugging Face checkpoint folders: config.json plus safetensors weights, either one file
// (`model.safetensors`) or shards listed by an index (`model.safetensors.index.json`,
// `model-00001-of-00004.safetensors`, ...). Diffusers folders are the same with the basename
// `diffusion_pytorch_model`.
//
// Checkpoints are large and untrusted: headers are read and cross-checked at open (shards
// against their index), tensor bytes only when asked, and converting a tensor to the dtype a
// graph declares (bf16/f16 -> f32, ...) streams in bounded chunks, so importing an 8B model
// costs a few tens of MB of memory, not the checkpoint's size.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DTYPE_INFO, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, type DType } from '../ir/dtype.ts';
import { allocStorage, fromFloat64, numel, storageBytes, storageFromBytes, toFloat64, type HostTensor } from './host.ts';
import { SafetensorsFile } from './safetensors.ts';

export class HfError extends Error {
  override name = 'HfError';
}

export type HfConfig = Record<string, unknown>;

/** Parse `<dir>/config.json` (or `file` inside it); errors name the file. */
export function readHfConfig(dir: string, file = 'config.json'): HfConfig {
  const p = path.join(dir, file);
  let text: string;
  try {
    text = fs.readFileSync(p, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new HfError(`${p}: not found (a Hugging Face checkpoint folder has a ${file})`);
    throw new HfError(`${p}: cannot read (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new HfError(`${p}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new HfError(`${p}: must hold a JSON object`);
  return json as HfConfig;
}

// ---------------------------------------------------------------------------------------------
// Finding and opening the weights
// ---------------------------------------------------------------------------------------------

export interface CheckpointTensor {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  /** the safetensors file holding it */
  file: string;
}

interface Entry extends CheckpointTensor {
  /** byte offset in `file` */
  offset: number;
  shard: Shard;
}

interface Shard {
  path: string;
  fd: number | undefined;
}

export interface OpenOptions {
  /** file basename: 'model' (transformers) or 'diffusion_pytorch_model' (diffusers) */
  basename?: string;
}

const SHARD_RE = (base: string) => new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-\\d+-of-\\d+\\.safetensors$`);

/**
 * The tensors of a checkpoint folder, across shards, with lazy reads. Holds one file descriptor
 * per shard until close().
 */
export class HfCheckpoint implements Disposable {
  readonly dir: string;
  /** weight files in use (relative to dir) */
  readonly files: string[];
  /** the index file, when sharded */
  readonly index: string | undefined;
  private readonly entries: Map<string, Entry>;
  private readonly shards: Shard[];

  private constructor(dir: string, files: string[], index: string | undefined, entries: Map<string, Entry>, shards: Shard[]) {
    this.dir = dir;
    this.files = files;
    this.index = index;
    this.entries = entries;
    this.shards = shards;
  }

  static open(dir: string, opts: OpenOptions = {}): HfCheckpoint {
    const base = opts.basename ?? 'model';
    let listing: string[];
    try {
      listing = fs.readdirSync(dir);
    } catch (e) {
      throw new HfError(`${dir}: cannot list the checkpoint folder (${(e as Error).message})`);
    }
    const single = `${base}.safetensors`;
    const indexName = `${base}.safetensors.index.json`;
    // transformers looks for the single file first, then the index
    if (listing.includes(single)) return HfCheckpoint.fromFiles(dir, [single], undefined, undefined);
    if (listing.includes(indexName)) return HfCheckpoint.openSharded(dir, indexName);
    const shards = listing.filter((f) => SHARD_RE(base).test(f));
    if (shards.length) throw new HfError(`${dir}: found ${shards.length} shard file(s) (${shards[0]}, ...) but no ${indexName} saying which tensor is where`);
    const bins = listing.filter((f) => f.endsWith('.bin') || f.endsWith('.pt') || f.endsWith('.pth'));
    const hint = bins.length ? ` (found ${bins.join(', ')}: PyTorch pickles are not read; convert them to safetensors)` : '';
    throw new HfError(`${dir}: no weights: expected ${single} or ${indexName}${hint}`);
  }

  private static openSharded(dir: string, indexName: string): HfCheckpoint {
    const ip = path.join(dir, indexName);
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(ip, 'utf8'));
    } catch (e) {
      throw new HfError(`${ip}: cannot read the shard index (${(e as Error).message})`);
    }
    const wm = (json as { weight_map?: unknown } | null)?.weight_map;
    if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) throw new HfError(`${ip}: has no "weight_map" object`);
    const map = new Map<string, string>();
    for (const [t, f] of Object.entries(wm)) {
      if (typeof f !== 'string') throw new HfError(`${ip}: weight_map entry for tensor '${t}' is not a file name`);
      // shard names come from an untrusted file: plain names inside the folder only
      if (f === '' || f === '.' || f === '..' || /[\\/\0]/.test(f)) throw new HfError(`${ip}: shard '${f}' (tensor '${t}') is not a plain file name inside the folder`);
      map.set(t, f);
    }
    if (map.size === 0) throw new HfError(`${ip}: weight_map is empty`);
    const files = [...new Set(map.values())].sort();
    for (const f of files)
      if (!fs.existsSync(path.join(dir, f))) {
        const t = [...map].find(([, s]) => s === f)![0];
        throw new HfError(`${ip}: shard ${f} is listed (e.g. for tensor '${t}') but ${path.join(dir, f)} does not exist`);
      }
    return HfCheckpoint.fromFiles(dir, files, indexName, map);
  }

  private static fromFiles(dir: string, files: string[], index: string | undefined, indexMap: Map<string, string> | undefined): HfCheckpoint {
    const entries = new Map<string, Entry>();
    const shards: Shard[] = [];
    const where = new Map<string, string>();
    try {
      for (const f of files) {
        const p = path.join(dir, f);
        const st = SafetensorsFile.openSync(p); // validates the header
        const shard: Shard = { path: p, fd: undefined };
        try {
          for (const name of st.names()) {
            const prev = where.get(name);
            if (prev !== undefined) throw new HfError(`tensor '${name}' is in two shards: ${prev} and ${f}`);
            where.set(name, f);
            if (indexMap) {
              const listed = indexMap.get(name);
              if (listed === undefined) throw new HfError(`${path.join(dir, index!)}: tensor '${name}' is in shard ${f} but not in the index`);
              if (listed !== f) throw new HfError(`${path.join(dir, index!)}: tensor '${name}' is in shard ${f} but the index puts it in ${listed}`);
            }
            const info = st.info(name);
            entries.set(name, { name, dtype: info.dtype, shape: info.shape, byteLength: info.byteLength, offset: info.offset, file: p, shard });
          }
        } finally {
          st.close();
        }
        shard.fd = fs.openSync(p, 'r');
        shards.push(shard);
      }
      if (indexMap)
        for (const [t, f] of indexMap)
          if (!entries.has(t)) throw new HfError(`${path.join(dir, index!)}: lists tensor '${t}' in shard ${f}, but ${path.join(dir, f)} has no such tensor`);
    } catch (e) {
      for (const s of shards) if (s.fd !== undefined) fs.closeSync(s.fd);
      throw e;
    }
    return new HfCheckpoint(dir, files, index, entries, shards);
  }

  /** Tensor names, sorted. */
  names(): string[] {
    return [...this.entries.keys()].sort();
  }

  get size(): number {
    return this.entries.size;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): CheckpointTensor {
    const e = this.entry(name);
    return { name, dtype: e.dtype, shape: [...e.shape], byteLength: e.byteLength, file: e.file };
  }

  /** One tensor as stored. */
  read(name: string): HostTensor {
    const e = this.entry(name);
    const bytes = new Uint8Array(e.byteLength);
    this.readRange(e, bytes, 0);
    return { dtype: e.dtype, shape: [...e.shape], data: storageFromBytes(e.dtype, bytes) };
  }

  /** One tensor converted to `dtype` (float <-> float only; others must match). */
  readAs(name: string, dtype: DType): HostTensor {
    const e = this.entry(name);
    checkConvertible(e, dtype);
    const out = new Uint8Array(numel(e.shape) * DTYPE_INFO[dtype].bytes);
    this.stream(name, dtype, (b, at) => out.set(b, at));
    return { dtype, shape: [...e.shape], data: storageFromBytes(dtype, out) };
  }

  /**
   * Convert a tensor to `dtype` chunk by chunk: `write(bytes, at)` receives consecutive pieces of
   * the converted tensor (`at` = byte offset within it). Memory: O(chunkElements).
   */
  stream(name: string, dtype: DType, write: (bytes: Uint8Array, at: number) => void, chunkElements = 1 << 22): void {
    const e = this.entry(name);
    checkConvertible(e, dtype);
    const inSize = DTYPE_INFO[e.dtype].bytes;
    const outSize = DTYPE_INFO[dtype].bytes;
    const n = numel(e.shape);
    const buf = new Uint8Array(Math.min(n, chunkElements) * inSize);
    for (let i = 0; i < n; i += chunkElements) {
      const m = Math.min(chunkElements, n - i);
      const raw = buf.subarray(0, m * inSize);
      this.readRange(e, raw, i * inSize);
      write(convertBytes(e.dtype, raw, dtype), i * outSize);
    }
  }

  close(): void {
    for (const s of this.shards)
      if (s.fd !== undefined) {
        fs.closeSync(s.fd);
        s.fd = undefined;
      }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new HfError(`${this.dir}: no tensor '${name}' in the checkpoint`);
    return e;
  }

  private readRange(e: Entry, into: Uint8Array, from: number): void {
    const fd = e.shard.fd;
    if (fd === undefined) throw new HfError(`${e.file}: tensor '${e.name}': checkpoint is closed`);
    let done = 0;
    while (done < into.length) {
      const k = fs.readSync(fd, into, done, into.length - done, e.offset + from + done);
      if (k === 0) throw new HfError(`${e.file}: tensor '${e.name}': unexpected end of file (truncated after it was opened?)`);
      done += k;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// dtype conversion
// ---------------------------------------------------------------------------------------------

/** Whether a stored tensor can become `target`: any float to any float, anything else exactly. */
export function convertible(from: DType, to: DType): boolean {
  return from === to || (DTYPE_INFO[from].float && DTYPE_INFO[to].float);
}

function checkConvertible(t: CheckpointTensor, to: DType): void {
  if (!convertible(t.dtype, to)) throw new HfError(`${t.file}: tensor '${t.name}' is ${t.dtype}, which cannot be converted to the ${to} the graph declares`);
}

let F16_TABLE: Float32Array | undefined;

/** Convert little-endian element bytes (whole elements) between dtypes; same dtype returns the input. */
export function convertBytes(from: DType, bytes: Uint8Array, to: DType): Uint8Array {
  if (from === to) return bytes;
  const src = storageFromBytes(from, bytes);
  const n = src.length;
  if (to === 'f32' && from === 'bf16') {
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) out[i] = (src as Uint16Array)[i]! << 16;
    return new Uint8Array(out.buffer);
  }
  if (to === 'f32' && from === 'f16') {
    if (!F16_TABLE) {
      F16_TABLE = new Float32Array(65536);
      for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16BitsToF32(h);
    }
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = F16_TABLE[(src as Uint16Array)[i]!]!;
    return new Uint8Array(out.buffer);
  }
  if (to === 'f32' && from === 'f64') return new Uint8Array(Float32Array.from(src as Float64Array).buffer);
  if (from === 'f32' && (to === 'bf16' || to === 'f16')) {
    const out = allocStorage(to, n);
    const enc = to === 'bf16' ? f32ToBf16Bits : f32ToF16Bits;
    for (let i = 0; i < n; i++) out[i] = enc((src as Float32Array)[i]!);
    return storageBytes(out);
  }
  // remaining float pairs (f16 <-> bf16, to f64, ...): through doubles
  return storageBytes(fromFloat64(to, [n], toFloat64({ dtype: from, shape: [n], data: src } as HostTensor)).data);
}

// ---------------------------------------------------------------------------------------------
// Matching a graph's parameters to checkpoint tensors
// ---------------------------------------------------------------------------------------------

/** A graph parameter as the importer sees it. */
export interface ParamSpec {
  name: string;
  dtype: DType;
  shape: readonly number[];
}

/** Graph names starting with `strip` are looked up as `add` + the rest (`strip: ''` = every name). */
export interface NameRule {
  strip: string;
  add: string;
}

/** The first rule's image of `name` that `exists`; else the first applicable rule's (for messages); else `name`. */
export function applyRules(name: string, rules: readonly NameRule[], exists: (n: string) => boolean = () => true): string {
  let first: string | undefined;
  for (const r of rules) {
    if (!name.startsWith(r.strip)) continue;
    const c = r.add + name.slice(r.strip.length);
    if (exists(c)) return c;
    first ??= c;
  }
  return first ?? name;
}

const hasIndex = (prefix: string) => prefix.split('.').some((c) => /^\d+$/.test(c));

/**
 * Prefix rules mapping graph names to checkpoint names, found from the names themselves: HF
 * prefixes differ by head and version (`model.`, `language_model.model.`, `model.language_model.`)
 * while the module paths below them are the same. Greedy: the rule explaining the most
 * still-unmatched names first. Rules never strip or add a numeric component (a layer index), and
 * after the first a rule must explain at least two names, so a missing `layers.3.x.weight` is
 * reported missing rather than matched to `layers.0.x.weight`, and a lone missing `norm.weight` is
 * not matched to some other module's norm.
 */
export function detectNameRules(graphNames: readonly string[], ckptNames: Iterable<string>): NameRule[] {
  const have = new Set(ckptNames);
  const all = [...have];
  let unmatched = [...graphNames];
  const rules: NameRule[] = [];
  while (unmatched.length) {
    const candidates = new Map<string, NameRule>();
    const step = Math.max(1, Math.floor(unmatched.length / 24));
    for (let i = 0; i < unmatched.length; i += step) {
      const comps = unmatched[i]!.split('.');
      for (let k = 0; k <= Math.min(3, comps.length - 2); k++) {
        const strip = k ? comps.slice(0, k).join('.') + '.' : '';
        if (hasIndex(strip)) break;
        const suffix = comps.slice(k).join('.');
        for (const c of all) {
          if (c !== suffix && !c.endsWith('.' + suffix)) continue;
          const add = c.slice(0, c.length - suffix.length);
          if (hasIndex(add)) continue;
          candidates.set(`${strip}\0${add}`, { strip, add });
        }
      }
    }
    let best: NameRule | undefined;
    let bestHits: string[] = [];
    for (const r of candidates.values()) {
      const hits = unmatched.filter((g) => g.startsWith(r.strip) && have.has(r.add + g.slice(r.strip.length)));
      const better =
        hits.length > bestHits.length ||
        (hits.length === bestHits.length && best && r.strip.length + r.add.length < best.strip.length + best.add.length);
      if (better) (best = r), (bestHits = hits);
    }
    if (!best || bestHits.length === 0 || (rules.length > 0 && bestHits.length < 2)) break;
    rules.push(best);
    const hit = new Set(bestHits);
    unmatched = unmatched.filter((g) => !hit.has(g));
  }
  return rules;
}

export interface WeightPlan {
  /** graph param name -> checkpoint tensor name */
  source: Map<string, string>;
  /** checkpoint tensors no param uses (lm_head, layers past the last tap, ...) */
  ignored: string[];
  rules: NameRule[];
}

export interface MatchOptions {
  /** explicit mapping (a family's own naming); default: detectNameRules */
  checkpointName?: (graphName: string) => string;
  /** the rules behind checkpointName, shown in errors */
  rules?: NameRule[];
  /** every name checkpointName considered for a param, shown when all are missing */
  candidates?: (graphName: string) => readonly string[];
}

/**
 * Check every parameter against the checkpoint before anything is written: present, same shape,
 * convertible dtype. Throws one HfError listing the problems (each naming the tensor).
 */
export function planWeights(params: readonly ParamSpec[], ckpt: HfCheckpoint, opts: MatchOptions = {}): WeightPlan {
  const rules = opts.checkpointName ? (opts.rules ?? []) : detectNameRules(params.map((p) => p.name), ckpt.names());
  const map = opts.checkpointName ?? ((n: string) => applyRules(n, rules, (c) => ckpt.has(c)));
  const source = new Map<string, string>();
  const problems: string[] = [];
  for (const p of params) {
    const c = map(p.name);
    if (!ckpt.has(c)) {
      const others = (opts.candidates?.(p.name) ?? []).filter((x) => x !== c);
      const also = others.length ? `; also looked for ${others.map((x) => `'${x}'`).join(', ')}` : '';
      problems.push(`missing tensor '${c}'${c !== p.name ? ` (for graph parameter '${p.name}')` : ''}, ${p.dtype}[${p.shape.join(', ')}]${also}`);
      continue;
    }
    const t = ckpt.info(c);
    const where = `tensor '${c}' in ${path.basename(t.file)}`;
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]))
      problems.push(`${where} has shape [${t.shape.join(', ')}], the graph expects [${p.shape.join(', ')}]`);
    else if (!convertible(t.dtype, p.dtype)) problems.push(`${where} has dtype ${t.dtype}, which cannot be converted to the graph's ${p.dtype}`);
    else source.set(p.name, c);
  }
  if (problems.length) {
    const shown = problems.slice(0, 8);
    const more = problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : '';
    const how = rules.length && !(rules.length === 1 && rules[0]!.strip === '' && rules[0]!.add === '')
      ? `\n  (graph names mapped by prefix: ${rules.map((r) => `'${r.strip}' -> '${r.add}'`).join(', ')})`
      : '';
    throw new HfError(`${ckpt.dir}: ${problems.length} parameter(s) do not match the checkpoint:\n  ${shown.join('\n  ')}${more}${how}`);
  }
  const used = new Set(source.values());
  return { source, ignored: ckpt.names().filter((n) => !used.has(n)), rules };
}
