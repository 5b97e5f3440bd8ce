// A loaded pipeline folder: verified files, lazily opened sessions (DiT, VAE decoder / encoder),
// the latent format, and generate() -- prompts (and images in the VLM prompt) to RGB images:
// condition -> flow sampler with guidance -> VAE decode (or pixel space).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Manifest, TensorDesc } from '../../src/compiler.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../../src/io/host.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { Session } from '../session.ts';
import { LatentCodec } from './latent.ts';
import type { RgbImage } from '../images/png.ts';
import {
  checkGuidance,
  flowSigmas,
  FLUX_SHIFT,
  guided,
  noised,
  progressBar,
  seededNoise,
  solveFlow,
  truncateForStrength,
  type BranchModel,
  type DynamicShift,
  type GuidanceOptions,
  type SolverName,
  type StepReport,
} from '../sampler/index.ts';
import { checkCondition, concatConditions, ConditionError, repeatRows, sliceRows, type Condition, type ConditionOptions, type ConditionRequest, type PromptEncoder, type SeqAxes } from './condition.ts';
import { parsePipelineJson, PIPELINE_FILE, PipelineError, pipelineHash, verifyPipelineFiles, type LatentFormat, type PipelineJson } from './format.ts';

export const LATENTS_INPUT = 'latents';
export const TIMESTEP_INPUT = 'timestep';
export const VELOCITY_OUTPUT = 'velocity';

export interface LoadOptions {
  device?: string;
  /** check every file's sha256 (default true; false checks presence only) */
  verify?: boolean;
  /** how prompts become conditions; default: the pipeline's VLM package (runtime/vlm) */
  encoder?: PromptEncoder;
  intraOpThreads?: number;
}

export interface GenerateRequest {
  /** prompts (strings, or with images for the VLM prompt); one entry per prompt */
  prompts: (string | ConditionRequest)[];
  /** conditions of the prompts, precomputed (rows = prompts); replaces the encoder */
  conditions?: Condition;
  negativePrompt?: string;
  /** unconditional branch = an encoded prompt (the negative prompt, else the empty one) instead of the stored dropped condition */
  trueCfg?: boolean;
  numImages?: number;
  /** image k (prompt-major) gets seed + k */
  seed?: number;
  steps?: number;
  guidance?: number;
  cfgNorm?: boolean;
  cfgTruncation?: number;
  /** static shift; 1 = none */
  shift?: number;
  /** resolution-dependent shift (true: the pipeline's constants, else FLUX's) */
  dynamicShift?: boolean | DynamicShift;
  terminal?: number;
  sigmas?: number[];
  sampler?: SolverName;
  width?: number;
  height?: number;
  rewrite?: boolean;
  systemPrompt?: string;
  vlm?: Omit<ConditionOptions, 'rewrite' | 'systemPrompt'>;
  /** starting latents (all images, [N, C, h, w] flattened), at the first sigma */
  initLatents?: Float64Array;
  /** img2img: one image per prompt (or per image), noised to the strength's sigma */
  initImages?: RgbImage[];
  strength?: number;
  /** images per DiT call (cond + uncond rows count as one image); default all */
  maxBatch?: number;
  onStep?: (r: StepReport & { chunk: number }) => void | boolean | Promise<void | boolean>;
  signal?: AbortSignal;
  progress?: boolean | 'auto';
}

export interface ImageMeta {
  prompt: string;
  rewritten_prompt?: string;
  negative_prompt?: string;
  seed: number;
  steps: number;
  guidance: number;
  sampler: SolverName;
  schedule: string;
  sigmas: number[];
  cfg_norm: boolean;
  cfg_truncation: number;
  true_cfg: boolean;
  strength?: number;
  images_in_prompt: number;
  width: number;
  height: number;
  pipeline: string;
  pipeline_hash: string;
}

export interface GeneratedImage {
  image: RgbImage;
  latent: Float64Array;
  meta: ImageMeta;
}

export interface Timings {
  rewriteMs: number;
  encodeMs: number;
  denoiseMs: number;
  decodeMs: number;
}

export interface GenerateResult {
  images: GeneratedImage[];
  timings: Timings;
  /** a callback or the signal stopped sampling early */
  stopped: boolean;
  /** DiT evaluations */
  evaluations: number;
}

/** The DiT as a function: latents x [B, C, h, w], sigma, a condition of B rows -> velocity. */
export type DitVelocity = (x: Float64Array, shape: number[], sigma: number, cond: Condition) => Promise<Float64Array>;

