// The AdamW step graph: its ONNX lowering vs the float64 reference, and its
// optimizer math vs an independent TypeScript AdamW applied to reference
// gradients. Accumulation, loss scaling, EMA, mixed precision, frozen params.
import { describe, expect, it } from 'vitest';
import { Embedding, gradients, input, Linear, Module, RMSNorm, silu, trace, Tensor } from '../src/dsl/index.ts';
import { compileTrainStep, stateName, type AdamWOptions, type TrainStepDefinition } from '../src/train/step.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import { Rng } from '../src/ir/init.ts';
import { Graph } from '../src/ir/graph.ts';
import type { RefTensor } from '../src/ir/ref.ts';
import { toFloat64, type HostTensor } from '../src/io/host.ts';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { compare, dumpModel, randomRef, refToHost } from './helpers/harness.ts';
import { Session } from '../runtime/session.ts';

class Net extends Module {
  embed = new Embedding(10, 8);
  enc = new Linear(8, 8);
  norm = new RMSNorm(8);
  head = new Linear(8, 3);
  frozenProj = new Linear(8, 8);
  constructor() {
    super();
    this.frozenProj.freeze();
  }
  forward(ids: Tensor): Tensor {
    const h = this.frozenProj.forward(this.embed.forward(ids));
    return this.head.forward(this.norm.forward(silu(this.enc.forward(h))));
  }
}

function def(net: Net): TrainStepDefinition {
  return {
    name: 'net',
    batch: { ids: { dtype: 'i64', shape: [4, 5] }, target: { dtype: 'f32', shape: [4, 5, 3] } },
    loss: (b) => net.forward(b.ids!).cast('f32').sub(b.target!).square().mean(),
    seed: 7,
  };
}

const toRef = (h: HostTensor): RefTensor => ({ dtype: h.dtype, shape: h.shape, data: toFloat64(h) });

function batch(rng: Rng, m = 1): Record<string, RefTensor> {
  const lead = m > 1 ? [m] : [];
  return { ids: randomRef('i64', [...lead, 4, 5], rng, { lo: 0, hi: 10 }), target: randomRef('f32', [...lead, 4, 5, 3], rng) };
}

async function runStep(bytes: Uint8Array, feeds: Record<string, RefTensor>): Promise<Record<string, RefTensor>> {
  const s = await Session.load(bytes);
  try {
    const out = await s.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, refToHost(v)])));
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, toRef(v)]));
  } finally {
    await s.release();
  }
}

function stepFeeds(state: Map<string, HostTensor>, b: Record<string, RefTensor>, t: number, lr: number): Record<string, RefTensor> {
  const f: Record<string, RefTensor> = { ...b, lr: { dtype: 'f32', shape: [], data: Float64Array.of(lr) }, step: { dtype: 'f32', shape: [], data: Float64Array.of(t) } };
  for (const [k, v] of state) f[k] = toRef(v);
  return f;
}

