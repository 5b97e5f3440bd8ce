// Importing a diffusers VAE folder (config.json + diffusion_pytorch_model.safetensors, or
// shards with their .index.json) into encoder and decoder ONNX graphs with external data.
//
// Everything that can be checked is checked before anything is written: the config
// (class, block types, activation, channel/group arithmetic), then every tensor's presence,
// shape and dtype from the safetensors headers alone. Only then are tensors read and the
// graphs compiled, into a staging folder next to the output that is moved into place at the
// end, so a failure leaves the output folder as it was.
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeOutputDir, type InputPath } from './outdir.ts';
import { compileGraph, type Manifest } from '../compiler.ts';
import { atomicWrite, writeModel } from '../../codegen/onnx/write.ts';
import { isFloat, type DType } from '../ir/dtype.ts';
import type { Graph } from '../ir/graph.ts';
import { fromFloat64, toFloat64, type HostTensor } from './host.ts';
import { SafetensorsFile, type TensorInfo } from './safetensors.ts';
import { checkVaeConfig, traceVaeDecoder, traceVaeEncoder, vaeFactor, type VaeConfig } from '../../graphs/vae.ts';

export class DiffusersImportError extends Error {
  override name = 'DiffusersImportError';
  /** the first tensor involved, when the problem is about tensors */
  readonly tensor: string | undefined;
  /** every problem found (the message shows the first few) */
  readonly problems: readonly string[];
  constructor(message: string, opts: { tensor?: string; problems?: readonly string[] } = {}) {
    super(message);
    this.tensor = opts.tensor;
    this.problems = opts.problems ?? [message];
  }
}

// ------------------------------------------------------------------------------ config

const VAE_CLASSES = ['AutoencoderKL'] as const;

/** diffusers' AutoencoderKL.__init__ defaults: a config.json only carries the keys it overrides. */
const AUTOENCODER_KL_DEFAULTS = {
  in_channels: 3,
  out_channels: 3,
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: 'silu',
  latent_channels: 4,
  norm_num_groups: 32,
  scaling_factor: 0.18215,
  shift_factor: null,
  latents_mean: null,
  latents_std: null,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
} as const;

/** Translate a diffusers AutoencoderKL config.json object into a VaeConfig. */
export function vaeConfigFromDiffusers(json: unknown, label = 'config.json'): VaeConfig {
  const fail = (m: string): never => {
    throw new DiffusersImportError(`${label}: ${m}`);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('must be a JSON object');
  const raw = json as Record<string, unknown>;
  const cls = raw._class_name;
  if (cls === undefined) fail('has no _class_name: not a diffusers model config');
  if (!(VAE_CLASSES as readonly unknown[]).includes(cls)) fail(`unknown _class_name ${JSON.stringify(cls)} (the VAE importer reads ${VAE_CLASSES.join(', ')})`);
  const get = (k: keyof typeof AUTOENCODER_KL_DEFAULTS): unknown => (raw[k] === undefined ? AUTOENCODER_KL_DEFAULTS[k] : raw[k]);
  const int = (k: keyof typeof AUTOENCODER_KL_DEFAULTS): number => {
    const v = get(k);
    return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : fail(`${k} must be a positive integer, got ${JSON.stringify(v)}`);
  };
  const num = (k: keyof typeof AUTOENCODER_KL_DEFAULTS): number | null => {
    const v = get(k);
    if (v === null) return null;
    return typeof v === 'number' && Number.isFinite(v) ? v : fail(`${k} must be a number, got ${JSON.stringify(v)}`);
  };
  const bool = (k: keyof typeof AUTOENCODER_KL_DEFAULTS): boolean => {
    const v = get(k);
    return typeof v === 'boolean' ? v : fail(`${k} must be true or false, got ${JSON.stringify(v)}`);
  };
  const nums = (k: keyof typeof AUTOENCODER_KL_DEFAULTS): number[] | null => {
    const v = get(k);
    if (v === null) return null;
    return Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isFinite(x)) ? (v as number[]) : fail(`${k} must be a list of numbers, got ${JSON.stringify(v)}`);
  };

  const channels = nums('block_out_channels');
  if (!channels || channels.length === 0 || channels.some((c) => !Number.isInteger(c) || c < 1)) fail(`block_out_channels must be a non-empty list of positive integers, got ${JSON.stringify(raw.block_out_channels)}`);
  const levels = channels!.length;
  const blocks = (key: string, kind: string) => {
    const v = raw[key] === undefined ? Array.from({ length: levels }, () => kind) : raw[key];
    if (!Array.isArray(v) || v.length !== levels) fail(`${key} must list ${levels} blocks (one per block_out_channels entry), got ${JSON.stringify(v)}`);
    const other = (v as unknown[]).find((b) => b !== kind);
    if (other !== undefined) fail(`${key} has ${JSON.stringify(other)}; only ${kind} is supported`);
  };
  blocks('down_block_types', 'DownEncoderBlock2D');
  blocks('up_block_types', 'UpDecoderBlock2D');
  const act = get('act_fn');
  if (act !== 'silu') fail(`act_fn ${JSON.stringify(act)} is not supported (only "silu")`);

  const latentsMean = nums('latents_mean'), latentsStd = nums('latents_std');
  const cfg: VaeConfig = {
    inChannels: int('in_channels'),
    outChannels: int('out_channels'),
    latentChannels: int('latent_channels'),
    blockOutChannels: channels!,
    layersPerBlock: int('layers_per_block'),
    normNumGroups: int('norm_num_groups'),
    useQuantConv: bool('use_quant_conv'),
    usePostQuantConv: bool('use_post_quant_conv'),
    midBlockAddAttention: bool('mid_block_add_attention'),
    scalingFactor: num('scaling_factor') ?? fail('scaling_factor must be a number, got null'),
    shiftFactor: num('shift_factor') ?? 0,
    ...(latentsMean && latentsStd ? { latentsMean, latentsStd } : {}),
  };
  if ((latentsMean === null) !== (latentsStd === null)) fail('latents_mean and latents_std must both be set or both be null');
  try {
    checkVaeConfig(cfg);
  } catch (e) {
    fail(e instanceof Error ? e.message.replace(/^VAE config: /, '') : String(e));
  }
  return cfg;
}

