// Whole-block training parity with PyTorch autograd + torch.optim.AdamW
// (test/fixtures/train-parity, written by scripts/py/gen_train_fixtures.py; see its README).
//
// The fixture's block is a plain-PyTorch pre-norm Llama/Qwen3-style block; here the same
// block is the DSL's TransformerBlock with the fixture's params fed by name. Checked:
//  (a) a gradients(loss, params) graph (onnxruntime CPU and the float64 reference evaluator)
//      against torch's loss.backward() gradients;
//  (b) compileTrainStep (AdamW, clipNorm 0.5, weight decay 0.1, betas (0.9, 0.95), eps 1e-8,
//      lr 1e-2) run in onnxruntime for 1 and for 3 steps against torch: loss and pre-clip
//      grad norm at every step, then the params and both moments after the last step;
//  (c) the default decay mask equals torch's param groups (norm weights and biases: no decay).
//
// Error measure per tensor: rel = max|got - want| / max|want| <= 1e-4 (fp32 compute vs a
// float64 torch reference stored as fp32). The worst elementwise |got - want| / |want| is
// reported too (set UNIFUSION_PARITY_REPORT=1 to print the table), but not bounded.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gradients, input, range, trace, TransformerBlock, type BlockConfig, type Tensor } from '../src/dsl/index.ts';
import { compileTrainStep, stateName, STEP_INPUTS, STEP_OUTPUTS, type AdamWOptions } from '../src/train/step.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import type { RefTensor } from '../src/ir/ref.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../src/io/host.ts';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { Session } from '../runtime/session.ts';
import { dumpModel, runOnnx } from './helpers/harness.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'train-parity');
const REL_TOL = 1e-4;

interface Case {
  file: string;
  /** AdamW steps the fixture ran (same batch every step) */
  steps: number;
  /** the fixture holds grad.<param> of the first step */
  grads: boolean;
}

const CASES: Case[] = [
  { file: 'block_adamw_1step.safetensors', steps: 1, grads: true },
  { file: 'block_adamw_3steps.safetensors', steps: 3, grads: false },
];

interface Fixture {
  tensors: Map<string, HostTensor>;
  meta: Record<string, string>;
  get(name: string): HostTensor;
}

function load(file: string): Fixture {
  const p = path.join(FIXTURES, file);
  // a missing fixture fails (never skips): regenerate with scripts/py/gen_train_fixtures.py
  expect(fs.existsSync(p), `fixture ${p} is missing`).toBe(true);
  const { tensors, metadata } = readSafetensors(p);
  return {
    tensors,
    meta: metadata,
    get(name) {
      const t = tensors.get(name);
      if (!t) throw new Error(`${file}: no tensor '${name}' (has ${[...tensors.keys()].join(', ')})`);
      return t;
    },
  };
}

function num(meta: Record<string, string>, key: string): number {
  const v = meta[key];
  if (v === undefined) throw new Error(`fixture metadata lacks '${key}'`);
  return Number(v);
}

function blockConfig(meta: Record<string, string>): BlockConfig {
  expect(meta.causal).toBe('true');
  return {
    hidden: num(meta, 'hidden'),
    heads: num(meta, 'heads'),
    kvHeads: num(meta, 'kv_heads'),
    intermediate: num(meta, 'intermediate'),
    qkvBias: true,
    qkNorm: true,
    eps: num(meta, 'rms_eps'),
    normEps: num(meta, 'rms_eps'),
    rope: { theta: num(meta, 'rope_theta') },
  };
}

function optimizer(meta: Record<string, string>): AdamWOptions & { lr: number } {
  return { beta1: num(meta, 'beta1'), beta2: num(meta, 'beta2'), eps: num(meta, 'eps'), weightDecay: num(meta, 'weight_decay'), clipNorm: num(meta, 'max_norm'), lr: num(meta, 'lr') };
}

/** loss = mean((block(x) - y)^2), positions 0..S-1, causal */
function blockLoss(block: TransformerBlock, x: Tensor, y: Tensor): Tensor {
  return block.forward(x, { positions: [range(x.dim(1))], causal: true }).sub(y).square().mean();
}

const toRef = (t: HostTensor): RefTensor => ({ dtype: t.dtype, shape: [...t.shape], data: toFloat64(t) });
const scalar = (v: number): HostTensor => fromFloat64('f32', [], [v]);

