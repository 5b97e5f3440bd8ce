// pipeline.json: one self-describing folder for sampling. It names its parts (VLM package, DiT graph,
// VAE or none for pixel space), the conditioning, the latent format, the sizes it accepts, the
// scheduler defaults, and the sha256 of every file, so that a copied or half-overwritten folder is
// caught before it produces wrong pictures.
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { DynamicShift } from '../sampler/schedule.ts';
import type { SolverName } from '../sampler/solvers.ts';

export const PIPELINE_FILE = 'pipeline.json';
export const PIPELINE_FORMAT = 'unifusion-pipeline';
export const PIPELINE_VERSION = 1;

/**
 * Latent space of the DiT. 'vae': the VAE's own scaled space (the decoder graph undoes
 * scale/shift itself; recorded here for users). 'pixel': RGB in [-1, 1], then
 * latent = (rgb - shift) * scale, per channel when arrays.
 */
export interface LatentFormat {
  kind: 'vae' | 'pixel';
  channels: number;
  /** DiT patch size */
  patch: number;
  /** image side / latent side (1 in pixel space) */
  factor: number;
  shift: number | number[];
  scale: number | number[];
}

export interface SchedulerDefaults {
  steps: number;
  sampler: SolverName;
  guidance: number;
  /** static shift (1 = none); exclusive with dynamicShift */
  shift?: number;
  dynamicShift?: DynamicShift;
  cfgNorm?: boolean;
  /** guidance while 1 - sigma < this */
  cfgTruncation?: number;
  terminal?: number;
}

export interface PipelineJson {
  format: typeof PIPELINE_FORMAT;
  version: number;
  name: string;
  parts: {
    /** the VLM package folder (import-hf output with tokenizer, chat template, generation graphs); null: conditions come from the caller */
    vlm: { dir: string } | null;
    /** the UniFusion DiT graph (taps as inputs) and its manifest */
    dit: {
      onnx: string;
      manifest: string;
      /**
       * the same DiT as two graphs (graphs/unifusion.ts split graphs): condition -> condition_tokens,
       * run once per prompt, and the per-step DiT on the tokens; sampling uses them when present
       */
      split?: { condition: { onnx: string; manifest: string }; tokens: { onnx: string; manifest: string } };
    };
    /** VAE folder (import-hf output) or null for pixel space */
    vae: { dir: string; encoder?: string; decoder: string } | null;
  };
  conditioning: {
    /** UniFusion conditioning variant, when known */
    variant?: string;
    /** hidden_states indices the DiT takes */
    taps: number[];
    /** the VLM's hidden width */
    hidden: number;
    /** every condition input of the DiT (hidden_states.<i>, condition_mask, key/value states) */
    inputs: string[];
    /** leave the chat template's tokens out of the condition (the VLM package applies it) */
    dropTemplate: boolean;
    /** VERIFI: the system prompt asking the VLM to write the target prompt */
    systemPrompt?: string;
    /** rewrite prompts by default */
    rewrite: boolean;
    /** the dropped condition training used (the empty prompt's), a safetensors file; CFG's unconditional branch */
    nullCondition?: string;
  };
  latent: LatentFormat;
  resolutions: {
    /** image sides must be multiples of this (VAE factor x patch) */
    multiple: number;
    default: [number, number];
    /** [w, h] sizes the model was trained at (informational; others are allowed) */
    trained?: [number, number][];
    /** most pixels per image accepted */
    maxPixels?: number;
  };
  scheduler: SchedulerDefaults;
  /** relative path ('/'-separated) -> sha256 hex, every file of the folder except pipeline.json */
  files: Record<string, string>;
}

export class PipelineError extends Error {
  override name = 'PipelineError';
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  await new Promise<void>((resolve, reject) => {
    createReadStream(file)
      .on('data', (b) => h.update(b))
      .on('error', reject)
      .on('end', () => resolve());
  });
  return h.digest('hex');
}

/** The pipeline's identity: sha256 of its pipeline.json bytes (which hold every file's hash). */
export function pipelineHash(jsonBytes: Uint8Array | string): string {
  return createHash('sha256').update(jsonBytes).digest('hex');
}