/** The folder holding a VAE's config.json: `dir` itself or its `vae/` subfolder (a pipeline root). */
export function findDiffusersVaeDir(dir: string): string | undefined {
  for (const d of [dir, path.join(dir, 'vae')]) if (fs.existsSync(path.join(d, 'config.json'))) return d;
  return undefined;
}

// ------------------------------------------------------------------------------ weights

/** A checkpoint's tensors by name, over one file or the shards of an index. */
export class DiffusersWeights {
  private constructor(
    readonly files: readonly string[],
    private readonly where: ReadonlyMap<string, SafetensorsFile>,
  ) {}

  /** Open `<dir>/diffusion_pytorch_model[.variant].safetensors`, or its shards through the .index.json. */
  static open(dir: string, opts: { variant?: string } = {}): DiffusersWeights {
    const base = `diffusion_pytorch_model${opts.variant ? `.${opts.variant}` : ''}.safetensors`;
    const single = path.join(dir, base);
    const index = `${single}.index.json`;
    if (fs.existsSync(single)) {
      const f = openFile(single);
      return new DiffusersWeights([single], new Map(f.names().map((n) => [n, f])));
    }
    if (!fs.existsSync(index)) {
      const bin = fs.existsSync(path.join(dir, base.replace(/\.safetensors$/, '.bin')));
      throw new DiffusersImportError(`${dir}: no ${base} (nor ${path.basename(index)})${bin ? '; only a .bin (pickle) checkpoint is present, which is not read: convert it to safetensors' : ''}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(index, 'utf8'));
    } catch (e) {
      throw new DiffusersImportError(`${index}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
    }
    const map = (parsed as { weight_map?: unknown } | null)?.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new DiffusersImportError(`${index}: has no "weight_map" object`);
    const opened = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
        if (typeof shard !== 'string' || shard === '' || shard !== path.basename(shard) || shard === '.' || shard === '..')
          throw new DiffusersImportError(`${index}: tensor '${name}' maps to ${JSON.stringify(shard)}, not a file name in the same folder`, { tensor: name });
        let f = opened.get(shard);
        if (!f) {
          const p = path.join(dir, shard);
          if (!fs.existsSync(p)) throw new DiffusersImportError(`${index}: shard '${shard}' (holding tensor '${name}') does not exist`, { tensor: name });
          f = openFile(p);
          opened.set(shard, f);
        }
        if (!f.has(name)) throw new DiffusersImportError(`${index}: tensor '${name}' is listed in shard '${shard}' but that file does not contain it`, { tensor: name });
        where.set(name, f);
      }
    } catch (e) {
      for (const f of opened.values()) f.close();
      throw e;
    }
    return new DiffusersWeights([...opened.values()].map((f) => f.path), where);
  }

  names(): string[] {
    return [...this.where.keys()].sort();
  }
  has(name: string): boolean {
    return this.where.has(name);
  }
  info(name: string): TensorInfo {
    return this.file(name).info(name);
  }
  read(name: string): HostTensor {
    return this.file(name).read(name);
  }
  close(): void {
    for (const f of new Set(this.where.values())) f.close();
  }
  private file(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new DiffusersImportError(`no tensor '${name}' in ${this.files.join(', ')}`, { tensor: name });
    return f;
  }
}

