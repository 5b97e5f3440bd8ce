// `unifusion compile <graph.ts> [--preset NAME] --out DIR`
import * as path from 'node:path';
import { compileGraph, writeCompiled } from '../compiler.ts';
import type { WeightMode } from '../../codegen/onnx/emit.ts';
import { loadGraphFile } from './load-graph.ts';
import { isTarget, TARGETS, type Target } from '../ir/target.ts';
import { formatReport } from '../passes/fusion/fuse.ts';
import { cudaOpsDirProblem, generateCudaOps, writeCudaOps } from '../../codegen/cuda/index.ts';

export interface CompileCommandOptions {
  preset?: string;
  out: string;
  weights?: WeightMode | 'auto';
  debug?: boolean;
  quiet?: boolean;
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

export async function compileCommand(file: string, opts: CompileCommandOptions): Promise<void> {
  if (opts.weights && !WEIGHT_MODES.includes(opts.weights)) throw new Error(`--weights must be one of ${WEIGHT_MODES.join(', ')}, got '${opts.weights}'`);
  const t = opts.target ?? 'cpu';
  if (!isTarget(t)) throw new Error(`--target must be one of ${TARGETS.join(', ')}, got '${opts.target}'`);
  const target: Target = t;
  if (opts.cudaOps !== undefined) {
    if (within(opts.cudaOps, opts.out) || within(opts.out, opts.cudaOps)) throw new Error(`--cuda-ops ${opts.cudaOps} overlaps --out ${opts.out}: give them separate folders`);
    if (within(file, opts.cudaOps)) throw new Error(`--cuda-ops ${opts.cudaOps} contains the graph file ${file}: choose another folder`);
    const problem = await cudaOpsDirProblem(opts.cudaOps);
    if (problem) throw new Error(problem);
  }
  const t0 = performance.now();
  const def = await loadGraphFile(file);
  const preset = opts.preset ?? def.defaultPreset ?? Object.keys(def.presets)[0];
  if (preset === undefined || !(preset in def.presets))
    throw new Error(`graph file '${file}': unknown preset '${preset}' (known: ${Object.keys(def.presets).join(', ') || 'none'})`);
  const t1 = performance.now();
  const graph = def.trace(preset);
  const t2 = performance.now();
  const compiled = compileGraph(graph, { weights: opts.weights, debug: opts.debug, preset, target });
  if (opts.debug && compiled.fusion) process.stderr.write(formatReport(compiled.fusion) + '\n');
  const t3 = performance.now();
  const w = await writeCompiled(opts.out, compiled);
  let cudaNote: string | undefined;
  if (opts.cudaOps !== undefined) {
    const src = generateCudaOps(compiled.graph);
    if (src.ops.length === 0) cudaNote = `no ai.unifusion ops in this graph for target ${target}: no CUDA sources written`;
    else {
      await writeCudaOps(opts.cudaOps, src);
      cudaNote = `${src.ops.join(', ')} -> ${path.relative(process.cwd(), path.resolve(opts.cudaOps)) || opts.cudaOps}/ (${Object.keys(src.files).length} files; cmake -S ${opts.cudaOps} -B build [-DORT_ROOT=...])`;
    }
  }
  const t4 = performance.now();
  if (opts.quiet) return;
  const m = compiled.manifest;
  const fmt = (n: number) => n.toLocaleString('en-US');
  const lines = [
    `compiled ${def.name} (preset ${preset}) -> ${path.relative(process.cwd(), w.onnxPath) || w.onnxPath}`,
    `  inputs:  ${m.inputs.map((i) => `${i.name} ${i.dtype}[${i.shape.join(', ')}]`).join('; ')}`,
    `  outputs: ${m.outputs.map((i) => `${i.name} ${i.dtype}[${i.shape.join(', ')}]`).join('; ')}`,
    `  params:  ${fmt(m.paramCount)} (${fmt(m.trainableParamCount)} trainable) in ${m.params.length} tensors, weights ${m.weights}`,
    `  nodes:   ${m.irNodes} IR -> ${m.onnxNodes} ONNX (opset ${m.opset}); ${fmt(w.onnxBytes)} bytes onnx${w.dataBytes ? ` + ${fmt(w.dataBytes)} bytes external data` : ''}`,
    `  target:  ${m.target ?? 'none'}; fused ${Object.entries(m.fused).map(([k, v]) => `${k}×${v}`).join(' ') || 'nothing'}`,
    ...(cudaNote ? [`  cuda:    ${cudaNote}`] : []),
    `  time:    load ${(t1 - t0).toFixed(0)} ms, trace ${(t2 - t1).toFixed(0)} ms, passes+emit ${(t3 - t2).toFixed(0)} ms, write ${(t4 - t3).toFixed(0)} ms`,
    `  manifest: ${path.relative(process.cwd(), w.manifestPath) || w.manifestPath}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
