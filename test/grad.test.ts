// Gradient checks: every differentiable op and the DSL composites against
// central finite differences in float64 (reference interpreter), and the
// emitted backward graphs in onnxruntime (f32) against the reference.
import { describe, expect, it } from 'vitest';
import {
  Attention, concat, conv2d, dim, fused, gelu, recompute, gradients, gridPositions, groupNorm, input, layerNorm, Linear, Module, range, rmsNorm, rope, sdpa, silu, swiglu, trace, TransformerBlock, Tensor,
} from '../src/dsl/index.ts';
import type { DType } from '../src/ir/dtype.ts';
import { evaluate, paramValue } from '../src/ir/evaluate.ts';
import { Graph } from '../src/ir/graph.ts';
import { Rng } from '../src/ir/init.ts';
import type { Node } from '../src/ir/node.ts';
import { OP_KINDS, OPS } from '../src/ir/optable.ts';
import type { RefTensor } from '../src/ir/ref.ts';
import { compare, randomRef, runOnnx } from './helpers/harness.ts';
import { applyOp } from '../src/dsl/tensor.ts';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { emitModel } from '../codegen/onnx/emit.ts';
import { decodeModel, encodeModel } from '../codegen/onnx/proto.ts';

interface In {
  name: string;
  shape: number[];
  kind?: 'positive' | 'int' | 'bool';
  lo?: number;
  hi?: number;
  /** differentiate with respect to it (default: floats) */
  wrt?: boolean;
}
interface Case {
  name: string;
  /** op kinds whose VJP this case exercises */
  ops: string[];
  inputs: In[];
  build(x: Record<string, Tensor>, dt: DType): Tensor;
  /** differentiate with respect to these module params too */
  params?: boolean;
  fdTol?: number;
  /** finite-difference step (relative); casts through f32 need one above f32 resolution */
  fdStep?: number;
  skipOrt?: string;
}

const I = (name: string, shape: number[], extra: Partial<In> = {}): In => ({ name, shape, ...extra });

class Lap extends Module {
  block: TransformerBlock;
  pool: Linear;
  constructor(dt: DType, readonly n: number, readonly h: number) {
    super();
    this.block = new TransformerBlock({ hidden: h, heads: 2, intermediate: 2 * h, qkNorm: true, dtype: dt });
    this.pool = new Linear(n, 1, { bias: false, dtype: dt });
  }
  forward(taps: Tensor): Tensor {
    const [b, s] = [taps.dim(0), taps.dim(1)];
    const x = taps.reshape(-1, this.n, this.h); // (bs*sl, n, hE): attention across layers
    const y = this.block.forward(x);
    return this.pool.forward(y.swap(-1, -2)).reshape(b, s, this.h);
  }
}

