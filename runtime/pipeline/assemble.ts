// assemble: VLM package + UniFusion DiT + VAE (or pixel space) -> one pipeline folder, with every
// mismatch (taps the VLM does not emit, widths, latent channels) caught before anything is written.
//
// The DiT comes as a compiled graph (an .onnx with its manifest.json beside it, e.g. from
// `compile --params`) or as a `train` run folder of image training (unifusion.json names the
// UniFusion config; its params, EMA by default, are baked into the taps-mode graph here).
import { constants as fsc, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { compileGraph, writeCompiled, type Manifest, type TensorDesc } from '../../src/compiler.ts';
import { trace } from '../../src/dsl/index.ts';
import { writeOutputDir, type InputPath } from '../../src/io/outdir.ts';
import { writeManifestBindings } from '../../codegen/ts/write.ts';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { uniFusionForward, type UniFusionConfig } from '../../graphs/unifusion.ts';
import type { VaeManifest } from '../../src/io/diffusers.ts';
import type { DynamicShift } from '../sampler/schedule.ts';
import { checkCondition, type Condition } from './condition.ts';
import { listFiles, PIPELINE_FILE, PIPELINE_FORMAT, PIPELINE_VERSION, PipelineError, sha256File, type LatentFormat, type PipelineJson, type SchedulerDefaults } from './format.ts';
import { loadTrainedParams, matchParams } from './params.ts';
import { LATENTS_INPUT, TIMESTEP_INPUT, VELOCITY_OUTPUT } from './pipeline.ts';

/** What an image-training run records about its model (run/unifusion.json). */
export interface RunModel {
  format: 'unifusion-run-model';
  config: UniFusionConfig;
  /** trace seed of the graph (param init of anything not trained) */
  seed?: number;
  latent: LatentFormat;
  /** training size [w, h] */
  size: [number, number];
  /** the dropped condition used for CFG dropout, relative to the run folder */
  nullCondition?: string;
  /** sha256 of the VAE decoder graph the latents came from */
  vaeDecoderSha256?: string;
  systemPrompt?: string;
}

export const RUN_MODEL_FILE = 'unifusion.json';

export interface AssembleOptions {
  /** VLM package folder (import-hf output); omitted: conditions come from the caller */
  vlm?: string;
  /** DiT: .onnx (manifest.json beside it) or an image-training run folder */
  dit: string;
  /** also write typed TypeScript bindings of the DiT, dit/<name>.ts (codegen/ts) */
  bindings?: boolean;
  /** VAE folder (import-hf output); omitted: pixel space */
  vae?: string;
  out: string;
  force?: boolean;
  name?: string;
  /** the dropped condition (safetensors); default: the run's */
  nullCondition?: string;
  /** pixel space: latent = (rgb - shift) * scale; default: the run's, else 0 / 1 */
  pixelShift?: number | number[];
  pixelScale?: number | number[];
  /** run folders: EMA weights (default: when present) */
  ema?: boolean;
  size?: [number, number];
  scheduler?: Partial<SchedulerDefaults>;
  systemPrompt?: string;
  rewrite?: boolean;
  dropTemplate?: boolean;
  log?: (line: string) => void;
}

export interface AssembleResult {
  dir: string;
  json: PipelineJson;
  files: string[];
}

const readJson = async <T>(file: string, what: string): Promise<T> => {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    throw new PipelineError(`${what}: cannot read '${file}'`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new PipelineError(`${what}: '${file}' is not valid JSON (${(e as Error).message})`);
  }
};

async function isDir(p: string): Promise<boolean> {
  return (await fs.stat(p).catch(() => null))?.isDirectory() ?? false;
}

async function copyInto(src: string, dest: string): Promise<void> {
  await fs.mkdir(path.dirname(dest), { recursive: true });
  await fs.copyFile(src, dest, fsc.COPYFILE_FICLONE);
}

/** patch size from a latents dim like 'h*2' */
function patchOf(d: number | string | undefined): number | undefined {
  if (typeof d !== 'string') return undefined;
  const m = /^[a-z_]+\*(\d+)$/.exec(d) ?? /^(\d+)\*[a-z_]+$/.exec(d);
  return m ? Number(m[1]) : undefined;
}

interface DitSource {
  /** fill `stage/dit/` */
  write(stageDit: string): Promise<{ onnx: string; manifest: Manifest }>;
  manifest: Pick<Manifest, 'inputs' | 'outputs'>;
  run?: { dir: string; model: RunModel };
}

async function ditSource(o: AssembleOptions, log: (s: string) => void): Promise<DitSource> {
  const src = o.dit;
  if (await isDir(src)) {
    const modelFile = path.join(src, RUN_MODEL_FILE);
    const model = await readJson<RunModel>(modelFile, `--dit '${src}'`).catch(() => {
      throw new PipelineError(`--dit '${src}' is a folder without ${RUN_MODEL_FILE}: give an image-training run folder, or a compiled DiT .onnx (e.g. \`unifusion compile graphs/unifusion.ts --params RUN\`)`);
    });
    if (model.format !== 'unifusion-run-model') throw new PipelineError(`${modelFile}: not a unifusion run model description`);
    const graph = trace('unifusion', () => ({ velocity: uniFusionForward(model.config).velocity }), { seed: model.seed });
    const trained = loadTrainedParams([src], { ema: o.ema });
    matchParams(graph, trained, { allowUnused: true, label: `--dit '${src}'` });
    log(`DiT: ${model.config.conditioning} UniFusion from run '${src}' (${trained.ema ? 'EMA' : 'raw'} weights)`);
    const compiled = compileGraph(graph, { paramValues: trained.params, weights: 'auto' });
    return {
      manifest: compiled.manifest,
      run: { dir: src, model },
      async write(stageDit) {
        const w = await writeCompiled(stageDit, compiled);
        return { onnx: path.basename(w.onnxPath), manifest: compiled.manifest };
      },
    };
  }
  if (!src.endsWith('.onnx')) throw new PipelineError(`--dit '${src}': give a DiT .onnx file (with its manifest.json) or an image-training run folder`);
  await fs.access(src).catch(() => {
    throw new PipelineError(`--dit '${src}': no such file`);
  });
  const manifestFile = path.join(path.dirname(src), 'manifest.json');
  const manifest = await readJson<Manifest>(manifestFile, `--dit '${src}' needs the manifest.json written beside it by \`unifusion compile\``);
  return {
    manifest,
    async write(stageDit) {
      await copyInto(src, path.join(stageDit, path.basename(src)));
      if (manifest.externalData) await copyInto(path.join(path.dirname(src), manifest.externalData), path.join(stageDit, manifest.externalData));
      await copyInto(manifestFile, path.join(stageDit, 'manifest.json'));
      return { onnx: path.basename(src), manifest };
    },
  };
}

/** Build a pipeline folder. On any error nothing is left at `out`. */
export async function assemble(o: AssembleOptions): Promise<AssembleResult> {
  const log = o.log ?? (() => {});
  const dit = await ditSource(o, log);
  const ins = dit.manifest.inputs;
  const lat = ins.find((i) => i.name === LATENTS_INPUT), ts = ins.find((i) => i.name === TIMESTEP_INPUT);
  if (!lat || !ts || !dit.manifest.outputs.some((x) => x.name === VELOCITY_OUTPUT))
    throw new PipelineError(`--dit '${o.dit}': not a UniFusion DiT graph (it needs inputs '${LATENTS_INPUT}', '${TIMESTEP_INPUT}' and output '${VELOCITY_OUTPUT}'; it has inputs ${ins.map((i) => `'${i.name}'`).join(', ')})`);
  const channels = lat.shape[1];
  const patch = patchOf(lat.shape[2]) ?? dit.run?.model.config.dit.patch;
  if (typeof channels !== 'number' || !patch) throw new PipelineError(`--dit '${o.dit}': cannot read the latent channels / patch from latents ${lat.dtype}[${lat.shape.join(', ')}]`);
  const condInputs: TensorDesc[] = ins.filter((i) => i !== lat && i !== ts);
  const hiddenIns = condInputs.filter((i) => i.name.startsWith('hidden_states.'));
  const taps = hiddenIns.map((i) => Number(i.name.slice('hidden_states.'.length))).sort((a, b) => a - b);
  const widths = new Set(hiddenIns.map((i) => i.shape[2]));
  if (widths.size > 1) throw new PipelineError(`--dit '${o.dit}': its hidden_states inputs have different widths (${[...widths].join(', ')})`);
  const hE = Number([...widths][0] ?? 0);

  // the VLM must emit every tap at the DiT's width
  const inputs: InputPath[] = [{ path: o.dit, what: '--dit' }];
  if (o.vlm) {
    inputs.push({ path: o.vlm, what: '--vlm' });
    const vm = await readJson<{ models?: Manifest[] }>(path.join(o.vlm, 'manifest.json'), `--vlm '${o.vlm}' (an import-hf folder)`);
    const outs = new Map<string, TensorDesc>();
    for (const m of vm.models ?? []) for (const x of m.outputs) outs.set(x.name, x);
    const emitted = [...outs.keys()].filter((n) => n.startsWith('hidden_states.'));
    const lacking = hiddenIns.filter((i) => !outs.has(i.name)).map((i) => i.name);
    if (lacking.length)
      throw new PipelineError(`--vlm '${o.vlm}' does not emit ${lacking.join(', ')}, which the DiT takes (the VLM emits ${emitted.join(', ') || 'no hidden states'}); re-import it with --taps list:${taps.join(',')}`);
    for (const i of hiddenIns) {
      const w = outs.get(i.name)!.shape[2];
      if (w !== hE) throw new PipelineError(`--vlm '${o.vlm}': ${i.name} is ${w} wide, the DiT's condition width is ${hE}`);
    }
    if (!condInputs.some((i) => i.name === 'condition_mask')) throw new PipelineError(`--dit '${o.dit}': no condition_mask input`);
  }

  // latent format: the VAE's, or pixel space
  let latent: LatentFormat;
  let vaeManifest: VaeManifest | undefined;
  if (o.vae) {
    inputs.push({ path: o.vae, what: '--vae' });
    vaeManifest = await readJson<VaeManifest>(path.join(o.vae, 'manifest.json'), `--vae '${o.vae}' (an import-hf VAE folder)`);
    if (vaeManifest.format !== 'unifusion-vae') throw new PipelineError(`--vae '${o.vae}': manifest.json is not a unifusion VAE (format ${String(vaeManifest.format)})`);
    const lc = vaeManifest.config.latentChannels;
    if (lc !== channels) throw new PipelineError(`--vae '${o.vae}' has ${lc} latent channels, the DiT takes ${channels}`);
    if (vaeManifest.config.outChannels !== 3) throw new PipelineError(`--vae '${o.vae}' decodes ${vaeManifest.config.outChannels} channels; RGB output needs 3`);
    latent = { kind: 'vae', channels, patch, factor: vaeManifest.factor, shift: vaeManifest.latentShift, scale: vaeManifest.latentScale };
    if (dit.run?.model.latent.kind === 'pixel') throw new PipelineError(`--dit run '${o.dit}' was trained in pixel space; assemble it without --vae`);
    const want = dit.run?.model.vaeDecoderSha256;
    if (want && want !== (await sha256File(path.join(o.vae, vaeManifest.graphs.decoder.onnx)))) throw new PipelineError(`--vae '${o.vae}' is not the VAE run '${o.dit}' was trained with (its decoder's sha256 differs)`);
  } else {
    if (dit.run && dit.run.model.latent.kind === 'vae') throw new PipelineError(`--dit run '${o.dit}' was trained on VAE latents; give that VAE with --vae`);
    if (channels !== 3) throw new PipelineError(`no --vae: pixel space needs a 3-channel DiT, this one takes ${channels} latent channels (give the VAE with --vae)`);
    const r = dit.run?.model.latent;
    latent = { kind: 'pixel', channels: 3, patch, factor: 1, shift: o.pixelShift ?? r?.shift ?? 0, scale: o.pixelScale ?? r?.scale ?? 1 };
  }
  const multiple = latent.factor * patch;
  const size = o.size ?? dit.run?.model.size ?? [multiple * 16, multiple * 16];
  for (const v of size) if (v % multiple) throw new PipelineError(`--size ${size[0]}x${size[1]}: sides must be multiples of ${multiple} (VAE factor ${latent.factor} x patch ${patch})`);

  // the dropped condition
  let nullCondition: Condition | undefined;
  const ncFile = o.nullCondition ?? (dit.run?.model.nullCondition ? path.join(dit.run.dir, dit.run.model.nullCondition) : undefined);
  if (ncFile) {
    inputs.push({ path: ncFile, what: '--null-condition' });
    try {
      nullCondition = Object.fromEntries(readSafetensors(ncFile).tensors);
    } catch (e) {
      throw new PipelineError(`--null-condition '${ncFile}': ${(e as Error).message}`);
    }
    checkCondition(nullCondition, condInputs, `--null-condition '${ncFile}'`);
  } else if (o.vlm) {
    // the dropped condition is the empty prompt's, as the VLM encodes it (what training drops to)
    const { VlmPackage } = await import('../vlm/index.ts');
    const vlm = await VlmPackage.load(o.vlm);
    try {
      nullCondition = (await vlm.condition([{ prompt: '' }], { rewrite: false })).tensors;
    } finally {
      await vlm.close();
    }
    checkCondition(nullCondition, condInputs, `--vlm '${o.vlm}': the empty prompt's condition`);
    log("dropped condition for CFG: the empty prompt's, encoded by the VLM");
  } else log('no dropped condition given: CFG will need --true-cfg (the empty prompt encoded by the VLM)');

  const dyn: DynamicShift | undefined = o.scheduler?.dynamicShift;
  const scheduler: SchedulerDefaults = {
    steps: o.scheduler?.steps ?? 28,
    sampler: o.scheduler?.sampler ?? 'euler',
    guidance: o.scheduler?.guidance ?? (nullCondition ? 4 : 1),
    ...(dyn ? { dynamicShift: dyn } : { shift: o.scheduler?.shift ?? 1 }),
    cfgNorm: o.scheduler?.cfgNorm ?? false,
    cfgTruncation: o.scheduler?.cfgTruncation ?? 1,
    ...(o.scheduler?.terminal !== undefined ? { terminal: o.scheduler.terminal } : {}),
  };
  const cfg = dit.run?.model.config;
  const written = await writeOutputDir({ out: o.out, inputs, force: o.force, command: 'assemble' }, async (stage) => {
    const d = await dit.write(path.join(stage, 'dit'));
    // typed bindings of the DiT next to it (codegen/ts), hashed with the other files
    if (o.bindings) await writeManifestBindings(path.join(stage, 'dit'), { command: 'assemble' });
    let vae: PipelineJson['parts']['vae'] = null;
    if (o.vae && vaeManifest) {
      for (const f of await listFiles(o.vae)) if (!f.startsWith('.')) await copyInto(path.join(o.vae, f), path.join(stage, 'vae', f));
      vae = { dir: 'vae', decoder: `vae/${vaeManifest.graphs.decoder.onnx}`, encoder: `vae/${vaeManifest.graphs.encoder.onnx}` };
    }
    if (o.vlm) for (const f of await listFiles(o.vlm)) if (!f.startsWith('.')) await copyInto(path.join(o.vlm, f), path.join(stage, 'vlm', f));
    if (nullCondition) writeSafetensors(path.join(stage, 'null_condition.safetensors'), nullCondition, { what: 'the dropped condition (CFG unconditional branch)' });
    const files: Record<string, string> = {};
    for (const f of await listFiles(stage)) files[f] = await sha256File(path.join(stage, f));
    const json: PipelineJson = {
      format: PIPELINE_FORMAT,
      version: PIPELINE_VERSION,
      name: o.name ?? path.basename(path.resolve(o.out)),
      parts: { vlm: o.vlm ? { dir: 'vlm' } : null, dit: { onnx: `dit/${d.onnx}`, manifest: 'dit/manifest.json' }, vae },
      conditioning: {
        ...(cfg ? { variant: cfg.conditioning } : {}),
        taps,
        hidden: hE,
        inputs: condInputs.map((i) => i.name),
        dropTemplate: o.dropTemplate ?? true,
        ...((o.systemPrompt ?? dit.run?.model.systemPrompt) !== undefined ? { systemPrompt: o.systemPrompt ?? dit.run?.model.systemPrompt } : {}),
        rewrite: o.rewrite ?? false,
        ...(nullCondition ? { nullCondition: 'null_condition.safetensors' } : {}),
      },
      latent,
      resolutions: { multiple, default: size, ...(dit.run ? { trained: [dit.run.model.size] } : {}) },
      scheduler,
      files,
    };
    await fs.writeFile(path.join(stage, PIPELINE_FILE), JSON.stringify(json, null, 2) + '\n');
    return json;
  });
  return { dir: written.dir, json: written.result, files: written.files };
}