export class Pipeline {
  private sessions = new Map<string, Promise<Session>>();
  readonly codec: LatentCodec;
  private constructor(
    readonly dir: string,
    readonly json: PipelineJson,
    readonly hash: string,
    readonly ditManifest: Manifest,
    readonly nullCondition: Condition | undefined,
    private readonly opts: LoadOptions,
    codec?: LatentCodec,
  ) {
    const v = json.parts.vae;
    this.codec = codec ?? new LatentCodec(json.latent, v ? { decoder: path.join(dir, v.decoder), encoder: v.encoder ? path.join(dir, v.encoder) : undefined } : null, { device: opts.device, intraOpThreads: opts.intraOpThreads });
  }

  /** Read pipeline.json, check every part and hash. Sessions open on first use. */
  static async load(dir: string, opts: LoadOptions = {}): Promise<Pipeline> {
    const file = path.join(dir, PIPELINE_FILE);
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(file);
    } catch {
      throw new PipelineError(`--pipeline '${dir}': no ${PIPELINE_FILE} there (assemble one with \`unifusion assemble\`)`);
    }
    const json = parsePipelineJson(bytes.toString('utf8'), file);
    await verifyPipelineFiles(dir, json, { hashes: opts.verify !== false });
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await fs.readFile(path.join(dir, json.parts.dit.manifest), 'utf8')) as Manifest;
    } catch (e) {
      throw new PipelineError(`${path.join(dir, json.parts.dit.manifest)}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const nc = json.conditioning.nullCondition ? Object.fromEntries(readSafetensors(path.join(dir, json.conditioning.nullCondition)).tensors) : undefined;
    const p = new Pipeline(path.resolve(dir), json, pipelineHash(bytes), manifest, nc, opts);
    if (nc) checkCondition(nc, p.conditionInputs, `${json.conditioning.nullCondition}`);
    return p;
  }

  /** The DiT's condition inputs (every input but latents and timestep). */
  get conditionInputs(): TensorDesc[] {
    return this.ditManifest.inputs.filter((i) => i.name !== LATENTS_INPUT && i.name !== TIMESTEP_INPUT);
  }

  get seqAxes(): SeqAxes {
    return Object.fromEntries(this.conditionInputs.map((i) => [i.name, i.shape.indexOf('seq')]).filter(([, a]) => (a as number) >= 0));
  }

  get latent(): LatentFormat {
    return this.json.latent;
  }

  /** [latent h, latent w] for an image size, or a clear error naming the multiple needed. */
  latentSize(width: number, height: number): [number, number] {
    const m = this.json.resolutions.multiple;
    for (const [what, v] of [['width', width], ['height', height]] as const) {
      if (!(Number.isInteger(v) && v >= 1)) throw new PipelineError(`--size: ${what} ${v} is not a positive integer`);
      if (v % m) {
        const lo = Math.max(m, v - (v % m)), hi = v - (v % m) + m;
        throw new PipelineError(`--size ${width}x${height}: the ${what} ${v} is not a multiple of ${m} (VAE factor ${this.latent.factor} x DiT patch ${this.latent.patch}); try ${lo} or ${hi}`);
      }
    }
    const max = this.json.resolutions.maxPixels;
    if (max && width * height > max) throw new PipelineError(`--size ${width}x${height}: ${width * height} pixels is more than this pipeline's ${max}`);
    return [height / this.latent.factor, width / this.latent.factor];
  }

  private session(part: 'dit'): Promise<Session> {
    let s = this.sessions.get(part);
    if (!s) {
      s = Session.load(path.join(this.dir, this.json.parts.dit.onnx), { device: this.opts.device, intraOpThreads: this.opts.intraOpThreads });
      this.sessions.set(part, s);
    }
    return s;
  }

  private vlm: Promise<PromptEncoder> | undefined;

  /**
   * The encoder in use: the caller's, else the pipeline's VLM package (runtime/vlm's VlmPackage,
   * loaded once on first use with this pipeline's device and threads; closed by close()).
   */
  encoder(): Promise<PromptEncoder> {
    if (this.opts.encoder) return Promise.resolve(this.opts.encoder);
    const v = this.json.parts.vlm;
    if (!v) return Promise.reject(new PipelineError(`pipeline '${this.dir}' has no VLM: give the conditions (e.g. --condition FILE.safetensors, or an encoder in the library API)`));
    this.vlm ??= import('../vlm/index.ts').then(({ VlmPackage }) => VlmPackage.load(path.join(this.dir, ...v.dir.split('/')), { device: this.opts.device, intraOpThreads: this.opts.intraOpThreads }));
    return this.vlm;
  }

  /**
   * A pipeline from parts in memory (no folder): e.g. training previews, whose DiT takes the
   * current weights as inputs. `velocity` replaces the DiT session.
   */
  static fromParts(p: { json: PipelineJson; ditManifest: Manifest; nullCondition?: Condition; codec: LatentCodec; velocity: DitVelocity; encoder?: PromptEncoder; hash?: string }): Pipeline {
    const pipe = new Pipeline('<in memory>', p.json, p.hash ?? 'in-memory', p.ditManifest, p.nullCondition, { encoder: p.encoder }, p.codec);
    pipe.velocityFn = p.velocity;
    return pipe;
  }

  private velocityFn: DitVelocity | undefined;

  /** One DiT velocity for latents x [B, C, h, w] under a condition with B rows. */
  async velocity(x: Float64Array, shape: number[], sigma: number, cond: Condition): Promise<Float64Array> {
    if (this.velocityFn) return this.velocityFn(x, shape, sigma, cond);
    const dit = await this.session('dit');
    const B = shape[0]!;
    const out = await dit.run({ ...cond, [LATENTS_INPUT]: fromFloat64('f32', shape, x), [TIMESTEP_INPUT]: fromFloat64('f32', [B], new Float64Array(B).fill(sigma)) }, [VELOCITY_OUTPUT]);
    return toFloat64(out[VELOCITY_OUTPUT]!);
  }

  /** Latents [B, C, h, w] -> RGB images. */
  decode(latents: Float64Array, shape: number[]): Promise<RgbImage[]> {
    return this.codec.decode(latents, shape);
  }

  /** RGB images (resized and centre-cropped to width x height) -> latents [B, C, h, w]. */
  encodeImages(images: readonly RgbImage[], width: number, height: number): Promise<Float64Array> {
    this.latentSize(width, height);
    return this.codec.encode(images, width, height);
  }

  /** Conditions for prompts: precomputed rows, or the encoder's. */
  private async conditions(reqs: ConditionRequest[], opts: ConditionOptions, given?: Condition): Promise<{ cond: Condition; rewritten: (string | undefined)[]; rewriteMs: number; encodeMs: number }> {
    const t0 = performance.now();
    if (given) {
      if (opts.rewrite) throw new ConditionError('prompt rewriting (VERIFI) needs the VLM; precomputed conditions were given (pass --no-rewrite / rewrite: false)');
      if (reqs.some((r) => r.images?.length)) throw new ConditionError('images in the prompt need the VLM; precomputed conditions were given (they must already hold the images)');
      const n = checkCondition(given, this.conditionInputs, 'conditions');
      if (n !== reqs.length) throw new ConditionError(`conditions have ${n} rows for ${reqs.length} prompt(s)`);
      return { cond: given, rewritten: reqs.map(() => undefined), rewriteMs: 0, encodeMs: performance.now() - t0 };
    }
    const r = await (await this.encoder()).condition(reqs, opts);
    const ms = performance.now() - t0;
    const n = checkCondition(r.tensors, this.conditionInputs, 'the encoder\'s condition');
    if (n !== reqs.length) throw new ConditionError(`the encoder returned ${n} condition rows for ${reqs.length} prompt(s)`);
    const t = (r as { timings?: { rewriteMs?: number; encodeMs?: number } }).timings;
    return { cond: r.tensors, rewritten: r.rewritten, rewriteMs: t?.rewriteMs ?? (opts.rewrite ? ms : 0), encodeMs: t?.encodeMs ?? (opts.rewrite ? 0 : ms) };
  }

  async generate(req: GenerateRequest): Promise<GenerateResult> {
    const j = this.json, sch = j.scheduler;
    const reqs: ConditionRequest[] = req.prompts.map((p) => (typeof p === 'string' ? { prompt: p } : p));
    if (reqs.length === 0) throw new PipelineError('no prompts');
    const steps = req.steps ?? sch.steps;
    if (!(Number.isInteger(steps) && steps >= 1)) throw new PipelineError(`--steps must be a positive integer, got ${req.steps}`);
    const numImages = req.numImages ?? 1;
    if (!(Number.isInteger(numImages) && numImages >= 1)) throw new PipelineError(`--num-images must be a positive integer, got ${req.numImages}`);
    const seed = req.seed ?? 0;
    if (!Number.isSafeInteger(seed)) throw new PipelineError(`--seed must be an integer, got ${req.seed}`);
    const g: GuidanceOptions = { scale: req.guidance ?? sch.guidance, normalize: req.cfgNorm ?? sch.cfgNorm ?? false, truncation: req.cfgTruncation ?? sch.cfgTruncation ?? 1 };
    try {
      checkGuidance(g);
    } catch (e) {
      throw new PipelineError(`--guidance: ${(e as Error).message}`);
    }
    const sampler = req.sampler ?? sch.sampler;
    const [width, height] = [req.width ?? j.resolutions.default[0], req.height ?? j.resolutions.default[1]];
    const [h, w] = this.latentSize(width, height);
    const C = j.latent.channels, p = j.latent.patch;
    const tokens = (h / p) * (w / p);
    const dyn = req.dynamicShift === undefined ? (req.shift === undefined ? sch.dynamicShift : undefined) : req.dynamicShift === true ? (sch.dynamicShift ?? FLUX_SHIFT) : req.dynamicShift || undefined;
    const shift = dyn ? undefined : (req.shift ?? sch.shift);
    let sigmas = flowSigmas({ steps, shift, dynamicShift: dyn, imageTokens: tokens, terminal: req.terminal ?? sch.terminal, sigmas: req.sigmas });
    const img2img = req.initImages !== undefined;
    if (img2img) sigmas = truncateForStrength(sigmas, req.strength ?? 0.8);
    else if (req.strength !== undefined) throw new PipelineError('--strength needs an input image to start from (--init-image)');
    const schedule = dyn ? `flow, dynamic shift mu(${tokens} tokens) = ${((dyn.maxShift - dyn.baseShift) / (dyn.maxSeq - dyn.baseSeq) * (tokens - dyn.baseSeq) + dyn.baseShift).toFixed(4)} [${dyn.baseSeq}/${dyn.baseShift}, ${dyn.maxSeq}/${dyn.maxShift}]` : req.sigmas ? 'flow, user sigmas' : `flow, shift ${shift ?? 1}`;

    // conditions: one row per prompt, then one per image
    const rewrite = req.rewrite ?? j.conditioning.rewrite;
    // dropTemplate (pipeline.json) = the template's fixed tokens left out of no-rewrite conditions, as in training
    // the pipeline's system prompt is VERIFI's (rewriting); a plain prompt is encoded without it
    // unless the caller gives one explicitly
    const copts: ConditionOptions = { keepTemplate: !j.conditioning.dropTemplate, ...req.vlm, rewrite, systemPrompt: req.systemPrompt ?? (rewrite ? j.conditioning.systemPrompt : undefined) };
    const timings: Timings = { rewriteMs: 0, encodeMs: 0, denoiseMs: 0, decodeMs: 0 };
    const c = await this.conditions(reqs, copts, req.conditions);
    timings.rewriteMs += c.rewriteMs;
    timings.encodeMs += c.encodeMs;
    const N = reqs.length * numImages;
    const condRows = repeatRows(c.cond, numImages);
    let uncondRows: Condition | undefined;
    const trueCfg = req.trueCfg ?? req.negativePrompt !== undefined;
    if (g.scale !== 1) {
      if (trueCfg) {
        // edits: the negative prompt goes in *with* each prompt's source images (their content is
        // not what guidance should push away from); text-to-image: one negative row for all
        const withImages = reqs.some((r) => r.images?.length);
        const negs: ConditionRequest[] = withImages ? reqs.map((r) => ({ prompt: req.negativePrompt ?? '', ...(r.images?.length ? { images: r.images } : {}) })) : [{ prompt: req.negativePrompt ?? '' }];
        const u = await this.conditions(negs, { ...copts, rewrite: false }, undefined);
        timings.encodeMs += u.encodeMs;
        uncondRows = withImages ? repeatRows(u.cond, numImages) : repeatRows(u.cond, N);
      } else {
        if (!this.nullCondition)
          throw new PipelineError(`pipeline '${this.dir}' stores no dropped condition for CFG (conditioning.nullCondition); use --true-cfg (encode the empty or negative prompt) or --guidance 1`);
        uncondRows = repeatRows(this.nullCondition, N);
      }
    } else if (req.negativePrompt !== undefined) throw new PipelineError('--negative-prompt needs guidance: set --guidance above 1');

    const per = C * h * w;
    const seeds = Array.from({ length: N }, (_, k) => seed + k);
    let x0: Float64Array;
    if (req.initLatents) {
      if (req.initLatents.length !== N * per) throw new PipelineError(`initial latents have ${req.initLatents.length} values; ${N} images of [${C}, ${h}, ${w}] need ${N * per}`);
      x0 = Float64Array.from(req.initLatents);
    } else if (img2img) {
      const ims = req.initImages!;
      if (ims.length !== reqs.length && ims.length !== N) throw new PipelineError(`${ims.length} init image(s) for ${reqs.length} prompt(s) x ${numImages} image(s): give one per prompt or one per image`);
      const t0 = performance.now();
      const lat = await this.encodeImages(ims, width, height);
      timings.encodeMs += performance.now() - t0;
      const clean = new Float64Array(N * per);
      for (let k = 0; k < N; k++) clean.set(lat.subarray((ims.length === N ? k : Math.floor(k / numImages)) * per, (ims.length === N ? k + 1 : Math.floor(k / numImages) + 1) * per), k * per);
      x0 = noised(clean, seededNoise(seeds, per), sigmas[0]!);
    } else x0 = seededNoise(seeds, per);

    const maxBatch = req.maxBatch ?? N;
    if (!(Number.isInteger(maxBatch) && maxBatch >= 1)) throw new PipelineError(`--batch-size must be a positive integer, got ${req.maxBatch}`);
    const images: GeneratedImage[] = [];
    let stopped = false, evaluations = 0;
    const chunks = Math.ceil(N / maxBatch);
    const bar = progressBar(chunks * (sigmas.length - 1) * (sampler === 'heun' ? 1 : 1), 'sampling', req.progress ?? 'auto');
    try {
      for (let ci = 0; ci < chunks; ci++) {
        const from = ci * maxBatch, to = Math.min(N, from + maxBatch), B = to - from;
        const condB = sliceRows(condRows, from, to);
        const both = uncondRows ? concatConditions([condB, sliceRows(uncondRows, from, to)], this.seqAxes) : undefined;
        const shape = [B, C, h, w];
        const model: BranchModel = async (x, sigma, branches) => {
          if (branches === 'cond') return this.velocity(x, shape, sigma, condB);
          const xx = new Float64Array(2 * x.length);
          xx.set(x);
          xx.set(x, x.length);
          return this.velocity(xx, [2 * B, C, h, w], sigma, both!);
        };
        const t0 = performance.now();
        const r = await solveFlow(x0.slice(from * per, to * per), guided(model, g, { batch: B, channels: C, height: h, width: w, patch: p }), {
          sigmas,
          solver: sampler,
          signal: req.signal,
          onStep: async (s) => {
            bar?.tick();
            return req.onStep?.({ ...s, chunk: ci });
          },
        });
        timings.denoiseMs += performance.now() - t0;
        evaluations += r.evaluations;
        stopped ||= r.stopped;
        const t1 = performance.now();
        const rgb = await this.decode(r.x, shape);
        timings.decodeMs += performance.now() - t1;
        for (let b = 0; b < B; b++) {
          const k = from + b, pi = Math.floor(k / numImages);
          const meta: ImageMeta = {
            prompt: reqs[pi]!.prompt,
            ...(c.rewritten[pi] !== undefined ? { rewritten_prompt: c.rewritten[pi] } : {}),
            ...(trueCfg && g.scale !== 1 ? { negative_prompt: req.negativePrompt ?? '' } : {}),
            seed: seeds[k]!,
            steps,
            guidance: g.scale,
            sampler,
            schedule,
            sigmas: [...sigmas],
            cfg_norm: g.normalize ?? false,
            cfg_truncation: g.truncation ?? 1,
            true_cfg: trueCfg && g.scale !== 1,
            ...(img2img ? { strength: req.strength ?? 0.8 } : {}),
            images_in_prompt: reqs[pi]!.images?.length ?? 0,
            width,
            height,
            pipeline: j.name,
            pipeline_hash: this.hash,
          };
          images.push({ image: rgb[b]!, latent: r.x.slice(b * per, (b + 1) * per), meta });
        }
        if (r.stopped) break;
      }
    } finally {
      bar?.stop();
    }
    return { images, timings, stopped, evaluations };
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) await (await s.catch(() => undefined))?.release();
    this.sessions.clear();
    await this.codec.close();
    await this.opts.encoder?.close?.();
    const vlm = this.vlm;
    this.vlm = undefined;
    if (vlm) await (await vlm.catch(() => undefined))?.close?.();
  }
}

export { tensorToRgb, rgbToTensor, fitImage } from './latent.ts';
export type { HostTensor };
