// Table-driven tests of every op in the op table: each case builds a small graph
// with the DSL, runs it in onnxruntime (CPU) and compares against the float64
// reference, over dtypes, broadcasting, symbolic dims (fed with two different
// sets of concrete sizes), size-1 dims and negative axes. A second table checks
// the shape rules' user-facing errors. Known onnxruntime gaps are listed in
// ORT_GAPS / F16_FALLBACK and re-verified against onnxruntime at the end, so a
// gap that closes (or opens) fails the suite instead of hiding.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { concat, constant, conv2d, dim, DSLError, fused, input, Module, Param, range, Tensor, trace } from '../src/dsl/index.ts';
import { applyOp } from '../src/dsl/tensor.ts';
import { dimAdd, dimMul, dimSub, evalDim, isStatic, type Dim } from '../src/ir/dims.ts';
import { isFloat, type DType } from '../src/ir/dtype.ts';
import type { Graph } from '../src/ir/graph.ts';
import { Rng } from '../src/ir/init.ts';
import { OP_KINDS } from '../src/ir/optable.ts';
import type { OpKind } from '../src/ir/params.ts';
import { rounded, type RefTensor } from '../src/ir/ref.ts';
import { emitModel } from '../codegen/onnx/emit.ts';
import { decodeModel, encodeModel } from '../codegen/onnx/proto.ts';
import { checkGraph, compare, dumpModel, randomRef, TOL } from './helpers/harness.ts';

// ---------------------------------------------------------------------------
// Case table machinery

interface Gen {
  /** floats in [0.2, 2] (log, sqrt, rsqrt, pow base) */
  positive?: boolean;
  /** floats: standard deviation of the normal draw */
  scale?: number;
  /** integers: uniform in [lo, hi) */
  int?: [number, number];
  /** integers: replace 0 by 1 (divisors) */
  nonzero?: boolean;
  /** float or int values from {±1, ±2, ±3}, so comparisons see ties */
  ties?: boolean;
}

interface InSpec {
  dtype: DType;
  shape: Dim[];
  gen?: Gen;
}

interface Case {
  op: OpKind;
  name: string;
  /** the dtype the op under test computes in: picks ORT gaps and the f16 kernel audit */
  dtype: DType;
  /** graph inputs, named a, b, c, ... */
  ins: InSpec[];
  build: (...xs: Tensor[]) => Tensor | Record<string, Tensor>;
  /** minimum counts of ONNX op types in the emitted model (e.g. Shape for runtime sizes) */
  onnxMin?: Record<string, number>;
  /** exact counts of ONNX op types in the emitted model */
  onnxExact?: Record<string, number>;
  /** symbol values to run symbolic cases with (default: SYM_ENVS) */
  envs?: Record<string, number>[];
  skip?: string;
}

const B = dim('batch'), S = dim('seq'), H = dim('h'), W = dim('w');
/** Two sets of sizes per symbolic case: a lowering that bakes in one set fails the other. */
const SYM_ENVS: Record<string, number>[] = [
  { batch: 2, seq: 5, h: 6, w: 7 },
  { batch: 1, seq: 3, h: 5, w: 4 },
];

/**
 * onnxruntime 1.30 CPU kernels that do not exist (session creation fails with
 * "Could not find an implementation"). Cases in these combos are kept in the
 * table with a skip reason; the last test re-checks that ORT still rejects them.
 */
const UNARY_FLOAT = ['exp', 'log', 'sqrt', 'rsqrt', 'reciprocal', 'tanh', 'sigmoid', 'erf', 'sin', 'cos'] as const;
const ARITH = ['add', 'sub', 'mul', 'div'] as const;
const COMPARE = ['eq', 'lt', 'le', 'gt', 'ge'] as const;
const ORT_GAPS: Partial<Record<DType, readonly OpKind[]>> = {
  bf16: [
    ...UNARY_FLOAT, 'neg', 'abs', ...ARITH, 'pow', 'max', 'min', ...COMPARE, 'where',
    'matmul', 'reduce_sum', 'reduce_mean', 'reduce_max', 'softmax', 'expand', 'pad', 'conv2d', 'upsample_nearest',
  ],
  f64: ['erf', 'conv2d', 'upsample_nearest', 'conv2d_grad_input', 'conv2d_grad_weight'],
  i64: ['upsample_nearest'],
  bool: ['upsample_nearest'],
};

/**
 * Ops ORT 1.30 CPU has no f16 kernel for, but runs anyway: its InsertCastTransformer
 * wraps the node in f16->f32->f16 casts. They pass (so they are not skipped), but
 * compute in f32; the f16 audit test checks this list against ORT.
 */
const F16_FALLBACK: readonly OpKind[] = [
  ...UNARY_FLOAT, 'neg', 'abs', ...ARITH, 'pow', ...COMPARE, 'where',
  'matmul', 'reduce_sum', 'reduce_mean', 'reduce_max', 'softmax', 'pad', 'conv2d', 'upsample_nearest',
  'conv2d_grad_input', 'conv2d_grad_weight', 'barrier',
  // fused ops: their ONNX forms are f32-only, so f16 lowers the decomposition (fallback ops above;
  // rms_norm and layer_norm cast to f32 themselves, as the composites do, so they are not listed);
  // the ai.unifusion function bodies compute in f32 (their inlined nodes count as inserted)
  'gelu', 'rope', 'sdpa', 'swiglu', 'ada_rms_norm', 'layer_pool', 'add_rms_norm', 'kv_sdpa', 'add_layer_norm',
];

function gapOf(op: OpKind, dtype: DType): string | undefined {
  return ORT_GAPS[dtype]?.includes(op) ? `no ORT CPU ${dtype} kernel` : undefined;
}

const cases: Case[] = [];
function add(c: Case): void {
  cases.push({ ...c, skip: c.skip ?? gapOf(c.op, c.dtype) });
}

const sh = (s: readonly Dim[]) => `[${s.map((d) => (isStatic(d) ? String(d) : d.key)).join(',')}]`;
const f = (dtype: DType, ...shape: Dim[]): InSpec => ({ dtype, shape });
const g = (dtype: DType, shape: Dim[], gen: Gen): InSpec => ({ dtype, shape, gen });

function makeFeed(spec: InSpec, shape: number[], rng: Rng): RefTensor {
  const gen = spec.gen ?? {};
  const dt = spec.dtype;
  let t: RefTensor;
  if (gen.ties) {
    t = randomRef('i32', shape, rng, { lo: -3, hi: 4 });
    t = rounded({ ...t, data: t.data.map((v) => v || 1) }, dt);
  } else if (dt === 'bool' || isFloat(dt)) {
    t = randomRef(dt, shape, rng, gen.positive ? { positive: true } : { hi: gen.scale ?? 1 });
  } else {
    const [lo, hi] = gen.int ?? [-5, 6];
    t = randomRef(dt, shape, rng, { lo, hi });
  }
  if (gen.nonzero) t.data = t.data.map((v) => v || 1);
  // bf16 cannot cross the onnxruntime JS boundary: fed as f32 (exactly representable) and cast inside
  return dt === 'bf16' ? { ...t, dtype: 'f32' } : t;
}

interface Built {
  graph: Graph;
  /** tolerance dtype per output (bf16 outputs come back cast to f32) */
  tolDtype: Record<string, DType>;
}

function buildCase(c: Case): Built {
  const tolDtype: Record<string, DType> = {};
  // (the graph name also names the default external-data file, so no '/' in it)
  const graph = trace(c.name.replace(/[^A-Za-z0-9_.,+\-\[\] ]/g, '_'), () => {
    const xs = c.ins.map((s, i) => {
      const name = String.fromCharCode(97 + i);
      return s.dtype === 'bf16' ? input(name, 'f32', s.shape).cast('bf16') : input(name, s.dtype, s.shape);
    });
    const r = c.build(...xs);
    const outs: Record<string, Tensor> = r instanceof Tensor ? { y: r } : r;
    const res: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(outs)) {
      tolDtype[k] = v.dtype;
      res[k] = v.dtype === 'bf16' ? v.cast('f32') : v;
    }
    return res;
  });
  return { graph, tolDtype };
}

function onnxOpCounts(graph: Graph): Map<string, number> {
  const counts = new Map<string, number>();
  for (const n of emitModel(graph).model.graph!.node!) counts.set(n.opType!, (counts.get(n.opType!) ?? 0) + 1);
  return counts;
}

function isSymbolic(c: Case): boolean {
  return c.ins.some((s) => s.shape.some((d) => !isStatic(d)));
}

async function runCase(c: Case): Promise<void> {
  const { graph, tolDtype } = buildCase(c);
  expect(graph.nodes().some((n) => n.op === c.op), `graph of '${c.name}' has no ${c.op} node`).toBe(true);
  const counts = onnxOpCounts(graph);
  for (const [op, n] of Object.entries(c.onnxMin ?? {})) expect(counts.get(op) ?? 0, `ONNX ${op} nodes`).toBeGreaterThanOrEqual(n);
  for (const [op, n] of Object.entries(c.onnxExact ?? {})) expect(counts.get(op) ?? 0, `ONNX ${op} nodes`).toBe(n);
  const envs = isSymbolic(c) ? (c.envs ?? SYM_ENVS) : [{}];
  const rng = new Rng(7, c.name);
  for (const env of envs) {
    const feeds: Record<string, RefTensor> = {};
    c.ins.forEach((s, i) => (feeds[String.fromCharCode(97 + i)] = makeFeed(s, s.shape.map((d) => evalDim(d, env)), rng)));
    const { got, want } = await checkGraph(graph, feeds);
    for (const k of Object.keys(want)) {
      const err = compare(got[k]!, want[k]!, TOL[tolDtype[k]!]);
      expect(err, `output ${k} with ${JSON.stringify(env)}`).toBeNull();
    }
  }
}

// ---------------------------------------------------------------------------
// The table

const FLOATS: DType[] = ['f32', 'f64', 'f16', 'bf16'];
const NUMERIC: DType[] = ['f32', 'f64', 'f16', 'bf16', 'i64', 'i32'];

// --- source ops: input, param, constant, range, cast
for (const dt of ['f32', 'f64', 'f16', 'bf16', 'i64', 'i32', 'bool'] as DType[])
  add({ op: 'input', dtype: dt, name: `input ${dt} [2,3] passthrough`, ins: [f(dt, 2, 3)], build: (a) => a });
add({ op: 'input', dtype: 'f32', name: 'input f32 [batch,seq] passthrough', ins: [f('f32', B, S)], build: (a) => a });
add({ op: 'input', dtype: 'f32', name: 'input f32 [] scalar passthrough', ins: [f('f32')], build: (a) => a });
add({ op: 'input', dtype: 'f32', name: 'input used twice as two outputs', ins: [f('f32', 2, 3)], build: (a) => ({ y: a, z: a.neg() }) });

class WithParams extends Module {
  w = new Param([3, 4], { kind: 'normal', std: 0.5 });
  h = new Param([4], { kind: 'uniform', bound: 2 }, 'f16');
  d = new Param([2, 1], { kind: 'normal', std: 1 }, 'f64');
  k = new Param([4], { kind: 'const', value: 3 }, 'i64');
}
add({ op: 'param', dtype: 'f32', name: 'param f32 [3,4] + input', ins: [f('f32', 2, 3, 4)], build: (a) => a.add(new WithParams().w.t) });
add({ op: 'param', dtype: 'f16', name: 'param f16 [4] (uniform) alone', ins: [], build: () => new WithParams().h.t });
add({ op: 'param', dtype: 'f16', name: 'param f16 [4] (uniform) * input', ins: [f('f16', 3, 4)], build: (a) => a.mul(new WithParams().h.t) });
add({ op: 'param', dtype: 'f64', name: 'param f64 [2,1] alone', ins: [], build: () => new WithParams().d.t });
add({ op: 'param', dtype: 'i64', name: 'param i64 [4] const-init + input', ins: [f('i64', 2, 4)], build: (a) => a.add(new WithParams().k.t) });

