// Encode a dataset once: every target image to its latent (VAE or pixel space, at its bucket's
// size) and every prompt to its VLM condition, so training steps only index arrays. The frozen VLM
// and VAE never run inside the training loop (the paper's "features may be cached").
//
// Examples per task:
//   t2i    condition(caption)                        -> latent(image)
//   recon  condition("" + the image in the prompt)   -> latent(image)
//   edit   condition(instruction + source images)    -> latent(target)
import type { HostTensor } from '../../src/io/host.ts';
import type { RgbImage } from '../images/png.ts';
import { sliceRows, type Condition, type ConditionOptions, type ConditionRequest, type PromptEncoder, type SeqAxes } from '../pipeline/condition.ts';
import type { LatentCodec } from '../pipeline/latent.ts';
import { readImage } from './decode.ts';
import { problemList, resolveImage, type Dataset, type DatasetRow, type RowProblem } from './dataset.ts';
import { assignBucket, type Bucket } from './buckets.ts';

export type Task = 't2i' | 'recon' | 'edit';
export const TASKS: readonly Task[] = ['t2i', 'recon', 'edit'];

export interface Example {
  task: Task;
  /** index into conditions */
  condition: number;
  /** index into latents */
  latent: number;
  bucket: number;
  row: DatasetRow;
}

export interface EncodedDataset {
  examples: Example[];
  /** one row each, trimmed to its own tokens */
  conditions: Condition[];
  /** per latent: values of [C, h, w] and its bucket */
  latents: { data: Float64Array; bucket: number; shape: [number, number, number] }[];
  buckets: Bucket[];
  /** the dropped condition (the empty prompt's) */
  nullCondition: Condition;
  /** rows whose images could not be decoded (with skip) */
  skipped: RowProblem[];
  /** prompts (t2i captions) in dataset order, for previews */
  captions: { text: string; condition: number }[];
}

export interface EncodeOptions {
  encoder: PromptEncoder;
  codec: LatentCodec;
  buckets: Bucket[];
  seqAxes: SeqAxes;
  /** prompt encoding options (rewrite off by default: train on the captions as written) */
  condition?: Partial<ConditionOptions>;
  invalid?: 'error' | 'skip';
  /** requests per encoder call */
  batch?: number;
  /** tasks to build examples for (default all); a task left out is never encoded */
  tasks?: readonly Task[];
  log?: (line: string) => void;
}

/** Drop trailing padding (mask false past the last token) from a one-row condition. */
export function trimCondition(c: Condition, seqAxes: SeqAxes): Condition {
  const mask = c.condition_mask;
  if (!mask) return c;
  const m = mask.data as Uint8Array;
  let len = 0;
  for (let i = 0; i < m.length; i++) if (m[i]) len = i + 1;
  len = Math.max(len, 1);
  const out: Condition = {};
  for (const [k, t] of Object.entries(c)) {
    const axis = seqAxes[k];
    if (axis === undefined || t.shape[axis] === len) {
      out[k] = t;
      continue;
    }
    const outer = t.shape.slice(0, axis).reduce((a, b) => a * b, 1), S = t.shape[axis]!, inner = t.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
    const Ctor = t.data.constructor as new (n: number) => typeof t.data;
    const data = new Ctor(outer * len * inner);
    for (let o = 0; o < outer; o++) (data as Float32Array).set((t.data as Float32Array).subarray(o * S * inner, o * S * inner + len * inner), o * len * inner);
    const shape = [...t.shape];
    shape[axis] = len;
    out[k] = { dtype: t.dtype, shape, data } as HostTensor;
  }
  return out;
}

