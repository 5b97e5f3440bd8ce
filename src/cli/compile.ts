// `unifusion compile <graph.ts> [--preset NAME] --out DIR`
import * as path from 'node:path';
import { compileGraph, writeCompiled } from '../compiler.ts';
import type { WeightMode } from '../../codegen/onnx/emit.ts';
import { loadGraphFile } from './load-graph.ts';
import { writeCompiledBindings } from './bindings.ts';

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
  /** also write typed TypeScript bindings, <name>.ts next to the ONNX (codegen/ts) */
  bindings?: boolean;
}

const WEIGHT_MODES = ['auto', 'embed', 'external', 'skeleton', 'inputs'];

export async function compileCommand(file: string, opts: CompileCommandOptions): Promise<void> {
  if (opts.weights && !WEIGHT_MODES.includes(opts.weights)) throw new Error(`--weights must be one of ${WEIGHT_MODES.join(', ')}, got '${opts.weights}'`);
  const t0 = performance.now();
  const def = await loadGraphFile(file);
  const preset = opts.preset ?? def.defaultPreset ?? Object.keys(def.presets)[0];
  if (preset === undefined || !(preset in def.presets))
    throw new Error(`graph file '${file}': unknown preset '${preset}' (known: ${Object.keys(def.presets).join(', ') || 'none'})`);
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
  const compiled = compileGraph(graph, { weights: opts.weights, debug: opts.debug, preset, paramValues });
  const t3 = performance.now();
  const w = await writeCompiled(opts.out, compiled);
  const bindingsPath = opts.bindings ? await writeCompiledBindings(path.dirname(w.onnxPath), compiled.manifest, def.description) : undefined;
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
    `  time:    load ${(t1 - t0).toFixed(0)} ms, trace ${(t2 - t1).toFixed(0)} ms, passes+emit ${(t3 - t2).toFixed(0)} ms, write ${(t4 - t3).toFixed(0)} ms`,
    `  manifest: ${path.relative(process.cwd(), w.manifestPath) || w.manifestPath}`,
    ...(bindingsPath ? [`  bindings: ${path.relative(process.cwd(), bindingsPath) || bindingsPath}`] : []),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
