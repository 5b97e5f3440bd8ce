// The frozen VLM's condition for a whole dataset, computed once and stored for training (the
// paper's cached features): `unifusion encode`. A dataset is JSONL (a .jsonl file, or a folder of
// them read in name order), one record per line:
//   {"id": "...", "caption" | "prompt" | "instruction" | "text": "...", "image" | "images": path(s)}
// text: the caption, or the edit instruction; images: the VLM's input images (the edit source,
// references), relative to the JSONL file; other keys (the target image, ...) are ignored.
//
// Output folder (a run folder: src/io/outdir.ts RunDir, each file atomic):
//   shard-00000.safetensors ...  per record k (global line order): `<k>.hidden_states.<i>` f32
//                                [tokens_k, hE], only its condition tokens (no padding; 0 rows for
//                                an empty caption, CFG's dropped condition)
//   index.json                   format 'unifusion-feature-cache', the model and settings, the
//                                shards, and per record: id, shard, tokens, rewritten text
// index.json is rewritten after every shard, so an interrupted run resumes (`--resume`) after the
// last complete shard; a resume with other settings, model or dataset is refused.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HostTensor } from '../../src/io/host.ts';
import { parseSafetensors, serializeSafetensors } from '../../src/io/safetensors.ts';
import type { RunDir } from '../../src/io/outdir.ts';
import type { ConditionOptions, VlmPackage } from './index.ts';

export class DatasetError extends Error {
  override name = 'DatasetError';
}

export interface DatasetRecord {
  /** 0-based over the whole dataset */
  index: number;
  id: string;
  text: string;
  images: string[];
  /** file:line, for messages */
  where: string;
}

/** The records of a .jsonl file or of every .jsonl in a folder (name order). */
export function readDataset(p: string): { records: DatasetRecord[]; files: string[] } {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new DatasetError(`--dataset ${p} does not exist`);
  }
  const files = st.isDirectory() ? fs.readdirSync(p).filter((f) => f.endsWith('.jsonl')).sort().map((f) => path.join(p, f)) : [p];
  if (!files.length) throw new DatasetError(`--dataset ${p} holds no .jsonl files`);
  const records: DatasetRecord[] = [];
  const ids = new Map<string, string>();
  for (const file of files) {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, n) => {
      if (line.trim() === '') return;
      const where = `${file}:${n + 1}`;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch (e) {
        throw new DatasetError(`${where}: not JSON (${(e as Error).message})`);
      }
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new DatasetError(`${where}: a record must be a JSON object`);
      const o = v as Record<string, unknown>;
      const textKey = ['caption', 'prompt', 'instruction', 'text'].find((k) => o[k] !== undefined);
      const text = textKey ? o[textKey] : '';
      if (typeof text !== 'string') throw new DatasetError(`${where}: '${textKey}' must be a string`);
      const raw = o.images ?? (o.image !== undefined ? [o.image] : []);
      if (!Array.isArray(raw) || raw.some((x) => typeof x !== 'string')) throw new DatasetError(`${where}: 'images' must be a list of paths ('image': one path)`);
      const images = (raw as string[]).map((x) => path.resolve(path.dirname(file), x));
      for (const img of images) if (!fs.existsSync(img)) throw new DatasetError(`${where}: image ${img} does not exist`);
      const id = o.id === undefined ? String(records.length) : String(o.id);
      if (ids.has(id)) throw new DatasetError(`${where}: id '${id}' repeats ${ids.get(id)}`);
      ids.set(id, where);
      records.push({ index: records.length, id, text, images, where });
    });
  }
  if (!records.length) throw new DatasetError(`--dataset ${p}: no records`);
  return { records, files };
}

export interface CacheSettings {
  rewrite: boolean;
  systemPrompt?: string;
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  truncate?: boolean;
  keepTemplate?: boolean;
  templateVars?: Record<string, unknown>;
}

export interface CacheIndex {
  format: 'unifusion-feature-cache';
  version: 1;
  model: { dir: string; modelType: string; taps: number[]; hidden: number };
  settings: CacheSettings;
  dataset: { path: string; records: number; ids: string[] };
  shards: { file: string; first: number; count: number }[];
  records: { id: string; shard: number; tokens: number; rewritten?: string }[];
  complete: boolean;
}

export interface EncodeDatasetOptions extends CacheSettings {
  /** prompts per VLM batch (default 8) */
  batchSize?: number;
  /** records per shard at most (default 256) */
  shardRecords?: number;
  /** a shard is closed once it holds this many bytes of features (default 512 MiB) */
  shardBytes?: number;
  /** called after every batch */
  onProgress?: (done: number, total: number) => void;
}

const shardName = (i: number) => `shard-${String(i).padStart(5, '0')}.safetensors`;

