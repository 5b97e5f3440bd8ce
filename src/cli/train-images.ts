// `unifusion train graphs/unifusion.ts --preset tiny --dataset DIR (--vlm DIR | --conditions FILE)
//   [--vae DIR] --size WxH --steps N --out RUN [...]`: a UniFusion config (a preset of a graph file)
// trained on an image dataset folder by runtime/data's trainOnImages. Prompts become conditions
// through the VLM package (--vlm), or come precomputed (--conditions: safetensors rows labelled by
// the metadata 'prompts' list; text-to-image only, images in prompts need the VLM).
import * as path from 'node:path';
import { trainOnImages, parseTaskMix, parseTimestepDistribution } from '../../runtime/data/index.ts';
import { CachedPromptEncoder, codecFromVaeDir, sha256File, sliceRows, type PromptEncoder } from '../../runtime/pipeline/index.ts';
import { readSafetensors } from '../io/safetensors.ts';
import type { InputPath } from '../io/outdir.ts';
import type { UniFusionConfig } from '../../graphs/unifusion.ts';
import { loadGraphFile } from './load-graph.ts';
import { parseSize, UsageError } from './sample.ts';

export interface TrainImagesOptions {
  preset?: string;
  dataset: string;
  vlm?: string;
  /** VERIFI system prompt of rewritten (teacher-forced) rows */
  systemPrompt?: string;
  conditions?: string;
  vae?: string;
  pixelShift?: string;
  pixelScale?: string;
  size?: string;
  buckets?: boolean;
  steps?: string;
  batch?: string;
  lr?: string;
  warmup?: string;
  minLr?: string;
  seed?: string;
  ema?: string;
  clipNorm?: string;
  weightDecay?: string;
  condDropout?: string;
  taskMix?: string;
  tDist?: string;
  sampleEvery?: string;
  samplePrompts?: string[];
  sampleSteps?: string;
  sampleGuidance?: string;
  checkpointEvery?: string;
  keep?: string;
  skipInvalid?: boolean;
  resume?: boolean;
  device?: string;
  out: string;
  progress?: boolean;
  quiet?: boolean;
}

function num(flag: string, v: string | undefined, kind: 'posint' | 'int' | 'nonneg' | 'unit'): number | undefined {
  if (v === undefined) return undefined;
  const n = v.trim() === '' ? NaN : Number(v);
  const ok = kind === 'posint' ? Number.isSafeInteger(n) && n >= 1 : kind === 'int' ? Number.isSafeInteger(n) && n >= 0 : kind === 'unit' ? n >= 0 && n <= 1 : Number.isFinite(n) && n >= 0;
  if (!ok) throw new UsageError(`${flag} must be ${{ posint: 'a positive integer', int: 'a non-negative integer', nonneg: 'a non-negative number', unit: 'a number in [0, 1]' }[kind]}, got '${v}'`);
  return n;
}

const isUniFusion = (c: unknown): c is UniFusionConfig => typeof c === 'object' && c !== null && 'conditioning' in c && 'dit' in c && 'vlm' in c;