const CASES: Case[] = [
  ...(['neg', 'exp', 'tanh', 'sigmoid', 'erf', 'sin', 'cos', 'abs'] as const).map((op) => ({ name: op, ops: [op], inputs: [I('x', [3, 4])], build: (x: Record<string, Tensor>) => x.x![op]() })),
  ...(['log', 'sqrt', 'rsqrt', 'reciprocal'] as const).map((op) => ({ name: op, ops: [op], inputs: [I('x', [3, 4], { kind: 'positive' })], build: (x: Record<string, Tensor>) => x.x![op]() })),
  { name: 'add broadcast', ops: ['add'], inputs: [I('a', [2, 3]), I('b', [3])], build: (x) => x.a!.add(x.b!) },
  { name: 'sub broadcast', ops: ['sub'], inputs: [I('a', [2, 1, 3]), I('b', [4, 1])], build: (x) => x.a!.sub(x.b!) },
  { name: 'mul broadcast', ops: ['mul'], inputs: [I('a', [2, 3, 4]), I('b', [1, 3, 1])], build: (x) => x.a!.mul(x.b!) },
  { name: 'div', ops: ['div'], inputs: [I('a', [3, 4]), I('b', [4], { kind: 'positive' })], build: (x) => x.a!.div(x.b!) },
  { name: 'pow', ops: ['pow'], inputs: [I('a', [3, 4], { kind: 'positive' }), I('b', [3, 4])], build: (x) => x.a!.pow(x.b!) },
  { name: 'max/min', ops: ['max', 'min'], inputs: [I('a', [3, 4]), I('b', [4])], build: (x) => x.a!.maximum(x.b!).add(x.a!.minimum(x.b!).mul(0.5)) },
  { name: 'where', ops: ['where', 'gt'], inputs: [I('a', [3, 4]), I('b', [3, 1])], build: (x) => x.a!.gt(0).where(x.a!.mul(x.b!), x.b!.exp()) },
  { name: 'cast roundtrip', ops: ['cast'], inputs: [I('a', [3, 4])], build: (x, dt) => x.a!.cast(dt === 'f64' ? 'f32' : 'f64').mul(1.5).cast(dt), fdTol: 1e-3, fdStep: 1e-2, skipOrt: 'f32->f64 on purpose' },
  { name: 'matmul batch broadcast', ops: ['matmul'], inputs: [I('a', [2, 3, 4]), I('b', [4, 5])], build: (x) => x.a!.matmul(x.b!) },
  { name: 'matmul rank-4 @ shared rank-2 (one flattened weight-grad GEMM)', ops: ['matmul'], inputs: [I('a', [2, 2, 3, 4]), I('b', [4, 5])], build: (x) => x.a!.matmul(x.b!) },
  { name: 'matmul both batched', ops: ['matmul'], inputs: [I('a', [1, 3, 4]), I('b', [2, 4, 2])], build: (x) => x.a!.matmul(x.b!) },
  { name: 'reduce_sum', ops: ['reduce_sum'], inputs: [I('x', [2, 3, 4])], build: (x) => x.x!.sum([0, 2]).mul(x.x!.sum(1, true).sum([0, 1, 2])) },
  { name: 'reduce_mean', ops: ['reduce_mean'], inputs: [I('x', [2, 3, 4])], build: (x) => x.x!.mean(-1, true).mul(x.x!).add(x.x!.mean([0, 1])) },
  { name: 'reduce_max', ops: ['reduce_max'], inputs: [I('x', [2, 3, 4])], build: (x) => x.x!.max(1).add(x.x!.max([0, 2], true).sum([0, 1, 2])) },
  { name: 'softmax', ops: ['softmax'], inputs: [I('x', [2, 3, 4])], build: (x) => x.x!.softmax(-1).add(x.x!.softmax(0)) },
  { name: 'reshape/transpose/expand', ops: ['reshape', 'transpose', 'expand'], inputs: [I('x', [2, 3, 4]), I('y', [1, 4])], build: (x) => x.x!.transpose(2, 0, 1).reshape(4, 6).add(x.y!.transpose(1, 0).expand(4, 6)) },
  { name: 'concat/split', ops: ['concat', 'split'], inputs: [I('a', [2, 3]), I('b', [2, 2])], build: (x) => { const [p, q] = concat([x.a!, x.b!.exp()], 1).split(1, [4, 1]); return p!.sum(1, true).mul(q!); } },
  { name: 'slice', ops: ['slice'], inputs: [I('x', [4, 5])], build: (x) => x.x!.slice(0, 1, 3).add(x.x!.slice(0, -2).mul(2)).slice(1, -3) },
  { name: 'gather (repeated indices)', ops: ['gather', 'gather_grad'], inputs: [I('w', [6, 3]), I('ids', [2, 4], { kind: 'int', lo: -6, hi: 6, wrt: false })], build: (x) => x.w!.gather(x.ids!, 0) },
  { name: 'gather middle axis', ops: ['gather', 'gather_grad'], inputs: [I('w', [2, 5, 3]), I('ids', [3], { kind: 'int', lo: 0, hi: 5, wrt: false })], build: (x) => x.w!.gather(x.ids!, 1) },
  { name: 'pad constant', ops: ['pad'], inputs: [I('x', [2, 3])], build: (x) => x.x!.pad([1, 0, 0, 2], 'constant', 0.5) },
  { name: 'conv2d stride/pad/groups/bias', ops: ['conv2d', 'conv2d_grad_input', 'conv2d_grad_weight'], inputs: [I('x', [2, 4, 5, 6]), I('w', [6, 2, 3, 3]), I('b', [6])], build: (x) => conv2d(x.x!, x.w!, x.b!, { stride: 2, padding: 1, groups: 2 }) },
  { name: 'conv2d dilation', ops: ['conv2d', 'conv2d_grad_input', 'conv2d_grad_weight'], inputs: [I('x', [1, 2, 7, 7]), I('w', [3, 2, 2, 3])], build: (x) => conv2d(x.x!, x.w!, undefined, { dilation: 2, padding: [1, 0, 0, 1] }) },
  { name: 'barrier (identity)', ops: ['barrier'], inputs: [I('x', [3, 4])], build: (x) => applyOp('barrier', { tag: 1 }, [x.x!]).mul(x.x!) },
  { name: 'upsample_nearest', ops: ['upsample_nearest'], inputs: [I('x', [1, 2, 3, 2])], build: (x) => x.x!.upsampleNearest(2) },
  // fused ops: VJP = reverse mode through their reference decomposition
  { name: 'fused rms_norm', ops: ['rms_norm'], inputs: [I('x', [2, 3, 8]), I('w', [8])], build: (x) => fused.rmsNorm(x.x!, x.w!, 1e-5).add(fused.rmsNorm(x.x!, undefined)) },
  { name: 'fused layer_norm', ops: ['layer_norm'], inputs: [I('x', [2, 3, 8]), I('w', [8]), I('b', [8])], build: (x) => fused.layerNorm(x.x!, x.w!, x.b!).add(fused.layerNorm(x.x!)) },
  { name: 'fused gelu erf + tanh', ops: ['gelu'], inputs: [I('x', [3, 5])], build: (x) => fused.gelu(x.x!).add(fused.gelu(x.x!, 'tanh')) },
  { name: 'fused rope interleaved + partial half', ops: ['rope'], inputs: [I('x', [2, 2, 5, 8]), I('c', [5, 4]), I('s', [5, 4]), I('c2', [5, 2]), I('s2', [5, 2])], build: (x) => fused.rope(x.x!, x.c!, x.s!, { interleaved: true }).add(fused.rope(x.x!, x.c2!, x.s2!)) },
  { name: 'fused sdpa GQA + mask', ops: ['sdpa'], inputs: [I('q', [2, 4, 3, 4]), I('k', [2, 2, 5, 4]), I('v', [2, 2, 5, 4]), I('m', [2, 1, 1, 5], { kind: 'bool', wrt: false })], build: (x) => fused.sdpa(x.q!, x.k!, x.v!, { mask: x.m!.or(range(5).lt(2)) }) },
  { name: 'fused swiglu (same tensor twice)', ops: ['swiglu'], inputs: [I('a', [2, 3, 6]), I('b', [2, 3, 6])], build: (x) => fused.swiglu(x.a!, x.b!).add(fused.swiglu(x.a!, x.a!)) },
  { name: 'fused ada_rms_norm', ops: ['ada_rms_norm'], inputs: [I('x', [2, 3, 8]), I('w', [8]), I('a', [2, 1, 8]), I('b', [2, 1, 8])], build: (x) => fused.adaRmsNorm(x.x!, x.w!, x.a!, x.b!, 1e-5) },
  { name: 'fused kv_sdpa (all three outputs)', ops: ['kv_sdpa'], inputs: [I('q', [2, 4, 3, 4]), I('k', [2, 2, 3, 4]), I('v', [2, 2, 3, 4]), I('pk', [2, 2, 2, 4]), I('pv', [2, 2, 2, 4]), I('m', [2, 1, 3, 5], { kind: 'bool', wrt: false })], build: (x) => { const [o, k, v] = fused.kvSdpa(x.q!, x.k!, x.v!, x.pk!, x.pv!, { mask: x.m!.or(range(5).lt(2)) }); return concat([o.reshape(2, 48), k.mul(k).reshape(2, 40), v.mul(0.7).reshape(2, 40)], 1); } },
  { name: 'fused add_layer_norm (both outputs)', ops: ['add_layer_norm'], inputs: [I('x', [2, 3, 8]), I('res', [2, 3, 8]), I('w', [8]), I('b', [8])], build: (x) => { const [y, s] = fused.addLayerNorm(x.x!, x.res!, x.w!, x.b!); return y.add(s.mul(0.5)); } },
  { name: 'fused add_rms_norm (both outputs)', ops: ['add_rms_norm'], inputs: [I('x', [2, 3, 8]), I('res', [2, 3, 8]), I('w', [8])], build: (x) => { const [y, s] = fused.addRmsNorm(x.x!, x.res!, x.w!); return y.add(s.mul(0.5)); } },
  { name: 'fused layer_pool', ops: ['layer_pool'], inputs: [I('x', [2, 3, 4, 8]), I('w', [1, 4])], build: (x) => fused.layerPool(x.x!, x.w!) },
  { name: 'rmsNorm', ops: [], inputs: [I('x', [2, 3, 8]), I('w', [8])], build: (x) => rmsNorm(x.x!, x.w!) },
  { name: 'layerNorm', ops: [], inputs: [I('x', [2, 3, 8]), I('w', [8]), I('b', [8])], build: (x) => layerNorm(x.x!, x.w!, x.b!) },
  { name: 'groupNorm', ops: [], inputs: [I('x', [2, 4, 3, 3]), I('w', [4]), I('b', [4])], build: (x) => groupNorm(x.x!, 2, x.w!, x.b!) },
  { name: 'gelu/silu', ops: [], inputs: [I('x', [3, 5])], build: (x) => gelu(x.x!).add(gelu(x.x!, 'tanh')).add(silu(x.x!)) },
  { name: 'swiglu', ops: [], inputs: [I('x', [2, 3, 4]), I('g', [6, 4]), I('u', [6, 4]), I('d', [4, 6])], build: (x) => swiglu(x.x!, x.g!, x.u!, x.d!) },
  { name: 'rope 1d half + interleaved', ops: [], inputs: [I('q', [2, 2, 5, 8])], build: (x) => rope(x.q!, [range(5)], [8]).add(rope(x.q!, [range(5)], [8], { style: 'interleaved' })) },
  { name: 'rope 2d', ops: [], inputs: [I('q', [1, 2, 6, 8])], build: (x) => rope(x.q!, gridPositions(2, 3), [4, 4]) },
  { name: 'sdpa causal + padding + GQA', ops: [], inputs: [I('q', [2, 4, 5, 4]), I('k', [2, 2, 5, 4]), I('v', [2, 2, 5, 4]), I('m', [2, 5], { kind: 'bool', wrt: false })], build: (x) => sdpa(x.q!, x.k!, x.v!, { causal: true, keyMask: x.m!.or(range(5).lt(2)) }) },
  { name: 'Attention module (params)', ops: [], params: true, inputs: [I('x', [2, 4, 8])], build: (x, dt) => new Attention({ hidden: 8, heads: 2, kvHeads: 1, qkvBias: true, qkNorm: true, rope: { theta: 100 }, dtype: dt }).named('attn').forward(x.x!, { positions: [range(4)], causal: true }) },
  { name: 'LAP block (params)', ops: [], params: true, inputs: [I('taps', [2, 3, 4, 8])], build: (x, dt) => new Lap(dt, 4, 8).named('lap').forward(x.taps!) },
];

