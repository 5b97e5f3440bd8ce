// `unifusion import-hf <dir> --out DIR [--taps ...]`: a Hugging Face checkpoint folder (config.json
// + safetensors, sharded or not) -> the matching graph compiled to ONNX with the checkpoint's
// weights as external data.
//
// Order of work, so that failures are cheap and leave nothing behind: read the config, build and
// optimise the graph (weights not materialised), match every parameter against the checkpoint
// headers (name, shape, dtype), and only then stream the weights, tensor by tensor and converted
// to the graph's dtype, into a temp folder next to DIR that is renamed into place at the end.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compileGraph, type Manifest } from '../compiler.ts';
import { isTarget, TARGETS, type Target } from '../ir/target.ts';
import { DEFAULT_TARGET } from '../passes/fusion/targets.ts';
import { writeModelStreaming } from '../../codegen/onnx/external-writer.ts';
import { setModelMetadata } from '../../codegen/onnx/emit.ts';
import { displayPath, MARKER, preflightOutputDir, writeOutputDir, type OutputTarget } from '../io/outdir.ts';
import type { Graph } from '../ir/graph.ts';
import type { DType } from '../ir/dtype.ts';
import type { HostTensor } from '../io/host.ts';
import { detectNameRules, HfCheckpoint, HfError, planWeights, readHfConfig, applyRules, type HfConfig, type NameRule, type WeightPlan } from '../io/hf.ts';
import { importDiffusersVae, type VaeManifest } from '../io/diffusers.ts';
import { buildEncoder, ENCODER_FAMILIES } from '../../graphs/vlm/index.ts';
import { internvlEncoderFromHF } from '../../graphs/vlm/internvl.ts';
import { t5EncoderFromHF } from '../../graphs/vlm/t5.ts';
import { copyPackageFiles, shareExternalData, vlmGraphs } from './import-vlm.ts';

/** One graph to write, with the checkpoint its weights come from. */
export interface ImportGraph {
  graph: Graph;
  /**
   * The checkpoint names a graph parameter may be stored under, most likely first (the first that
   * exists is used). Default: `checkpointPrefixes`, else prefix rules detected from the names.
   */
  checkpointNames?: (graphName: string) => readonly string[];
  /** prefixes checkpoints of this family keep the graph's names under ('model.', 'language_model.model.', ...) */
  checkpointPrefixes?: readonly string[];
}

export type WeightDType = 'f32' | 'f16' | 'bf16';

export interface BuildOptions {
  /** the raw --taps value; families without taps reject it */
  taps?: string;
  /** parameter (and compute) dtype of the graph; default f32 */
  dtype?: WeightDType;
}

/**
 * A family of checkpoints the importer knows: either how to build its graph(s) from config.json
 * (the importer matches and streams the weights), or an importer of its own that fills a folder.
 */
export interface ImportFamily {
  /** e.g. "qwen2, llama (decoder LLMs)" for the unknown-architecture message */
  label: string;
  matches(config: HfConfig): boolean;
  build?(config: HfConfig, opts: BuildOptions): ImportGraph[] | Promise<ImportGraph[]>;
  /** write everything into `stage` (which does not exist yet); the caller moves it into place */
  importInto?(src: string, stage: string, opts: BuildOptions): Promise<{ models: ImportedModel[]; ignored?: string[] }>;
  /** checkpoint file basename (default 'model') */
  weightsBasename?: string;
  /** also write the VLM package parts (generation graph, vision graph, tokenizer files): import-vlm.ts */
  vlm?: boolean;
}

export interface ImportOptions {
  out: string;
  taps?: string;
  dtype?: WeightDType;
  /**
   * execution provider the graphs are fused and lowered for (src/passes/fusion/targets.ts), as
   * `compile --target`; default 'cpu' (the runtime of this project). The diffusers VAE importer
   * (src/io/diffusers.ts) compiles its own graphs and does not take it.
   */
  target?: Target;
  /** write into a DIR holding files unifusion did not write (they are kept); DIR may still never overlap the checkpoint */
  force?: boolean;
  /** families to try, in order (default: the built-in registry) */
  families?: readonly ImportFamily[];
  /** called with progress lines */
  log?: (line: string) => void;
}

