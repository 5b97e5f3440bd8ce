// Test harness: random inputs, emit a graph, run it in onnxruntime (CPU), compare
// against the float64 reference. Models are dumped for onnx.checker when
// UNIFUSION_DUMP_DIR is set (CI runs check_onnx.py over them).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { DTYPE_INFO, isFloat, type DType } from '../../src/ir/dtype.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { evaluate } from '../../src/ir/evaluate.ts';
import { Rng } from '../../src/ir/init.ts';
import { ref, rounded, size, type RefTensor } from '../../src/ir/ref.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../../src/io/host.ts';
import { emitModel, type EmitOptions } from '../../codegen/onnx/emit.ts';
import { encodeModel } from '../../codegen/onnx/proto.ts';

export function randomRef(dtype: DType, shape: number[], rng: Rng, opts: { lo?: number; hi?: number; positive?: boolean } = {}): RefTensor {
  const n = size(shape);
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (dtype === 'bool') data[i] = rng.uniform() < 0.5 ? 1 : 0;
    else if (!isFloat(dtype)) data[i] = Math.floor((opts.lo ?? -5) + rng.uniform() * ((opts.hi ?? 6) - (opts.lo ?? -5)));
    else if (opts.positive) data[i] = 0.2 + 1.8 * rng.uniform();
    else {
      // never exactly zero; avoid values so tiny that relative checks are meaningless
      let v = rng.normal();
      if (Math.abs(v) < 0.05) v += Math.sign(v || 1) * 0.1;
      data[i] = (opts.lo ?? 0) + v * (opts.hi ?? 1);
    }
  }
  return rounded(ref(dtype, shape, data));
}

export function refToHost(t: RefTensor): HostTensor {
  return fromFloat64(t.dtype, t.shape, t.data);
}

export function toOrt(t: RefTensor): ort.Tensor {
  const h = refToHost(t);
  const type = DTYPE_INFO[t.dtype].ort;
  if (!type) throw new Error(`no onnxruntime JS type for ${t.dtype}`);
  return new ort.Tensor(type, h.data as never, t.shape);
}

export function fromOrt(t: ort.Tensor, dtype: DType): RefTensor {
  const data = t.data as HostTensor['data'];
  const h = { dtype, shape: [...t.dims], data } as HostTensor;
  return { dtype, shape: [...t.dims], data: toFloat64(h) };
}

let dumpCounter = 0;
export function dumpModel(tag: string, bytes: Uint8Array): void {
  const dir = process.env.UNIFUSION_DUMP_DIR;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  const safe = tag.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 80);
  fs.writeFileSync(path.join(dir, `${process.pid}_${dumpCounter++}_${safe}.onnx`), bytes);
}

export async function runOnnx(graph: Graph, feeds: Record<string, RefTensor>, opts: EmitOptions = {}): Promise<Record<string, RefTensor>> {
  const em = emitModel(graph, opts);
  const bytes = encodeModel(em.model);
  dumpModel(graph.name, bytes);
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  try {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = toOrt(v);
    const res = await session.run(ortFeeds);
    const out: Record<string, RefTensor> = {};
    for (const o of graph.outputs) out[o.name] = fromOrt(res[o.name]!, o.node.dtype);
    return out;
  } finally {
    await session.release();
  }
}

/** Tolerance by dtype: absolute + relative on |ref|. */
export const TOL: Record<DType, { atol: number; rtol: number }> = {
  f64: { atol: 1e-10, rtol: 1e-10 },
  f32: { atol: 1e-5, rtol: 1e-4 },
  f16: { atol: 3e-3, rtol: 3e-3 },
  bf16: { atol: 2e-2, rtol: 2e-2 },
  i64: { atol: 0, rtol: 0 },
  i32: { atol: 0, rtol: 0 },
  bool: { atol: 0, rtol: 0 },
};

/** Compare; returns a description of the worst element or null when within tolerance. */
export function compare(got: RefTensor, want: RefTensor, tol = TOL[want.dtype], scale = 1): string | null {
  if (got.shape.join(',') !== want.shape.join(',')) return `shape [${got.shape}] vs reference [${want.shape}]`;
  let worst = -1, wi = -1;
  for (let i = 0; i < want.data.length; i++) {
    const a = got.data[i]!, b = want.data[i]!;
    if (Number.isNaN(a) !== Number.isNaN(b)) return `NaN mismatch at ${i}: ${a} vs ${b}`;
    if (Number.isNaN(b) || a === b) continue;
    const err = Math.abs(a - b) / (tol.atol * scale + tol.rtol * Math.abs(b));
    if (!(err <= 1) && err > worst) (worst = err), (wi = i);
  }
  return wi < 0 ? null : `element ${wi}: got ${got.data[wi]} want ${want.data[wi]} (${worst.toFixed(1)}x tolerance)`;
}

/** Emit, run in ORT, evaluate the reference; returns both. */
export async function checkGraph(graph: Graph, feeds: Record<string, RefTensor>): Promise<{ got: Record<string, RefTensor>; want: Record<string, RefTensor> }> {
  const want = evaluate(graph, feeds);
  const got = await runOnnx(graph, feeds);
  return { got, want };
}
