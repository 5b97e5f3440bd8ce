// Fused ops in training graphs: (1) each dedicated backward (src/ir/ops/fused.ts DEDICATED_VJP)
// equals reverse mode through the op's reference decomposition on random inputs, in float64 and
// in onnxruntime f32 (finite differences are the gradient table's job, test/grad.test.ts);
// (2) a step graph whose forward is fused before autodiff has the fused node types the target's
// train rules promise, and its loss, gradient norm and updated params equal the unfused step's
// in onnxruntime.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { grad } from '../../src/autodiff/grad.ts';
import { evaluate } from '../../src/ir/evaluate.ts';
import { Builder, Graph } from '../../src/ir/graph.ts';
import { Rng } from '../../src/ir/init.ts';
import { NB } from '../../src/ir/nb.ts';
import type { Node } from '../../src/ir/node.ts';
import type { FusedKind, FusedParams } from '../../src/ir/params.ts';
import type { RefTensor } from '../../src/ir/ref.ts';
import { decompose } from '../../src/ir/ops/fused.ts';
import { Module, TransformerBlock, gridPositions, type Tensor } from '../../src/dsl/index.ts';
import { compileTrainStep } from '../../src/train/step.ts';
import { TARGET_TABLE } from '../../src/passes/fusion/targets.ts';
import { RULES } from '../../src/passes/fusion/rules.ts';
import { encodeModel } from '../../codegen/onnx/proto.ts';
import { randomRef, runOnnx } from '../helpers/harness.ts';
import { worst } from './helpers.ts';

interface Case<K extends FusedKind> {
  name: string;
  kind: K;
  params: FusedParams[K];
  inputs: [string, number[]][];
}

const CASES: Case<FusedKind>[] = [
  { name: 'rms_norm weighted', kind: 'rms_norm', params: { eps: 1e-5, weight: true }, inputs: [['x', [2, 3, 8]], ['w', [8]]] },
  { name: 'rms_norm plain, rank 4', kind: 'rms_norm', params: { eps: 1e-6, weight: false }, inputs: [['x', [2, 2, 3, 8]]] },
  { name: 'swiglu', kind: 'swiglu', params: {}, inputs: [['a', [2, 3, 6]], ['b', [2, 3, 6]]] },
  { name: 'swiglu, b broadcast', kind: 'swiglu', params: {}, inputs: [['a', [2, 3, 6]], ['b', [1, 3, 1]]] },
  { name: 'rope rotate-half, partial', kind: 'rope', params: { interleaved: false }, inputs: [['x', [2, 2, 5, 8]], ['c', [5, 2]], ['s', [5, 2]]] },
  { name: 'rope interleaved, per-batch tables', kind: 'rope', params: { interleaved: true }, inputs: [['x', [2, 2, 5, 8]], ['c', [2, 1, 5, 4]], ['s', [2, 1, 5, 4]]] },
] as Case<FusedKind>[];

/** loss = sum(op(ins) * r), its gradients w.r.t. every input: through the fused node or its decomposition */
function backwardGraph(c: Case<FusedKind>, dtype: 'f32' | 'f64', how: 'fused' | 'decomposed'): Graph {
  const b = new Builder();
  const nb = new NB(b);
  const ins = c.inputs.map(([name, shape]) => b.apply('input', { name, dtype, shape }, []));
  const y: Node = how === 'fused' ? b.apply(c.kind, c.params as never, ins) : decompose(c.kind, nb, c.params as never, ins);
  const r = b.apply('input', { name: 'r', dtype, shape: [...y.shape] }, []);
  const loss = nb.op('reduce_sum', { axes: [...y.shape.keys()], keepdims: false }, [nb.mul(y, r)]);
  const gs = grad(b, loss, ins);
  return new Graph(`${c.kind}.${how}.backward`, [...ins, r] as Node<'input'>[], [{ name: 'loss', node: loss }, ...gs.map((g, i) => ({ name: `grad.${c.inputs[i]![0]}`, node: g }))]);
}

function feedsFor(c: Case<FusedKind>, dtype: 'f32' | 'f64'): Record<string, RefTensor> {
  const rng = new Rng(11, c.name);
  const f: Record<string, RefTensor> = {};
  for (const [name, shape] of c.inputs) f[name] = randomRef(dtype, shape, rng, { lo: -1.5, hi: 1.5 });
  const probe = backwardGraph(c, dtype, 'decomposed');
  f.r = randomRef(dtype, probe.inputs.find((i) => i.params.name === 'r')!.shape as number[], rng);
  return f;
}

describe('dedicated backward of a fused op == reverse mode through its decomposition', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s (float64 and ORT f32)', async (_n, c) => {
    const f64 = feedsFor(c, 'f64');
    const fused = backwardGraph(c, 'f64', 'fused');
    const want = evaluate(backwardGraph(c, 'f64', 'decomposed'), f64);
    const got = evaluate(fused, f64);
    for (const o of fused.outputs) expect(worst(got[o.name]!, want[o.name]!, 1e-12, 1e-10), `${o.name} (float64)`).toBeLessThan(1);
    // every gradient is non-trivial (random inputs: a zero would hide a missing term)
    for (const [name] of c.inputs) expect(want[`grad.${name}`]!.data.some((v) => Math.abs(v) > 1e-3), name).toBe(true);
    const f32 = feedsFor(c, 'f32');
    const want32 = evaluate(backwardGraph(c, 'f64', 'decomposed'), Object.fromEntries(Object.entries(f32).map(([k, v]) => [k, { ...v, dtype: 'f64' as const }])));
    const ortGot = await runOnnx(backwardGraph(c, 'f32', 'fused'), f32, { target: 'cpu' });
    for (const o of fused.outputs) expect(worst(ortGot[o.name]!, want32[o.name]!, 2e-5, 2e-4), `${o.name} (ORT f32)`).toBeLessThan(1);
  });
});

