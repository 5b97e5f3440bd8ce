// Shared by the fusion tests: compile a graph with and without fusion, run both in
// onnxruntime (CPU) with the same random weights and inputs, and compare with the
// float64 reference of the UNFUSED graph (an oracle independent of the fused ops).
import * as ort from 'onnxruntime-node';
import { evaluate } from '../../src/ir/evaluate.ts';
import { Rng } from '../../src/ir/init.ts';
import type { Graph } from '../../src/ir/graph.ts';
import type { RefTensor } from '../../src/ir/ref.ts';
import type { Target } from '../../src/ir/target.ts';
import { optimize, pipelineFor } from '../../src/passes/pipeline.ts';
import type { FusionReport } from '../../src/passes/fusion/fuse.ts';
import { emitModel } from '../../codegen/onnx/emit.ts';
import { encodeModel } from '../../codegen/onnx/proto.ts';
import { toFloat64, type HostTensor } from '../../src/io/host.ts';
import { DTYPE_INFO } from '../../src/ir/dtype.ts';
import { dumpModel, randomRef, refToHost } from '../helpers/harness.ts';
import * as dslMod from '../../src/dsl/index.ts';

export function randomParams(g: Graph, seed = 1, scale = 0.5): Map<string, RefTensor> {
  const rng = new Rng(seed, g.name);
  return new Map(g.params().map((p) => [p.params.name, randomRef(p.dtype, [...p.params.shape], rng, { hi: scale })]));
}

export function fuse(g: Graph, target: Target = 'cpu', rules?: readonly string[]): { graph: Graph; report: FusionReport } {
  let report: FusionReport | undefined;
  const graph = optimize(g, { passes: pipelineFor(target, { onReport: (r) => (report = r), rules }) });
  return { graph, report: report! };
}

export function countOps(g: Graph): Record<string, number> {
  const c: Record<string, number> = {};
  for (const n of g.nodes()) c[n.op] = (c[n.op] ?? 0) + 1;
  return c;
}

export function onnxOps(g: Graph, target: Target = 'cpu'): Record<string, number> {
  const c: Record<string, number> = {};
  for (const n of emitModel(g, { target }).model.graph!.node!) {
    const k = (n.domain ? `${n.domain}.` : '') + n.opType!;
    c[k] = (c[k] ?? 0) + 1;
  }
  return c;
}

export async function runOrt(g: Graph, feeds: Record<string, RefTensor>, params: Map<string, RefTensor>, target: Target = 'cpu'): Promise<Record<string, RefTensor>> {
  const paramValues = new Map<string, HostTensor>([...params].map(([k, v]) => [k, refToHost(v)]));
  const bytes = encodeModel(emitModel(g, { target, paramValues }).model);
  dumpModel(`${g.name}.${target}`, bytes);
  const s = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  try {
    const of: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) of[k] = new ort.Tensor(DTYPE_INFO[v.dtype].ort!, refToHost(v).data as never, v.shape);
    const res = await s.run(of);
    const out: Record<string, RefTensor> = {};
    for (const o of g.outputs) {
      const t = res[o.name]!;
      out[o.name] = { dtype: o.node.dtype, shape: [...t.dims], data: toFloat64({ dtype: o.node.dtype, shape: [...t.dims], data: t.data } as HostTensor) };
    }
    return out;
  } finally {
    await s.release();
  }
}

/** max |a - b| / (atol * max|b| + rtol |b|) over all elements (<= 1 is within tolerance) */
export function worst(a: RefTensor, b: RefTensor, atol: number, rtol: number): number {
  const scale = b.data.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-30);
  atol *= scale;
  if (a.shape.join() !== b.shape.join()) return Infinity;
  let w = 0;
  for (let i = 0; i < b.data.length; i++) {
    const e = Math.abs(a.data[i]! - b.data[i]!) / (atol + rtol * Math.abs(b.data[i]!));
    if (!(e <= w)) w = Number.isNaN(e) ? Infinity : e;
  }
  return w;
}