export interface ImportedModel {
  onnx: string;
  externalData?: string;
  manifest: Manifest;
}

export interface ImportResult {
  out: string;
  family: string;
  /** config.json's model_type (or diffusers _class_name) */
  modelType: string;
  models: ImportedModel[];
  /** checkpoint tensors no graph used (lm_head, layers past the last tap, ...) */
  ignored: string[];
  /** tensors converted, by "from->to" */
  conversions: Record<string, number>;
  /** the VLM package parts (decoder LLMs and InternVL): see import-vlm.ts */
  vlm?: { generation?: ImportedModel; vision?: ImportedModel; files: string[]; skipped?: string };
}

/** Without --taps: every third layer, as the paper taps its VLM. */
export const DEFAULT_TAPS = 'every:3';

const hasKey = (o: object, k: unknown): k is string => typeof k === 'string' && Object.hasOwn(o, k);

/** Decoder LLMs by model_type (graphs/vlm/index.ts): names under the family's hub prefixes. */
const decoderFamily: ImportFamily = {
  label: `${Object.keys(ENCODER_FAMILIES).join(', ')} (decoder LLMs)`,
  matches: (c) => hasKey(ENCODER_FAMILIES, c.model_type),
  vlm: true,
  build(c, o) {
    const enc = buildEncoder(c, o.taps ?? DEFAULT_TAPS, { dtype: o.dtype });
    return [{ graph: enc.trace(), checkpointPrefixes: enc.hubPrefixes }];
  },
};

/** InternVL ("-hf" / transformers layout): InternViT + projector + LLM; adds a pixel_values input. */
const internvlFamily: ImportFamily = {
  label: 'internvl (InternVL3 text+image)',
  matches: (c) => c.model_type === 'internvl',
  vlm: true,
  build(c, o) {
    const enc = internvlEncoderFromHF(c, o.taps ?? DEFAULT_TAPS, { dtype: o.dtype });
    return [{ graph: enc.trace(), checkpointNames: enc.checkpointNames }];
  },
};

/** The T5 encoder (T5EncoderModel files, or the encoder half of T5ForConditionalGeneration). */
const t5Family: ImportFamily = {
  label: 't5 (T5 encoder)',
  matches: (c) => c.model_type === 't5',
  build(c, o) {
    const enc = t5EncoderFromHF(c, o.taps ?? DEFAULT_TAPS, { dtype: o.dtype });
    return [{ graph: enc.trace(), checkpointNames: enc.checkpointNames }];
  },
};

/** diffusers AutoencoderKL folders: encoder and decoder graphs, by src/io/diffusers.ts. */
const vaeFamily: ImportFamily = {
  label: 'AutoencoderKL (diffusers VAE, by _class_name)',
  matches: (c) => c._class_name === 'AutoencoderKL',
  async importInto(src, stage, o) {
    if (o.taps !== undefined) throw new HfError(`--taps does not apply to a VAE (${path.join(src, 'config.json')} is an AutoencoderKL)`);
    const r = await importDiffusersVae(src, stage, { dtype: o.dtype });
    const m = JSON.parse(fs.readFileSync(r.manifest, 'utf8')) as VaeManifest;
    const model = (mf: Manifest): ImportedModel => ({ onnx: mf.onnx, externalData: mf.externalData, manifest: mf });
    return { models: [model(m.graphs.encoder), model(m.graphs.decoder)] };
  },
};

/** The built-in registry: HF model families (by model_type) and the diffusers VAE. */
export function defaultFamilies(): ImportFamily[] {
  return [decoderFamily, internvlFamily, t5Family, vaeFamily];
}