function openFile(p: string): SafetensorsFile {
  try {
    return SafetensorsFile.openSync(p);
  } catch (e) {
    throw new DiffusersImportError(e instanceof Error ? e.message : String(e), { tensor: (e as { tensor?: string }).tensor });
  }
}

/**
 * diffusers checkpoints saved before the attention refactor name the mid-block attention
 * query / key / value / proj_attn (diffusers renames them on load); map them to today's names.
 */
export function canonicalVaeName(name: string): string {
  const m = /^(.*\.mid_block\.attentions\.\d+\.)(query|key|value|proj_attn)(\.(?:weight|bias))$/.exec(name);
  if (!m) return name;
  const to = { query: 'to_q', key: 'to_k', value: 'to_v', proj_attn: 'to_out.0' }[m[2] as 'query'];
  return `${m[1]}${to}${m[3]}`;
}

const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;

/**
 * Match the graphs' parameters against the checkpoint by name, shape and dtype (headers only),
 * then read and convert them to each parameter's dtype. Throws one error listing every problem.
 */
export function loadGraphParams(weights: DiffusersWeights, graphs: readonly Graph[], opts: { allowUnexpected?: boolean; label?: string } = {}): Map<string, HostTensor> {
  const label = opts.label ?? weights.files.join(', ');
  const byCanonical = new Map<string, string>();
  const problems: { tensor: string; msg: string }[] = [];
  for (const n of weights.names()) {
    const c = canonicalVaeName(n);
    const prev = byCanonical.get(c);
    if (prev !== undefined) problems.push({ tensor: n, msg: `tensor '${n}' and tensor '${prev}' are both '${c}'` });
    else byCanonical.set(c, n);
  }
  const wanted = new Map<string, { dtype: DType; shape: number[] }>();
  for (const g of graphs) for (const p of g.params()) wanted.set(p.params.name, { dtype: p.params.dtype, shape: p.params.shape });

  for (const [name, want] of wanted) {
    const src = byCanonical.get(name);
    if (src === undefined) {
      problems.push({ tensor: name, msg: `missing tensor '${name}' (expected ${want.dtype} ${shapeStr(want.shape)})` });
      continue;
    }
    const info = weights.info(src);
    const alias = src === name ? '' : ` (stored as '${src}')`;
    if (!isFloat(info.dtype)) problems.push({ tensor: name, msg: `tensor '${name}'${alias} has dtype ${info.dtype}, expected a float tensor (f32, f16, bf16 or f64)` });
    if (info.shape.length !== want.shape.length || info.shape.some((d, i) => d !== want.shape[i]))
      problems.push({ tensor: name, msg: `tensor '${name}'${alias} has shape ${shapeStr(info.shape)}, the config needs ${shapeStr(want.shape)}` });
  }
  if (!opts.allowUnexpected)
    for (const [c, src] of byCanonical)
      if (!wanted.has(c)) problems.push({ tensor: src, msg: `unexpected tensor '${src}': not a parameter of the model config.json describes (check use_quant_conv, use_post_quant_conv, mid_block_add_attention, layers_per_block)` });

  if (problems.length) {
    const shown = problems.slice(0, 8).map((p) => `  ${p.msg}`);
    if (problems.length > 8) shown.push(`  ... and ${problems.length - 8} more`);
    throw new DiffusersImportError(`${label}: ${problems.length} problem${problems.length > 1 ? 's' : ''} with the checkpoint:\n${shown.join('\n')}`, {
      tensor: problems[0]!.tensor,
      problems: problems.map((p) => p.msg),
    });
  }

  const out = new Map<string, HostTensor>();
  for (const [name, want] of wanted) {
    const t = weights.read(byCanonical.get(name)!);
    out.set(name, t.dtype === want.dtype ? t : fromFloat64(want.dtype, t.shape, toFloat64(t)));
  }
  return out;
}

// ------------------------------------------------------------------------------ import

export interface ImportVaeOptions {
  /** dtype of the emitted graphs' weights and inputs/outputs (default f32); checkpoint floats are converted */
  dtype?: 'f32' | 'f16' | 'bf16';
  /** weights file variant: diffusion_pytorch_model.<variant>.safetensors (e.g. 'fp16') */
  variant?: string;
  /** encoder samples mean + std * noise (a `noise` input) instead of returning the mode */
  sample?: boolean;
  /** static latent size [h, w] instead of symbolic latent_h / latent_w */
  latentSize?: readonly [number, number];
  /** ignore checkpoint tensors the config does not use (default: an error) */
  allowUnexpected?: boolean;
}