describe('AdamW train-step graph', () => {
  const opt: AdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipNorm: 0.05 };

  it('declares trainable params and state as inputs; frozen params get neither', () => {
    const st = compileTrainStep(def(new Net()), opt);
    const names = st.spec.params.map((p) => p.name);
    expect(names).toEqual(['embed.weight', 'enc.bias', 'enc.weight', 'head.bias', 'head.weight', 'norm.weight']);
    expect(st.spec.frozen.sort()).toEqual(['frozenProj.bias', 'frozenProj.weight']);
    expect(Object.fromEntries(st.spec.params.map((p) => [p.name, p.decay]))).toEqual({ 'embed.weight': false, 'enc.bias': false, 'enc.weight': true, 'head.bias': false, 'head.weight': true, 'norm.weight': false });
    const ins = st.emitted.model.graph!.input!.map((i) => i.name!);
    expect(ins).toContain('adam.m.enc.weight');
    expect(ins.some((n) => n.includes('frozenProj'))).toBe(false);
    expect(st.emitted.model.graph!.initializer!.map((t) => t.name).sort()).toEqual(expect.arrayContaining(['frozenProj.bias', 'frozenProj.weight']));
  });

  it('ORT runs the step as the float64 reference does, and the update is AdamW on the reference gradients', async () => {
    const net = new Net();
    const st = compileTrainStep(def(net), opt);
    const bytes = encodeModel(st.emitted.model);
    dumpModel('train-step', bytes);
    const rng = new Rng(11);
    const b = batch(rng);
    const state = st.initialState();
    // independent gradients: a plain gradients() graph over the same net
    const gradGraph = trace('g', () => {
      const ids = input('ids', 'i64', [4, 5]);
      const target = input('target', 'f32', [4, 5, 3]);
      const loss = net.forward(ids).sub(target).square().mean();
      const ps = new Graph('p', [], [{ name: 'l', node: loss.node }]).params().filter((p) => !p.params.frozen);
      const gs = gradients(loss, ps.map((p) => new Tensor(p)));
      return Object.fromEntries([['loss', loss] as [string, Tensor], ...ps.map((p, i) => [p.params.name, gs[i]!] as [string, Tensor])]);
    }, { seed: 7 });
    const m = new Map<string, Float64Array>(), v = new Map<string, Float64Array>();
    for (let t = 1; t <= 3; t++) {
      const feeds = stepFeeds(state, b, t, 1e-2);
      const got = await runStep(bytes, feeds);
      // trainable params are graph inputs in ONNX and param nodes in the IR: hand their values to the reference
      const want = evaluate(st.graph, feeds, { params: new Map(st.spec.params.map((p) => [p.name, feeds[p.name]!])) });
      for (const k of Object.keys(want)) expect(compare(got[k]!, want[k]!, { atol: 1e-5, rtol: 2e-4 }, 1), `step ${t} ${k}`).toBeNull();
      // AdamW by hand from reference gradients at the current params
      const params = new Map(st.spec.params.map((p) => [p.name, toRef(state.get(p.name)!)]));
      const g = evaluate(gradGraph, b, { params: new Map([...params, ...new Map(gradGraph.params().filter((p) => p.params.frozen).map((p) => [p.params.name, undefined as never]))].filter(([, x]) => x)) });
      const norm = Math.sqrt(st.spec.params.reduce((a, p) => a + g[p.name]!.data.reduce((s, x) => s + x * x, 0), 0));
      // folded constants are f32-rounded in the step graph: agreement to f32 precision
      expect(Math.abs(want.grad_norm!.data[0]! - norm) / norm).toBeLessThan(1e-6);
      const coef = Math.min(1, 0.05 / (norm + 1e-6));
      for (const p of st.spec.params) {
        const gi = g[p.name]!.data.map((x) => x * coef);
        const mm = (m.get(p.name) ?? new Float64Array(gi.length)).map((x, i) => 0.9 * x + 0.1 * gi[i]!);
        const vv = (v.get(p.name) ?? new Float64Array(gi.length)).map((x, i) => 0.95 * x + 0.05 * gi[i]! ** 2);
        m.set(p.name, mm), v.set(p.name, vv);
        const w = params.get(p.name)!.data;
        const expectP = w.map((x, i) => x - 1e-2 * (mm[i]! / (1 - 0.9 ** t) / (Math.sqrt(vv[i]! / (1 - 0.95 ** t)) + 1e-8) + (p.decay ? 0.1 * x : 0)));
        const ref: RefTensor = { dtype: 'f32', shape: p.shape, data: expectP };
        expect(compare(want[stateName.next(p.name)]!, ref, { atol: 1e-6, rtol: 1e-5 }, 1), `step ${t} ${p.name}`).toBeNull();
      }
      expect(norm).toBeGreaterThan(0.05); // clipping is active in this test
      for (const c of st.spec.carry) state.set(c.input, refToHost(got[c.output]!));
    }
  });

  it('accumulating 2 micro-batches equals one step on their mean loss; loss scaling changes nothing', async () => {
    const rng = new Rng(5);
    const two = batch(rng, 2);
    const net = new Net();
    const acc = compileTrainStep({ ...def(net), name: 'acc' }, { ...opt, accumulate: 2 });
    const scaled = compileTrainStep({ ...def(net), name: 'acc_scaled' }, { ...opt, accumulate: 2, lossScale: 1024 });
    const state = acc.initialState();
    const fa = stepFeeds(state, two, 1, 1e-2);
    const a = evaluate(acc.graph, fa);
    const s = await runStep(encodeModel(scaled.emitted.model), fa);
    // the same update from the gradient of the mean of the two micro-batch losses, computed directly
    const direct = trace('direct', () => {
      const ids = input('ids', 'i64', [2, 4, 5]);
      const target = input('target', 'f32', [2, 4, 5, 3]);
      const l0 = net.forward(ids.slice(0, 0, 1).squeeze(0)).sub(target.slice(0, 0, 1).squeeze(0)).square().mean();
      const l1 = net.forward(ids.slice(0, 1, 2).squeeze(0)).sub(target.slice(0, 1, 2).squeeze(0)).square().mean();
      const loss = l0.add(l1).mul(0.5);
      const ps = new Graph('p', [], [{ name: 'l', node: loss.node }]).params().filter((p) => !p.params.frozen);
      const gs = gradients(loss, ps.map((p) => new Tensor(p)));
      return Object.fromEntries([['loss', loss] as [string, Tensor], ...ps.map((p, i) => [`g.${p.params.name}`, gs[i]!] as [string, Tensor])]);
    }, { seed: 7 });
    const d = evaluate(direct, two);
    expect(Math.abs(a.loss!.data[0]! - d.loss!.data[0]!) / d.loss!.data[0]!).toBeLessThan(1e-6);
    const norm = Math.sqrt(acc.spec.params.reduce((x, p) => x + d[`g.${p.name}`]!.data.reduce((q, y) => q + y * y, 0), 0));
    expect(Math.abs(a.grad_norm!.data[0]! - norm) / norm).toBeLessThan(1e-6);
    for (const p of acc.spec.params) expect(compare(s[stateName.next(p.name)]!, a[stateName.next(p.name)]!, { atol: 1e-6, rtol: 1e-4 }, 1), p.name).toBeNull();
  });

  it('EMA of the weights is an extra output', () => {
    const st = compileTrainStep(def(new Net()), { ...opt, ema: 0.99 });
    const state = st.initialState();
    const out = evaluate(st.graph, stepFeeds(state, batch(new Rng(3)), 1, 1e-2));
    const p = 'head.weight';
    const want = toRef(state.get(stateName.ema(p))!).data.map((e, i) => 0.99 * e + 0.01 * out[stateName.next(p)]!.data[i]!);
    expect(compare(out[stateName.next(stateName.ema(p))]!, { dtype: 'f32', shape: [3, 8], data: want }, { atol: 1e-12, rtol: 1e-12 }, 1)).toBeNull();
  });

  it('mixed precision: f16 compute with f32 master weights runs in ORT and tracks the f32 step', async () => {
    const net = new Net();
    const f16 = compileTrainStep({ ...def(net), name: 'mp', computeDtype: 'f16' }, { ...opt, lossScale: 256 });
    const ins = f16.emitted.model.graph!.input!;
    expect(ins.find((i) => i.name === 'enc.weight')!.type!.tensorType!.elemType).toBe(1); // f32 master
    expect(f16.graph.nodes().some((n) => n.is('cast') && n.params.to === 'f16')).toBe(true);
    const b = batch(new Rng(8));
    const feeds = stepFeeds(f16.initialState(), b, 1, 1e-2);
    const got = await runStep(encodeModel(f16.emitted.model), feeds);
    const f32 = compileTrainStep({ ...def(net), name: 'fp' }, opt);
    const ref = evaluate(f32.graph, feeds);
    expect(Math.abs(got.loss!.data[0]! - ref.loss!.data[0]!) / ref.loss!.data[0]!).toBeLessThan(5e-3);
    expect(Math.abs(got.grad_norm!.data[0]! - ref.grad_norm!.data[0]!) / ref.grad_norm!.data[0]!).toBeLessThan(2e-2);
  });

  it('clear errors: no trainable params, non-scalar loss', () => {
    const frozen = new Linear(2, 2).named('f').freeze();
    expect(() => compileTrainStep({ name: 'x', batch: { x: { dtype: 'f32', shape: [1, 2] } }, loss: (b) => frozen.forward(b.x!).sum() })).toThrow(/depends on no trainable parameter/);
    const lin = new Linear(2, 2).named('l');
    expect(() => compileTrainStep({ name: 'x', batch: { x: { dtype: 'f32', shape: [1, 2] } }, loss: (b) => lin.forward(b.x!) })).toThrow(/loss must be a float scalar/);
  });
});