/** Layouts we do not read but whose readable twin exists. */
const HINTS: Record<string, string> = {
  internvl_chat: "this is the original OpenGVLab remote-code layout; use the transformers '-hf' checkpoint (e.g. OpenGVLab/InternVL3-8B-hf, model_type internvl)",
};

const modelTypeOf = (c: HfConfig): string => String(c.model_type ?? c._class_name);

function describeArch(config: HfConfig): string {
  const bits = [];
  if (typeof config.model_type === 'string') bits.push(`model_type '${config.model_type}'`);
  if (typeof config._class_name === 'string') bits.push(`_class_name '${config._class_name}'`);
  if (Array.isArray(config.architectures)) bits.push(`architectures [${config.architectures.join(', ')}]`);
  return bits.length ? bits.join(', ') : 'no model_type or _class_name';
}

export async function importHf(src: string, opts: ImportOptions): Promise<ImportResult> {
  const log = opts.log ?? (() => {});
  if (opts.dtype !== undefined && !['f32', 'f16', 'bf16'].includes(opts.dtype)) throw new HfError(`--dtype must be f32, f16 or bf16, got '${opts.dtype}'`);
  if (opts.target !== undefined && !isTarget(opts.target)) throw new HfError(`--target must be one of ${TARGETS.join(', ')}, got '${opts.target}'`);
  const fuseFor: Target = opts.target ?? DEFAULT_TARGET;
  // a diffusers pipeline root: its VAE lives in vae/
  if (!fs.existsSync(path.join(src, 'config.json')) && fs.existsSync(path.join(src, 'vae', 'config.json'))) src = path.join(src, 'vae');
  const config = readHfConfig(src);
  const families = opts.families ?? defaultFamilies();
  const family = families.find((f) => f.matches(config));
  if (!family) {
    const hint = typeof config.model_type === 'string' ? HINTS[config.model_type] : undefined;
    throw new HfError(
      `${path.join(src, 'config.json')}: unsupported architecture (${describeArch(config)}); supported: ${families.map((f) => f.label).join('; ') || 'none'}${hint ? ` (${hint})` : ''}`,
    );
  }

  const out = path.resolve(opts.out);
  // The output may not be, contain or lie inside the checkpoint (--force does not change that),
  // and a folder of someone else's files is refused unless --force (they are kept even then).
  const target: OutputTarget = { out: opts.out, inputs: [{ path: src, what: '<checkpoint>' }], force: opts.force, command: 'import-hf' };
  await preflightOutputDir(target);
  const buildOpts: BuildOptions = { taps: opts.taps, dtype: opts.dtype };

  if (family.importInto) {
    const importInto = family.importInto;
    // importInto fills a folder that does not exist yet: a subfolder of the staging folder, moved up
    const w = await writeOutputDir(target, async (stage) => {
      const inner = path.join(stage, '.import');
      const r = await importInto(src, inner, buildOpts);
      for (const f of fs.readdirSync(inner)) if (f !== MARKER) fs.renameSync(path.join(inner, f), path.join(stage, f));
      fs.rmSync(inner, { recursive: true, force: true });
      return r;
    });
    return { out, family: family.label, modelType: modelTypeOf(config), models: w.result.models, ignored: w.result.ignored ?? [], conversions: {} };
  }
  if (!family.build) throw new HfError(`family '${family.label}' can neither build graphs nor import`);

  const ckptRef: { c?: HfCheckpoint } = {};
  try {
    const graphs = await family.build(config, buildOpts);
    const ckpt = (ckptRef.c = HfCheckpoint.open(src, { basename: family.weightsBasename }));
    // Every layer config.json declares must be in the checkpoint, tapped or not: a checkpoint
    // missing layers is broken (a truncated download, a wrong config), whatever the taps use.
    if (buildOpts.taps !== 'last') checkDeclaredLayers(await family.build(config, { ...buildOpts, taps: 'last' }), graphs, ckpt, path.join(src, 'config.json'));
    // Compile and plan every graph before writing anything.
    const planned = graphs.map((g) => plan(g, ckpt, fuseFor));
    // VLM package: generation (+ vision) graphs, which own the weights the encoder then shares
    const vlm = family.vlm ? vlmGraphs(config, { taps: opts.taps ?? DEFAULT_TAPS, dtype: opts.dtype }, ckpt) : undefined;
    const vlmGraphList = vlm && 'generation' in vlm ? [vlm.generation, ...(vlm.vision ? [vlm.vision] : [])] : [];
    const vlmPlanned = vlmGraphList.map((g) => plan(g, ckpt, fuseFor));
    for (const p of planned) shareExternalData(p, vlmPlanned);
    const used = new Set<string>();
    for (const p of [...planned, ...vlmPlanned]) for (const c of p.weights.source.values()) used.add(c);
    const ignored = ckpt.names().filter((n) => !used.has(n));
    const conversions: Record<string, number> = {};
    const counted = new Set<string>(); // a tensor two graphs share is converted once
    for (const p of [...planned, ...vlmPlanned])
      for (const n of p.compiled.graph.params()) {
        const src = p.weights.source.get(n.params.name)!;
        const key = `${ckpt.info(src).dtype}->${n.dtype}`;
        if (counted.has(`${src}|${n.dtype}`)) continue;
        counted.add(`${src}|${n.dtype}`);
        if (!key.startsWith(`${n.dtype}->`)) conversions[key] = (conversions[key] ?? 0) + 1;
      }

    const models: ImportedModel[] = [];
    const vlmModels: ImportedModel[] = [];
    let packageFiles: string[] = [];
    await writeOutputDir(target, async (tmp) => {
      // the VLM graphs first: they own the data files the encoder graph points into
      for (const p of [...vlmPlanned, ...planned]) {
        const name = p.compiled.graph.name;
        const params = new Map(p.compiled.graph.params().map((n) => [n.params.name, n.params]));
        // emitted as a skeleton, filled with the checkpoint's weights here: a complete model
        setModelMetadata(p.compiled.emitted.model, 'weights', 'external');
        setModelMetadata(p.compiled.emitted.model, 'source', path.resolve(src));
        const shared = p.compiled.emitted.external.length === 0 && p.compiled.manifest.externalData;
        log(shared ? `writing ${name}.onnx (its weights are in ${shared})` : `writing ${name}.onnx: ${p.compiled.emitted.external.length} external tensors, ${fmtBytes(p.compiled.emitted.externalBytes)}`);
        const w = await writeModelStreaming(tmp, name, p.compiled.emitted, (chunk, write) => {
          ckpt.stream(p.weights.source.get(chunk.name)!, params.get(chunk.name)!.dtype, write);
        });
        const manifest: Manifest = { ...p.compiled.manifest, weights: 'external', metadata: { ...p.compiled.manifest.metadata, weights: 'external', source: path.resolve(src) } };
        (vlmPlanned.includes(p) ? vlmModels : models).push({ onnx: path.basename(w.onnxPath), externalData: (w.dataPath && path.basename(w.dataPath)) ?? manifest.externalData, manifest });
      }
      if (family.vlm) packageFiles = copyPackageFiles(src, tmp);
      const record = {
        format: 'unifusion-import',
        source: path.resolve(src),
        family: family.label,
        modelType: modelTypeOf(config),
        taps: opts.taps ?? DEFAULT_TAPS,
        dtype: opts.dtype ?? 'f32',
        checkpointTensors: ckpt.size,
        ignoredTensors: ignored.length,
        conversions,
        models: models.map((m) => m.manifest),
        ...(family.vlm ? { vlm: { generation: vlmModels[0]?.manifest, vision: vlmModels[1]?.manifest, files: packageFiles, skipped: vlm && !('generation' in vlm) ? vlm.skipped : undefined } } : {}),
      };
      fs.writeFileSync(path.join(tmp, 'manifest.json'), JSON.stringify(record, null, 2) + '\n');
    });
    const vlmResult = family.vlm ? { generation: vlmModels[0], vision: vlmModels[1], files: packageFiles, skipped: vlm && !('generation' in vlm) ? vlm.skipped : undefined } : undefined;
    if (vlmResult?.skipped) log(vlmResult.skipped);
    return { out, family: family.label, modelType: modelTypeOf(config), models, ignored, conversions, ...(vlmResult ? { vlm: vlmResult } : {}) };
  } finally {
    ckptRef.c?.close();
  }
}

