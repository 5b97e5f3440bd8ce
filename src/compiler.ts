// The compiler's library entry: optimise a traced graph, lower it to ONNX,
// describe it in a manifest, and write both atomically.
import * as path from 'node:path';
import { makeDirs } from './io/outdir.ts';
import { dimStr } from './ir/dims.ts';
import { DTYPE_INFO } from './ir/dtype.ts';
import type { Graph } from './ir/graph.ts';
import { optimize, pipelineFor } from './passes/pipeline.ts';
import type { FusionReport } from './passes/fusion/fuse.ts';
import { DEFAULT_TARGET } from './passes/fusion/targets.ts';
import type { Target } from './ir/target.ts';
import type { Pass } from './passes/pass.ts';
import { emitModel, type Emitted, type WeightMode } from '../codegen/onnx/emit.ts';
import { atomicWrite, writeModel } from '../codegen/onnx/write.ts';
import { OPSET } from '../codegen/onnx/proto.ts';
import type { HostTensor } from './io/host.ts';
import { FUSED_OPS } from './ir/ops/fused.ts';

export interface CompileOptions {
  /** weight placement; default: embed below 1 GiB of weights, external above */
  weights?: WeightMode | 'auto';
  debug?: boolean;
  passes?: readonly Pass[];
  paramValues?: ReadonlyMap<string, HostTensor>;
  preset?: string;
  /**
   * Execution provider to fuse and lower for; 'portable' = standard ai.onnx ops only. Without it
   * the library compiles the primitives as traced (no fusion step), so callers that compare bit for
   * bit against an unfused emission keep doing so; `unifusion compile` passes 'cpu' by default (the
   * runtime is onnxruntime-node's CPU EP). Ignored when `passes` is given.
   */
  target?: Target;
  /** false: no fusion step even with a target (fused ops a graph already holds still lower for it) */
  fuse?: boolean;
  /**
   * More metadata_props for the model (compile adds graph_file and config_hash). compileGraph
   * always records producer, graph, preset, weights and the parameter counts: `run` and sessions
   * read `weights` to refuse skeleton models, and a user can see where a model came from.
   */
  metadata?: Readonly<Record<string, string>>;
}

export interface TensorDesc {
  name: string;
  dtype: string;
  shape: (number | string)[];
}

export interface Manifest {
  name: string;
  preset?: string;
  onnx: string;
  externalData?: string;
  opset: number;
  weights: WeightMode;
  inputs: TensorDesc[];
  outputs: TensorDesc[];
  params: (TensorDesc & { frozen: boolean })[];
  paramCount: number;
  trainableParamCount: number;
  onnxNodes: number;
  irNodes: number;
  /** the fusion target (null: not fused) */
  target: Target | null;
  /** fused node counts by fused op kind (IR) */
  fused: Record<string, number>;
  /** the model's metadata_props */
  metadata: Record<string, string>;
}

export interface Compiled {
  graph: Graph;
  emitted: Emitted;
  manifest: Manifest;
  /** what each fusion rule fused and declined (undefined when no fusion step ran) */
  fusion?: FusionReport;
}

const AUTO_EXTERNAL_BYTES = 1 << 30;
const FUSED_KINDS = new Set<string>(Object.keys(FUSED_OPS));

export function compileGraph(input: Graph, opts: CompileOptions = {}): Compiled {
  const target = opts.target;
  let fusion: FusionReport | undefined;
  const passes = opts.passes ?? (target && opts.fuse !== false ? pipelineFor(target, { onReport: (r) => (fusion = r) }) : undefined);
  const graph = optimize(input, { debug: opts.debug, passes });
  const params = graph.params();
  const bytes = params.reduce((a, p) => a + p.params.shape.reduce((x, d) => x * d, 1) * DTYPE_INFO[p.dtype].bytes, 0);
  const weights: WeightMode = !opts.weights || opts.weights === 'auto' ? (bytes >= AUTO_EXTERNAL_BYTES ? 'external' : 'embed') : opts.weights;
  const metadata: Record<string, string> = {
    producer: 'unifusion',
    graph: graph.name,
    ...(opts.preset !== undefined ? { preset: opts.preset } : {}),
    weights,
    param_count: String(graph.paramCount()),
    trainable_param_count: String(graph.paramCount((p) => !p.params.frozen)),
    ...(target && opts.fuse !== false ? { fusion_target: target } : {}),
    ...opts.metadata,
  };
  const emitted = emitModel(graph, { weights, paramValues: opts.paramValues, metadata, target: target ?? DEFAULT_TARGET });
  const fused: Record<string, number> = {};
  for (const n of graph.nodes()) if (FUSED_KINDS.has(n.op)) fused[n.op] = (fused[n.op] ?? 0) + 1;
  const desc = (name: string, dtype: string, shape: readonly (number | { key: string })[]): TensorDesc => ({
    name,
    dtype,
    shape: shape.map((d) => (typeof d === 'number' ? d : dimStr(d as never))),
  });
  const manifest: Manifest = {
    name: graph.name,
    preset: opts.preset,
    onnx: `${graph.name}.onnx`,
    externalData: emitted.external.length ? emitted.externalFile : undefined,
    opset: OPSET,
    weights,
    inputs: graph.inputs.map((i) => desc(i.params.name, i.dtype, i.shape)),
    outputs: graph.outputs.map((o) => desc(o.name, o.node.dtype, o.node.shape)),
    params: params.map((p) => ({ ...desc(p.params.name, p.dtype, p.shape), frozen: p.params.frozen })),
    paramCount: graph.paramCount(),
    trainableParamCount: graph.paramCount((p) => !p.params.frozen),
    onnxNodes: emitted.model.graph?.node?.length ?? 0,
    irNodes: graph.nodes().length,
    target: target && opts.fuse !== false ? target : null,
    fused,
    metadata,
  };
  return { graph, emitted, manifest, fusion };
}

/** Write `<dir>/<name>.onnx` (+ external data) and `<dir>/manifest.json` into an existing folder (commands stage it: src/io/outdir.ts). */
export async function writeCompiled(dir: string, c: Compiled): Promise<{ onnxPath: string; manifestPath: string; onnxBytes: number; dataBytes: number }> {
  const w = await writeModel(dir, c.graph.name, c.emitted);
  const manifestPath = path.join(dir, 'manifest.json');
  await atomicWrite(manifestPath, async (fh) => {
    await fh.write(JSON.stringify(c.manifest, null, 2) + '\n');
  });
  return { onnxPath: w.onnxPath, manifestPath, onnxBytes: w.onnxBytes, dataBytes: w.dataBytes };
}

/** Make `dir` and its missing parents, one level at a time (no procfs hang; errors in words). */
export async function ensureDir(dir: string): Promise<void> {
  await makeDirs(dir);
}