interface Err {
  name: string;
  /** max|got - want| / max|want| */
  rel: number;
  maxAbs: number;
  /** worst elementwise |got - want| / |want| and where */
  elem: number;
  elemAt: number;
  elemGot: number;
  elemWant: number;
}

function measure(name: string, got: RefTensor | HostTensor, want: RefTensor | HostTensor, index?: number): Err {
  const g = toFloat64(got as HostTensor);
  let w = toFloat64(want as HostTensor);
  // index: compare a scalar with one element of a per-step vector
  if (index !== undefined) w = w.subarray(index, index + 1);
  else expect([...got.shape], `${name}: shape`).toEqual([...want.shape]);
  expect(g.length, `${name}: size`).toBe(w.length);
  let scale = 0, maxAbs = 0, elem = 0, elemAt = 0;
  for (let i = 0; i < w.length; i++) {
    const d = Math.abs(g[i]! - w[i]!);
    if (Number.isNaN(d)) return { name, rel: Infinity, maxAbs: NaN, elem: Infinity, elemAt: i, elemGot: g[i]!, elemWant: w[i]! };
    scale = Math.max(scale, Math.abs(w[i]!));
    maxAbs = Math.max(maxAbs, d);
    const e = d === 0 ? 0 : d / Math.abs(w[i]!);
    if (e > elem) (elem = e), (elemAt = i);
  }
  return { name, rel: maxAbs / scale, maxAbs, elem, elemAt, elemGot: g[elemAt]!, elemWant: w[elemAt]! };
}