add({ op: 'constant', dtype: 'f32', name: 'constant f32 [2,3] + input', ins: [f('f32', 2, 3)], build: (a) => a.add(constant([1.5, -2, 3, 0.25, -0.5, 7], 'f32', [2, 3])) });
add({ op: 'constant', dtype: 'f32', name: 'constant f32 scalar (number operand)', ins: [f('f32', 2, 3)], build: (a) => a.mul(2.5).sub(1) });
add({ op: 'constant', dtype: 'f64', name: 'constant f64 alone', ins: [], build: () => constant([Math.PI, Math.E, 1e-300], 'f64') });
add({ op: 'constant', dtype: 'f16', name: 'constant f16 [3] alone', ins: [], build: () => constant([0.1, 1000, -3.3], 'f16') });
add({ op: 'constant', dtype: 'f16', name: 'constant f16 [3] + input', ins: [f('f16', 2, 3)], build: (a) => a.add(constant([0.1, 1000, -3.3], 'f16')) });
add({ op: 'constant', dtype: 'bf16', name: 'constant bf16 [3] alone', ins: [], build: () => constant([0.1, 1000, -3.3], 'bf16') });
add({ op: 'constant', dtype: 'i64', name: 'constant i64 (large) + input', ins: [f('i64', 3)], build: (a) => a.add(constant([2 ** 40, -(2 ** 35), 7], 'i64')) });
add({ op: 'constant', dtype: 'i32', name: 'constant i32 [2,1] * input', ins: [f('i32', 2, 3)], build: (a) => a.mul(constant([-2, 3], 'i32', [2, 1])) });
add({ op: 'constant', dtype: 'bool', name: 'constant bool [3] and input', ins: [f('bool', 2, 3)], build: (a) => a.and(constant([1, 0, 1], 'bool')) });

add({ op: 'range', dtype: 'i64', name: 'range i64 static 5', ins: [], build: () => range(5) });
add({ op: 'range', dtype: 'i64', name: 'range i64 start 3 delta -2', ins: [], build: () => range(4, { start: 3, delta: -2 }) });
add({ op: 'range', dtype: 'i32', name: 'range i32 start -4 delta 3', ins: [], build: () => range(6, { start: -4, delta: 3, dtype: 'i32' }) });
add({ op: 'range', dtype: 'f32', name: 'range f32 start -1 delta 0.5', ins: [], build: () => range(6, { start: -1, delta: 0.5, dtype: 'f32' }) });
// 0.1 is not representable: ceil((limit - start) / delta) in f32 must still give exactly `size` elements
add({ op: 'range', dtype: 'f32', name: 'range f32 delta 0.1 size 3', ins: [], build: () => range(3, { delta: 0.1, dtype: 'f32' }) });
add({ op: 'range', dtype: 'f32', name: 'range f32 start 0.1 delta 0.1 size 10', ins: [], build: () => range(10, { start: 0.1, delta: 0.1, dtype: 'f32' }) });
add({ op: 'range', dtype: 'f64', name: 'range f64 start 0.1 delta 0.1 size 10', ins: [], build: () => range(10, { start: 0.1, delta: 0.1, dtype: 'f64' }) });
add({ op: 'range', dtype: 'f16', name: 'range f16 start 0.5 delta 0.25', ins: [], build: () => range(7, { start: 0.5, delta: 0.25, dtype: 'f16' }) });
add({ op: 'range', dtype: 'bf16', name: 'range bf16 start -2 delta 0.5', ins: [], build: () => range(7, { start: -2, delta: 0.5, dtype: 'bf16' }) });
add({ op: 'range', dtype: 'i64', name: 'range i64 size 0', ins: [], build: () => range(0) });
add({ op: 'range', dtype: 'i64', name: 'range i64 [seq]', ins: [f('f32', B, S)], build: () => range(S), onnxMin: { Shape: 1 } });
add({ op: 'range', dtype: 'i64', name: 'range i64 [seq+1] start 2', ins: [f('f32', B, S)], build: () => range(dimAdd(S, 1), { start: 2 }), onnxMin: { Shape: 1 } });
add({ op: 'range', dtype: 'i32', name: 'range i32 [batch*seq] delta -1', ins: [f('f32', B, S)], build: () => range(dimMul(B, S), { delta: -1, dtype: 'i32' }), onnxMin: { Shape: 2 } });
add({ op: 'range', dtype: 'f32', name: 'range f32 [seq] start 0.1 delta 0.1', ins: [f('f32', B, S)], build: () => range(S, { start: 0.1, delta: 0.1, dtype: 'f32' }), onnxMin: { Shape: 1 } });
add({ op: 'range', dtype: 'f16', name: 'range f16 [seq] delta 0.5', ins: [f('f32', B, S)], build: () => range(S, { delta: 0.5, dtype: 'f16' }), onnxMin: { Shape: 1 } });
add({ op: 'range', dtype: 'i64', name: 'range [seq] used against input (positions + x)', ins: [f('i64', B, S)], build: (a) => a.add(range(S)), onnxMin: { Shape: 1 } });

const CAST_DTYPES: DType[] = ['f32', 'f16', 'bf16', 'f64', 'i64', 'i32', 'bool'];
for (const from of CAST_DTYPES)
  for (const to of CAST_DTYPES) {
    if (from === to) continue;
    const gen: Gen = isFloat(from) ? { scale: 3 } : {};
    add({ op: 'cast', dtype: from, name: `cast ${from} -> ${to}`, ins: [g(from, [3, 4], gen)], build: (a) => a.cast(to) });
  }
add({ op: 'cast', dtype: 'f32', name: 'cast f32 -> i64 [batch,seq]', ins: [g('f32', [B, S], { scale: 4 })], build: (a) => a.cast('i64') });
add({ op: 'cast', dtype: 'i64', name: 'cast i64 -> f16 [] scalar', ins: [f('i64')], build: (a) => a.cast('f16') });

// --- unary ops
for (const op of UNARY_FLOAT) {
  const gen: Gen = op === 'log' || op === 'sqrt' || op === 'rsqrt' ? { positive: true } : {};
  for (const dt of FLOATS) add({ op, dtype: dt, name: `${op} ${dt} [2,3,4]`, ins: [g(dt, [2, 3, 4], gen)], build: (a) => a[op]() });
  for (const s of [[], [1], [1, 1, 5], [B, S, 3]] as Dim[][])
    add({ op, dtype: 'f32', name: `${op} f32 ${sh(s)}`, ins: [g('f32', s, gen)], build: (a) => a[op]() });
}
for (const op of ['neg', 'abs'] as const) {
  for (const dt of NUMERIC) add({ op, dtype: dt, name: `${op} ${dt} [2,3,4]`, ins: [f(dt, 2, 3, 4)], build: (a) => a[op]() });
  for (const s of [[], [1, 1], [B, S]] as Dim[][]) add({ op, dtype: 'f32', name: `${op} f32 ${sh(s)}`, ins: [f('f32', ...s)], build: (a) => a[op]() });
  add({ op, dtype: 'i64', name: `${op} i64 [batch,seq]`, ins: [f('i64', B, S)], build: (a) => a[op]() });
}
for (const s of [[2, 3, 4], [1], [], [B, S]] as Dim[][]) add({ op: 'not', dtype: 'bool', name: `not bool ${sh(s)}`, ins: [f('bool', ...s)], build: (a) => a.not() });

// --- binary ops
const BCAST: [Dim[], Dim[]][] = [
  [[2, 3, 4], [4]],
  [[2, 1, 4], [3, 1]],
  [[4], [2, 3, 4]],
  [[], [2, 3]],
  [[1, 1], [1]],
  [[4, 1, 1], [1, 3, 1]],
  [[B, S, 4], [4]],
  [[B, 1, 4], [S, 1]],
  [[B, S, 4], [B, S, 4]],
  [[1], [B, S]],
];
const method = { add: 'add', sub: 'sub', mul: 'mul', div: 'div', pow: 'pow', max: 'maximum', min: 'minimum', eq: 'eq', lt: 'lt', le: 'le', gt: 'gt', ge: 'ge', and: 'and', or: 'or' } as const;
type BinOp = keyof typeof method;
function binCase(op: BinOp, dt: DType, sa: Dim[], sb: Dim[], ga: Gen = {}, gb: Gen = {}): void {
  const m = method[op];
  add({ op, dtype: dt, name: `${op} ${dt} ${sh(sa)} ${sh(sb)}`, ins: [g(dt, sa, ga), g(dt, sb, gb)], build: (a, b) => a[m](b!) });
}
for (const op of ARITH) {
  // integer division truncates toward zero (as ORT does); divisors are never 0
  const gb: Gen = op === 'div' ? { nonzero: true } : {};
  for (const dt of NUMERIC) {
    binCase(op, dt, [2, 3, 4], [2, 3, 4], {}, gb);
    binCase(op, dt, [2, 3, 4], [4], {}, gb);
  }
  for (const dt of ['f32', 'i32'] as DType[]) for (const [sa, sb] of BCAST.slice(1)) binCase(op, dt, sa, sb, {}, gb);
  binCase(op, 'f16', [2, 1, 4], [3, 1], {}, gb);
  binCase(op, 'i64', [B, 1, 4], [S, 1], {}, gb);
}
add({ op: 'div', dtype: 'i64', name: 'div i64 negative operands truncate toward zero', ins: [g('i64', [4, 5], { int: [-20, 21] }), g('i64', [5], { int: [-4, 4], nonzero: true })], build: (a, b) => a.div(b!) });
add({ op: 'sub', dtype: 'f32', name: 'sub number - tensor (rsub)', ins: [f('f32', 2, 3)], build: (a) => a.rsub(1) });
add({ op: 'div', dtype: 'f32', name: 'div number / tensor (rdiv)', ins: [f('f32', 2, 3)], build: (a) => a.rdiv(2) });

for (const dt of FLOATS) {
  binCase('pow', dt, [2, 3, 4], [2, 3, 4], { positive: true });
  binCase('pow', dt, [2, 3, 4], [4], { positive: true });
}
for (const [sa, sb] of BCAST.slice(1)) binCase('pow', 'f32', sa, sb, { positive: true });
add({ op: 'pow', dtype: 'f32', name: 'pow f32 by constant 2 and 0.5', ins: [g('f32', [2, 3], { positive: true })], build: (a) => ({ y: a.pow(2), z: a.pow(0.5) }) });
add({ op: 'pow', dtype: 'f64', name: 'pow f64 by constant -1.5', ins: [g('f64', [B, S], { positive: true })], build: (a) => a.pow(-1.5) });

for (const op of ['max', 'min'] as const) {
  for (const dt of NUMERIC) {
    binCase(op, dt, [2, 3, 4], [2, 3, 4], { ties: true }, { ties: true });
    binCase(op, dt, [2, 3, 4], [4]);
  }
  for (const [sa, sb] of BCAST.slice(1)) binCase(op, 'f32', sa, sb);
  binCase(op, 'i64', [B, 1, 4], [S, 1]);
}
for (const op of COMPARE) {
  for (const dt of NUMERIC) {
    binCase(op, dt, [2, 3, 4], [2, 3, 4], { ties: true }, { ties: true });
    binCase(op, dt, [2, 3, 4], [4], { ties: true }, { ties: true });
  }
  for (const [sa, sb] of [BCAST[1]!, BCAST[3]!, BCAST[6]!, BCAST[7]!]) binCase(op, 'f32', sa, sb, { ties: true }, { ties: true });
  binCase(op, 'i32', [B, S, 4], [4], { ties: true }, { ties: true });
}
for (const op of ['and', 'or'] as const) {
  for (const [sa, sb] of [[[2, 3, 4], [2, 3, 4]], ...BCAST] as [Dim[], Dim[]][]) binCase(op, 'bool', sa, sb);
}