/**
 * Check the parameters of every layer config.json declares (the graphs built with taps 'last')
 * against the checkpoint headers, names and shapes, before anything is compiled or written.
 * Only what the tapped graphs do not already cover is looked at again.
 */
function checkDeclaredLayers(full: ImportGraph[], tapped: ImportGraph[], ckpt: HfCheckpoint, configFile: string): void {
  const covered = new Set(tapped.flatMap((g) => g.graph.params().map((p) => p.params.name)));
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const g of full) {
    const resolve = resolverFor(g, ckpt);
    for (const p of g.graph.params()) {
      const name = p.params.name;
      if (covered.has(name)) continue;
      const c = resolve(name);
      if (!ckpt.has(c)) missing.push(c);
      else {
        const t = ckpt.info(c);
        if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) wrong.push(`'${c}' is [${t.shape.join(', ')}], config.json implies [${p.shape.join(', ')}]`);
      }
    }
  }
  if (!missing.length && !wrong.length) return;
  const layers = [...new Set(missing.map((n) => /(?:^|\.)layers?\.(\d+)\./.exec(n)?.[1]).filter((x): x is string => x !== undefined))].map(Number).sort((a, b) => a - b);
  const span = layers.length ? ` (layer${layers.length > 1 ? 's' : ''} ${compactRanges(layers)})` : '';
  const shown = [...missing.slice(0, 4).map((n) => `missing '${n}'`), ...wrong.slice(0, 4)];
  const more = missing.length + wrong.length - shown.length;
  throw new HfError(
    `${configFile} declares layers the checkpoint in ${ckpt.dir} does not hold${span}: ${shown.join('; ')}${more > 0 ? `; ... and ${more} more` : ''}. ` +
      `The checkpoint is incomplete (an interrupted download?) or config.json belongs to another model; every declared layer is checked, tapped or not`,
  );
}

