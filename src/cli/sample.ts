// `unifusion sample --pipeline PIPE --prompt "..." [...] --out DIR`: text-to-image (and img2img with
// --init-image) through runtime/pipeline. DIR gets one PNG per image (prompt, rewritten prompt,
// negative prompt, seed, steps, guidance, schedule and pipeline hash in its text chunks) with a JSON
// sidecar, a grid.png when several images are made, and samples.json listing them; all written in a
// staging folder renamed into place, so an error leaves DIR as it was.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { HostTensor } from '../io/host.ts';
import { writeOutputDir, type InputPath } from '../io/outdir.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { encodePng, imageGrid } from '../../runtime/images/png.ts';
import { readImage } from '../../runtime/data/decode.ts';
import { Pipeline, PipelineError, type GenerateRequest, type GenerateResult, type ImageMeta } from '../../runtime/pipeline/index.ts';
import type { ConditionRequest } from '../../runtime/pipeline/condition.ts';
import type { SolverName } from '../../runtime/sampler/index.ts';

export interface SampleCommandOptions {
  pipeline: string;
  prompt?: string;
  prompts?: string;
  negativePrompt?: string;
  steps?: string | number;
  guidance?: string | number;
  trueCfg?: boolean;
  cfgNorm?: boolean;
  cfgTruncation?: string | number;
  shift?: string | number;
  dynamicShift?: boolean;
  sampler?: string;
  seed?: string | number;
  numImages?: string | number;
  size?: string;
  rewrite?: boolean;
  systemPrompt?: string;
  initImage?: string;
  strength?: string | number;
  /** starting latents: a safetensors file with 'latents' f32 [N, C, h, w] (N = prompts x images) */
  initLatents?: string;
  condition?: string;
  batchSize?: string | number;
  /** prompts per VLM batch */
  vlmBatch?: string | number;
  device?: string;
  verify?: boolean;
  grid?: boolean;
  out: string;
  force?: boolean;
  progress?: boolean;
  quiet?: boolean;
  /** edit: images in the VLM prompt */
  images?: string[];
}

export class UsageError extends Error {
  override name = 'UsageError';
}

type Kind = 'posint' | 'int' | 'nonneg' | 'unit' | 'pos';
function num(flag: string, v: string | number | undefined, kind: Kind): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : v.trim() === '' ? NaN : Number(v);
  const ok = {
    posint: Number.isSafeInteger(n) && n >= 1,
    int: Number.isSafeInteger(n),
    nonneg: Number.isFinite(n) && n >= 0,
    unit: Number.isFinite(n) && n >= 0 && n <= 1,
    pos: Number.isFinite(n) && n > 0,
  }[kind];
  const want = { posint: 'a positive integer', int: 'an integer', nonneg: 'a non-negative number', unit: 'a number in [0, 1]', pos: 'a positive number' }[kind];
  if (!ok) throw new UsageError(`${flag} must be ${want}, got '${v}'`);
  return n;
}

export function parseSize(s: string | undefined): [number, number] | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)[x×](\d+)$/i.exec(s.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new UsageError(`--size must be WIDTHxHEIGHT (e.g. 512x512), got '${s}'`);
  return [Number(m[1]), Number(m[2])];
}

/** Prompts from --prompt and --prompts FILE.txt (one per non-empty line). */
async function promptList(o: SampleCommandOptions): Promise<string[]> {
  const out: string[] = [];
  if (o.prompt !== undefined) out.push(o.prompt);
  if (o.prompts) {
    let text: string;
    try {
      text = await fs.readFile(o.prompts, 'utf8');
    } catch {
      throw new UsageError(`--prompts '${o.prompts}': cannot read the file`);
    }
    out.push(...text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== ''));
    if (out.length === 0) throw new UsageError(`--prompts '${o.prompts}' holds no prompt (one per line)`);
  }
  return out;
}