for (const dt of ['f32', 'f64', 'f16', 'bf16', 'i64', 'i32', 'bool'] as DType[]) {
  add({ op: 'where', dtype: dt, name: `where ${dt} [2,3,4]`, ins: [f('bool', 2, 3, 4), f(dt, 2, 3, 4), f(dt, 2, 3, 4)], build: (c, a, b) => c.where(a!, b!) });
  add({ op: 'where', dtype: dt, name: `where ${dt} cond [2,1,4] a [3,1] b [4]`, ins: [f('bool', 2, 1, 4), f(dt, 3, 1), f(dt, 4)], build: (c, a, b) => c.where(a!, b!) });
}
add({ op: 'where', dtype: 'f32', name: 'where f32 cond [batch,seq,1] a [seq,4] b number', ins: [f('bool', B, S, 1), f('f32', S, 4)], build: (c, a) => c.where(a!, -1e9) });
add({ op: 'where', dtype: 'bool', name: 'where bool cond [batch,1] a [seq] b [batch,seq]', ins: [f('bool', B, 1), f('bool', S), f('bool', B, S)], build: (c, a, b) => c.where(a!, b!) });
add({ op: 'where', dtype: 'f32', name: 'where f32 cond from comparison', ins: [f('f32', 3, 4), f('f32', 4)], build: (a, b) => a.gt(b!).where(a, b!) });

// --- matmul
const MM: [Dim[], Dim[]][] = [
  [[3, 4], [4, 5]],
  [[2, 3, 4, 5], [5, 6]],
  [[1, 4, 5], [3, 5, 2]],
  [[2, 1, 3, 4], [5, 4, 2]],
  [[3, 4], [2, 4, 5]],
  [[1, 1], [1, 1]],
  [[5, 1], [1, 3]],
  [[B, S, 8], [8, 4]],
  [[B, 3, 4], [B, 4, S]],
];
for (const [sa, sb] of MM) add({ op: 'matmul', dtype: 'f32', name: `matmul f32 ${sh(sa)} @ ${sh(sb)}`, ins: [f('f32', ...sa), f('f32', ...sb)], build: (a, b) => a.matmul(b!) });
for (const dt of ['f64', 'f16', 'bf16', 'i64', 'i32'] as DType[]) {
  add({ op: 'matmul', dtype: dt, name: `matmul ${dt} [3,4] @ [4,5]`, ins: [f(dt, 3, 4), f(dt, 4, 5)], build: (a, b) => a.matmul(b!) });
  add({ op: 'matmul', dtype: dt, name: `matmul ${dt} [1,4,5] @ [3,5,2]`, ins: [f(dt, 1, 4, 5), f(dt, 3, 5, 2)], build: (a, b) => a.matmul(b!) });
}
add({ op: 'matmul', dtype: 'f32', name: 'matmul f32 [batch,seq,8] @ own transpose', ins: [f('f32', B, S, 8)], build: (a) => a.matmul(a.T) });

// --- reductions
const REDUCE = { reduce_sum: 'sum', reduce_mean: 'mean', reduce_max: 'max' } as const;
for (const op of ['reduce_sum', 'reduce_mean', 'reduce_max'] as const) {
  const m = REDUCE[op];
  for (const keep of [false, true]) {
    for (const axes of [[1], [0, 2], [0, 1, 2], [-1], [-3, -1]])
      add({ op, dtype: 'f32', name: `${op} f32 [2,3,4] axes [${axes}] keepdims ${keep}`, ins: [f('f32', 2, 3, 4)], build: (a) => a[m](axes, keep) });
    // negative axes straight into the op (other producers than the DSL may keep them)
    add({ op, dtype: 'f32', name: `${op} f32 [2,3,4] raw axes [-1,-3] keepdims ${keep}`, ins: [f('f32', 2, 3, 4)], build: (a) => applyOp(op, { axes: [-1, -3], keepdims: keep }, [a]) });
    add({ op, dtype: 'f32', name: `${op} f32 [2,1,4] size-1 axis keepdims ${keep}`, ins: [f('f32', 2, 1, 4)], build: (a) => a[m](1, keep) });
    add({ op, dtype: 'f32', name: `${op} f32 [batch,seq,4] axes [1] keepdims ${keep}`, ins: [f('f32', B, S, 4)], build: (a) => a[m](1, keep) });
    add({ op, dtype: 'f32', name: `${op} f32 [batch,seq,4] axes [0,2] keepdims ${keep}`, ins: [f('f32', B, S, 4)], build: (a) => a[m]([0, 2], keep) });
    for (const dt of ['f64', 'f16', 'bf16', 'i64', 'i32'] as DType[])
      add({ op, dtype: dt, name: `${op} ${dt} [2,3,4] axes [0,2] keepdims ${keep}`, ins: [f(dt, 2, 3, 4)], build: (a) => a[m]([0, 2], keep) });
  }
  add({ op, dtype: 'f32', name: `${op} f32 [4,5] all axes -> scalar`, ins: [f('f32', 4, 5)], build: (a) => a[m]() });
}

// --- softmax
for (const axis of [0, 1, 2, -1, -2]) add({ op: 'softmax', dtype: 'f32', name: `softmax f32 [2,3,4] axis ${axis}`, ins: [g('f32', [2, 3, 4], { scale: 3 })], build: (a) => a.softmax(axis) });
add({ op: 'softmax', dtype: 'f32', name: 'softmax f32 [2,3,4] raw axis -2', ins: [g('f32', [2, 3, 4], { scale: 3 })], build: (a) => applyOp('softmax', { axis: -2 }, [a]) });
add({ op: 'softmax', dtype: 'f32', name: 'softmax f32 [3,1] size-1 axis', ins: [f('f32', 3, 1)], build: (a) => a.softmax(-1) });
add({ op: 'softmax', dtype: 'f32', name: 'softmax f32 large logits', ins: [g('f32', [2, 6], { scale: 40 })], build: (a) => a.softmax(-1) });
for (const dt of ['f64', 'f16', 'bf16'] as DType[]) {
  add({ op: 'softmax', dtype: dt, name: `softmax ${dt} [2,3,4] axis -1`, ins: [g(dt, [2, 3, 4], { scale: 3 })], build: (a) => a.softmax(-1) });
  add({ op: 'softmax', dtype: dt, name: `softmax ${dt} [2,3,4] axis 0`, ins: [g(dt, [2, 3, 4], { scale: 3 })], build: (a) => a.softmax(0) });
}
add({ op: 'softmax', dtype: 'f32', name: 'softmax f32 [batch,seq,4] axis 1', ins: [f('f32', B, S, 4)], build: (a) => a.softmax(1) });
add({ op: 'softmax', dtype: 'f32', name: 'softmax f32 [batch,seq,seq] axis -1', ins: [f('f32', B, S, S)], build: (a) => a.softmax(-1) });

// --- data movement
const MOVE_DTYPES: DType[] = ['i64', 'i32', 'bool', 'f16', 'bf16', 'f64'];
add({ op: 'reshape', dtype: 'f32', name: 'reshape f32 [2,3,4] -> [6,4]', ins: [f('f32', 2, 3, 4)], build: (a) => a.reshape(6, 4) });
add({ op: 'reshape', dtype: 'f32', name: 'reshape f32 [2,3,4] -> [-1]', ins: [f('f32', 2, 3, 4)], build: (a) => a.reshape(-1) });
add({ op: 'reshape', dtype: 'f32', name: 'reshape f32 [2,3,4] -> [4,1,-1]', ins: [f('f32', 2, 3, 4)], build: (a) => a.reshape(4, 1, -1) });
add({ op: 'reshape', dtype: 'f32', name: 'reshape f32 [] -> [1,1]', ins: [f('f32')], build: (a) => a.reshape(1, 1) });
add({ op: 'reshape', dtype: 'f32', name: 'reshape f32 [3,1,4] squeeze/unsqueeze', ins: [f('f32', 3, 1, 4)], build: (a) => ({ y: a.squeeze(1), z: a.unsqueeze(-1), w: a.unsqueeze(0) }) });
for (const dt of MOVE_DTYPES) add({ op: 'reshape', dtype: dt, name: `reshape ${dt} [2,3,4] -> [3,8]`, ins: [f(dt, 2, 3, 4)], build: (a) => a.reshape(3, 8) });
add({ op: 'reshape', dtype: 'f32', name: 'reshape f32 [batch,seq,4] -> [batch,-1]', ins: [f('f32', B, S, 4)], build: (a) => a.reshape(B, -1), onnxMin: { Shape: 1 } });
add({ op: 'reshape', dtype: 'f32', name: 'reshape f32 [batch,seq,4] -> [-1,4]', ins: [f('f32', B, S, 4)], build: (a) => a.reshape(-1, 4), onnxMin: { Shape: 2 } });
add({ op: 'reshape', dtype: 'f32', name: 'reshape f32 [batch,seq,4] -> [batch,seq,2,2]', ins: [f('f32', B, S, 4)], build: (a) => a.reshape(B, S, 2, 2), onnxMin: { Shape: 2 } });
add({ op: 'reshape', dtype: 'f32', name: 'reshape f32 [batch,seq,4] -> [seq,batch,4] (same count)', ins: [f('f32', B, S, 4)], build: (a) => a.reshape(S, B, 4), onnxMin: { Shape: 2 } });
add({ op: 'reshape', dtype: 'i64', name: 'reshape i64 [batch,seq*2] -> [batch,seq,2]', ins: [f('i64', B, dimMul(S, 2))], build: (a) => a.reshape(B, S, 2), onnxMin: { Shape: 2, Div: 1 } });
add({ op: 'reshape', dtype: 'bool', name: 'reshape bool [batch,seq] unsqueeze(1)', ins: [f('bool', B, S)], build: (a) => a.unsqueeze(1), onnxMin: { Shape: 2 } });

for (const perm of [[2, 0, 1], [1, 0, 2], [0, 2, 1]]) add({ op: 'transpose', dtype: 'f32', name: `transpose f32 [2,3,4] perm [${perm}]`, ins: [f('f32', 2, 3, 4)], build: (a) => a.transpose(...perm) });
add({ op: 'transpose', dtype: 'f32', name: 'transpose f32 [2,3,4,5] perm [0,2,-1,1]', ins: [f('f32', 2, 3, 4, 5)], build: (a) => a.transpose(0, 2, -1, 1) });
add({ op: 'transpose', dtype: 'f32', name: 'transpose f32 [1,4,1] .T', ins: [f('f32', 1, 4, 1)], build: (a) => a.T });
for (const dt of MOVE_DTYPES) add({ op: 'transpose', dtype: dt, name: `transpose ${dt} [2,3,4] perm [2,1,0]`, ins: [f(dt, 2, 3, 4)], build: (a) => a.transpose(2, 1, 0) });
add({ op: 'transpose', dtype: 'f32', name: 'transpose f32 [batch,seq,4] perm [1,2,0]', ins: [f('f32', B, S, 4)], build: (a) => a.transpose(1, 2, 0) });

add({ op: 'expand', dtype: 'f32', name: 'expand f32 [3,1] -> [2,3,4]', ins: [f('f32', 3, 1)], build: (a) => a.expand(2, 3, 4) });
add({ op: 'expand', dtype: 'f32', name: 'expand f32 [1] -> [2,3]', ins: [f('f32', 1)], build: (a) => a.expand(2, 3) });
add({ op: 'expand', dtype: 'f32', name: 'expand f32 [] -> [2,2]', ins: [f('f32')], build: (a) => a.expand(2, 2) });
add({ op: 'expand', dtype: 'f32', name: 'expand f32 [1,4] -> [1,4] (no-op sizes)', ins: [f('f32', 1, 4)], build: (a) => a.expand(1, 4) });
for (const dt of MOVE_DTYPES) add({ op: 'expand', dtype: dt, name: `expand ${dt} [3,1] -> [2,3,4]`, ins: [f(dt, 3, 1)], build: (a) => a.expand(2, 3, 4) });
add({ op: 'expand', dtype: 'f32', name: 'expand f32 [seq,1] -> [batch,seq,4]', ins: [f('f32', S, 1), f('f32', B, S)], build: (a) => a.expand(B, S, 4), onnxMin: { Shape: 2 } });
add({ op: 'expand', dtype: 'bool', name: 'expand bool [batch,1,1,seq] -> [batch,2,seq,seq]', ins: [f('bool', B, 1, 1, S)], build: (a) => a.expand(B, 2, S, S), onnxMin: { Shape: 2 } });