/** Encode `datasetPath` into the run folder `out` (file header); returns the final index. */
export async function encodeDataset(pkg: VlmPackage, datasetPath: string, out: RunDir, o: EncodeDatasetOptions): Promise<CacheIndex> {
  const { records } = readDataset(datasetPath);
  const batch = o.batchSize ?? 8;
  const per = o.shardRecords ?? 256;
  for (const [k, v] of [['batch size', batch], ['shard records', per]] as const) if (!Number.isSafeInteger(v) || v < 1) throw new DatasetError(`${k} must be an integer >= 1, got ${v}`);
  const settings: CacheSettings = { rewrite: o.rewrite, systemPrompt: o.systemPrompt, maxNewTokens: o.maxNewTokens, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed, truncate: o.truncate, keepTemplate: o.keepTemplate, templateVars: o.templateVars };
  const fresh: CacheIndex = {
    format: 'unifusion-feature-cache',
    version: 1,
    model: { dir: path.resolve(pkg.dir), modelType: pkg.config.modelType, taps: pkg.taps, hidden: pkg.hidden },
    settings: JSON.parse(JSON.stringify(settings)) as CacheSettings,
    dataset: { path: path.resolve(datasetPath), records: records.length, ids: records.map((r) => r.id) },
    shards: [],
    records: [],
    complete: false,
  };
  const indexPath = out.resolve('index.json');
  let index = fresh;
  if (fs.existsSync(indexPath)) {
    const prev = JSON.parse(fs.readFileSync(indexPath, 'utf8')) as CacheIndex;
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    if (prev.format !== 'unifusion-feature-cache') throw new DatasetError(`${indexPath} is not a feature cache index`);
    if (!same(prev.model, fresh.model)) throw new DatasetError(`cannot resume ${out.dir}: it was encoded with another model (${prev.model.dir}, taps [${prev.model.taps}])`);
    if (!same(prev.settings, fresh.settings)) throw new DatasetError(`cannot resume ${out.dir}: it was encoded with other settings (${JSON.stringify(prev.settings)})`);
    if (!same(prev.dataset, fresh.dataset)) throw new DatasetError(`cannot resume ${out.dir}: the dataset changed (${prev.dataset.records} records then, ${fresh.dataset.records} now, or other ids)`);
    index = prev;
  }
  let done = index.shards.reduce((a, s) => a + s.count, 0);
  o.onProgress?.(done, records.length);
  const cond: ConditionOptions = { rewrite: o.rewrite, systemPrompt: o.systemPrompt, maxNewTokens: o.maxNewTokens, temperature: o.temperature, topP: o.topP, topK: o.topK, truncate: o.truncate, keepTemplate: o.keepTemplate, templateVars: o.templateVars };
  const maxBytes = o.shardBytes ?? 512 * 2 ** 20;
  let tensors = new Map<string, HostTensor>();
  let meta: CacheIndex['records'] = [];
  let first = done, bytes = 0;
  const flush = async () => {
    const file = shardName(index.shards.length);
    await out.writeFile(file, serializeSafetensors(tensors, { format: 'unifusion-feature-cache', first: String(first), count: String(done - first) }));
    index = { ...index, shards: [...index.shards, { file, first, count: done - first }], records: [...index.records, ...meta] };
    index.complete = done === records.length;
    await out.writeFile('index.json', JSON.stringify(index, null, 1) + '\n');
    (tensors = new Map()), (meta = []), (first = done), (bytes = 0);
  };
  while (done < records.length) {
    const chunk = records.slice(done, Math.min(done + batch, first + per));
    let c;
    try {
      // per-record seeds: a record samples the same tokens whatever the batching or resume point
      c = await pkg.condition(chunk.map((r) => ({ prompt: r.text, images: r.images })), { ...cond, seeds: chunk.map((r) => (o.seed ?? 0) + r.index) });
    } catch (e) {
      throw new DatasetError(`records ${chunk[0]!.where} .. ${chunk[chunk.length - 1]!.where}: ${(e as Error).message}`);
    }
    chunk.forEach((r, b) => {
      const n = c.lengths[b]!;
      for (const t of pkg.taps) {
        const full = c.tensors[`hidden_states.${t}`]!;
        const S = full.shape[1]!, H = full.shape[2]!;
        tensors.set(`${r.index}.hidden_states.${t}`, { dtype: 'f32', shape: [n, H], data: (full.data as Float32Array).slice(b * S * H, (b * S + n) * H) });
        bytes += n * H * 4;
      }
      meta.push({ id: r.id, shard: index.shards.length, tokens: n, ...(c.rewritten[b] !== undefined ? { rewritten: c.rewritten[b] } : {}) });
    });
    done += chunk.length;
    o.onProgress?.(done, records.length);
    if (done - first >= per || bytes >= maxBytes || done === records.length) await flush();
  }
  if (!index.complete) {
    index.complete = true;
    await out.writeFile('index.json', JSON.stringify(index, null, 1) + '\n');
  }
  return index;
}

/** Read a feature cache: its index and each record's taps ([tokens, hE] per hidden_states index). */
export function readFeatureCache(dir: string): { index: CacheIndex; record(k: number): Map<number, HostTensor> } {
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as CacheIndex;
  if (index.format !== 'unifusion-feature-cache') throw new DatasetError(`${dir}/index.json is not a feature cache index`);
  const shards = new Map<number, Map<string, HostTensor>>();
  return {
    index,
    record(k) {
      const r = index.records[k];
      if (!r) throw new DatasetError(`record ${k} is not in ${dir} (${index.records.length} records)`);
      let s = shards.get(r.shard);
      if (!s) shards.set(r.shard, (s = parseSafetensors(fs.readFileSync(path.join(dir, index.shards[r.shard]!.file))).tensors));
      return new Map(index.model.taps.map((t) => [t, s!.get(`${k}.hidden_states.${t}`)!]));
    },
  };
}