/** group: loss / grad_norm / grad.* / next.<param> / next.adam.m.* / next.adam.v.* */
function group(name: string): string {
  if (name.startsWith('next.adam.m.')) return 'next.adam.m.*';
  if (name.startsWith('next.adam.v.')) return 'next.adam.v.*';
  if (name.startsWith('next.')) return 'next.<param>';
  if (name.startsWith('grad.')) return 'grad.*';
  return name.replace(/\[.*$/, '');
}

function check(label: string, errs: Err[]): void {
  const byGroup = new Map<string, Err[]>();
  for (const e of errs) byGroup.set(group(e.name), [...(byGroup.get(group(e.name)) ?? []), e]);
  const lines = [...byGroup].map(([gname, es]) => {
    const worst = es.reduce((a, b) => (b.rel > a.rel ? b : a));
    const worstElem = es.reduce((a, b) => (b.elem > a.elem ? b : a));
    return `${label} ${gname.padEnd(14)} (${String(es.length).padStart(2)} tensors): max rel ${worst.rel.toExponential(2)} [${worst.name}], worst elementwise ${worstElem.elem.toExponential(2)} [${worstElem.name} #${worstElem.elemAt}: ${worstElem.elemGot} vs ${worstElem.elemWant}]`;
  });
  if (process.env.UNIFUSION_PARITY_REPORT) console.log(lines.join('\n'));
  for (const e of errs) expect(e.rel, `${label} ${e.name}: max|a-b|/max|b| = ${e.rel.toExponential(3)} (max abs ${e.maxAbs.toExponential(3)})`).toBeLessThanOrEqual(REL_TOL);
}

describe('transformer block training matches PyTorch autograd + AdamW', () => {
  it('the table covers every fixture file in the folder', () => {
    const files = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.safetensors')).sort();
    expect(CASES.map((c) => c.file).sort()).toEqual(files);
  });

  describe.each(CASES.map((c) => [c.file, c] as const))('%s', (file, c) => {
    const fx = load(file);
    const meta = fx.meta;
    const B = num(meta, 'batch'), S = num(meta, 'seq'), C = num(meta, 'hidden');
    const block = new TransformerBlock(blockConfig(meta));
    const names = block.namedParameters().map(([n]) => n);
    const opt = optimizer(meta);

    it('the fixture holds exactly our block\'s params, with matching shapes', () => {
      expect(num(meta, 'steps')).toBe(c.steps);
      const fixtureParams = [...fx.tensors.keys()].filter((k) => !/^(x|y|loss|grad_norm|grad\..*|next\..*)$/.test(k));
      expect(fixtureParams.sort()).toEqual([...names].sort());
      for (const [n, p] of block.namedParameters()) expect(fx.get(n).shape, n).toEqual([...p.shape]);
    });

    it('the default decay mask is torch\'s param groups (norm weights and biases do not decay)', () => {
      const st = compileTrainStep({ name: 'mask', batch: { x: { dtype: 'f32', shape: [B, S, C] }, y: { dtype: 'f32', shape: [B, S, C] } }, loss: (b) => blockLoss(block, b.x!, b.y!) }, opt);
      const ours = (d: boolean) => st.spec.params.filter((p) => p.decay === d).map((p) => p.name).sort();
      expect(ours(true)).toEqual(meta.decay_params!.split(',').sort());
      expect(ours(false)).toEqual(meta.no_decay_params!.split(',').sort());
      expect(st.spec.frozen).toEqual([]);
    });

    if (c.grads) {
      it('gradients(loss, params): loss and every param gradient (onnxruntime and the float64 reference)', async () => {
        const graph = trace('block_grads', () => {
          const x = input('x', 'f32', [B, S, C]);
          const y = input('y', 'f32', [B, S, C]);
          const loss = blockLoss(block, x, y);
          const gs = gradients(loss, block.namedParameters().map(([, p]) => p));
          return { loss, ...Object.fromEntries(names.map((n, i) => [`grad.${n}`, gs[i]!])) };
        });
        expect(graph.params().map((p) => p.params.name).sort()).toEqual([...names].sort());
        const feeds = { x: toRef(fx.get('x')), y: toRef(fx.get('y')) };
        const paramHost = new Map(names.map((n) => [n, fx.get(n)] as const));
        const ort = await runOnnx(graph, feeds, { paramValues: paramHost });
        const ref = evaluate(graph, feeds, { params: new Map([...paramHost].map(([n, t]) => [n, toRef(t)] as const)) });
        for (const [engine, res] of [['onnxruntime', ort], ['reference', ref]] as const) {
          const errs = [measure('loss', res.loss!, fx.get('loss'), 0), ...names.map((n) => measure(`grad.${n}`, res[`grad.${n}`]!, fx.get(`grad.${n}`)))];
          check(`${file} gradients ${engine}`, errs);
        }
      });
    }

    it(`compileTrainStep, ${c.steps} AdamW step(s) in onnxruntime: loss, grad_norm, next params and moments`, async () => {
      const st = compileTrainStep({ name: 'block_step', batch: { x: { dtype: 'f32', shape: [B, S, C] }, y: { dtype: 'f32', shape: [B, S, C] } }, loss: (b) => blockLoss(block, b.x!, b.y!) }, opt);
      expect(st.spec.params.map((p) => p.name).sort()).toEqual([...names].sort());
      const bytes = encodeModel(st.emitted.model);
      dumpModel(`train-parity-${c.steps}`, bytes);
      // state: the fixture's params, zero moments
      const state = new Map<string, HostTensor>();
      for (const p of st.spec.params) {
        state.set(p.name, fx.get(p.name));
        const zeros = () => fromFloat64('f32', p.shape, new Float64Array(p.shape.reduce((a, d) => a * d, 1)));
        state.set(stateName.m(p.name), zeros());
        state.set(stateName.v(p.name), zeros());
      }
      const s = await Session.load(bytes);
      const errs: Err[] = [];
      let out: Record<string, HostTensor> = {};
      try {
        for (let t = 1; t <= c.steps; t++) {
          const feeds: Record<string, HostTensor> = { x: fx.get('x'), y: fx.get('y'), [STEP_INPUTS.lr]: scalar(opt.lr), [STEP_INPUTS.step]: scalar(t) };
          for (const [k, v] of state) feeds[k] = v;
          out = await s.run(feeds);
          errs.push(measure(`loss[${t}]`, out[STEP_OUTPUTS.loss]!, fx.get('loss'), t - 1));
          errs.push(measure(`grad_norm[${t}]`, out[STEP_OUTPUTS.gradNorm]!, fx.get('grad_norm'), t - 1));
          for (const cr of st.spec.carry) state.set(cr.input, out[cr.output]!);
        }
      } finally {
        await s.release();
      }
      // clipping was active at every step (else this would not test it)
      for (const v of toFloat64(fx.get('grad_norm'))) expect(v).toBeGreaterThan(opt.clipNorm!);
      for (const n of names) {
        for (const k of [stateName.next(n), stateName.next(stateName.m(n)), stateName.next(stateName.v(n))]) errs.push(measure(k, out[k]!, fx.get(k)));
      }
      check(`${file} step`, errs);
    });
  });
});