export async function trainImagesCommand(file: string, o: TrainImagesOptions): Promise<void> {
  const def = await loadGraphFile(file);
  const preset = o.preset ?? def.defaultPreset ?? Object.keys(def.presets)[0];
  if (preset === undefined || !(preset in def.presets)) throw new UsageError(`graph file '${file}': unknown preset '${preset}' (known: ${Object.keys(def.presets).join(', ')})`);
  const config = def.presets[preset];
  if (!isUniFusion(config)) throw new UsageError(`--dataset trains a UniFusion config: preset '${preset}' of '${file}' is not one (use graphs/unifusion.ts or a file whose presets are UniFusion configs)`);
  const steps = num('--steps', o.steps, 'posint');
  if (steps === undefined) throw new UsageError('--steps is required');
  const size = parseSize(o.size);
  if (!size) throw new UsageError('--size WxH (the training size) is required with --dataset');
  const ema = num('--ema', o.ema, 'unit');
  const inputs: InputPath[] = [];
  let encoder: PromptEncoder;
  let encoderId: string | undefined;
  if (o.vlm && o.conditions) throw new UsageError('--vlm and --conditions are exclusive');
  if (o.conditions) {
    inputs.push({ path: o.conditions, what: '--conditions' });
    let c;
    try {
      c = readSafetensors(o.conditions);
    } catch (e) {
      const m = (e as Error).message;
      throw new UsageError(`--conditions '${o.conditions}': ${/ENOENT/.test(m) ? 'no such file' : m}`);
    }
    let prompts: unknown;
    try {
      prompts = JSON.parse(c.metadata.prompts ?? 'null');
    } catch {
      prompts = null;
    }
    if (!Array.isArray(prompts) || !prompts.every((x) => typeof x === 'string')) throw new UsageError(`--conditions '${o.conditions}': its metadata must hold 'prompts', a JSON list naming each row (the empty prompt "" among them, for condition dropout)`);
    const all = Object.fromEntries(c.tensors);
    encoder = new CachedPromptEncoder(new Map(prompts.map((p, i) => [p as string, sliceRows(all, i, i + 1)])), `--conditions '${o.conditions}'`);
    encoderId = `conditions sha256 ${await sha256File(o.conditions)}`;
  } else if (o.vlm) {
    // the VLM package encodes every row's request (captions; instruction + source images; the
    // image alone for reconstruction; teacher-forced answers), the same code path as sampling
    inputs.push({ path: o.vlm, what: '--vlm' });
    const { VlmPackage, VlmError } = await import('../../runtime/vlm/index.ts');
    try {
      encoder = await VlmPackage.load(o.vlm, { device: o.device });
    } catch (e) {
      if (e instanceof VlmError) throw new UsageError(`--vlm: ${e.message}`);
      throw e;
    }
    const { listFiles } = await import('../../runtime/pipeline/index.ts');
    const { createHash } = await import('node:crypto');
    const h = createHash('sha256');
    for (const f of await listFiles(o.vlm)) if (!f.startsWith('.')) h.update(`${f}\0${await sha256File(path.join(o.vlm, f))}\0`);
    encoderId = `vlm package sha256 ${h.digest('hex')}`;
  } else throw new UsageError('give --vlm DIR (the VLM package that encodes the captions) or --conditions FILE (precomputed)');
  if (o.vae) inputs.push({ path: o.vae, what: '--vae' });
  const numbers = (flag: string, s: string | undefined) => {
    if (s === undefined) return undefined;
    const xs = s.split(',').map(Number);
    if (xs.some((x) => !Number.isFinite(x))) throw new UsageError(`${flag} must be numbers, got '${s}'`);
    return xs.length === 1 ? xs[0]! : xs;
  };
  const codec = await codecFromVaeDir(o.vae, config.dit.patch, { shift: numbers('--pixel-shift', o.pixelShift), scale: numbers('--pixel-scale', o.pixelScale) }, { device: o.device });
  const say = (s: string) => {
    if (!o.quiet) process.stdout.write(s + '\n');
  };
  try {
    const r = await trainOnImages({
      config,
      dataset: o.dataset,
      out: o.out,
      resume: o.resume,
      encoder,
      encoderId: encoderId && o.systemPrompt !== undefined ? `${encoderId}; system prompt ${JSON.stringify(o.systemPrompt)}` : encoderId,
      ...(o.systemPrompt !== undefined ? { condition: { systemPrompt: o.systemPrompt } } : {}),
      codec,
      vaeDecoder: codec.decoderPath,
      size,
      buckets: o.buckets,
      steps,
      batch: num('--batch', o.batch, 'posint') ?? 8,
      lr: num('--lr', o.lr, 'nonneg'),
      warmup: num('--warmup', o.warmup, 'int'),
      minLr: num('--min-lr', o.minLr, 'nonneg'),
      seed: num('--seed', o.seed, 'int'),
      optimizer: { ema, clipNorm: num('--clip-norm', o.clipNorm, 'nonneg') ?? 1, weightDecay: num('--weight-decay', o.weightDecay, 'nonneg') },
      dropout: num('--cond-dropout', o.condDropout, 'unit'),
      taskMix: o.taskMix ? parseTaskMix(o.taskMix) : undefined,
      t: o.tDist ? parseTimestepDistribution(o.tDist) : undefined,
      sampleEvery: num('--sample-every', o.sampleEvery, 'int'),
      samplePrompts: o.samplePrompts,
      sampleSteps: num('--sample-steps', o.sampleSteps, 'posint'),
      sampleGuidance: num('--sample-guidance', o.sampleGuidance, 'nonneg'),
      checkpointEvery: num('--checkpoint-every', o.checkpointEvery, 'int'),
      keep: num('--keep', o.keep, 'posint'),
      invalid: o.skipInvalid ? 'skip' : 'error',
      device: o.device,
      progress: o.progress === false ? false : 'auto',
      inputs,
      log: say,
    });
    const ok = r.records.filter((x) => !x.rejected);
    const r0 = path.relative(process.cwd(), r.dir);
    const rel = r0 === '' ? '.' : r0.startsWith('..') ? r.dir : r0;
    say(
      [
        `trained ${config.conditioning} UniFusion (preset ${preset}) on ${o.dataset}: steps ${r.stepsDone - r.records.length + 1}..${r.stepsDone}`,
        `  loss: ${ok.length ? `${ok[0]!.loss.toPrecision(4)} -> ${ok.at(-1)!.loss.toPrecision(4)}` : 'no accepted step'}`,
        `  -> ${rel}/ (params.safetensors, unifusion.json, checkpoints/, metrics.jsonl, loss.png, ${r.samples.length} sample grid(s) in samples/); assemble it with \`unifusion assemble --dit ${rel}\``,
      ].join('\n'),
    );
  } finally {
    await codec.close();
    await encoder.close?.();
  }
}