export async function encodeDataset(ds: Dataset, o: EncodeOptions): Promise<EncodedDataset> {
  const log = o.log ?? (() => {});
  const skipped: RowProblem[] = [];
  // 1. decode every image once
  const images = new Map<string, RgbImage>();
  const bad = new Set<DatasetRow>();
  for (const r of ds.rows)
    for (const p of r.kind === 'image' ? [r.image] : [...r.sources, r.target]) {
      const abs = resolveImage(ds.dir, p);
      if (images.has(abs)) continue;
      try {
        images.set(abs, await readImage(abs, p));
      } catch (e) {
        skipped.push({ file: r.file, line: r.line, message: (e as Error).message });
        bad.add(r);
      }
    }
  const rows = ds.rows.filter((r) => !bad.has(r) && [...(r.kind === 'image' ? [r.image] : [...r.sources, r.target])].every((p) => images.has(resolveImage(ds.dir, p))));
  if (skipped.length && o.invalid !== 'skip') {
    const { DatasetError } = await import('./dataset.ts');
    throw new DatasetError(`--dataset '${ds.dir}': ${skipped.length} row(s) with unreadable images (pass --skip-invalid to leave them out):\n${problemList(skipped)}`, skipped);
  }
  if (rows.length === 0) throw new Error(`--dataset '${ds.dir}': no row with readable images`);

  // 2. latents of every target, per bucket size
  const latentIndex = new Map<string, number>();
  const latents: EncodedDataset['latents'] = [];
  const targets: { abs: string; bucket: number }[] = [];
  for (const r of rows) {
    const abs = resolveImage(ds.dir, r.kind === 'image' ? r.image : r.target);
    if (latentIndex.has(abs)) continue;
    const im = images.get(abs)!;
    const bucket = assignBucket(o.buckets, im.width, im.height);
    latentIndex.set(abs, targets.length);
    targets.push({ abs, bucket });
  }
  for (let b = 0; b < o.buckets.length; b++) {
    const idx = targets.map((t, i) => (t.bucket === b ? i : -1)).filter((i) => i >= 0);
    if (idx.length === 0) continue;
    const { width, height } = o.buckets[b]!;
    const enc = await o.codec.encode(idx.map((i) => images.get(targets[i]!.abs)!), width, height);
    const per = enc.length / idx.length;
    const [h, w] = o.codec.latentSize(width, height);
    idx.forEach((i, k) => (latents[i] = { data: enc.slice(k * per, (k + 1) * per), bucket: b, shape: [o.codec.format.channels, h, w] }));
  }
  log(`encoded ${targets.length} target image(s) to latents in ${o.buckets.filter((_, b) => targets.some((t) => t.bucket === b)).length} bucket(s)`);

  // 3. conditions: one per distinct request
  const reqs: ConditionRequest[] = [];
  const reqIndex = new Map<string, number>();
  const want = (prompt: string, ims: string[], answer?: string) => {
    const key = JSON.stringify([prompt, ims, answer ?? null]);
    let i = reqIndex.get(key);
    if (i === undefined) {
      reqIndex.set(key, (i = reqs.length));
      reqs.push({ prompt, ...(ims.length ? { images: ims.map((p) => images.get(p)!) } : {}), ...(answer !== undefined ? { answer } : {}) });
    }
    return i;
  };
  const tasks = new Set(o.tasks ?? TASKS);
  const examples: Example[] = [];
  const captions: { text: string; condition: number }[] = [];
  for (const r of rows) {
    if (r.kind === 'image') {
      const abs = resolveImage(ds.dir, r.image), li = latentIndex.get(abs)!, bucket = latents[li]!.bucket;
      if (tasks.has('t2i')) {
        const ci = want(r.caption, [], r.answer);
        examples.push({ task: 't2i', condition: ci, latent: li, bucket, row: r });
        if (!captions.some((c) => c.condition === ci)) captions.push({ text: r.caption, condition: ci });
      }
      if (tasks.has('recon')) examples.push({ task: 'recon', condition: want('', [abs]), latent: li, bucket, row: r });
    } else if (tasks.has('edit')) {
      const abs = resolveImage(ds.dir, r.target), li = latentIndex.get(abs)!;
      examples.push({ task: 'edit', condition: want(r.instruction, r.sources.map((s) => resolveImage(ds.dir, s)), r.answer), latent: li, bucket: latents[li]!.bucket, row: r });
    }
  }
  const copts: ConditionOptions = { rewrite: false, ...o.condition };
  const conditions: Condition[] = new Array(reqs.length);
  const batch = o.batch ?? 16;
  // rows with an answer are teacher-forced rewrites (rewrite on); the rest use the options as given
  for (const forced of [false, true]) {
    const idx = reqs.map((_, i) => i).filter((i) => (reqs[i]!.answer !== undefined) === forced);
    for (let from = 0; from < idx.length; from += batch) {
      const part = idx.slice(from, from + batch);
      // the system prompt is VERIFI's: it goes with rewriting only (as the pipeline applies it)
      const r = await o.encoder.condition(part.map((i) => reqs[i]!), forced || copts.rewrite ? { ...copts, rewrite: true } : { ...copts, systemPrompt: undefined });
      part.forEach((i, k) => (conditions[i] = trimCondition(sliceRows(r.tensors, k, k + 1), o.seqAxes)));
    }
  }
  const nul = await o.encoder.condition([{ prompt: '' }], { ...copts, rewrite: false });
  log(`encoded ${reqs.length} distinct condition(s) and the dropped (empty-prompt) condition`);
  return { examples, conditions, latents, buckets: o.buckets, nullCondition: trimCondition(nul.tensors, o.seqAxes), skipped, captions };
}