/** A precomputed condition file: condition tensors with one row per prompt; metadata 'prompts' (JSON list) labels them. */
function readConditionFile(file: string): { tensors: Record<string, HostTensor>; prompts?: string[] } {
  let c;
  try {
    c = readSafetensors(file);
  } catch (e) {
    throw new UsageError(`--condition '${file}': ${(e as Error).message}`);
  }
  let prompts: string[] | undefined;
  const m = c.metadata?.prompts;
  if (m !== undefined) {
    try {
      const p = JSON.parse(m) as unknown;
      if (Array.isArray(p) && p.every((x) => typeof x === 'string')) prompts = p;
    } catch {
      /* not ours: no labels */
    }
  }
  return { tensors: Object.fromEntries(c.tensors), prompts };
}

/** PNG text chunks of one image: each field, plus the whole record as JSON under 'unifusion'. */
export function pngText(meta: ImageMeta): Record<string, string> {
  const t: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) if (v !== undefined && k !== 'sigmas') t[k] = Array.isArray(v) ? JSON.stringify(v) : String(v);
  t.unifusion = JSON.stringify(meta);
  t.Software = 'unifusion';
  return t;
}

/** Write the images of a run: PNG + JSON sidecar each, grid.png, samples.json. */
export async function writeSamples(out: string, r: GenerateResult, opts: { inputs: InputPath[]; force?: boolean; grid?: boolean; command: string }): Promise<string[]> {
  const written = await writeOutputDir({ out, inputs: opts.inputs, force: opts.force, command: opts.command }, async (stage) => {
    const list: { file: string; meta: ImageMeta }[] = [];
    for (const [k, im] of r.images.entries()) {
      const base = `${String(k).padStart(4, '0')}-seed${im.meta.seed}`;
      await fs.writeFile(path.join(stage, `${base}.png`), encodePng(im.image, pngText(im.meta), `image ${k}`));
      await fs.writeFile(path.join(stage, `${base}.json`), JSON.stringify(im.meta, null, 2) + '\n');
      list.push({ file: `${base}.png`, meta: im.meta });
    }
    if (opts.grid !== false && r.images.length > 1) {
      const m = r.images[0]!.meta;
      await fs.writeFile(path.join(stage, 'grid.png'), encodePng(imageGrid(r.images.map((i) => i.image)), { Software: 'unifusion', pipeline_hash: m.pipeline_hash, images: list.map((l) => l.file).join(' ') }));
    }
    await fs.writeFile(path.join(stage, 'samples.json'), JSON.stringify({ images: list.map((l) => l.file), timings_ms: r.timings, stopped: r.stopped, evaluations: r.evaluations }, null, 2) + '\n');
    return list.map((l) => l.file);
  });
  return written.result;
}