export function reference(g: Graph, feeds: Record<string, RefTensor>, params: Map<string, RefTensor>): Record<string, RefTensor> {
  return evaluate(g, feeds, { params });
}

export interface RuleCase {
  /** builds the unfused graph's outputs from its inputs */
  build: (xs: Record<string, import('../../src/dsl/tensor.ts').Tensor>) => Record<string, import('../../src/dsl/tensor.ts').Tensor>;
  inputs: Record<string, { dtype?: import('../../src/ir/dtype.ts').DType; shape: number[] }>;
}

/** Trace a case into a graph (with the default optimisations, as compile runs them before fusion). */
export function caseGraph(name: string, c: RuleCase): Graph {
  const { trace, input } = dslMod;
  return optimize(trace(name, () => {
    const xs: Record<string, import('../../src/dsl/tensor.ts').Tensor> = {};
    for (const [k, v] of Object.entries(c.inputs)) xs[k] = input(k, v.dtype ?? 'f32', v.shape);
    return c.build(xs);
  }));
}

export function caseFeeds(c: RuleCase, seed = 7): Record<string, RefTensor> {
  const rng = new Rng(seed, 'feeds');
  return Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, randomRef(v.dtype ?? 'f32', v.shape, rng)]));
}

/**
 * The per-rule check: fuse with `rules` only, expect `fusedOps` (IR op -> count) and no primitives
 * of `gone`, then run unfused and fused graphs in ORT for `target` and compare both with the float64
 * reference of the unfused graph. Returns the fused graph and the report.
 */
export async function expectFuses(c: RuleCase, rules: readonly string[], fusedOps: Record<string, number>, opts: { target?: Target; gone?: string[]; onnx?: Record<string, number>; tol?: [number, number] } = {}) {
  const target = opts.target ?? 'cpu';
  const g = caseGraph('case', c);
  const { graph, report } = fuse(g, target, rules);
  const ops = countOps(graph);
  for (const [k, n] of Object.entries(fusedOps)) if ((ops[k] ?? 0) !== n) throw new Error(`expected ${n} ${k}, got ${ops[k] ?? 0}: ${JSON.stringify(ops)}\n${JSON.stringify(report.rules)}`);
  for (const k of opts.gone ?? []) if (ops[k]) throw new Error(`${ops[k]} ${k} left after fusion: ${JSON.stringify(ops)}`);
  if (opts.onnx) {
    const onnx = onnxOps(graph, target);
    for (const [k, n] of Object.entries(opts.onnx)) if ((onnx[k] ?? 0) !== n) throw new Error(`expected ${n} ONNX ${k}, got ${onnx[k] ?? 0}: ${JSON.stringify(onnx)}`);
  }
  const feeds = caseFeeds(c);
  const none = new Map<string, RefTensor>();
  const want = reference(g, feeds, none);
  const fusedRef = reference(graph, feeds, none);
  const got = await runOrt(graph, feeds, none, target);
  const [atol, rtol] = opts.tol ?? [1e-5, 1e-4];
  for (const k of Object.keys(want)) {
    const e1 = worst(fusedRef[k]!, want[k]!, 1e-12, 1e-10);
    if (!(e1 <= 1)) throw new Error(`${k}: the fused graph's reference differs from the unfused one (${e1}x tolerance)`);
    const e2 = worst(got[k]!, want[k]!, atol, rtol);
    if (!(e2 <= 1)) throw new Error(`${k}: ORT on the fused graph is ${e2.toFixed(2)}x the tolerance off the reference`);
  }
  return { graph, report, unfused: g };
}

/** Fuse with `rules` and return every decline reason (and that nothing was fused). */
export function declines(c: RuleCase, rules: readonly string[], target: Target = 'cpu'): { reasons: string[]; fused: number } {
  const { report } = fuse(caseGraph('near_miss', c), target, rules);
  return { reasons: report.rules.flatMap((r) => r.declined.map((d) => d.reason)), fused: report.rules.reduce((a, r) => a + r.fused.length, 0) };
}