// ---------------------------------------------------------------------------------------------
// On disk: an encoded dataset is saved in the run folder, so a resumed run does not run the VLM
// and the VAE again. It is reused only when its fingerprint (dataset rows, image files, sizes,
// latent format, encoder identity) is the same.

export const CACHE_FILE = 'cache/encoded.safetensors';

interface CacheIndex {
  fingerprint: string;
  examples: { task: Task; condition: number; latent: number; bucket: number; file: string; line: number }[];
  latents: { bucket: number; shape: [number, number, number] }[];
  conditions: number;
  buckets: Bucket[];
  captions: { text: string; condition: number }[];
  skipped: RowProblem[];
}

/** sha256 over what an encoding depends on. */
export async function datasetFingerprint(ds: Dataset, extra: unknown): Promise<string> {
  const { createHash } = await import('node:crypto');
  const { promises: fs } = await import('node:fs');
  const h = createHash('sha256');
  for (const f of ds.files) h.update(f).update(await fs.readFile(resolveImage(ds.dir, f)));
  const seen = new Set<string>();
  for (const r of ds.rows)
    for (const p of r.kind === 'image' ? [r.image] : [...r.sources, r.target]) {
      const abs = resolveImage(ds.dir, p);
      if (seen.has(abs)) continue;
      seen.add(abs);
      const st = await fs.stat(abs);
      h.update(`${abs}\0${st.size}\0${st.mtimeMs}\0`);
    }
  h.update(JSON.stringify(extra));
  return h.digest('hex');
}

export function serializeEncoded(e: EncodedDataset, fingerprint: string): { tensors: Map<string, HostTensor>; metadata: Record<string, string> } {
  const tensors = new Map<string, HostTensor>();
  e.conditions.forEach((c, i) => Object.entries(c).forEach(([k, t]) => tensors.set(`c${i}.${k}`, t)));
  Object.entries(e.nullCondition).forEach(([k, t]) => tensors.set(`null.${k}`, t));
  e.latents.forEach((l, i) => tensors.set(`l${i}`, { dtype: 'f32', shape: [...l.shape], data: Float32Array.from(l.data) }));
  const index: CacheIndex = {
    fingerprint,
    examples: e.examples.map((x) => ({ task: x.task, condition: x.condition, latent: x.latent, bucket: x.bucket, file: x.row.file, line: x.row.line })),
    latents: e.latents.map((l) => ({ bucket: l.bucket, shape: l.shape })),
    conditions: e.conditions.length,
    buckets: e.buckets,
    captions: e.captions,
    skipped: e.skipped,
  };
  return { tensors, metadata: { index: JSON.stringify(index) } };
}

/** The encoded dataset of a cache file, or undefined when it is absent, unreadable or of other inputs. */
export function deserializeEncoded(tensors: ReadonlyMap<string, HostTensor>, metadata: Record<string, string>, ds: Dataset, fingerprint: string): EncodedDataset | undefined {
  let index: CacheIndex;
  try {
    index = JSON.parse(metadata.index ?? '') as CacheIndex;
  } catch {
    return undefined;
  }
  if (index.fingerprint !== fingerprint) return undefined;
  const group = (prefix: string): Condition => {
    const out: Condition = {};
    for (const [k, t] of tensors) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = t;
    return out;
  };
  const rowAt = new Map(ds.rows.map((r) => [`${r.file}:${r.line}`, r]));
  const examples: Example[] = [];
  for (const x of index.examples) {
    const row = rowAt.get(`${x.file}:${x.line}`);
    if (!row) return undefined;
    examples.push({ task: x.task, condition: x.condition, latent: x.latent, bucket: x.bucket, row });
  }
  const latents = index.latents.map((l, i) => {
    const t = tensors.get(`l${i}`);
    return t ? { data: Float64Array.from(t.data as Float32Array), bucket: l.bucket, shape: l.shape } : undefined;
  });
  if (latents.some((l) => !l)) return undefined;
  return {
    examples,
    conditions: Array.from({ length: index.conditions }, (_, i) => group(`c${i}.`)),
    latents: latents as EncodedDataset['latents'],
    buckets: index.buckets,
    nullCondition: group('null.'),
    skipped: index.skipped,
    captions: index.captions,
  };
}