add({ op: 'concat', dtype: 'f32', name: 'concat f32 [2,3]+[4,3] axis 0', ins: [f('f32', 2, 3), f('f32', 4, 3)], build: (a, b) => concat([a, b!], 0) });
add({ op: 'concat', dtype: 'f32', name: 'concat f32 [2,3]+[2,1]+[2,4] axis -1', ins: [f('f32', 2, 3), f('f32', 2, 1), f('f32', 2, 4)], build: (a, b, c) => concat([a, b!, c!], -1) });
add({ op: 'concat', dtype: 'f32', name: 'concat f32 [2,1,4]+[2,3,4] axis 1', ins: [f('f32', 2, 1, 4), f('f32', 2, 3, 4)], build: (a, b) => concat([a, b!], 1) });
add({ op: 'concat', dtype: 'f32', name: 'concat f32 raw axis -2', ins: [f('f32', 2, 1, 4), f('f32', 2, 3, 4)], build: (a, b) => applyOp('concat', { axis: -2 }, [a, b!]) });
add({ op: 'concat', dtype: 'f32', name: 'concat f32 same tensor twice', ins: [f('f32', 2, 3)], build: (a) => concat([a, a, a], 0) });
add({ op: 'concat', dtype: 'f32', name: 'concat f32 single input', ins: [f('f32', 2, 3)], build: (a) => concat([a], 1).neg() });
for (const dt of MOVE_DTYPES) add({ op: 'concat', dtype: dt, name: `concat ${dt} [2,3]+[2,2] axis 1`, ins: [f(dt, 2, 3), f(dt, 2, 2)], build: (a, b) => concat([a, b!], 1) });
add({ op: 'concat', dtype: 'f32', name: 'concat f32 [batch,seq,4]+[batch,2,4] axis 1, then reshape [batch,-1]', ins: [f('f32', B, S, 4), f('f32', B, 2, 4)], build: (a, b) => concat([a, b!], 1).reshape(B, -1), onnxMin: { Shape: 2 } });
add({ op: 'concat', dtype: 'f32', name: 'concat f32 [batch,seq,4]+[batch,seq,2] axis -1', ins: [f('f32', B, S, 4), f('f32', B, S, 2)], build: (a, b) => concat([a, b!], -1) });
add({ op: 'concat', dtype: 'i64', name: 'concat i64 [seq]+[seq] axis 0 then expand [batch,seq*2]', ins: [f('i64', S), f('i64', B, S)], build: (a, b) => concat([a, b!.sum(0)], 0).expand(B, dimMul(S, 2)), onnxMin: { Shape: 2 } });

const pieces = (xs: Tensor[]) => Object.fromEntries(xs.map((x, i) => [`p${i}`, x]));
add({ op: 'split', dtype: 'f32', name: 'split f32 [2,6,3] axis 1 [1,2,3] pieces concatenated reversed', ins: [f('f32', 2, 6, 3)], build: (a) => concat(a.split(1, [1, 2, 3]).reverse(), 1), onnxExact: { Split: 1 } });
add({ op: 'split', dtype: 'f32', name: 'split f32 [2,6,3] axis 1 [1,2,3] pieces as outputs', ins: [f('f32', 2, 6, 3)], build: (a) => pieces(a.split(1, [1, 2, 3])), onnxExact: { Split: 1 } });
add({ op: 'split', dtype: 'f32', name: 'split f32 [4,6] axis -1 [2,4] pieces combined', ins: [f('f32', 4, 6)], build: (a) => { const [x, y] = a.split(-1, [2, 4]); return x!.matmul(y!.slice(1, 0, 2).T); }, onnxExact: { Split: 1 } });
add({ op: 'split', dtype: 'f32', name: 'split f32 [6,4] chunk 3 axis 0, middle piece only', ins: [f('f32', 6, 4)], build: (a) => a.chunk(3, 0)[1]!, onnxExact: { Split: 1 } });
add({ op: 'split', dtype: 'f32', name: 'split f32 raw axis -2 [1,1]', ins: [f('f32', 2, 3)], build: (a) => ({ y: applyOp('split', { axis: -2, sizes: [1, 1], index: 0 }, [a]), z: applyOp('split', { axis: -2, sizes: [1, 1], index: 1 }, [a]) }), onnxExact: { Split: 1 } });
add({ op: 'split', dtype: 'f32', name: 'split f32 [2,3] size-1 and size-0 pieces', ins: [f('f32', 2, 3)], build: (a) => pieces(a.split(1, [1, 0, 2])), onnxExact: { Split: 1 } });
for (const dt of MOVE_DTYPES) add({ op: 'split', dtype: dt, name: `split ${dt} [2,5] axis 1 [3,2]`, ins: [f(dt, 2, 5)], build: (a) => pieces(a.split(1, [3, 2])), onnxExact: { Split: 1 } });
add({ op: 'split', dtype: 'f32', name: 'split f32 [batch,seq,6] axis -1 [2,4]', ins: [f('f32', B, S, 6)], build: (a) => { const [x, y] = a.split(-1, [2, 4]); return concat([y!, x!], -1); }, onnxExact: { Split: 1 } });
add({ op: 'split', dtype: 'f32', name: 'split f32 [batch,seq,4] axis 1 [1,seq-1]', ins: [f('f32', B, S, 4)], build: (a) => { const [x, y] = a.split(1, [1, dimSub(S, 1)]); return { y: concat([y!, x!], 1), z: y!.reshape(B, -1) }; }, onnxExact: { Split: 1 }, onnxMin: { Shape: 1 } });
add({ op: 'split', dtype: 'f32', name: 'split f32 [batch,seq*2] chunk 2 axis 1', ins: [f('f32', B, dimMul(S, 2))], build: (a) => { const [x, y] = a.chunk(2, 1); return x!.sub(y!); }, onnxExact: { Split: 1 }, onnxMin: { Shape: 1, Div: 1 } });

add({ op: 'slice', dtype: 'f32', name: 'slice f32 [5,6] axis 1 [1:5:2]', ins: [f('f32', 5, 6)], build: (a) => a.slice(1, 1, 5, 2) });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [5,6] axis 0 [-3:]', ins: [f('f32', 5, 6)], build: (a) => a.slice(0, -3) });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [5,6] axis -1 [-4:-1]', ins: [f('f32', 5, 6)], build: (a) => a.slice(-1, -4, -1) });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [5,6] axis 1 [::3]', ins: [f('f32', 5, 6)], build: (a) => a.slice(1, 0, 100, 3) });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [5,6] axis 1 reversed [-1::-1]', ins: [f('f32', 5, 6)], build: (a) => a.slice(1, -1, -100, -1) });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [5,6] axis 0 [4:0:-2]', ins: [f('f32', 5, 6)], build: (a) => a.slice(0, 4, 0, -2) });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [5,6] end past the dim [2:99]', ins: [f('f32', 5, 6)], build: (a) => a.slice(0, 2, 99) });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [5,6] empty [3:1]', ins: [f('f32', 5, 6)], build: (a) => a.slice(0, 3, 1) });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [4,5,6] raw multi-axis with negative axes', ins: [f('f32', 4, 5, 6)], build: (a) => applyOp('slice', { axes: [0, -1, -2], starts: [1, -3, 4], ends: [4, 1000, 0], steps: [2, 1, -2] }, [a]) });
for (const dt of MOVE_DTYPES) add({ op: 'slice', dtype: dt, name: `slice ${dt} [5,6] axis 1 [-5:5:2]`, ins: [f(dt, 5, 6)], build: (a) => a.slice(1, -5, 5, 2) });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [batch,seq,4] [1:] then reshape [batch,-1]', ins: [f('f32', B, S, 4)], build: (a) => a.slice(1, 1).reshape(B, -1), onnxMin: { Shape: 2 } });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [batch,seq,4] [-2:]', ins: [f('f32', B, S, 4)], build: (a) => a.slice(1, -2) });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [batch,seq,4] [0:-1] then reshape [-1,4]', ins: [f('f32', B, S, 4)], build: (a) => a.slice(1, 0, -1).reshape(-1, 4), onnxMin: { Shape: 2 } });
add({ op: 'slice', dtype: 'f32', name: 'slice f32 [batch,seq,4] [1:3] and last axis [::-1]', ins: [f('f32', B, S, 4)], build: (a) => a.slice(1, 1, 3).slice(2, -1, -100, -1) });
add({ op: 'slice', dtype: 'i64', name: 'slice i64 [batch,seq] [1:-1] then expand', ins: [f('i64', B, S)], build: (a) => a.slice(1, 1, -1).unsqueeze(1).expand(B, 3, dimSub(S, 2)), onnxMin: { Shape: 2 } });

for (const idt of ['i64', 'i32'] as DType[]) {
  add({ op: 'gather', dtype: 'f32', name: `gather f32 [5,4] axis 0 ${idt} [3] (negative)`, ins: [f('f32', 5, 4), g(idt, [3], { int: [-5, 5] })], build: (a, i) => a.gather(i!, 0) });
  add({ op: 'gather', dtype: 'f32', name: `gather f32 [5,4] axis 1 ${idt} [2,3]`, ins: [f('f32', 5, 4), g(idt, [2, 3], { int: [-4, 4] })], build: (a, i) => a.gather(i!, 1) });
  add({ op: 'gather', dtype: 'f32', name: `gather f32 [5,4] axis -1 ${idt} scalar`, ins: [f('f32', 5, 4), g(idt, [], { int: [-4, 4] })], build: (a, i) => a.gather(i!, -1) });
  add({ op: 'gather', dtype: 'f32', name: `gather f32 [2,5,4] raw axis -2 ${idt} [2,2]`, ins: [f('f32', 2, 5, 4), g(idt, [2, 2], { int: [-5, 5] })], build: (a, i) => applyOp('gather', { axis: -2 }, [a, i!]) });
}
add({ op: 'gather', dtype: 'f32', name: 'gather f32 [1,4] size-1 axis', ins: [f('f32', 1, 4), g('i64', [3], { int: [-1, 1] })], build: (a, i) => a.gather(i!, 0) });
add({ op: 'gather', dtype: 'f32', name: 'gather f32 by constant indices', ins: [f('f32', 5, 4)], build: (a) => a.gather(constant([4, -5, 0, -1], 'i64'), 0) });
for (const dt of MOVE_DTYPES) add({ op: 'gather', dtype: dt, name: `gather ${dt} [5,4] axis 0 i64 [3]`, ins: [f(dt, 5, 4), g('i64', [3], { int: [-5, 5] })], build: (a, i) => a.gather(i!, 0) });
add({ op: 'gather', dtype: 'f32', name: 'gather f32 [batch,seq,4] axis 1 i64 [2] (negative)', ins: [f('f32', B, S, 4), g('i64', [2], { int: [-3, 3] })], build: (a, i) => a.gather(i!, 1) });
add({ op: 'gather', dtype: 'f32', name: 'gather f32 embedding [10,4] by i32 [batch,seq]', ins: [f('f32', 10, 4), g('i32', [B, S], { int: [-10, 10] })], build: (a, i) => a.gather(i!, 0) });