function makeFeeds(c: Case, dt: DType, seed: number): Record<string, RefTensor> {
  const rng = new Rng(seed, c.name);
  const feeds: Record<string, RefTensor> = {};
  for (const i of c.inputs) {
    const d: DType = i.kind === 'int' ? 'i64' : i.kind === 'bool' ? 'bool' : dt;
    feeds[i.name] = randomRef(d, i.shape, rng, { positive: i.kind === 'positive', lo: i.lo, hi: i.hi });
  }
  return feeds;
}

/** loss = sum(out * r) with a random r, so every output element carries weight. */
function buildGraphs(c: Case, dt: DType): { fwd: Graph; bwd: Graph; wrt: string[]; paramNodes: Node<'param'>[] } {
  let wrt: string[] = [];
  let paramNodes: Node<'param'>[] = [];
  const bwd = trace(c.name.replace(/\W+/g, '_'), () => {
    const xs: Record<string, Tensor> = {};
    for (const i of c.inputs) xs[i.name] = input(i.name, i.kind === 'int' ? 'i64' : i.kind === 'bool' ? 'bool' : dt, i.shape);
    const y = c.build(xs, dt);
    const r = input('r', dt, y.shape);
    const loss = y.mul(r).sum();
    const inputsWrt = c.inputs.filter((i) => i.wrt ?? (!i.kind || i.kind === 'positive'));
    paramNodes = c.params ? new Graph('p', [], [{ name: 'y', node: y.node }]).params() : [];
    wrt = [...inputsWrt.map((i) => i.name), ...paramNodes.map((p) => p.params.name)];
    const gs = gradients(loss, [...inputsWrt.map((i) => xs[i.name]!), ...paramNodes.map((p) => new Tensor(p))]);
    return Object.fromEntries([['loss', loss] as const, ...gs.map((g, i) => [`grad.${wrt[i]}`, g] as const)]);
  });
  const fwd = bwd.withOutputs(bwd.outputs.filter((o) => o.name === 'loss'));
  return { fwd, bwd, wrt, paramNodes };
}