describe('train step with its forward fused before autodiff', () => {
  class Net extends Module {
    blocks: TransformerBlock[];
    constructor() {
      super();
      this.blocks = [0, 1].map(() => new TransformerBlock({ hidden: 16, heads: 2, intermediate: 24, act: 'swiglu', norm: 'rms', qkNorm: true, rope: { theta: 10000, sections: [2, 2] } }));
    }
    forward(x: Tensor): Tensor {
      const positions = gridPositions(2, 3);
      let h = x;
      for (const b of this.blocks) h = b.forward(h, { positions });
      return h;
    }
  }
  const shape = [2, 6, 16];
  const def = (net: Net) => ({ name: 'fused_train', batch: { x: { dtype: 'f32' as const, shape }, target: { dtype: 'f32' as const, shape } }, loss: (b: Record<string, Tensor>) => net.forward(b.x!).sub(b.target!).square().mean(), seed: 77 });
  const opt = { clipNorm: 1 };

  async function run(st: ReturnType<typeof compileTrainStep>, steps: number) {
    const s = await ort.InferenceSession.create(encodeModel(st.emitted.model), { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
    const rng = new Rng(3, 'batch');
    const x = Float32Array.from(randomRef('f32', shape, rng).data), t = Float32Array.from(randomRef('f32', shape, rng).data);
    const state = new Map<string, ort.Tensor>([...st.initialState()].map(([k, v]) => [k, new ort.Tensor('float32', v.data as Float32Array, v.shape)]));
    const out: { loss: number; gradNorm: number; params: Record<string, Float32Array> }[] = [];
    for (let i = 1; i <= steps; i++) {
      const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, shape), target: new ort.Tensor('float32', t, shape), lr: new ort.Tensor('float32', Float32Array.of(1e-2), []), step: new ort.Tensor('float32', Float32Array.of(i), []) };
      for (const [k, v] of state) feeds[k] = v;
      const r = await s.run(feeds);
      for (const c of st.spec.carry) state.set(c.input, r[c.output]!);
      out.push({ loss: (r.loss!.data as Float32Array)[0]!, gradNorm: (r.grad_norm!.data as Float32Array)[0]!, params: Object.fromEntries(st.spec.params.map((p) => [p.name, state.get(p.name)!.data as Float32Array])) });
    }
    await s.release();
    return out;
  }

  it('fuses the norms and SwiGLU of the forward (trainFusion) and trains like the unfused step', async () => {
    const rules = ['rms-norm', 'swiglu'];
    const fusedStep = compileTrainStep(def(new Net()), opt, { target: 'cpu', trainFusion: rules });
    const lateOnly = compileTrainStep(def(new Net()), opt, { target: 'cpu', trainFusion: [] });
    // the target's default list is what the table says (cpu: empty until a measured step says otherwise)
    expect(TARGET_TABLE.cpu.train.rules.every((r) => r in RULES)).toBe(true);
    const unfused = compileTrainStep(def(new Net()), opt);
    const count = (g: Graph, op: string) => g.nodes().filter((n) => n.op === op).length;
    // the forward's nodes (weighted norms): the late pass may also fuse the unweighted x * rstd that a
    // norm's backward recomputes (it interns to the traced forward's own nodes, so it has their scope)
    const forward = (g: Graph, op: string) => g.nodes().filter((n) => n.op === op && !(n.is('rms_norm') && !n.params.weight)).length;
    const onnx = (st: typeof unfused, op: string) => st.emitted.model.graph!.node!.filter((n) => n.opType === op).length;
    // 2 blocks x (2 pre-norms + q and k norms) as fused forward nodes; 2 SwiGLUs
    {
      expect(forward(fusedStep.graph, 'rms_norm')).toBe(8);
      expect(onnx(fusedStep, 'RMSNormalization')).toBeGreaterThanOrEqual(8);
      expect(forward(lateOnly.graph, 'rms_norm')).toBeLessThan(8);
    }
    expect(forward(fusedStep.graph, 'swiglu')).toBe(2);
    expect(count(unfused.graph, 'rms_norm') + count(unfused.graph, 'swiglu')).toBe(0);
    const [a, b] = [await run(fusedStep, 3), await run(unfused, 3)];
    for (let i = 0; i < 3; i++) {
      expect(Math.abs(a[i]!.loss - b[i]!.loss) / b[i]!.loss, `loss at step ${i + 1}`).toBeLessThan(2e-5);
      expect(Math.abs(a[i]!.gradNorm - b[i]!.gradNorm) / b[i]!.gradNorm, `grad norm at step ${i + 1}`).toBeLessThan(2e-4);
    }
    // after 3 AdamW steps (lr 1e-2) the params agree to a tenth of one step's size: AdamW normalises
    // each element's update, so f32 noise on a near-zero gradient element moves it by up to ~lr
    // either way; a wrong gradient would move many elements by ~lr (and the losses above differ)
    for (const [name, p] of Object.entries(b[2]!.params)) {
      const q = a[2]!.params[name]!;
      let w = 0;
      for (let k = 0; k < p.length; k++) w = Math.max(w, Math.abs(q[k]! - p[k]!));
      expect(w, name).toBeLessThan(1e-3);
    }
  });
});
