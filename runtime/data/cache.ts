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
  const want = (prompt: string, ims: string[]) => {
    const key = JSON.stringify([prompt, ims]);
    let i = reqIndex.get(key);
    if (i === undefined) {
      reqIndex.set(key, (i = reqs.length));
      reqs.push(ims.length ? { prompt, images: ims.map((p) => images.get(p)!) } : { prompt });
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
        const ci = want(r.caption, []);
        examples.push({ task: 't2i', condition: ci, latent: li, bucket, row: r });
        if (!captions.some((c) => c.condition === ci)) captions.push({ text: r.caption, condition: ci });
      }
      if (tasks.has('recon')) examples.push({ task: 'recon', condition: want('', [abs]), latent: li, bucket, row: r });
    } else if (tasks.has('edit')) {
      const abs = resolveImage(ds.dir, r.target), li = latentIndex.get(abs)!;
      examples.push({ task: 'edit', condition: want(r.instruction, r.sources.map((s) => resolveImage(ds.dir, s))), latent: li, bucket: latents[li]!.bucket, row: r });
    }
  }
  const copts: ConditionOptions = { rewrite: false, ...o.condition };
  const conditions: Condition[] = [];
  const batch = o.batch ?? 16;
  for (let from = 0; from < reqs.length; from += batch) {
    const part = reqs.slice(from, from + batch);
    const r = await o.encoder.condition(part, copts);
    for (let k = 0; k < part.length; k++) conditions.push(trimCondition(sliceRows(r.tensors, k, k + 1), o.seqAxes));
  }
  const nul = await o.encoder.condition([{ prompt: '' }], { ...copts, rewrite: false });
  log(`encoded ${reqs.length} distinct condition(s) and the dropped (empty-prompt) condition`);
  return { examples, conditions, latents, buckets: o.buckets, nullCondition: trimCondition(nul.tensors, o.seqAxes), skipped, captions };
}