function compactRanges(xs: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    parts.push(i === j ? `${xs[i]}` : `${xs[i]}..${xs[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

/** graph param name -> checkpoint name, as plan() resolves it. */
function resolverFor(g: ImportGraph, ckpt: HfCheckpoint): (n: string) => string {
  if (g.checkpointNames) {
    const names = g.checkpointNames;
    return (n) => {
      const c = names(n);
      return c.find((x) => ckpt.has(x)) ?? c[0] ?? n;
    };
  }
  const r = nameRules(g, ckpt);
  return (n) => applyRules(n, r, (c) => ckpt.has(c));
}

interface Planned {
  compiled: ReturnType<typeof compileGraph>;
  weights: WeightPlan;
}

/**
 * Name rules from the traced graph (a superset of what survives optimisation): the family's
 * checkpoint prefix that explains every name, else rules detected from the names themselves.
 */
function nameRules(g: ImportGraph, ckpt: HfCheckpoint): NameRule[] {
  const names = g.graph.params().map((p) => p.params.name);
  const hits = (rules: NameRule[]) => names.filter((n) => ckpt.has(applyRules(n, rules, (c) => ckpt.has(c)))).length;
  let best: NameRule[] = [];
  let bestHits = -1;
  for (const add of g.checkpointPrefixes ?? []) {
    const r = [{ strip: '', add }];
    const h = hits(r);
    if (h > bestHits) (best = r), (bestHits = h);
  }
  if (bestHits === names.length) return best;
  const detected = detectNameRules(names, ckpt.names());
  return hits(detected) > bestHits ? detected : best;
}

function plan(g: ImportGraph, ckpt: HfCheckpoint, target: Target): Planned {
  let rules: NameRule[] = [];
  let resolve: (n: string) => string;
  if (g.checkpointNames) {
    const names = g.checkpointNames;
    resolve = (n) => {
      const c = names(n);
      return c.find((x) => ckpt.has(x)) ?? c[0] ?? n;
    };
  } else {
    const r = (rules = nameRules(g, ckpt));
    resolve = (n) => applyRules(n, r, (c) => ckpt.has(c));
  }
  // Small params are embedded by the emitter, so it asks for their values; anything that does not
  // match returns undefined here and is reported by planWeights below, before any write.
  const specs = new Map(g.graph.params().map((p) => [p.params.name, p.params]));
  const small = new LazyValues(specs, (name, dtype, shape) => {
    const c = resolve(name);
    if (!ckpt.has(c)) return undefined;
    const t = ckpt.info(c);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) return undefined;
    try {
      return ckpt.readAs(c, dtype);
    } catch {
      return undefined;
    }
  });
  const compiled = compileGraph(g.graph, { weights: 'skeleton', paramValues: small, target });
  const params = compiled.graph.params().map((p) => ({ name: p.params.name, dtype: p.dtype, shape: p.shape as number[] }));
  const weights = planWeights(params, ckpt, { checkpointName: resolve, rules, candidates: g.checkpointNames });
  return { compiled, weights };
}

/** paramValues that read (small, embedded) params from the checkpoint when the emitter asks. */
class LazyValues extends Map<string, HostTensor> {
  constructor(
    private readonly specs: ReadonlyMap<string, { dtype: DType; shape: readonly number[] }>,
    private readonly load: (name: string, dtype: DType, shape: readonly number[]) => HostTensor | undefined,
  ) {
    super();
  }
  override get(name: string): HostTensor | undefined {
    const s = this.specs.get(name);
    return s ? this.load(name, s.dtype, s.shape) : undefined;
  }
  override has(name: string): boolean {
    return this.specs.has(name);
  }
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) (v /= 1024), i++;
  return `${v.toFixed(1)} ${u[i]}`;
}

export interface ImportCommandOptions {
  out: string;
  taps?: string;
  dtype?: WeightDType;
  target?: string;
  force?: boolean;
  quiet?: boolean;
}

export async function importHfCommand(src: string, opts: ImportCommandOptions): Promise<void> {
  const t0 = performance.now();
  const say = (s: string) => {
    if (!opts.quiet) process.stdout.write(s + '\n');
  };
  const r = await importHf(src, { out: opts.out, taps: opts.taps, dtype: opts.dtype, target: opts.target as Target | undefined, force: opts.force, log: say });
  const rel = displayPath;
  const lines = [`imported ${rel(src)} (${r.modelType}) -> ${rel(r.out)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`];
  for (const m of [...r.models, ...(r.vlm?.generation ? [r.vlm.generation] : []), ...(r.vlm?.vision ? [r.vlm.vision] : [])]) {
    const mf = m.manifest;
    lines.push(
      `  ${m.onnx}${m.externalData ? ` + ${m.externalData}` : ''}: ${mf.paramCount.toLocaleString('en-US')} params in ${mf.params.length} tensors`,
      `    inputs:  ${mf.inputs.map((i) => `${i.name} ${i.dtype}[${i.shape.join(', ')}]`).join('; ')}`,
      `    outputs: ${mf.outputs.map((i) => `${i.name} ${i.dtype}[${i.shape.join(', ')}]`).join('; ')}`,
    );
  }
  if (r.vlm?.files.length) lines.push(`  package files: ${r.vlm.files.join(', ')}`);
  const conv = Object.entries(r.conversions).map(([k, n]) => `${n} ${k}`);
  if (conv.length) lines.push(`  converted: ${conv.join(', ')}`);
  if (r.ignored.length) lines.push(`  ignored ${r.ignored.length} checkpoint tensor(s) the graph does not use (e.g. ${r.ignored.slice(0, 3).join(', ')})`);
  say(lines.join('\n'));
}
