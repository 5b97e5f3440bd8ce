// The browser page's pipeline, shared with Node (the browser test runs this same file against
// onnxruntime-node and compares pixels): a compiled denoiser step driven by an Euler loop of the
// rectified flow from seeded noise at t = 1 to t = 0, the prompt as UTF-8 bytes, the latent's first
// three channels drawn as RGB. No DOM and no Node APIs here.
//
// The denoiser contract (checkDenoiserManifest): a `compile` output folder, manifest.json + ONNX,
// whose graph takes input_ids i64 [batch, seq], attention_mask bool [batch, seq], latents f32
// [batch, C, H, W] and timestep f32 [batch], and returns velocity f32 like latents;
// examples/web/tiny-pipeline.ts is one. The demo's pipeline.json folders (issue 10) are a second
// loader behind the same `generate` signature.
import { Rng } from '../../src/ir/init.ts';

export interface TensorEntry {
  name: string;
  dtype: string;
  shape: (number | string)[];
}

/** The fields of a compile manifest (src/compiler.ts Manifest) that the page reads. */
export interface DenoiserManifest {
  name: string;
  preset?: string;
  onnx: string;
  externalData?: string;
  inputs: TensorEntry[];
  outputs: TensorEntry[];
  paramCount: number;
}

export interface DenoiserInfo {
  channels: number;
  /** latent height/width must be a multiple of this (the DiT patch), from 'h*2'-style dims */
  multiple: number;
}

export const LIMITS = { maxPromptBytes: 64, maxSize: 64, maxSteps: 100 } as const;

const REQUIRED: Record<string, { dtype: string; rank: number }> = {
  input_ids: { dtype: 'i64', rank: 2 },
  attention_mask: { dtype: 'bool', rank: 2 },
  latents: { dtype: 'f32', rank: 4 },
  timestep: { dtype: 'f32', rank: 1 },
};

/** Check a manifest against the denoiser contract; the error says which tensor is wrong and how. */
export function checkDenoiserManifest(m: unknown, label = 'manifest.json'): DenoiserInfo {
  const man = m as Partial<DenoiserManifest> | null;
  if (!man || typeof man !== 'object' || !Array.isArray(man.inputs) || !Array.isArray(man.outputs) || typeof man.onnx !== 'string')
    throw new Error(`${label} is not a unifusion compile manifest (needs onnx, inputs, outputs)`);
  const problems: string[] = [];
  const byName = new Map(man.inputs.map((i) => [i.name, i]));
  for (const [name, want] of Object.entries(REQUIRED)) {
    const got = byName.get(name);
    if (!got) problems.push(`no input '${name}' (${want.dtype}, rank ${want.rank})`);
    else if (got.dtype !== want.dtype || got.shape.length !== want.rank) problems.push(`input '${name}' is ${got.dtype}[${got.shape.join(', ')}], expected ${want.dtype} of rank ${want.rank}`);
  }
  for (const i of man.inputs) if (!(i.name in REQUIRED)) problems.push(`extra input '${i.name}' that the page cannot feed`);
  const vel = man.outputs.find((o) => o.name === 'velocity');
  if (!vel) problems.push(`no output 'velocity'`);
  const lat = byName.get('latents');
  const channels = lat?.shape[1];
  if (lat && typeof channels !== 'number') problems.push(`latents channel dim is '${channels}', must be a number`);
  else if (typeof channels === 'number' && channels < 3) problems.push(`latents have ${channels} channels; the page draws channels 0..2 as RGB`);
  if (vel && lat && vel.shape.join(',') !== lat.shape.join(',')) problems.push(`velocity [${vel.shape.join(', ')}] is not shaped like latents [${lat.shape.join(', ')}]`);
  if (problems.length) throw new Error(`${label}: not a denoiser step the page can run: ${problems.join('; ')}`);
  const mult = (d: number | string | undefined) => (typeof d === 'number' ? d : Number(/\*(\d+)$/.exec(String(d))?.[1] ?? 1));
  return { channels: channels as number, multiple: Math.max(mult(lat!.shape[2]), mult(lat!.shape[3])) };
}

export interface DenoiserFeeds {
  input_ids: BigInt64Array;
  attention_mask: Uint8Array;
  latents: Float32Array;
  timestep: Float32Array;
}

export interface FeedShapes {
  input_ids: number[];
  attention_mask: number[];
  latents: number[];
  timestep: number[];
}