describe('every differentiable op has a gradient case', () => {
  it('covers each op kind whose vjp is a rule', () => {
    const diff = OP_KINDS.filter((k) => OPS[k].vjp !== 'nondiff' && !['conv2d_grad_input', 'conv2d_grad_weight'].includes(k));
    const covered = new Set(CASES.flatMap((c) => c.ops));
    expect(diff.filter((k) => !covered.has(k))).toEqual([]);
  });
});

describe('gradients vs central finite differences (float64 reference)', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', (_n, c) => {
    const { fwd, bwd, wrt, paramNodes } = buildGraphs(c, 'f64');
    const feeds = makeFeeds(c, 'f64', 1);
    const rShape = fwd.inputs.find((i) => i.params.name === 'r')!.shape as number[];
    feeds.r = randomRef('f64', rShape, new Rng(9, c.name));
    const params = new Map(paramNodes.map((p) => [p.params.name, paramValue(p)]));
    const got = evaluate(bwd, feeds, { params });
    const loss = (f: Record<string, RefTensor>, ps: Map<string, RefTensor>) => evaluate(fwd, f, { params: ps }).loss!.data[0]!;
    const base = loss(feeds, params);
    expect(Math.abs(got.loss!.data[0]! - base)).toBeLessThan(1e-9 * (1 + Math.abs(base)));
    const rng = new Rng(3, c.name);
    for (const name of wrt) {
      const isParam = params.has(name);
      const t = isParam ? params.get(name)! : feeds[name]!;
      const g = got[`grad.${name}`]!;
      expect(g.shape).toEqual(t.shape);
      const n = t.data.length;
      const picks = n <= 24 ? [...Array(n).keys()] : Array.from({ length: 24 }, () => Math.floor(rng.uniform() * n));
      let worst = 0;
      for (const k of picks) {
        const h = (c.fdStep ?? 1e-6) * Math.max(1, Math.abs(t.data[k]!));
        const at = (v: number) => {
          const d = Float64Array.from(t.data);
          d[k] = v;
          const tt = { ...t, data: d };
          return isParam ? loss(feeds, new Map([...params, [name, tt]])) : loss({ ...feeds, [name]: tt }, params);
        };
        const fd = (at(t.data[k]! + h) - at(t.data[k]! - h)) / (2 * h);
        const err = Math.abs(fd - g.data[k]!) / (1e-6 + Math.abs(fd));
        worst = Math.max(worst, Math.min(err, Math.abs(fd - g.data[k]!) / 1e-5));
      }
      expect(worst, `d loss / d ${name}`).toBeLessThan(c.fdTol ?? 1e-4);
    }
  });
});