export interface ImportedVae {
  outDir: string;
  encoder: string;
  decoder: string;
  manifest: string;
  config: VaeConfig;
  paramCount: number;
}

export interface VaeManifest {
  format: 'unifusion-vae';
  source: string;
  className: string;
  config: VaeConfig;
  /** image side = latent side * factor */
  factor: number;
  /** encoder: latent = (z - shift) * scale; decoder: z = latent / scale + shift (per channel when arrays) */
  latentShift: number | number[];
  latentScale: number | number[];
  graphs: { encoder: Manifest; decoder: Manifest };
}

/**
 * Read a diffusers AutoencoderKL folder (or a pipeline root with a vae/ subfolder) and write
 * `vae_encoder.onnx`, `vae_decoder.onnx` (each with its `.onnx.data`) and `manifest.json` into
 * `outDir`. All or nothing: on any error `outDir` is left as it was (absent if it was absent).
 */
export async function importDiffusersVae(dir: string, outDir: string, opts: ImportVaeOptions = {}): Promise<ImportedVae> {
  const vaeDir = findDiffusersVaeDir(dir);
  if (!vaeDir) throw new DiffusersImportError(`${dir}: no config.json (nor vae/config.json): not a diffusers VAE folder`);
  const configPath = path.join(vaeDir, 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(await fsp.readFile(configPath, 'utf8'));
  } catch (e) {
    throw new DiffusersImportError(`${configPath}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const config: VaeConfig = { ...vaeConfigFromDiffusers(json, configPath), dtype: opts.dtype ?? 'f32' };
  const encoder = traceVaeEncoder(config, { sample: opts.sample, latentSize: opts.latentSize });
  const decoder = traceVaeDecoder(config, { latentSize: opts.latentSize });

  const weights = DiffusersWeights.open(vaeDir, { variant: opts.variant });
  let params: Map<string, HostTensor>;
  try {
    params = loadGraphParams(weights, [encoder, decoder], { allowUnexpected: opts.allowUnexpected });
  } finally {
    weights.close();
  }

  const enc = compileGraph(encoder, { weights: 'external', paramValues: params });
  const dec = compileGraph(decoder, { weights: 'external', paramValues: params });
  const affine = latentAffine(config);
  const manifest: VaeManifest = {
    format: 'unifusion-vae',
    source: path.resolve(vaeDir),
    className: String((json as { _class_name: unknown })._class_name),
    config,
    factor: vaeFactor(config),
    latentShift: affine.shift,
    latentScale: affine.scale,
    graphs: { encoder: enc.manifest, decoder: dec.manifest },
  };
  const abs = path.resolve(outDir);
  await writeFolderAtomically(
    abs,
    async (stage) => {
      await writeModel(stage, encoder.name, enc.emitted);
      await writeModel(stage, decoder.name, dec.emitted);
      await atomicWrite(path.join(stage, 'manifest.json'), async (fh) => {
        await fh.write(JSON.stringify(manifest, null, 2) + '\n');
      });
    },
    [{ path: vaeDir, what: '<vae folder>' }],
  );
  return {
    outDir: abs,
    encoder: path.join(abs, `${encoder.name}.onnx`),
    decoder: path.join(abs, `${decoder.name}.onnx`),
    manifest: path.join(abs, 'manifest.json'),
    config,
    paramCount: encoder.paramCount() + decoder.paramCount(),
  };
}

function latentAffine(cfg: VaeConfig): { shift: number | number[]; scale: number | number[] } {
  if (cfg.latentsMean && cfg.latentsStd) return { shift: [...cfg.latentsMean], scale: cfg.latentsStd.map((s) => cfg.scalingFactor / s) };
  return { shift: cfg.shiftFactor, scale: cfg.scalingFactor };
}

/**
 * Fill a staging folder beside `outDir`, then put it in place (src/io/outdir.ts, the output
 * discipline every command shares): a missing or empty `outDir` becomes the new output in one
 * rename, an earlier output of ours is replaced exactly, and into a folder holding other files
 * ours are moved in beside them (theirs are kept; one under a name we write stops it). On failure
 * nothing is left, parent folders made for it included. `outDir` may not overlap `inputs`.
 */
export async function writeFolderAtomically(outDir: string, fill: (stage: string) => Promise<void>, inputs: readonly InputPath[] = []): Promise<void> {
  await writeOutputDir({ out: outDir, inputs, force: true, command: 'import-hf' }, fill);
}
