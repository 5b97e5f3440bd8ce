// `unifusion compile <graph.ts> [--preset NAME] --out DIR [--weights MODE] [--target EP] [--cuda-ops DIR] [--force] [--no-typecheck]`
//
// Order of work, so that a bad --out or a bad graph fails before anything is written: check the
// output folder (overlap with the graph file, ownership, writable: src/io/outdir.ts), start the
// type check in a worker, bundle + trace + optimise + emit beside it, require the check to pass,
// then write <name>.onnx (+ .onnx.data) and manifest.json through a staging folder renamed into
// place. An earlier compile's files in DIR are replaced exactly (stale .onnx.data included);
// files of anyone else's in DIR are never touched (refused unless --force, then kept).
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { compileGraph, writeCompiled } from '../compiler.ts';
import type { WeightMode } from '../../codegen/onnx/emit.ts';
import { displayPath, preflightOutputDir, writeOutputDir, type OutputTarget } from '../io/outdir.ts';
import { UsageError } from './errors.ts';
import { GraphFileError, loadGraphFile } from './load-graph.ts';
import { startTypecheck, withTypecheck } from './typecheck.ts';
import { isTarget, TARGETS, type Target } from '../ir/target.ts';
import { formatReport } from '../passes/fusion/fuse.ts';
import { cudaOpsDirProblem, generateCudaOps, writeCudaOps } from '../../codegen/cuda/index.ts';

export interface CompileCommandOptions {
  preset?: string;
  out: string;
  weights?: WeightMode | 'auto';
  debug?: boolean;
  quiet?: boolean;
  /** trained weights to bake in: safetensors files and/or `train` run folders (later ones win) */
  params?: string[];
  /** with --params: take the EMA weights (default: when the params have them) */
  ema?: boolean;
  /** with --params: allow tensors that are not params of this graph */
  allowUnusedParams?: boolean;
  /** write beside files in DIR that unifusion did not write (they are kept) */
  force?: boolean;
  /** type-check the graph file first (default true) */
  typecheck?: boolean;
  /** execution provider to fuse and lower for (default cpu) */
  target?: string;
  /** write CUDA sources of the graph's ai.unifusion ops into this folder */
  cudaOps?: string;
}

/** `inner` is `outer` or lies inside it */
function within(inner: string, outer: string): boolean {
  const rel = path.relative(path.resolve(outer), path.resolve(inner));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

const WEIGHT_MODES = ['auto', 'embed', 'external', 'skeleton', 'inputs'];

/** sha256 of a preset's config, key order ignored: the model's metadata says which config built it. */
export function configHash(cfg: unknown): string {
  const stable = (v: unknown): string => {
    if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${stable(o[k])}`).join(',')}}`;
    }
    return JSON.stringify(v) ?? 'null';
  };
  return createHash('sha256').update(stable(cfg)).digest('hex');
}

