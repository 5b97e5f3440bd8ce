// `unifusion import-hf <dir> --out DIR [--taps ...]`: a Hugging Face checkpoint folder (config.json
// + safetensors, sharded or not) -> the matching graph compiled to ONNX with the checkpoint's
// weights as external data.
//
// Order of work, so that failures are cheap and leave nothing behind: read the config, build and
// optimise the graph (weights not materialised), match every parameter against the checkpoint
// headers (name, shape, dtype), and only then stream the weights, tensor by tensor and converted
// to the graph's dtype, into a temp folder next to DIR that is renamed into place at the end.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compileGraph, type Manifest } from '../compiler.ts';
import { writeModelStreaming } from '../../codegen/onnx/external-writer.ts';
import type { Graph } from '../ir/graph.ts';
import type { DType } from '../ir/dtype.ts';
import type { HostTensor } from '../io/host.ts';
import { detectNameRules, HfCheckpoint, HfError, planWeights, readHfConfig, applyRules, type HfConfig, type NameRule, type WeightPlan } from '../io/hf.ts';

/** One graph to write, with the checkpoint its weights come from. */
export interface ImportGraph {
  graph: Graph;
  /** graph param name -> checkpoint tensor name; default: prefix rules detected from the names */
  checkpointName?: (graphName: string) => string;
}

/** A family of checkpoints the importer knows: how to build its graph(s) from config.json. */
export interface ImportFamily {
  /** e.g. "qwen2 (Qwen2/Qwen2.5 decoder)" for the unknown-architecture message */
  label: string;
  matches(config: HfConfig): boolean;
  /** `taps` is the raw --taps value; families without taps must reject it */
  build(config: HfConfig, opts: { taps?: string }): ImportGraph[] | Promise<ImportGraph[]>;
  /** checkpoint file basename (default 'model'; diffusers: 'diffusion_pytorch_model') */
  weightsBasename?: string;
}

export interface ImportOptions {
  out: string;
  taps?: string;
  /** replace a non-empty DIR */
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
  models: ImportedModel[];
  /** checkpoint tensors no graph used (lm_head, layers past the last tap, ...) */
  ignored: string[];
  /** tensors converted, by "from->to" */
  conversions: Record<string, number>;
}

/** The built-in registry: HF model families (by model_type) and the diffusers VAE. */
export function defaultFamilies(): ImportFamily[] {
  return [];
}

function describeArch(config: HfConfig): string {
  const bits = [];
  if (typeof config.model_type === 'string') bits.push(`model_type '${config.model_type}'`);
  if (typeof config._class_name === 'string') bits.push(`_class_name '${config._class_name}'`);
  if (Array.isArray(config.architectures)) bits.push(`architectures [${config.architectures.join(', ')}]`);
  return bits.length ? bits.join(', ') : 'no model_type or _class_name';
}