/** One step of the compiled graph: the velocity at (latents, timestep), flat f32 like latents. */
export type VelocityFn = (feeds: DenoiserFeeds, shapes: FeedShapes) => Promise<Float32Array>;

export interface GenerateRequest {
  prompt: string;
  seed: number;
  steps: number;
  /** latent height = width */
  size: number;
}

export interface Generated {
  /** the final latent x_0, [1, C, size, size] flat */
  latent: Float32Array;
  /** size x size RGBA of channels 0..2 */
  rgba: Uint8ClampedArray;
  width: number;
  height: number;
}

/** The prompt as bytes: one token per UTF-8 byte, every one attended. */
export function promptBytes(prompt: string): { ids: BigInt64Array; mask: Uint8Array } {
  const bytes = new TextEncoder().encode(prompt);
  if (bytes.length === 0) throw new Error('the prompt is empty');
  if (bytes.length > LIMITS.maxPromptBytes) throw new Error(`the prompt is ${bytes.length} bytes of UTF-8; at most ${LIMITS.maxPromptBytes}`);
  return { ids: BigInt64Array.from(bytes, (b) => BigInt(b)), mask: new Uint8Array(bytes.length).fill(1) };
}

/** Standard normal noise of image `seed`: Rng(seed, 'noise'), as runtime/sampler's seeded noise. */
export function seededNoise(seed: number, n: number): Float32Array {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer, got ${seed}`);
  const rng = new Rng(seed, 'noise');
  return Float32Array.from({ length: n }, () => rng.normal());
}

/** The latent's channels 0..2 as RGB bytes: x in [-1, 1] -> [0, 255]. */
export function latentToRgba(latent: Float32Array, channels: number, height: number, width: number): Uint8ClampedArray {
  const hw = height * width;
  if (latent.length !== channels * hw) throw new Error(`latent has ${latent.length} values, expected ${channels} x ${height} x ${width}`);
  const out = new Uint8ClampedArray(hw * 4);
  for (let p = 0; p < hw; p++) {
    for (let c = 0; c < 3; c++) out[p * 4 + c] = Math.round(127.5 * (latent[c * hw + p]! + 1));
    out[p * 4 + 3] = 255;
  }
  return out;
}

export function checkRequest(req: GenerateRequest, info: DenoiserInfo): void {
  if (!Number.isInteger(req.steps) || req.steps < 1 || req.steps > LIMITS.maxSteps) throw new Error(`steps must be an integer in 1..${LIMITS.maxSteps}, got ${req.steps}`);
  if (!Number.isInteger(req.size) || req.size < info.multiple || req.size > LIMITS.maxSize || req.size % info.multiple !== 0)
    throw new Error(`size must be a multiple of ${info.multiple} in ${info.multiple}..${LIMITS.maxSize}, got ${req.size}`);
}

/**
 * Sample one image: x_1 = noise(seed); for t_i = 1 - i/steps, x <- x + (t_{i+1} - t_i) v(x, t_i);
 * all state in f32, as both runtimes compute. `onStep(done, total)` after every step.
 */
export async function generate(run: VelocityFn, info: DenoiserInfo, req: GenerateRequest, onStep?: (done: number, total: number) => void | Promise<void>): Promise<Generated> {
  checkRequest(req, info);
  const { ids, mask } = promptBytes(req.prompt);
  const C = info.channels, H = req.size, W = req.size;
  const x = seededNoise(req.seed, C * H * W);
  const shapes: FeedShapes = { input_ids: [1, ids.length], attention_mask: [1, mask.length], latents: [1, C, H, W], timestep: [1] };
  for (let i = 0; i < req.steps; i++) {
    const t = 1 - i / req.steps, tNext = 1 - (i + 1) / req.steps;
    const v = await run({ input_ids: ids, attention_mask: mask, latents: x.slice(), timestep: Float32Array.of(t) }, shapes);
    if (v.length !== x.length) throw new Error(`the model returned ${v.length} velocity values for a latent of ${x.length}`);
    const dt = Math.fround(tNext - t);
    for (let k = 0; k < x.length; k++) x[k] = Math.fround(x[k]! + Math.fround(dt * v[k]!));
    await onStep?.(i + 1, req.steps);
  }
  return { latent: x, rgba: latentToRgba(x, C, H, W), width: W, height: H };
}