export async function sampleCommand(o: SampleCommandOptions, command: 'sample' | 'edit' = 'sample'): Promise<GenerateResult> {
  const steps = num('--steps', o.steps, 'posint');
  const guidance = num('--guidance', o.guidance, 'nonneg');
  const cfgTruncation = num('--cfg-truncation', o.cfgTruncation, 'unit');
  const shift = num('--shift', o.shift, 'pos');
  const seed = num('--seed', o.seed, 'int');
  const numImages = num('--num-images', o.numImages, 'posint');
  const strength = num('--strength', o.strength, 'unit');
  const maxBatch = num('--batch-size', o.batchSize, 'posint');
  const vlmBatch = num('--vlm-batch', o.vlmBatch, 'posint');
  const size = parseSize(o.size);
  if (shift !== undefined && o.dynamicShift) throw new UsageError('--shift and --dynamic-shift are exclusive');
  if (o.sampler !== undefined && o.sampler !== 'euler' && o.sampler !== 'heun') throw new UsageError(`--sampler must be euler or heun, got '${o.sampler}'`);
  if (strength !== undefined && !o.initImage) throw new UsageError('--strength needs --init-image');
  if (strength === 0) throw new UsageError('--strength must be above 0 (0 would run no step)');

  const cond = o.condition ? readConditionFile(o.condition) : undefined;
  let prompts = await promptList(o);
  if (command === 'edit') {
    if (!o.images?.length) throw new UsageError('edit needs at least one --image');
    if (prompts.length === 0) prompts = ['']; // reconstruction
  }
  if (prompts.length === 0) {
    if (cond?.prompts) prompts = cond.prompts;
    else if (cond) prompts = Array.from({ length: Object.values(cond.tensors)[0]?.shape[0] ?? 0 }, (_, i) => `condition ${i}`);
    else throw new UsageError('give --prompt "..." or --prompts FILE.txt');
  }
  const inputs: InputPath[] = [{ path: o.pipeline, what: '--pipeline' }];
  if (o.prompts) inputs.push({ path: o.prompts, what: '--prompts' });
  if (o.condition) inputs.push({ path: o.condition, what: '--condition' });
  if (o.initImage) inputs.push({ path: o.initImage, what: '--init-image' });
  for (const im of o.images ?? []) inputs.push({ path: im, what: '--image' });
  // refuse an overlapping or foreign --out before the (slow) work
  const { checkOverlap } = await import('../io/outdir.ts');
  await checkOverlap({ out: o.out, inputs });

  const images = o.images ? await Promise.all(o.images.map((f) => readImage(f, `--image '${f}'`))) : undefined;
  const reqs: ConditionRequest[] = prompts.map((p) => (images ? { prompt: p, images } : { prompt: p }));
  const init = o.initImage ? [await readImage(o.initImage, `--init-image '${o.initImage}'`)] : undefined;
  if (o.initLatents && o.initImage) throw new UsageError('--init-latents and --init-image are exclusive');
  let initLatents: Float64Array | undefined;
  if (o.initLatents) {
    inputs.push({ path: o.initLatents, what: '--init-latents' });
    let t;
    try {
      t = readSafetensors(o.initLatents).tensors.get('latents');
    } catch (e) {
      throw new UsageError(`--init-latents '${o.initLatents}': ${(e as Error).message}`);
    }
    if (!t) throw new UsageError(`--init-latents '${o.initLatents}' has no tensor 'latents' ([N, C, h, w])`);
    const { toFloat64 } = await import('../io/host.ts');
    initLatents = toFloat64(t);
  }

  const pipe = await Pipeline.load(o.pipeline, { device: o.device, verify: o.verify });
  try {
    const req: GenerateRequest = {
      prompts: reqs,
      conditions: cond?.tensors,
      negativePrompt: o.negativePrompt,
      trueCfg: o.trueCfg,
      numImages,
      seed,
      steps,
      guidance,
      cfgNorm: o.cfgNorm,
      cfgTruncation,
      shift,
      dynamicShift: o.dynamicShift,
      sampler: o.sampler as SolverName | undefined,
      width: size?.[0],
      height: size?.[1],
      rewrite: o.rewrite,
      systemPrompt: o.systemPrompt,
      ...(vlmBatch !== undefined ? { vlm: { batchSize: vlmBatch } } : {}),
      initImages: init,
      initLatents,
      strength: init ? (strength ?? 0.8) : undefined,
      maxBatch,
      progress: o.progress === false ? false : 'auto',
    };
    const t0 = performance.now();
    const r = await pipe.generate(req);
    const files = await writeSamples(o.out, r, { inputs, force: o.force, grid: o.grid, command });
    if (!o.quiet) {
      const abs = path.resolve(o.out), r0 = path.relative(process.cwd(), abs);
      const rel = r0 === '' ? '.' : r0.startsWith('..') ? abs : r0;
      const t = r.timings;
      const lines = [
        `${command === 'edit' ? 'edited' : 'sampled'} ${r.images.length} image(s) of ${prompts.length} prompt(s) in ${((performance.now() - t0) / 1000).toFixed(2)} s -> ${rel}/ (${files.length > 1 ? `${files[0]} .. ${files.at(-1)}, grid.png` : files[0]})`,
        `  time: rewrite ${t.rewriteMs.toFixed(0)} ms, encode ${t.encodeMs.toFixed(0)} ms, denoise ${t.denoiseMs.toFixed(0)} ms (${r.evaluations} DiT calls), decode ${t.decodeMs.toFixed(0)} ms${r.stopped ? '; stopped early' : ''}`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    }
    return r;
  } finally {
    await pipe.close();
  }
}

export { PipelineError };