for (const mode of ['constant', 'reflect', 'edge'] as const) {
  add({ op: 'pad', dtype: 'f32', name: `pad f32 [2,3,4] ${mode}`, ins: [f('f32', 2, 3, 4)], build: (a) => a.pad([0, 1, 2, 0, 2, 1], mode) });
  add({ op: 'pad', dtype: 'f32', name: `pad f32 [3,4] ${mode} one side only`, ins: [f('f32', 3, 4)], build: (a) => a.pad([2, 0, 0, 3], mode) });
  for (const dt of ['f64', 'f16', 'bf16', 'i64', 'i32'] as DType[]) add({ op: 'pad', dtype: dt, name: `pad ${dt} [3,4] ${mode}`, ins: [f(dt, 3, 4)], build: (a) => a.pad([1, 2, 2, 1], mode, 3) });
  add({ op: 'pad', dtype: 'f32', name: `pad f32 [batch,seq,4] ${mode} seq (1,2) then reshape [batch,-1]`, ins: [f('f32', B, S, 4)], build: (a) => a.pad([0, 1, 0, 0, 2, 1], mode).reshape(B, -1), onnxMin: { Shape: 2 } });
}
add({ op: 'pad', dtype: 'f32', name: 'pad f32 [2,3] constant value 1.5', ins: [f('f32', 2, 3)], build: (a) => a.pad([1, 1, 1, 1], 'constant', 1.5) });
add({ op: 'pad', dtype: 'f32', name: 'pad f32 [2,3] zero pads', ins: [f('f32', 2, 3)], build: (a) => a.pad([0, 0, 0, 0]) });
add({ op: 'pad', dtype: 'bool', name: 'pad bool [2,3] constant true', ins: [f('bool', 2, 3)], build: (a) => a.pad([0, 1, 1, 0], 'constant', 1) });
add({ op: 'pad', dtype: 'f32', name: 'pad f32 [1,4] edge on size-1 dim', ins: [f('f32', 1, 4)], build: (a) => a.pad([2, 0, 1, 0], 'edge') });

// --- conv2d
interface ConvCase { x: Dim[]; w: number[]; bias?: boolean; stride?: number | [number, number]; padding?: number | [number, number, number, number]; dilation?: number | [number, number]; groups?: number }
const CONV: ConvCase[] = [
  { x: [1, 3, 8, 8], w: [4, 3, 3, 3] },
  { x: [1, 3, 8, 8], w: [4, 3, 3, 3], bias: true },
  { x: [2, 3, 8, 8], w: [4, 3, 3, 3], stride: 2, padding: 1, bias: true },
  { x: [1, 3, 9, 7], w: [4, 3, 3, 3], stride: 2 },
  { x: [1, 3, 8, 8], w: [2, 3, 3, 2], padding: [1, 0, 2, 1] },
  { x: [1, 2, 9, 9], w: [3, 2, 3, 3], dilation: 2, padding: 2, bias: true },
  { x: [1, 2, 9, 9], w: [3, 2, 3, 3], dilation: [1, 2], stride: [2, 1] },
  { x: [1, 4, 6, 6], w: [6, 2, 3, 3], groups: 2, padding: 1, bias: true },
  { x: [1, 3, 6, 6], w: [6, 1, 3, 3], groups: 3, padding: 1 },
  { x: [2, 3, 5, 5], w: [5, 3, 1, 1], bias: true },
  { x: [1, 1, 1, 1], w: [2, 1, 1, 1] },
];
const dsc = (c: ConvCase) =>
  `x ${sh(c.x)} w ${sh(c.w)}${c.stride ? ` stride ${c.stride}` : ''}${c.padding ? ` pad ${c.padding}` : ''}${c.dilation ? ` dil ${c.dilation}` : ''}${c.groups ? ` groups ${c.groups}` : ''}${c.bias ? ' +bias' : ''}`;
const convBuild = (c: ConvCase) => (x: Tensor, w?: Tensor, b?: Tensor) => conv2d(x, w!, c.bias ? b : undefined, { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups });
const convIns = (dt: DType, c: ConvCase) => [f(dt, ...c.x), f(dt, ...c.w), ...(c.bias ? [f(dt, c.w[0]!)] : [])];
for (const c of CONV) add({ op: 'conv2d', dtype: 'f32', name: `conv2d f32 ${dsc(c)}`, ins: convIns('f32', c), build: convBuild(c) });
for (const dt of ['f16', 'f64', 'bf16'] as DType[])
  for (const c of [CONV[2]!, CONV[7]!]) add({ op: 'conv2d', dtype: dt, name: `conv2d ${dt} ${dsc(c)}`, ins: convIns(dt, c), build: convBuild(c) });
add({ op: 'conv2d', dtype: 'f32', name: 'conv2d f32 x [batch,3,8,8] stride 2 pad 1 +bias', ins: convIns('f32', { x: [B, 3, 8, 8], w: [4, 3, 3, 3], bias: true }), build: convBuild({ x: [], w: [], stride: 2, padding: 1, bias: true }) });
add({
  op: 'conv2d', dtype: 'f32', name: 'conv2d f32 x [1,3,h,w] stride 2 pad 1, then reshape [1,-1]',
  ins: [f('f32', 1, 3, H, W), f('f32', 4, 3, 3, 3)],
  build: (x, w) => conv2d(x, w!, undefined, { stride: 2, padding: 1 }).reshape(1, -1),
  onnxMin: { Shape: 2, Div: 2 },
});

// --- upsample_nearest
for (const scale of [1, 2, 3]) add({ op: 'upsample_nearest', dtype: 'f32', name: `upsample_nearest f32 [1,2,3,4] scale ${scale}`, ins: [f('f32', 1, 2, 3, 4)], build: (a) => a.upsampleNearest(scale) });
for (const dt of ['f16', 'f64', 'bf16', 'i32', 'i64', 'bool'] as DType[])
  add({ op: 'upsample_nearest', dtype: dt, name: `upsample_nearest ${dt} [2,1,2,3] scale 2`, ins: [f(dt, 2, 1, 2, 3)], build: (a) => a.upsampleNearest(2) });
add({ op: 'upsample_nearest', dtype: 'f32', name: 'upsample_nearest f32 [batch,2,h,w] scale 2, then reshape [batch,-1]', ins: [f('f32', B, 2, H, W)], build: (a) => a.upsampleNearest(2).reshape(B, -1), onnxMin: { Shape: 3 } });

// --- barrier (identity no optimiser looks through)
for (const dt of ['f32', 'f16', 'f64', 'i64', 'bool'] as DType[])
  add({ op: 'barrier', dtype: dt, name: `barrier ${dt} [2,3]`, ins: [f(dt, 2, 3)], build: (a) => applyOp('barrier', { tag: 1 }, [a]) });

// --- adjoint primitives (reverse mode): dim_value, gather_grad, conv2d_grad_input, conv2d_grad_weight
for (const dt of ['f32', 'f16', 'i64'] as DType[])
  add({ op: 'dim_value', dtype: dt, name: `dim_value ${dt} of static 7`, ins: [], build: () => applyOp('dim_value', { dim: 7, dtype: dt }, []) });
add({ op: 'dim_value', dtype: 'f32', name: 'dim_value f32 of batch*seq', ins: [f('f32', B, S)], build: (a) => a.mul(applyOp('dim_value', { dim: dimMul(B, S), dtype: 'f32' }, [])), onnxMin: { Shape: 2 } });
for (const dt of ['f32', 'f16', 'f64'] as DType[]) {
  add({ op: 'gather_grad', dtype: dt, name: `gather_grad ${dt} axis 0 (repeated, negative indices)`, ins: [f(dt, 2, 4, 3), g('i64', [2, 4], { int: [-6, 6] })], build: (a, b) => applyOp('gather_grad', { axis: 0, shape: [6, 3] }, [a, b!]) });
  add({ op: 'conv2d_grad_input', dtype: dt, name: `conv2d_grad_input ${dt} stride 2 pad 1 groups 2`, ins: [f(dt, 2, 6, 3, 3), f(dt, 6, 2, 3, 3)], build: (a, b) => applyOp('conv2d_grad_input', { strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], group: 2, shape: [2, 4, 5, 6] }, [a, b!]) });
  add({ op: 'conv2d_grad_weight', dtype: dt, name: `conv2d_grad_weight ${dt} stride 2 pad 1 groups 2`, ins: [f(dt, 2, 4, 5, 6), f(dt, 2, 6, 3, 3)], build: (a, b) => applyOp('conv2d_grad_weight', { strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], group: 2, shape: [6, 2, 3, 3] }, [a, b!]) });
}
add({ op: 'gather_grad', dtype: 'f32', name: 'gather_grad f32 middle axis, i32 indices', ins: [f('f32', 2, 3, 3), g('i32', [3], { int: [0, 5] })], build: (a, b) => applyOp('gather_grad', { axis: 1, shape: [2, 5, 3] }, [a, b!]) });
add({ op: 'gather_grad', dtype: 'f32', name: 'gather_grad f32 symbolic batch', ins: [f('f32', B, S, 4), g('i64', [B, S], { int: [0, 10] })], build: (a, b) => applyOp('gather_grad', { axis: 0, shape: [10, 4] }, [a, b!]) });
add({ op: 'conv2d_grad_input', dtype: 'f32', name: 'conv2d_grad_input f32 dilation 2, asymmetric pads', ins: [f('f32', 1, 3, 6, 4), f('f32', 3, 2, 2, 3)], build: (a, b) => applyOp('conv2d_grad_input', { strides: [1, 1], pads: [1, 0, 0, 1], dilations: [2, 2], group: 1, shape: [1, 2, 7, 7] }, [a, b!]) });
add({ op: 'conv2d_grad_weight', dtype: 'f32', name: 'conv2d_grad_weight f32 dilation 2, asymmetric pads', ins: [f('f32', 1, 2, 7, 7), f('f32', 1, 3, 6, 4)], build: (a, b) => applyOp('conv2d_grad_weight', { strides: [1, 1], pads: [1, 0, 0, 1], dilations: [2, 2], group: 1, shape: [3, 2, 2, 3] }, [a, b!]) });