export async function compileCommand(file: string, opts: CompileCommandOptions): Promise<void> {
  if (opts.weights && !WEIGHT_MODES.includes(opts.weights)) throw new UsageError(`--weights must be one of ${WEIGHT_MODES.join(', ')}, got '${opts.weights}'`);
  const tgt = opts.target ?? 'cpu';
  if (!isTarget(tgt)) throw new UsageError(`--target must be one of ${TARGETS.join(', ')}, got '${opts.target}'`);
  const fuseFor: Target = tgt;
  if (opts.cudaOps !== undefined) {
    if (within(opts.cudaOps, opts.out) || within(opts.out, opts.cudaOps)) throw new UsageError(`--cuda-ops ${opts.cudaOps} overlaps --out ${opts.out}: give them separate folders`);
    for (const input of [file, ...(opts.params ?? [])]) if (within(input, opts.cudaOps) || within(opts.cudaOps, input)) throw new UsageError(`--cuda-ops ${opts.cudaOps} overlaps the input ${input}: choose another folder`);
    const problem = await cudaOpsDirProblem(opts.cudaOps);
    if (problem) throw new UsageError(problem);
  }
  const target: OutputTarget = { out: opts.out, inputs: [{ path: file, what: '<graph>' }, ...(opts.params ?? []).map((p) => ({ path: p, what: '--params' }))], force: opts.force, command: 'compile' };
  await preflightOutputDir(target);
  const t0 = performance.now();
  const check = opts.typecheck === false ? undefined : startTypecheck(file);
  const { def, preset, compiled, times } = await withTypecheck(check, 'graph file', async () => {
    const def = await loadGraphFile(file);
    const preset = opts.preset ?? def.defaultPreset ?? Object.keys(def.presets)[0];
    if (preset === undefined || !Object.hasOwn(def.presets, preset))
      throw new GraphFileError(`graph file '${file}': unknown preset '${preset}' (known: ${Object.keys(def.presets).join(', ') || 'none'})`);
    const t1 = performance.now();
    const graph = def.trace(preset);
    let paramValues: Map<string, import('../io/host.ts').HostTensor> | undefined;
    if (opts.params?.length) {
      const { loadTrainedParams, matchParams } = await import('../../runtime/pipeline/params.ts');
      const trained = loadTrainedParams(opts.params, { ema: opts.ema });
      matchParams(graph, trained, { allowUnused: opts.allowUnusedParams });
      paramValues = trained.params;
    }
    const t2 = performance.now();
    const metadata = { graph_file: displayPath(file), config_hash: configHash(def.presets[preset]) };
    const compiled = compileGraph(graph, { weights: opts.weights, debug: opts.debug, preset, metadata, paramValues, target: fuseFor });
    if (opts.debug && compiled.fusion) process.stderr.write(formatReport(compiled.fusion) + '\n');
    return { def, preset, compiled, times: [t1, t2, performance.now()] as const };
  }, { primary: (e) => e instanceof GraphFileError });
  const [t1, t2, t3] = times;
  const tc = performance.now();
  const cached = check ? (await check.result).cached : false;
  const written = await writeOutputDir(target, (stage) => writeCompiled(stage, compiled));
  const w = written.result;
  let cudaNote: string | undefined;
  if (opts.cudaOps !== undefined) {
    const src = generateCudaOps(compiled.graph);
    if (src.ops.length === 0) cudaNote = `no ai.unifusion ops in this graph for target ${fuseFor}: no CUDA sources written`;
    else {
      await writeCudaOps(opts.cudaOps, src);
      cudaNote = `${src.ops.join(', ')} -> ${displayPath(opts.cudaOps)}/ (${Object.keys(src.files).length} files; cmake -S ${displayPath(opts.cudaOps)} -B <build> [-DORT_ROOT=...])`;
    }
  }
  const t4 = performance.now();
  if (opts.quiet) return;
  const m = compiled.manifest;
  const fmt = (n: number) => n.toLocaleString('en-US');
  const final = (p: string) => displayPath(path.join(written.dir, path.basename(p)));
  const lines = [
    `compiled ${def.name} (preset ${preset}) -> ${final(w.onnxPath)}`,
    `  inputs:  ${m.inputs.map((i) => `${i.name} ${i.dtype}[${i.shape.join(', ')}]`).join('; ')}`,
    `  outputs: ${m.outputs.map((i) => `${i.name} ${i.dtype}[${i.shape.join(', ')}]`).join('; ')}`,
    `  params:  ${fmt(m.paramCount)} (${fmt(m.trainableParamCount)} trainable) in ${m.params.length} tensors, weights ${m.weights}`,
    `  nodes:   ${m.irNodes} IR -> ${m.onnxNodes} ONNX (opset ${m.opset}); ${fmt(w.onnxBytes)} bytes onnx${w.dataBytes ? ` + ${fmt(w.dataBytes)} bytes external data` : ''}`,
    `  target:  ${m.target ?? 'none'}; fused ${Object.entries(m.fused).map(([k, v]) => `${k}×${v}`).join(' ') || 'nothing'}`,
    ...(cudaNote ? [`  cuda:    ${cudaNote}`] : []),
    `  time:    load ${(t1 - t0).toFixed(0)} ms, trace ${(t2 - t1).toFixed(0)} ms, passes+emit ${(t3 - t2).toFixed(0)} ms${check ? (cached ? ', type check passed before (files unchanged)' : `, type check ${(tc - t0).toFixed(0)} ms (beside them)`) : ''}, write ${(t4 - tc).toFixed(0)} ms`,
    `  manifest: ${final(w.manifestPath)}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