/** Every file under dir, relative and '/'-separated, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else out.push(r);
    }
  };
  await walk('');
  return out.sort();
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parse and check pipeline.json's structure; `file` names it in errors. */
export function parsePipelineJson(text: string, file: string): PipelineJson {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new PipelineError(`${file}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const bad = (what: string): never => {
    throw new PipelineError(`${file}: ${what}`);
  };
  if (!isObj(j) || j.format !== PIPELINE_FORMAT) bad(`not a unifusion pipeline (format must be '${PIPELINE_FORMAT}')`);
  const p = j as unknown as PipelineJson;
  if (p.version !== PIPELINE_VERSION) bad(`pipeline format version ${String(p.version)} is not supported (this build reads version ${PIPELINE_VERSION})`);
  if (!isObj(p.parts) || !isObj(p.parts.dit) || typeof p.parts.dit.onnx !== 'string') bad('parts.dit.onnx is missing');
  if (p.parts.vae !== null && (!isObj(p.parts.vae) || typeof p.parts.vae.decoder !== 'string')) bad('parts.vae must be null (pixel space) or name its decoder');
  if (p.parts.vlm !== null && (!isObj(p.parts.vlm) || typeof p.parts.vlm.dir !== 'string')) bad('parts.vlm must be null or name its folder');
  if (!isObj(p.conditioning) || !Array.isArray(p.conditioning.inputs)) bad('conditioning.inputs is missing');
  const l = p.latent;
  if (!isObj(l) || (l.kind !== 'vae' && l.kind !== 'pixel')) bad("latent.kind must be 'vae' or 'pixel'");
  for (const k of ['channels', 'patch', 'factor'] as const) if (!(Number.isInteger(l[k]) && l[k] >= 1)) bad(`latent.${k} must be a positive integer`);
  if (!isObj(p.resolutions) || !(Number.isInteger(p.resolutions.multiple) && p.resolutions.multiple >= 1)) bad('resolutions.multiple must be a positive integer');
  if (!isObj(p.scheduler) || !(Number.isInteger(p.scheduler.steps) && p.scheduler.steps >= 1)) bad('scheduler.steps must be a positive integer');
  if (!isObj(p.files)) bad('files (the content hashes) is missing');
  for (const [f, h] of Object.entries(p.files)) {
    if (f === '' || path.isAbsolute(f) || f.split('/').includes('..')) bad(`file entry '${f}' must be a path inside the pipeline folder`);
    if (typeof h !== 'string' || !/^[0-9a-f]{64}$/.test(h)) bad(`file entry '${f}' has no sha256`);
  }
  return p;
}

/**
 * Check that every file pipeline.json names exists and has its hash, and that every part it
 * refers to is among them. Throws a PipelineError naming the first missing or changed files.
 */
export async function verifyPipelineFiles(dir: string, p: PipelineJson, opts: { hashes?: boolean } = {}): Promise<void> {
  const parts: [string, string][] = [['parts.dit.onnx', p.parts.dit.onnx], ['parts.dit.manifest', p.parts.dit.manifest]];
  if (p.parts.vae) {
    parts.push(['parts.vae.decoder', p.parts.vae.decoder]);
    if (p.parts.vae.encoder) parts.push(['parts.vae.encoder', p.parts.vae.encoder]);
  }
  if (p.conditioning.nullCondition) parts.push(['conditioning.nullCondition', p.conditioning.nullCondition]);
  const sp = p.parts.dit.split;
  if (sp) for (const k of ['condition', 'tokens'] as const) parts.push([`parts.dit.split.${k}.onnx`, sp[k].onnx], [`parts.dit.split.${k}.manifest`, sp[k].manifest]);
  for (const [what, f] of parts) if (!(f in p.files)) throw new PipelineError(`${path.join(dir, PIPELINE_FILE)}: ${what} '${f}' is not among the hashed files`);
  if (p.parts.vlm && !Object.keys(p.files).some((f) => f.startsWith(`${p.parts.vlm!.dir}/`)))
    throw new PipelineError(`${path.join(dir, PIPELINE_FILE)}: the VLM folder '${p.parts.vlm.dir}' has no hashed files`);
  const missing: string[] = [], changed: string[] = [];
  for (const [f, want] of Object.entries(p.files)) {
    const abs = path.join(dir, ...f.split('/'));
    let st;
    try {
      st = await fs.stat(abs);
    } catch {
      missing.push(f);
      continue;
    }
    if (!st.isFile()) missing.push(f);
    else if (opts.hashes !== false && (await sha256File(abs)) !== want) changed.push(f);
  }
  const list = (xs: string[]) => xs.slice(0, 5).map((x) => `'${x}'`).join(', ') + (xs.length > 5 ? ` and ${xs.length - 5} more` : '');
  if (missing.length) throw new PipelineError(`pipeline '${dir}' is incomplete: missing part file${missing.length > 1 ? 's' : ''} ${list(missing)}`);
  if (changed.length) throw new PipelineError(`pipeline '${dir}': ${list(changed)} ${changed.length > 1 ? 'do' : 'does'} not match the sha256 in ${PIPELINE_FILE} (changed or corrupted since assembly); re-assemble the pipeline or restore the file${changed.length > 1 ? 's' : ''}`);
}

/** Per-channel value of a scalar-or-array affine parameter. */
export function perChannel(v: number | number[], c: number): number {
  return typeof v === 'number' ? v : v[c]!;
}