// --- fused ops (src/ir/ops/fused.ts): lowered for the cpu target (RMSNormalization-23, MultiHeadAttention,
// ai.unifusion functions, ...; f16 through the decomposition); the other targets' forms: test/fusion/
for (const dt of ['f32', 'f16'] as DType[]) {
  add({ op: 'rms_norm', dtype: dt, name: `rms_norm ${dt} [2,3,8] weighted`, ins: [f(dt, 2, 3, 8), f(dt, 8)], build: (a, w) => fused.rmsNorm(a, w, 1e-5) });
  add({ op: 'layer_norm', dtype: dt, name: `layer_norm ${dt} [2,3,8] weight + bias`, ins: [f(dt, 2, 3, 8), f(dt, 8), f(dt, 8)], build: (a, w, b) => fused.layerNorm(a, w, b, 1e-5) });
  add({ op: 'gelu', dtype: dt, name: `gelu ${dt} [3,5] erf`, ins: [f(dt, 3, 5)], build: (a) => fused.gelu(a) });
  add({ op: 'rope', dtype: dt, name: `rope ${dt} [2,2,5,8] interleaved, table [5,4]`, ins: [f(dt, 2, 2, 5, 8), f(dt, 5, 4), f(dt, 5, 4)], build: (x, c, s) => fused.rope(x, c!, s!, { interleaved: true }) });
  add({ op: 'sdpa', dtype: dt, name: `sdpa ${dt} [2,2,4,8] key-padding mask`, ins: [f(dt, 2, 2, 4, 8), f(dt, 2, 2, 5, 8), f(dt, 2, 2, 5, 8), f('bool', 2, 1, 1, 5)], build: (q, k, v, m) => fused.sdpa(q, k!, v!, { mask: m }) });
  add({ op: 'swiglu', dtype: dt, name: `swiglu ${dt} [2,3,6]`, ins: [f(dt, 2, 3, 6), f(dt, 2, 3, 6)], build: (a, b) => fused.swiglu(a, b!) });
  add({ op: 'ada_rms_norm', dtype: dt, name: `ada_rms_norm ${dt} [2,3,8] weighted, scale/shift [2,1,8]`, ins: [f(dt, 2, 3, 8), f(dt, 8), f(dt, 2, 1, 8), f(dt, 2, 1, 8)], build: (x, w, a, b) => fused.adaRmsNorm(x, w, a!, b!, 1e-5) });
  add({ op: 'add_rms_norm', dtype: dt, name: `add_rms_norm ${dt} [2,3,8] weighted, both outputs`, ins: [f(dt, 2, 3, 8), f(dt, 2, 3, 8), f(dt, 8)], build: (x, r, w) => { const [y, s] = fused.addRmsNorm(x, r!, w, 1e-5); return { y, s }; } });
  add({ op: 'add_layer_norm', dtype: dt, name: `add_layer_norm ${dt} [2,3,8] weight + bias, both outputs`, ins: [f(dt, 2, 3, 8), f(dt, 2, 3, 8), f(dt, 8), f(dt, 8)], build: (x, r, w, b) => { const [y, s] = fused.addLayerNorm(x, r!, w, b, 1e-5); return { y, s }; } });
  add({ op: 'kv_sdpa', dtype: dt, name: `kv_sdpa ${dt} GQA 4/2 heads, past 5 + 3, mask [2,1,3,8], all three outputs`, ins: [f(dt, 2, 4, 3, 8), f(dt, 2, 2, 3, 8), f(dt, 2, 2, 3, 8), f(dt, 2, 2, 5, 8), f(dt, 2, 2, 5, 8), f('bool', 2, 1, 3, 8)], build: (q, k, v, pk, pv, m) => { const [o, pk1, pv1] = fused.kvSdpa(q, k!, v!, pk!, pv!, { mask: m }); return { o, pk1, pv1 }; } });
  add({ op: 'layer_pool', dtype: dt, name: `layer_pool ${dt} [2,3,4,8] weight [1,4]`, ins: [f(dt, 2, 3, 4, 8), f(dt, 1, 4)], build: (x, w) => fused.layerPool(x, w!) });
}
add({ op: 'rms_norm', dtype: 'f32', name: 'rms_norm f32 [batch,seq,8] no weight', ins: [f('f32', B, S, 8)], build: (a) => fused.rmsNorm(a, undefined) });
add({ op: 'layer_norm', dtype: 'f32', name: 'layer_norm f32 [batch,seq,8] no affine', ins: [f('f32', B, S, 8)], build: (a) => fused.layerNorm(a) });
add({ op: 'layer_norm', dtype: 'f32', name: 'layer_norm f32 [2,3,8] weight only', ins: [f('f32', 2, 3, 8), f('f32', 8)], build: (a, w) => fused.layerNorm(a, w) });
add({ op: 'gelu', dtype: 'f32', name: 'gelu f32 [batch,seq] tanh', ins: [f('f32', B, S)], build: (a) => fused.gelu(a, 'tanh') });
add({ op: 'rope', dtype: 'f32', name: 'rope f32 [2,2,5,8] rotate-half, partial (R = 4)', ins: [f('f32', 2, 2, 5, 8), f('f32', 5, 2), f('f32', 5, 2)], build: (x, c, s) => fused.rope(x, c!, s!) });
add({ op: 'rope', dtype: 'f32', name: 'rope f32 [batch,2,seq,8] interleaved, batched table [batch,1,seq,4]', ins: [f('f32', B, 2, S, 8), f('f32', B, 1, S, 4), f('f32', B, 1, S, 4)], build: (x, c, s) => fused.rope(x, c!, s!, { interleaved: true }) });
add({ op: 'rope', dtype: 'f32', name: 'rope f32 [2,5,8] rank 3 (decomposed)', ins: [f('f32', 2, 5, 8), f('f32', 5, 4), f('f32', 5, 4)], build: (x, c, s) => fused.rope(x, c!, s!) });
add({ op: 'sdpa', dtype: 'f32', name: 'sdpa f32 [2,2,4,8] no mask (MultiHeadAttention)', ins: [f('f32', 2, 2, 4, 8), f('f32', 2, 2, 4, 8), f('f32', 2, 2, 4, 8)], build: (q, k, v) => fused.sdpa(q, k!, v!, { scale: 0.3 }) });
add({ op: 'sdpa', dtype: 'f32', name: 'sdpa f32 GQA 4/2 heads, mask [4,5] (Attention-23)', ins: [f('f32', 2, 4, 4, 8), f('f32', 2, 2, 5, 8), f('f32', 2, 2, 5, 8), f('bool', 4, 5)], build: (q, k, v, m) => fused.sdpa(q, k!, v!, { mask: m }) });
add({ op: 'sdpa', dtype: 'f32', name: 'sdpa f32 GQA 4/2 heads, no mask (decomposed)', ins: [f('f32', 2, 4, 4, 8), f('f32', 2, 2, 5, 8), f('f32', 2, 2, 5, 8)], build: (q, k, v) => fused.sdpa(q, k!, v!) });
add({ op: 'sdpa', dtype: 'f32', name: 'sdpa f32 [batch,2,seq,8] key mask [batch,1,1,seq]', ins: [f('f32', B, 2, S, 8), f('f32', B, 2, S, 8), f('f32', B, 2, S, 8), f('bool', B, 1, 1, S)], build: (q, k, v, m) => fused.sdpa(q, k!, v!, { mask: m }) });
add({ op: 'sdpa', dtype: 'f32', name: 'sdpa f32 fully masked rows average uniformly', ins: [f('f32', 2, 2, 3, 4), f('f32', 2, 2, 3, 4), f('f32', 2, 2, 3, 4)], build: (q, k, v) => fused.sdpa(q, k!, v!, { mask: constant([1, 0, 1, 0, 0, 0], 'bool', [2, 1, 1, 3]) }) });
add({ op: 'ada_rms_norm', dtype: 'f32', name: 'ada_rms_norm f32 [batch,seq,8] no weight, scale/shift [batch,1,8]', ins: [f('f32', B, S, 8), f('f32', B, 1, 8), f('f32', B, 1, 8)], build: (x, a, b) => fused.adaRmsNorm(x, undefined, a!, b!) });
add({ op: 'add_rms_norm', dtype: 'f32', name: 'add_rms_norm f32 [batch,seq,8] no weight, normed only', ins: [f('f32', B, S, 8), f('f32', B, S, 8)], build: (x, r) => fused.addRmsNorm(x, r!, undefined)[0] });
add({ op: 'add_layer_norm', dtype: 'f32', name: 'add_layer_norm f32 [batch,seq,8] no affine, normed only', ins: [f('f32', B, S, 8), f('f32', B, S, 8)], build: (x, r) => fused.addLayerNorm(x, r!)[0] });
add({ op: 'kv_sdpa', dtype: 'f32', name: 'kv_sdpa f32 [batch,2,seq,8] after a symbolic past, no mask', ins: [f('f32', B, 2, S, 8), f('f32', B, 2, S, 8), f('f32', B, 2, S, 8), f('f32', B, 2, H, 8), f('f32', B, 2, H, 8)], build: (q, k, v, pk, pv) => { const [o, pk1] = fused.kvSdpa(q, k!, v!, pk!, pv!, { scale: 0.3 }); return { o, pk1 }; } });
add({ op: 'layer_pool', dtype: 'f32', name: 'layer_pool f32 [batch,seq,3,8]', ins: [f('f32', B, S, 3, 8), f('f32', 1, 3)], build: (x, w) => fused.layerPool(x, w!) });

// ---------------------------------------------------------------------------

describe('op table: ONNX (onnxruntime CPU) vs float64 reference', () => {
  it('has a runnable case for every op kind in OP_KINDS', () => {
    const missing = OP_KINDS.filter((k) => !cases.some((c) => c.op === k && !c.skip));
    expect(missing, 'op kinds without a (non-skipped) case').toEqual([]);
    const names = cases.map((c) => c.name);
    expect(names.filter((n, i) => names.indexOf(n) !== i), 'duplicate case names').toEqual([]);
  });

  for (const op of OP_KINDS) {
    describe(op, () => {
      for (const c of cases.filter((x) => x.op === op)) {
        if (c.skip) it.skip(`${c.name} [${c.skip}]`, () => {});
        else it(c.name, () => runCase(c));
      }
    });
  }
});

// ---------------------------------------------------------------------------
// The ORT gap lists are checked against onnxruntime itself.

