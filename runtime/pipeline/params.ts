// Trained weights for compiling a graph: safetensors files, or a `train` run folder, whose
// params.safetensors holds the trainable params (and their EMA) but not the frozen ones (an
// encoder in the graph, say), which live as initializers of the run's train-step.onnx.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeModel } from '../../codegen/onnx/proto.ts';
import { dtypeFromOnnx } from '../../src/ir/dtype.ts';
import { storageFromBytes, type HostTensor } from '../../src/io/host.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { PipelineError } from './format.ts';

export interface TrainedParams {
  params: Map<string, HostTensor>;
  /** where each came from, for messages */
  source: Map<string, string>;
  /** the EMA weights were taken in place of the raw ones */
  ema: boolean;
}

export function isRunDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory() && fs.existsSync(path.join(p, 'params.safetensors'));
  } catch {
    return false;
  }
}

/** Frozen params of a run: the named initializers of its train-step.onnx. */
function frozenFromStepGraph(run: string): Map<string, HostTensor> {
  const specFile = path.join(run, 'train-spec.json'), onnxFile = path.join(run, 'train-step.onnx');
  const out = new Map<string, HostTensor>();
  if (!fs.existsSync(specFile) || !fs.existsSync(onnxFile)) return out;
  const spec = JSON.parse(fs.readFileSync(specFile, 'utf8')) as { frozen?: string[] };
  const want = new Set(spec.frozen ?? []);
  if (want.size === 0) return out;
  const model = decodeModel(fs.readFileSync(onnxFile));
  for (const init of model.graph?.initializer ?? []) {
    const name = init.name ?? '';
    if (!want.has(name) || !init.rawData?.length) continue;
    const dtype = dtypeFromOnnx(init.dataType ?? 0);
    if (!dtype) continue;
    out.set(name, { dtype, shape: (init.dims ?? []).map(Number), data: storageFromBytes(dtype, Uint8Array.from(init.rawData)) } as HostTensor);
  }
  return out;
}

/**
 * Read params from safetensors files and/or run folders (later sources win). With `ema` (default
 * 'auto': when the source has them), `ema.<name>` replaces `<name>`.
 */
export function loadTrainedParams(sources: readonly string[], opts: { ema?: boolean | 'auto' } = {}): TrainedParams {
  const params = new Map<string, HostTensor>();
  const source = new Map<string, string>();
  const emaTensors = new Map<string, HostTensor>();
  for (const s of sources) {
    const run = isRunDir(s);
    const file = run ? path.join(s, 'params.safetensors') : s;
    if (!fs.existsSync(file)) throw new PipelineError(`--params '${s}': no such file or run folder`);
    let tensors: Map<string, HostTensor>;
    try {
      tensors = readSafetensors(file).tensors;
    } catch (e) {
      throw new PipelineError(`--params '${s}': ${e instanceof Error ? e.message : String(e)}`);
    }
    if (run) for (const [k, v] of frozenFromStepGraph(s)) if (!tensors.has(k)) params.set(k, v), source.set(k, path.join(s, 'train-step.onnx'));
    for (const [k, v] of tensors) {
      if (k.startsWith('ema.')) emaTensors.set(k.slice(4), v);
      else params.set(k, v), source.set(k, file);
    }
  }
  const useEma = opts.ema === true || ((opts.ema ?? 'auto') === 'auto' && emaTensors.size > 0);
  if (opts.ema === true && emaTensors.size === 0) throw new PipelineError(`--ema: ${sources.join(', ')} hold no EMA weights (train with an EMA decay)`);
  if (useEma) for (const [k, v] of emaTensors) params.set(k, v), source.set(k, `${source.get(k) ?? 'params'} (EMA)`);
  return { params, source, ema: useEma };
}

/**
 * Check params against a graph before compiling: every param of the graph present with its dtype
 * and shape (no silent fallback to random init), and nothing left over that the graph lacks.
 */
export function matchParams(graph: Graph, t: TrainedParams, opts: { allowMissing?: boolean; allowUnused?: boolean; label?: string } = {}): void {
  const label = opts.label ?? '--params';
  const problems: string[] = [];
  const missing: string[] = [];
  const names = new Set<string>();
  for (const p of graph.params()) {
    const { name, dtype, shape } = p.params;
    names.add(name);
    const v = t.params.get(name);
    if (!v) {
      missing.push(name);
      continue;
    }
    if (v.dtype !== dtype || v.shape.length !== shape.length || v.shape.some((d, i) => d !== shape[i]))
      problems.push(`'${name}' is ${v.dtype}[${v.shape}] in ${t.source.get(name)}, the graph takes ${dtype}[${shape}]`);
  }
  if (missing.length && !opts.allowMissing)
    problems.push(`${missing.length} graph param(s) have no value: ${missing.slice(0, 8).map((n) => `'${n}'`).join(', ')}${missing.length > 8 ? ', ...' : ''} (pass the file or run folder that holds them)`);
  const unused = [...t.params.keys()].filter((k) => !names.has(k));
  if (unused.length && !opts.allowUnused)
    problems.push(`${unused.length} tensor(s) are not params of graph '${graph.name}': ${unused.slice(0, 8).map((n) => `'${n}'`).join(', ')}${unused.length > 8 ? ', ...' : ''} (wrong graph or preset?)`);
  if (problems.length) throw new PipelineError(`${label}: the weights do not fit graph '${graph.name}': ${problems.join('; ')}`);
}