export async function importHf(src: string, opts: ImportOptions): Promise<ImportResult> {
  const log = opts.log ?? (() => {});
  const config = readHfConfig(src);
  const families = opts.families ?? defaultFamilies();
  const family = families.find((f) => f.matches(config));
  if (!family)
    throw new HfError(
      `${path.join(src, 'config.json')}: unsupported architecture (${describeArch(config)}); supported: ${families.map((f) => f.label).join('; ') || 'none'}`,
    );

  const out = path.resolve(opts.out);
  checkOutDir(out, opts.force);

  const graphs = await family.build(config, { taps: opts.taps });
  const ckpt = HfCheckpoint.open(src, { basename: family.weightsBasename });
  try {
    // Compile and plan every graph before writing anything.
    const planned = graphs.map((g) => plan(g, ckpt));
    const used = new Set<string>();
    for (const p of planned) for (const c of p.weights.source.values()) used.add(c);
    const ignored = ckpt.names().filter((n) => !used.has(n));

    const conversions: Record<string, number> = {};
    for (const p of planned)
      for (const n of p.compiled.graph.params()) {
        const have = ckpt.info(p.weights.source.get(n.params.name)!).dtype;
        if (have !== n.dtype) conversions[`${have}->${n.dtype}`] = (conversions[`${have}->${n.dtype}`] ?? 0) + 1;
      }
    const tmp = path.join(path.dirname(out), `.${path.basename(out)}.import-${process.pid}-${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const models: ImportedModel[] = [];
    try {
      fs.mkdirSync(tmp);
      for (const p of planned) {
        const name = p.compiled.graph.name;
        const params = new Map(p.compiled.graph.params().map((n) => [n.params.name, n.params]));
        log(`writing ${name}.onnx: ${p.compiled.emitted.external.length} external tensors, ${fmtBytes(p.compiled.emitted.externalBytes)}`);
        const w = await writeModelStreaming(tmp, name, p.compiled.emitted, (chunk, write) => {
          const want = params.get(chunk.name)!;
          ckpt.stream(p.weights.source.get(chunk.name)!, want.dtype, write);
        });
        const manifest: Manifest = { ...p.compiled.manifest, weights: 'external' };
        models.push({ onnx: path.basename(w.onnxPath), externalData: w.dataPath && path.basename(w.dataPath), manifest });
      }
      const record = {
        format: 'unifusion-import',
        source: path.resolve(src),
        family: family.label,
        modelType: config.model_type ?? config._class_name,
        taps: opts.taps ?? null,
        checkpointTensors: ckpt.size,
        ignoredTensors: ignored.length,
        conversions,
        models: models.map((m) => m.manifest),
      };
      fs.writeFileSync(path.join(tmp, 'manifest.json'), JSON.stringify(record, null, 2) + '\n');
      moveIntoPlace(tmp, out, opts.force);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    return { out, family: family.label, models, ignored, conversions };
  } finally {
    ckpt.close();
  }
}

interface Planned {
  compiled: ReturnType<typeof compileGraph>;
  weights: WeightPlan;
}

function plan(g: ImportGraph, ckpt: HfCheckpoint): Planned {
  // Name rules come from the traced graph (a superset of what survives optimisation).
  let rules: NameRule[] = [];
  let map = g.checkpointName;
  if (!map) {
    rules = detectNameRules(g.graph.params().map((p) => p.params.name), ckpt.names());
    map = (n: string) => applyRules(n, rules, (c) => ckpt.has(c));
  }
  const resolve = map;
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
  const compiled = compileGraph(g.graph, { weights: 'skeleton', paramValues: small });
  const params = compiled.graph.params().map((p) => ({ name: p.params.name, dtype: p.dtype, shape: p.shape as number[] }));
  const weights = planWeights(params, ckpt, { checkpointName: resolve, rules });
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

function checkOutDir(out: string, force?: boolean): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(out);
  } catch {
    return;
  }
  if (!st.isDirectory()) throw new HfError(`--out ${out} exists and is not a folder`);
  if (fs.readdirSync(out).length && !force) throw new HfError(`--out ${out} is not empty (use --force to replace it)`);
}

/** Rename the finished temp folder to `out`; an existing `out` is swapped out first and removed after. */
function moveIntoPlace(tmp: string, out: string, force?: boolean): void {
  checkOutDir(out, force); // again: it may have been filled meanwhile
  let old: string | undefined;
  if (fs.existsSync(out)) {
    old = `${tmp}.old`;
    fs.renameSync(out, old);
  }
  try {
    fs.renameSync(tmp, out);
  } catch (e) {
    if (old) fs.renameSync(old, out);
    throw e;
  }
  if (old) fs.rmSync(old, { recursive: true, force: true });
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
  force?: boolean;
  quiet?: boolean;
}

export async function importHfCommand(src: string, opts: ImportCommandOptions): Promise<void> {
  const t0 = performance.now();
  const say = (s: string) => {
    if (!opts.quiet) process.stdout.write(s + '\n');
  };
  const r = await importHf(src, { out: opts.out, taps: opts.taps, force: opts.force, log: say });
  const rel = (p: string) => path.relative(process.cwd(), p) || p;
  const lines = [`imported ${rel(src)} (${r.family}) -> ${rel(r.out)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`];
  for (const m of r.models) {
    const mf = m.manifest;
    lines.push(
      `  ${m.onnx}${m.externalData ? ` + ${m.externalData}` : ''}: ${mf.paramCount.toLocaleString('en-US')} params in ${mf.params.length} tensors`,
      `    inputs:  ${mf.inputs.map((i) => `${i.name} ${i.dtype}[${i.shape.join(', ')}]`).join('; ')}`,
      `    outputs: ${mf.outputs.map((i) => `${i.name} ${i.dtype}[${i.shape.join(', ')}]`).join('; ')}`,
    );
  }
  const conv = Object.entries(r.conversions).map(([k, n]) => `${n} ${k}`);
  if (conv.length) lines.push(`  converted: ${conv.join(', ')}`);
  if (r.ignored.length) lines.push(`  ignored ${r.ignored.length} checkpoint tensor(s) the graph does not use (e.g. ${r.ignored.slice(0, 3).join(', ')})`);
  say(lines.join('\n'));
}