let tmpDir: string | undefined;
afterAll(() => {
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

/** Names of nodes onnxruntime added itself (its f32 fallback casts for missing f16 kernels). */
async function ortInsertedNodes(graph: Graph): Promise<string[]> {
  tmpDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-ops-'));
  const model = emitModel(graph).model;
  const ours = new Set(model.graph!.node!.map((n) => n.name));
  const file = path.join(tmpDir, 'opt.onnx');
  const s = await ort.InferenceSession.create(encodeModel(model), { executionProviders: ['cpu'], graphOptimizationLevel: 'disabled', optimizedModelFilePath: file, logSeverityLevel: 3 });
  await s.release();
  return decodeModel(fs.readFileSync(file)).graph!.node!.filter((n) => !ours.has(n.name)).map((n) => `${n.opType}:${n.name}`);
}

describe('onnxruntime CPU kernel gaps (re-verified, so the table stays honest)', () => {
  it('every skipped combo is still rejected by onnxruntime for a missing kernel', async () => {
    const skipped = cases.filter((c) => c.skip);
    expect(skipped.length).toBeGreaterThan(0);
    const nowSupported: string[] = [];
    for (const c of skipped) {
      const bytes = encodeModel(emitModel(buildCase(c).graph).model);
      dumpModel(`skipped ${c.name}`, bytes); // still valid ONNX: UNIFUSION_DUMP_DIR runs onnx.checker over it
      try {
        const s = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], logSeverityLevel: 4 });
        await s.release();
        nowSupported.push(c.name);
      } catch (e) {
        expect(String((e as Error).message), c.name).toMatch(/Could not find an implementation/);
      }
    }
    expect(nowSupported, 'combos ORT now runs: remove them from ORT_GAPS').toEqual([]);
  });

  it('f16 ops listed in F16_FALLBACK run through ORT-inserted f32 casts; all others run natively in f16', async () => {
    const wrong: string[] = [];
    const audited: OpKind[] = [];
    for (const op of OP_KINDS) {
      // the first static f16 case whose graph holds nothing but this op and leaves
      const alone = (x: Case) => buildCase(x).graph.nodes().every((n) => n.op === op || n.op === 'input' || n.op === 'constant' || n.op === 'param');
      const c = cases.find((x) => x.op === op && x.dtype === 'f16' && !x.skip && !isSymbolic(x) && alone(x));
      if (!c) continue;
      audited.push(op);
      const inserted = await ortInsertedNodes(buildCase(c).graph);
      const fallback = inserted.length > 0;
      if (fallback !== F16_FALLBACK.includes(op)) wrong.push(`${op} (${c.name}): ${fallback ? `ORT inserted ${inserted.join(', ')}` : 'native f16 kernel'}`);
    }
    expect(wrong).toEqual([]);
    const boolOnly: OpKind[] = ['not', 'and', 'or'];
    expect(OP_KINDS.filter((k) => !audited.includes(k) && !boolOnly.includes(k)), 'op kinds without a single-op f16 case').toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// Shape-rule errors: a DSLError naming the op, the operand types and the line of
// this file that made the bad call.

const THIS_FILE = fileURLToPath(import.meta.url);
const SOURCE_LINES = fs.readFileSync(THIS_FILE, 'utf8').split('\n');

interface ErrCase {
  op: OpKind;
  name: string;
  build: () => unknown;
  /** op name and operand types as the message must show them */
  sig: string;
  /** what else the message says */
  says: RegExp;
  /** text of the call on the line the error must point at */
  call: string;
  /** more text that line must hold (default: this entry's op and name) */
  lineHas?: string[] | string;
}

const ERRORS: ErrCase[] = [
  { op: 'add', name: 'mismatched broadcast', sig: 'add(f32[2, 3], f32[4])', says: /do not broadcast/, call: '.add(', build: () => input('a', 'f32', [2, 3]).add(input('b', 'f32', [4])) },
  { op: 'mul', name: 'mismatched broadcast (inner)', sig: 'mul(f32[2, 3, 4], f32[3, 1, 4])', says: /do not broadcast \(axis -3: 2 vs 3\)/, call: '.mul(', build: () => input('a', 'f32', [2, 3, 4]).mul(input('b', 'f32', [3, 1, 4])) },
  { op: 'sub', name: 'symbolic dims that differ', sig: 'sub(f32[batch, 4], f32[seq, 4])', says: /batch vs seq/, call: '.sub(', build: () => input('a', 'f32', [B, 4]).sub(input('b', 'f32', [S, 4])) },
  { op: 'add', name: 'dtype mismatch', sig: 'add(f32[2], f16[2])', says: /explicit cast/, call: '.add(', build: () => input('a', 'f32', [2]).add(input('b', 'f16', [2])) },
  { op: 'div', name: 'int / float', sig: 'div(i64[3], f32[3])', says: /dtypes differ/, call: '.div(', build: () => input('a', 'i64', [3]).div(input('b', 'f32', [3])) },
  { op: 'pow', name: 'integer pow', sig: 'pow(i32[2], i32[2])', says: /floating point/, call: '.pow(', build: () => input('a', 'i32', [2]).pow(input('b', 'i32', [2])) },
  { op: 'max', name: 'max of bools', sig: 'max(bool[2], bool[2])', says: /numeric/, call: '.maximum(', build: () => input('a', 'bool', [2]).maximum(input('b', 'bool', [2])) },
  { op: 'min', name: 'min broadcast', sig: 'min(i64[2, 3], i64[2])', says: /do not broadcast/, call: '.minimum(', build: () => input('a', 'i64', [2, 3]).minimum(input('b', 'i64', [2])) },
  { op: 'eq', name: 'eq of bools', sig: 'eq(bool[2], bool[2])', says: /numeric/, call: '.eq(', build: () => input('a', 'bool', [2]).eq(input('b', 'bool', [2])) },
  { op: 'lt', name: 'lt dtype mismatch', sig: 'lt(f32[2], i32[2])', says: /dtypes differ/, call: '.lt(', build: () => input('a', 'f32', [2]).lt(input('b', 'i32', [2])) },
  { op: 'le', name: 'le broadcast', sig: 'le(f32[3], f32[4])', says: /do not broadcast/, call: '.le(', build: () => input('a', 'f32', [3]).le(input('b', 'f32', [4])) },
  { op: 'gt', name: 'gt symbolic mismatch', sig: 'gt(f32[batch], f32[seq])', says: /do not broadcast/, call: '.gt(', build: () => input('a', 'f32', [B]).gt(input('b', 'f32', [S])) },
  { op: 'ge', name: 'ge of bools', sig: 'ge(bool[1], bool[1])', says: /numeric/, call: '.ge(', build: () => input('a', 'bool', [1]).ge(input('b', 'bool', [1])) },
  { op: 'and', name: 'and of floats', sig: 'and(f32[2], f32[2])', says: /needs bool operands/, call: '.and(', build: () => input('a', 'f32', [2]).and(input('b', 'f32', [2])) },
  { op: 'or', name: 'or broadcast', sig: 'or(bool[2, 3], bool[2])', says: /do not broadcast/, call: '.or(', build: () => input('a', 'bool', [2, 3]).or(input('b', 'bool', [2])) },
  { op: 'not', name: 'not of float', sig: 'not(f32[2])', says: /needs bool operands/, call: '.not(', build: () => input('a', 'f32', [2]).not() },
  { op: 'neg', name: 'neg of bool', sig: 'neg(bool[2])', says: /numeric/, call: '.neg(', build: () => input('a', 'bool', [2]).neg() },
  { op: 'abs', name: 'abs of bool', sig: 'abs(bool[2, 1])', says: /numeric/, call: '.abs(', build: () => input('a', 'bool', [2, 1]).abs() },
  ...UNARY_FLOAT.map((op): ErrCase => ({ op, name: `${op} of int`, sig: `${op}(i64[batch, 3])`, says: /must be floating point/, call: '[op]()', lineHas: 'of int`', build: () => input('a', 'i64', [B, 3])[op]() })),
  { op: 'where', name: 'non-bool condition', sig: 'where(f32[2], f32[2], f32[2])', says: /condition must be bool/, call: '.where(', build: () => input('c', 'f32', [2]).where(input('a', 'f32', [2]), input('b', 'f32', [2])) },
  { op: 'where', name: 'branch dtypes differ', sig: 'where(bool[2], f32[2], i64[2])', says: /dtypes differ/, call: '.where(', build: () => input('c', 'bool', [2]).where(input('a', 'f32', [2]), input('b', 'i64', [2])) },
  { op: 'where', name: 'condition does not broadcast', sig: 'where(bool[3], f32[2], f32[2])', says: /do not broadcast/, call: '.where(', build: () => input('c', 'bool', [3]).where(input('a', 'f32', [2]), input('b', 'f32', [2])) },
  { op: 'matmul', name: 'inner dims', sig: 'matmul(f32[2, 3], f32[4, 5])', says: /inner dims differ.*3 vs 4/, call: '.matmul(', build: () => input('a', 'f32', [2, 3]).matmul(input('b', 'f32', [4, 5])) },
  { op: 'matmul', name: 'batch dims', sig: 'matmul(f32[2, 3, 4], f32[3, 4, 5])', says: /do not broadcast/, call: '.matmul(', build: () => input('a', 'f32', [2, 3, 4]).matmul(input('b', 'f32', [3, 4, 5])) },
  { op: 'matmul', name: 'rank 1', sig: 'matmul(f32[4], f32[4, 5])', says: /rank >= 2/, call: '.matmul(', build: () => input('a', 'f32', [4]).matmul(input('b', 'f32', [4, 5])) },
  { op: 'matmul', name: 'symbolic inner dims', sig: 'matmul(f32[batch, seq], f32[batch, 4])', says: /seq vs batch/, call: '.matmul(', build: () => input('a', 'f32', [B, S]).matmul(input('b', 'f32', [B, 4])) },
  { op: 'reduce_sum', name: 'bool operand', sig: 'reduce_sum(bool[2, 3])', says: /bool operand/, call: '.sum(', build: () => input('a', 'bool', [2, 3]).sum(1) },
  { op: 'reduce_mean', name: 'repeated axes', sig: 'reduce_mean(f32[2, 3])', says: /repeated axes/, call: '.mean(', build: () => input('a', 'f32', [2, 3]).mean([1, -1]) },
  { op: 'reduce_max', name: 'axis out of range', sig: 'reduce_max(f32[2, 3])', says: /axis 2 out of range for rank 2/, call: '.max(', build: () => input('a', 'f32', [2, 3]).max(2) },
  { op: 'reduce_sum', name: 'no axes', sig: 'reduce_sum(f32[2, 3])', says: /no axes/, call: "applyOp('reduce_sum'", build: () => applyOp('reduce_sum', { axes: [], keepdims: false }, [input('a', 'f32', [2, 3])]) },
  { op: 'softmax', name: 'on int', sig: 'softmax(i32[2, 3])', says: /must be floating point/, call: '.softmax(', build: () => input('a', 'i32', [2, 3]).softmax() },
  { op: 'softmax', name: 'axis out of range', sig: 'softmax(f32[2, 3])', says: /axis 5 out of range/, call: '.softmax(', build: () => input('a', 'f32', [2, 3]).softmax(5) },
  { op: 'reshape', name: 'element count', sig: 'reshape(f32[2, 3])', says: /element counts 6 and 8 differ/, call: '.reshape(', build: () => input('a', 'f32', [2, 3]).reshape(4, 2) },
  { op: 'reshape', name: 'symbolic element count', sig: 'reshape(f32[batch, seq])', says: /element counts batch\*seq and batch\*4 differ/, call: '.reshape(', build: () => input('a', 'f32', [B, S]).reshape(B, 4) },
  { op: 'transpose', name: 'bad perm (repeated axis)', sig: 'transpose(f32[2, 3, 4])', says: /perm \[0,0,1\] is not a permutation/, call: '.transpose(', build: () => input('a', 'f32', [2, 3, 4]).transpose(0, 0, 1) },
  { op: 'transpose', name: 'bad perm (wrong length)', sig: 'transpose(f32[2, 3, 4])', says: /is not a permutation of 3 axes/, call: '.transpose(', build: () => input('a', 'f32', [2, 3, 4]).transpose(1, 0) },
  { op: 'expand', name: 'not broadcastable', sig: 'expand(f32[3])', says: /do not broadcast/, call: '.expand(', build: () => input('a', 'f32', [3]).expand(2, 4) },
  { op: 'expand', name: 'to lower rank', sig: 'expand(f32[1, 3])', says: /lower rank/, call: '.expand(', build: () => input('a', 'f32', [1, 3]).expand(3) },
  { op: 'expand', name: 'shrinking a dim', sig: 'expand(f32[2, 3])', says: /does not expand to \[1, 3\]/, call: '.expand(', build: () => input('a', 'f32', [2, 3]).expand(1, 3) },
  { op: 'concat', name: 'ranks differ', sig: 'concat(f32[2, 3], f32[2, 3, 1])', says: /ranks differ/, call: 'concat([', build: () => concat([input('a', 'f32', [2, 3]), input('b', 'f32', [2, 3, 1])], 0) },
  { op: 'concat', name: 'dims differ off the axis', sig: 'concat(f32[2, 3], f32[4, 3], f32[2, 4])', says: /dim 1 differs/, call: 'concat([', build: () => concat([input('a', 'f32', [2, 3]), input('b', 'f32', [4, 3]), input('c', 'f32', [2, 4])], 0) },
  { op: 'concat', name: 'symbolic dims differ', sig: 'concat(f32[batch, 3], f32[seq, 3])', says: /dim 0 differs/, call: 'concat([', build: () => concat([input('a', 'f32', [B, 3]), input('b', 'f32', [S, 3])], 1) },
  { op: 'concat', name: 'dtypes differ', sig: 'concat(f32[2], i64[2])', says: /dtypes differ/, call: 'concat([', build: () => concat([input('a', 'f32', [2]), input('b', 'i64', [2])], 0) },
  { op: 'split', name: 'sizes not summing', sig: 'split(f32[2, 6])', says: /sizes \[2,3\] sum to 5, not 6/, call: '.split(', build: () => input('a', 'f32', [2, 6]).split(1, [2, 3]) },
  { op: 'split', name: 'symbolic sizes not summing', sig: 'split(f32[batch, seq])', says: /sum to 1\+seq, not seq/, call: '.split(', build: () => input('a', 'f32', [B, S]).split(1, [1, S]) },
  { op: 'split', name: 'axis out of range', sig: 'split(f32[6])', says: /split axis 1 out of range/, call: '.split(', build: () => input('a', 'f32', [6]).split(1, [3, 3]) },
  { op: 'slice', name: 'step on a symbolic dim', sig: 'slice(f32[batch, seq])', says: /step 2 on symbolic dim seq/, call: '.slice(', build: () => input('a', 'f32', [B, S]).slice(1, 0, 100, 2) },
  { op: 'slice', name: 'step 0', sig: 'slice(f32[4])', says: /step must not be 0/, call: '.slice(', build: () => input('a', 'f32', [4]).slice(0, 0, 4, 0) },
  { op: 'slice', name: 'axis out of range', sig: 'slice(f32[4])', says: /slice axis 3 out of range/, call: '.slice(', build: () => input('a', 'f32', [4]).slice(3, 0) },
  { op: 'gather', name: 'float indices', sig: 'gather(f32[5, 4], f32[3])', says: /indices must be i64 or i32/, call: '.gather(', build: () => input('a', 'f32', [5, 4]).gather(input('i', 'f32', [3])) },
  { op: 'gather', name: 'axis out of range', sig: 'gather(f32[5, 4], i64[3])', says: /gather axis 2 out of range/, call: '.gather(', build: () => input('a', 'f32', [5, 4]).gather(input('i', 'i64', [3]), 2) },
  { op: 'pad', name: 'reflect pad too large', sig: 'pad(f32[2, 3])', says: /reflect: pad exceeds dim 1/, call: '.pad(', build: () => input('a', 'f32', [2, 3]).pad([0, 3, 0, 0], 'reflect') },
  { op: 'pad', name: 'pads length', sig: 'pad(f32[2, 3])', says: /3 pads for rank 2/, call: '.pad(', build: () => input('a', 'f32', [2, 3]).pad([1, 1, 1]) },
  { op: 'pad', name: 'negative pad', sig: 'pad(f32[2, 3])', says: /non-negative/, call: '.pad(', build: () => input('a', 'f32', [2, 3]).pad([0, -1, 0, 0]) },
  { op: 'range', name: 'bool dtype', sig: 'range()', says: /dtype bool is not numeric/, call: 'range(', build: () => range(3, { dtype: 'bool' }) },
  { op: 'range', name: 'negative size', sig: 'range()', says: /negative size -2/, call: 'range(', build: () => range(-2) },
  { op: 'constant', name: 'value count vs shape', sig: 'constant()', says: /3 values for shape \[2,2\]/, call: 'constant(', build: () => constant([1, 2, 3], 'f32', [2, 2]) },
  { op: 'param', name: 'non-integer shape', sig: 'param()', says: /shape \[2,1.5\] must be non-negative integers/, call: "applyOp('param'", build: () => applyOp('param', { name: 'w', dtype: 'f32', shape: [2, 1.5], init: { kind: 'zeros' }, frozen: false, seed: 0 }, []) },
  { op: 'conv2d', name: 'channel mismatch', sig: 'conv2d(f32[1, 3, 8, 8], f32[4, 2, 3, 3])', says: /3 channels/, call: 'conv2d(input', build: () => conv2d(input('x', 'f32', [1, 3, 8, 8]), input('w', 'f32', [4, 2, 3, 3]), undefined) },
  { op: 'conv2d', name: 'bias mismatch', sig: 'conv2d(f32[1, 3, 8, 8], f32[4, 3, 3, 3], f32[3])', says: /bias f32\[3\] does not match 4 output channels/, call: 'conv2d(input', build: () => conv2d(input('x', 'f32', [1, 3, 8, 8]), input('w', 'f32', [4, 3, 3, 3]), input('b', 'f32', [3])) },
  { op: 'conv2d', name: 'not 4-D', sig: 'conv2d(f32[3, 8, 8], f32[4, 3, 3, 3])', says: /needs x \[N,C,H,W\]/, call: 'conv2d(input', build: () => conv2d(input('x', 'f32', [3, 8, 8]), input('w', 'f32', [4, 3, 3, 3]), undefined) },
  { op: 'conv2d', name: 'int input', sig: 'conv2d(i32[1, 3, 8, 8], i32[4, 3, 3, 3])', says: /must be floating point/, call: 'conv2d(input', build: () => conv2d(input('x', 'i32', [1, 3, 8, 8]), input('w', 'i32', [4, 3, 3, 3]), undefined) },
  { op: 'upsample_nearest', name: 'not 4-D', sig: 'upsample_nearest(f32[2, 3, 4])', says: /needs \[N,C,H,W\]/, call: '.upsampleNearest(', build: () => input('a', 'f32', [2, 3, 4]).upsampleNearest(2) },
  { op: 'upsample_nearest', name: 'fractional scale', sig: 'upsample_nearest(f32[1, 1, 2, 2])', says: /scale 1.5 must be a positive integer/, call: '.upsampleNearest(', build: () => input('a', 'f32', [1, 1, 2, 2]).upsampleNearest(1.5) },
  { op: 'gather_grad', name: 'cotangent shape', sig: 'gather_grad(f32[2, 4], i64[2, 3])', says: /does not match gather of \[6, 4\]/, call: "applyOp('gather_grad'", build: () => applyOp('gather_grad', { axis: 0, shape: [6, 4] }, [input('a', 'f32', [2, 4]), input('b', 'i64', [2, 3])]) },
  { op: 'conv2d_grad_input', name: 'symbolic spatial dims', sig: 'conv2d_grad_input(f32[1, 2, 3, 3], f32[2, 2, 3, 3])', says: /static shapes/, call: "applyOp('conv2d_grad_input'", build: () => applyOp('conv2d_grad_input', { strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1, shape: [1, 2, H, W] }, [input('a', 'f32', [1, 2, 3, 3]), input('b', 'f32', [2, 2, 3, 3])]) },
  { op: 'conv2d_grad_input', name: 'cotangent not the conv output size', sig: 'conv2d_grad_input(f32[1, 2, 4, 4], f32[2, 2, 3, 3])', says: /cotangent spatial size \[4,4\] is not the conv output size \[3,3\]/, call: "applyOp('conv2d_grad_input'", build: () => applyOp('conv2d_grad_input', { strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1, shape: [1, 2, 5, 5] }, [input('a', 'f32', [1, 2, 4, 4]), input('b', 'f32', [2, 2, 3, 3])]) },
  { op: 'conv2d_grad_weight', name: 'int input', sig: 'conv2d_grad_weight(i32[1, 2, 5, 5], i32[1, 2, 3, 3])', says: /must be floating point/, call: "applyOp('conv2d_grad_weight'", build: () => applyOp('conv2d_grad_weight', { strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1, shape: [2, 2, 3, 3] }, [input('a', 'i32', [1, 2, 5, 5]), input('b', 'i32', [1, 2, 3, 3])]) },
  { op: 'rms_norm', name: 'weight not per channel', sig: 'rms_norm(f32[2, 3], f32[4])', says: /must have shape \[3\]/, call: 'fused.rmsNorm(', build: () => fused.rmsNorm(input('a', 'f32', [2, 3]), input('w', 'f32', [4])) },
  { op: 'layer_norm', name: 'bias not per channel', sig: 'layer_norm(f32[2, 3], f32[3], f32[2])', says: /must have shape \[3\]/, call: 'fused.layerNorm(', build: () => fused.layerNorm(input('a', 'f32', [2, 3]), input('w', 'f32', [3]), input('b', 'f32', [2])) },
  { op: 'gelu', name: 'gelu of int', sig: 'gelu(i32[2])', says: /must be floating point/, call: 'fused.gelu(', build: () => fused.gelu(input('a', 'i32', [2])) },
  { op: 'rope', name: 'table wider than the head', sig: 'rope(f32[2, 4, 8], f32[4, 5], f32[4, 5])', says: /R <= head dim 8/, call: 'fused.rope(', build: () => fused.rope(input('x', 'f32', [2, 4, 8]), input('c', 'f32', [4, 5]), input('s', 'f32', [4, 5])) },
  { op: 'sdpa', name: 'heads not a multiple', sig: 'sdpa(f32[1, 3, 4, 8], f32[1, 2, 4, 8], f32[1, 2, 4, 8])', says: /3 query heads is not a multiple of 2/, call: 'fused.sdpa(', build: () => fused.sdpa(input('q', 'f32', [1, 3, 4, 8]), input('k', 'f32', [1, 2, 4, 8]), input('v', 'f32', [1, 2, 4, 8])) },
  { op: 'swiglu', name: 'dtypes differ', sig: 'swiglu(f32[2], f16[2])', says: /dtypes differ/, call: 'fused.swiglu(', build: () => fused.swiglu(input('a', 'f32', [2]), input('b', 'f16', [2])) },
  { op: 'ada_rms_norm', name: 'scale grows x', sig: 'ada_rms_norm(f32[2, 3, 8], f32[2, 4, 8], f32[2, 1, 8])', says: /do not broadcast/, call: 'fused.adaRmsNorm(', build: () => fused.adaRmsNorm(input('x', 'f32', [2, 3, 8]), undefined, input('a', 'f32', [2, 4, 8]), input('b', 'f32', [2, 1, 8])) },
  { op: 'add_rms_norm', name: 'residual of another shape', sig: 'add_rms_norm(f32[2, 3], f32[1, 3])', says: /residual f32\[1, 3\] must have shape \[2, 3\]/, call: 'fused.addRmsNorm(', build: () => fused.addRmsNorm(input('x', 'f32', [2, 3]), input('r', 'f32', [1, 3]), undefined)[0] },
  { op: 'add_layer_norm', name: 'bias not per channel', sig: 'add_layer_norm(f32[2, 3], f32[2, 3], f32[3], f32[2])', says: /weight\/bias f32\[2\] must have shape \[3\]/, call: 'fused.addLayerNorm(', build: () => fused.addLayerNorm(input('x', 'f32', [2, 3]), input('r', 'f32', [2, 3]), input('w', 'f32', [3]), input('b', 'f32', [2]))[0] },
  { op: 'kv_sdpa', name: 'past of another head dim', sig: 'kv_sdpa(f32[1, 2, 1, 8], f32[1, 2, 1, 8], f32[1, 2, 1, 8], f32[1, 2, 4, 4], f32[1, 2, 4, 8])', says: /past_k f32\[1, 2, 4, 4\] must have shape \[1, 2, 4, 8\]/, call: 'fused.kvSdpa(', build: () => fused.kvSdpa(input('q', 'f32', [1, 2, 1, 8]), input('k', 'f32', [1, 2, 1, 8]), input('v', 'f32', [1, 2, 1, 8]), input('pk', 'f32', [1, 2, 4, 4]), input('pv', 'f32', [1, 2, 4, 8]))[0] },
  { op: 'layer_pool', name: 'weight not [1, n]', sig: 'layer_pool(f32[2, 4, 8], f32[4])', says: /must have shape \[1, 4\]/, call: 'fused.layerPool(', build: () => fused.layerPool(input('x', 'f32', [2, 4, 8]), input('w', 'f32', [4])) },
];

/** Ops whose shape rule accepts every operand: nothing to test in the error table. */
const NO_SHAPE_ERRORS: readonly OpKind[] = ['input', 'cast', 'dim_value', 'barrier'];

describe('shape-rule errors: DSLError with op, operand types and the user file:line', () => {
  it('covers every op kind whose shape rule can fail', () => {
    const missing = OP_KINDS.filter((k) => !NO_SHAPE_ERRORS.includes(k) && !ERRORS.some((e) => e.op === k));
    expect(missing).toEqual([]);
  });

  for (const e of ERRORS)
    it(`${e.op}: ${e.name}`, () => {
      let err: unknown;
      try {
        trace('bad', () => ({ y: e.build() as Tensor }));
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(DSLError);
      const msg = (err as DSLError).message;
      expect(msg).toContain(e.sig + ': ');
      expect(msg).toMatch(e.says);
      const m = /^test\/ops\.test\.ts:(\d+): /.exec(msg);
      expect(m, `message should start with this file's path and line: ${msg}`).not.toBeNull();
      const line = SOURCE_LINES[Number(m![1]) - 1] ?? '';
      expect(line, `line ${m![1]} should hold the failing call`).toContain(e.call);
      for (const t of [e.lineHas ?? [`op: '${e.op}'`, `name: '${e.name}'`]].flat()) expect(line).toContain(t);
    });
});