describe('matmul weight gradient over symbolic leading dims', () => {
  it('flatten(a)^T @ flatten(g) is one 2-D GEMM and is right at two runtime sizes', async () => {
    const g = trace('wgrad_sym', () => {
      const x = input('x', 'f32', [dim('batch'), dim('seq'), 6]);
      const w = input('w', 'f32', [6, 5]);
      const loss = x.matmul(w).tanh().sum();
      const [gw] = gradients(loss, [w]);
      return { loss, 'grad.w': gw! };
    });
    const wgrad = g.nodes().filter((n) => n.is('matmul') && n.shape.length === 2);
    expect(wgrad.length).toBe(1);
    expect(g.nodes().some((n) => n.is('reduce_sum') && n.shape.length === 3)).toBe(false);
    for (const [b, s] of [[2, 3], [3, 5]] as const) {
      const feeds = { x: randomRef('f32', [b, s, 6], new Rng(11, `x${b}`)), w: randomRef('f32', [6, 5], new Rng(12)) };
      const want = evaluate(g, feeds);
      const got = await runOnnx(g, feeds);
      for (const k of ['loss', 'grad.w']) expect(compare(got[k]!, want[k]!, { atol: 2e-5, rtol: 2e-4 }, 1), `${k} at batch ${b}, seq ${s}`).toBeNull();
      // against a hand-written reference: grad.w[k, n] = sum_rows x[row, k] * (1 - tanh(x w)[row, n]^2)
      const X = feeds.x.data, W = feeds.w.data, ref = new Float64Array(30);
      for (let r = 0; r < b * s; r++)
        for (let n = 0; n < 5; n++) {
          let z = 0;
          for (let k = 0; k < 6; k++) z += X[r * 6 + k]! * W[k * 5 + n]!;
          const d = 1 - Math.tanh(z) ** 2;
          for (let k = 0; k < 6; k++) ref[k * 5 + n] += X[r * 6 + k]! * d;
        }
      for (let i = 0; i < 30; i++) expect(Math.abs(got['grad.w']!.data[i]! - ref[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(ref[i]!)));
    }
  });
});

describe('activation recomputation', () => {
  it('recompute() gives the same gradients, and onnxruntime keeps the replayed forward', async () => {
    class Stack extends Module {
      layers = [0, 1].map(() => new TransformerBlock({ hidden: 8, heads: 2, intermediate: 16 }));
    }
    const build = (remat: boolean) => {
      const net = new Stack();
      return trace('remat', () => {
        const x = input('x', 'f32', [2, 3, 8]);
        let h = x;
        for (const l of net.layers) h = remat ? recompute((t) => l.forward(t), h) : l.forward(h);
        const loss = h.square().mean();
        const ps = new Graph('p', [], [{ name: 'l', node: loss.node }]).params();
        const gs = gradients(loss, [x, ...ps.map((p) => new Tensor(p))]);
        return Object.fromEntries([['loss', loss] as const, ['grad.x', gs[0]!] as const, ...ps.map((p, i) => [`grad.${p.params.name}`, gs[i + 1]!] as const)]);
      }, { seed: 1 });
    };
    const plain = build(false), remat = build(true);
    const feeds = { x: randomRef('f32', [2, 3, 8], new Rng(4)) };
    const a = evaluate(plain, feeds), b = evaluate(remat, feeds);
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const k of Object.keys(a)) expect(compare(b[k]!, a[k]!, { atol: 1e-12, rtol: 1e-10 }, 1), k).toBeNull();
    const count = (g: Graph) => g.nodes().filter((n) => n.is('matmul')).length;
    expect(count(remat)).toBeGreaterThan(count(plain));
    const got = await runOnnx(remat, feeds);
    for (const k of Object.keys(a)) expect(compare(got[k]!, a[k]!, { atol: 2e-5, rtol: 2e-4 }, 1), k).toBeNull();
    // onnxruntime's own CSE must not fold the replay back into the original forward
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-remat-'));
    const optimized = async (g: Graph) => {
      const file = path.join(dir, `${g.name}-${count(g)}.onnx`);
      const s = await ort.InferenceSession.create(encodeModel(emitModel(g).model), { graphOptimizationLevel: 'all', optimizedModelFilePath: file });
      await s.release();
      return decodeModel(fs.readFileSync(file)).graph!.node!.filter((n) => n.opType === 'MatMul' || n.opType === 'FusedMatMul' || n.opType === 'Gemm').length;
    };
    expect(await optimized(remat)).toBeGreaterThan(await optimized(plain));
    fs.rmSync(dir, { recursive: true });
  });
});

describe('backward graphs run in onnxruntime (f32) and match the reference', () => {
  it.each(CASES.filter((c) => !c.skipOrt).map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    const { fwd, bwd, paramNodes } = buildGraphs(c, 'f32');
    const feeds = makeFeeds(c, 'f32', 2);
    feeds.r = randomRef('f32', fwd.inputs.find((i) => i.params.name === 'r')!.shape as number[], new Rng(5, c.name));
    const want = evaluate(bwd, feeds);
    const got = await runOnnx(bwd, feeds);
    for (const o of bwd.outputs) {
      const scale = Math.max(...Array.from(want[o.name]!.data, Math.abs), 1e-3);
      expect(compare(got[o.name]!, want[o.name]!, { atol: 2e-5, rtol: 2e-4 }, scale), o.name).toBeNull();
    }
    expect(paramNodes.length === 0 || bwd.params().length > 0).toBe(true);
  });
});

