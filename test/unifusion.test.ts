// UniFusion modules (graphs/lap.ts, refiner.ts, dit.ts, unifusion.ts, presets.ts):
//  - parity with a plain-PyTorch LAP + refiner + DiT of the tiny preset
//    (test/fixtures/unifusion, scripts/py/gen_unifusion_fixtures.py) for all six
//    conditioning variants, at two latent sizes from one ONNX model (symbolic h, w);
//  - a compileTrainStep step of the rectified-flow loss against torch autograd (loss, grad
//    norm, and every gradient through the first Adam moment);
//  - the encoder-in-the-graph assembly (the example transformer, and graphs/vlm's Qwen2
//    DecoderLM, as frozen stand-in VLMs) against encoder graph -> taps -> pipeline graph,
//    forward and train step;
//  - variant constraints and their errors; every preset compiles (large ones as
//    skeletons) and the paper DiTs have the stated parameter counts.
//
// Error measure: rel = max|got - want| / max|want| <= 1e-4 (fp32 vs a float64 reference).
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { input, trace } from '../src/dsl/index.ts';
import type { Graph } from '../src/ir/graph.ts';
import { Rng } from '../src/ir/init.ts';
import { compileGraph, writeCompiled } from '../src/compiler.ts';
import { compileTrainStep, stateName, STEP_INPUTS, STEP_OUTPUTS, type CompiledTrainStep } from '../src/train/step.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../src/io/host.ts';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { Session } from '../runtime/session.ts';
import { formatModelInfo, inspectModel } from '../src/cli/inspect.ts';
import { TransformerStack } from '../examples/transformer.ts';
import unifusionGraph, {
  CONDITIONINGS,
  checkConfig,
  decoderTapEncoder,
  krea2Name,
  requiredHidden,
  sampleLogitNormal,
  uniFusionForward,
  uniFusionTrainStep,
  UniFusion,
  decoderLMEncoder,
  type Conditioning,
  type TapEncoder,
  type UniFusionConfig,
} from '../graphs/unifusion.ts';
import ditGraph, { ditParamCount } from '../graphs/dit.ts';
import lapGraph, { LAP_POOL_PARAM } from '../graphs/lap.ts';
import { PRESETS, swigluWidth, tapsEvery, TINY_QWEN2_CONFIG, VLMS, withConditioning } from '../graphs/presets.ts';
import { decoderConfigFromHF } from '../graphs/vlm/index.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'unifusion');
const REL_TOL = 1e-4;

function load(name: string): { tensors: Map<string, HostTensor>; meta: Record<string, string>; get(n: string): HostTensor } {
  const p = path.join(FIXTURES, `${name}.safetensors`);
  expect(fs.existsSync(p), `fixture ${p} is missing (scripts/py/gen_unifusion_fixtures.py)`).toBe(true);
  const { tensors, metadata } = readSafetensors(p);
  return {
    tensors,
    meta: metadata,
    get(n) {
      const t = tensors.get(n);
      if (!t) throw new Error(`${name}.safetensors has no '${n}'`);
      return t;
    },
  };
}

const weights = load('weights');
const inputs = load('inputs');
const outputs = load('outputs');
const train = load('train');

/** max|got - want| / max|want| */
function rel(got: HostTensor, want: HostTensor): number {
  expect(got.shape).toEqual(want.shape);
  const a = toFloat64(got), b = toFloat64(want);
  let d = 0, s = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return Number.isNaN(d) || a.some(Number.isNaN) ? Infinity : d / s;
}

async function runGraph(graph: Graph, feeds: Record<string, HostTensor>, paramValues?: ReadonlyMap<string, HostTensor>): Promise<Record<string, HostTensor>> {
  const c = compileGraph(graph, { weights: 'embed', paramValues });
  const s = await Session.load(encodeModel(c.emitted.model));
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

function pipelineGraph(cfg: UniFusionConfig, encoder?: TapEncoder): { graph: Graph; model: UniFusion } {
  let model: UniFusion | undefined;
  const graph = trace(`unifusion_${cfg.conditioning}`, () => {
    const r = uniFusionForward(cfg, { encoder });
    model = r.model;
    return { velocity: r.velocity };
  });
  return { graph, model: model! };
}

const scalar = (v: number): HostTensor => fromFloat64('f32', [], [v]);

interface LoadedStep {
  st: CompiledTrainStep;
  session: Session;
}

async function loadStep(st: CompiledTrainStep): Promise<LoadedStep> {
  return { st, session: await Session.load(encodeModel(st.emitted.model)) };
}

async function runStep({ st, session }: LoadedStep, batch: Record<string, HostTensor>, params: (name: string) => HostTensor): Promise<Record<string, HostTensor>> {
  const feeds: Record<string, HostTensor> = { ...batch, [STEP_INPUTS.lr]: scalar(1e-3), [STEP_INPUTS.step]: scalar(1) };
  for (const p of st.spec.params) {
    feeds[p.name] = params(p.name);
    const zeros = fromFloat64('f32', p.shape, new Float64Array(p.shape.reduce((a, d) => a * d, 1)));
    feeds[stateName.m(p.name)] = zeros;
    feeds[stateName.v(p.name)] = zeros;
  }
  return session.run(feeds);
}

// the taps-fed train step of the tiny preset ('lap'), compiled and loaded once for the tests that use it
let tapsStep: Promise<LoadedStep> | undefined;
const tinyTapsStep = () => (tapsStep ??= loadStep(compileTrainStep(uniFusionTrainStep(PRESETS.tiny!), { weightDecay: 0.01 })));
afterAll(async () => {
  if (tapsStep) await (await tapsStep).session.release();
});

// the tiny stand-in VLM: examples/transformer.ts (Qwen2 layout) shaped like VLMS.tiny
const tinyStack = () => new TransformerStack({ vocab: VLMS.tiny.vocab, hidden: VLMS.tiny.hidden, layers: VLMS.tiny.layers, heads: VLMS.tiny.heads, kvHeads: VLMS.tiny.kvHeads, intermediate: VLMS.tiny.intermediate, ropeTheta: VLMS.tiny.ropeTheta, causal: true });

function encoderFeeds(): Record<string, HostTensor> {
  const rng = new Rng(7);
  const ids = Float64Array.from({ length: 10 }, () => Math.floor(rng.uniform() * VLMS.tiny.vocab));
  return { input_ids: fromFloat64('i64', [2, 5], ids), attention_mask: inputs.get('condition_mask') };
}

describe('tiny preset parity with PyTorch (all conditioning variants)', { timeout: 60_000 }, () => {
  it('the fixture was made for this preset', () => {
    const want = JSON.parse(weights.meta.config!);
    const t = PRESETS.tiny!;
    expect(want.vlm).toEqual({ layers: t.vlm.layers, hidden: t.vlm.hidden, heads: t.vlm.heads, kvHeads: t.vlm.kvHeads, headDim: t.vlm.headDim });
    expect(want.taps).toEqual(t.taps);
    expect(want.lap).toEqual(t.lap);
    expect(want.refiner).toEqual(t.refiner);
    expect(want.dit).toEqual(t.dit);
    expect(weights.meta.variants!.split(',').sort()).toEqual([...CONDITIONINGS].sort());
  });

  it('the fixture weights are exactly the union of the variants\' params, same names and shapes', () => {
    const ours = new Map<string, readonly number[]>();
    for (const c of CONDITIONINGS) for (const [n, p] of new UniFusion(withConditioning(PRESETS.tiny!, c)).namedParameters()) ours.set(n, p.shape);
    expect([...weights.tensors.keys()].sort()).toEqual([...ours.keys()].sort());
    for (const [n, shape] of ours) expect(weights.get(n).shape, n).toEqual([...shape]);
  });

  it.each(CONDITIONINGS.map((c) => [c]))('%s: velocity in onnxruntime matches torch at two latent sizes (one model)', async (c: Conditioning) => {
    const cfg = withConditioning(PRESETS.tiny!, c);
    const { graph } = pipelineGraph(cfg);
    const names = graph.inputs.map((i) => i.params.name);
    const feeds = (latents: string): Record<string, HostTensor> => Object.fromEntries(names.map((n) => [n, inputs.get(n === 'latents' ? latents : n)]));
    expect(names).toContain('condition_mask');
    for (const i of requiredHidden(cfg)) expect(names).toContain(`hidden_states.${i}`);
    const c0 = compileGraph(graph, { weights: 'embed', paramValues: weights.tensors });
    const s = await Session.load(encodeModel(c0.emitted.model));
    try {
      // latent H, W stay symbolic in the model: h*2, w*2
      expect(s.inputs.find((i) => i.name === 'latents')!.shape).toEqual(['batch', 4, 'h*2', 'w*2']);
      const big = await s.run(feeds('latents'));
      const small = await s.run(feeds('latents_small'));
      const e1 = rel(big.velocity!, outputs.get(`velocity.${c}`));
      const e2 = rel(small.velocity!, outputs.get(`velocity.${c}.small`));
      if (process.env.UNIFUSION_PARITY_REPORT) console.log(`${c}: rel ${e1.toExponential(2)} (8x6), ${e2.toExponential(2)} (4x4)`);
      expect(e1).toBeLessThanOrEqual(REL_TOL);
      expect(e2).toBeLessThanOrEqual(REL_TOL);
    } finally {
      await s.release();
    }
  });
});

describe('rectified-flow training (lap variant)', { timeout: 60_000 }, () => {
  const cfg = PRESETS.tiny!;
  const batch = (): Record<string, HostTensor> => {
    const b: Record<string, HostTensor> = { condition_mask: inputs.get('condition_mask'), latents: train.get('x0'), noise: train.get('noise'), timestep: train.get('timestep') };
    for (const i of cfg.taps) b[`hidden_states.${i}`] = inputs.get(`hidden_states.${i}`);
    return b;
  };

  it('compileTrainStep, one AdamW step in onnxruntime: loss, grad norm and every gradient match torch autograd; params move', async () => {
    const step = await tinyTapsStep();
    const st = step.st;
    expect(st.spec.frozen).toEqual([]);
    expect(st.spec.params.map((p) => p.name).sort()).toEqual(new UniFusion(cfg).namedParameters().map(([n]) => n).sort());
    const out = await runStep(step, batch(), (n) => weights.get(n));
    expect(rel(fromFloat64('f32', [1], toFloat64(out[STEP_OUTPUTS.loss]!)), train.get('loss'))).toBeLessThanOrEqual(REL_TOL);
    expect(rel(fromFloat64('f32', [1], toFloat64(out[STEP_OUTPUTS.gradNorm]!)), train.get('grad_norm'))).toBeLessThanOrEqual(REL_TOL);
    // first step from zero moments: next.adam.m = (1 - beta1) * gradient (no clipping configured)
    let worst = 0, worstName = '';
    for (const p of st.spec.params) {
      const m = toFloat64(out[stateName.next(stateName.m(p.name))]!).map((x) => x / (1 - st.spec.optimizer.beta1));
      const e = rel(fromFloat64('f32', p.shape, m), train.get(`grad.${p.name}`));
      if (e > worst) (worst = e), (worstName = p.name);
      const next = out[stateName.next(p.name)]!;
      expect(toFloat64(next).every(Number.isFinite), p.name).toBe(true);
      expect(rel(next, weights.get(p.name)), p.name).toBeGreaterThan(0);
    }
    if (process.env.UNIFUSION_PARITY_REPORT) console.log(`gradients: worst rel ${worst.toExponential(2)} (${worstName}) over ${st.spec.params.length} params`);
    expect(worst, worstName).toBeLessThanOrEqual(REL_TOL);
  });

  it('logit-normal timesteps are in (0, 1) with median 1/2', () => {
    const t = sampleLogitNormal(new Rng(3), 2001);
    expect(t.every((x) => x > 0 && x < 1)).toBe(true);
    const sorted = [...t].sort((a, b) => a - b);
    expect(Math.abs(sorted[1000]! - 0.5)).toBeLessThan(0.05);
  });
});

// tiny Qwen2 config for graphs/vlm's DecoderLM, shaped like VLMS.tiny
const TINY_QWEN2 = TINY_QWEN2_CONFIG;

interface EncoderCase {
  make(cfg: UniFusionConfig): TapEncoder;
  feeds(): Record<string, HostTensor>;
  /** every frozen param name matches */
  frozen: RegExp;
}

const ENCODERS: Record<string, EncoderCase> = {
  'example transformer (decoderTapEncoder)': { make: () => decoderTapEncoder(tinyStack(), VLMS.tiny), feeds: encoderFeeds, frozen: /^(embed_tokens|layers|norm)\./ },
  "graphs/vlm's qwen2 DecoderLM (decoderLMEncoder)": {
    make: (cfg) => decoderLMEncoder(decoderConfigFromHF(TINY_QWEN2), cfg, { prefix: 'vlm' }),
    feeds: () => {
      const f = encoderFeeds();
      return { input_ids: f.input_ids!, attention_mask: fromFloat64('i64', f.attention_mask!.shape, toFloat64(f.attention_mask!)) };
    },
    frozen: /^vlm\./,
  },
};

describe('encoder in the graph (a frozen stand-in VLM)', { timeout: 60_000 }, () => {
  // the encoder alone -> its hidden states / keys / values / mask -> the taps-as-inputs pipeline
  async function viaTaps(cfg: UniFusionConfig, enc: TapEncoder, encFeeds: Record<string, HostTensor>, latents: HostTensor): Promise<HostTensor> {
    const encGraph = trace('vlm', () => {
      const t = Object.fromEntries(Object.entries(enc.inputs).map(([n, s]) => [n, input(n, s.dtype, s.shape)]));
      const o = enc.encode(t, { hidden: requiredHidden(cfg), kv: cfg.conditioning === 'kv-fusion' });
      const outs: Record<string, ReturnType<typeof input>> = { condition_mask: o.mask };
      for (const [i, h] of o.hidden) outs[`hidden_states.${i}`] = h;
      o.kv?.forEach((kv, i) => ((outs[`key_states.${i}`] = kv.key), (outs[`value_states.${i}`] = kv.value)));
      return outs;
    });
    const taps = await runGraph(encGraph, encFeeds);
    const { graph } = pipelineGraph(cfg);
    const feeds = Object.fromEntries(graph.inputs.map((i) => [i.params.name, i.params.name === 'latents' ? latents : i.params.name === 'timestep' ? inputs.get('timestep') : taps[i.params.name]!]));
    return (await runGraph(graph, feeds, weights.tensors)).velocity!;
  }

  const cases = Object.keys(ENCODERS).flatMap((e) => (['lap', 'kv-fusion'] as Conditioning[]).map((c) => [e, c] as const));
  it.each(cases)('%s, %s: one graph == encoder graph then pipeline graph', async (e, c) => {
    const cfg = withConditioning(PRESETS.tiny!, c);
    const ec = ENCODERS[e]!;
    const enc = ec.make(cfg);
    const { graph } = pipelineGraph(cfg, enc);
    expect(graph.inputs.map((i) => i.params.name).sort()).toEqual(['attention_mask', 'input_ids', 'latents', 'timestep']);
    const frozen = graph.params().filter((p) => p.params.frozen).map((p) => p.params.name);
    expect(frozen.length).toBeGreaterThan(0);
    expect(frozen.filter((n) => !ec.frozen.test(n))).toEqual([]);
    expect(graph.params().filter((p) => !p.params.frozen).every((p) => /^(lap|refiner|dit)\./.test(p.params.name))).toBe(true);
    const ef = ec.feeds();
    const one = (await runGraph(graph, { ...ef, latents: inputs.get('latents'), timestep: inputs.get('timestep') }, weights.tensors)).velocity!;
    const two = await viaTaps(cfg, ec.make(cfg), ef, inputs.get('latents'));
    expect(rel(one, two)).toBeLessThanOrEqual(1e-5);
  });

  it('train step with the frozen encoder: encoder params get no state; loss and grad norm == taps-fed step', async () => {
    const cfg = PRESETS.tiny!;
    const enc = decoderTapEncoder(tinyStack(), VLMS.tiny);
    const st = compileTrainStep(uniFusionTrainStep(cfg, { encoder: enc }), { weightDecay: 0.01 });
    expect(st.spec.frozen.sort()).toEqual(tinyStack().namedParameters().map(([n]) => n).sort());
    expect(st.spec.params.every((p) => /^(lap|refiner|dit)\./.test(p.name))).toBe(true);
    const ef = encoderFeeds();
    const lat = { latents: train.get('x0'), noise: train.get('noise'), timestep: train.get('timestep') };
    const loaded = await loadStep(st);
    const one = await runStep(loaded, { ...ef, ...lat }, (n) => weights.get(n)).finally(() => loaded.session.release());
    // the same batch through the encoder graph, then the taps-mode step
    const encGraph = trace('vlm', () => {
      const t = Object.fromEntries(Object.entries(enc.inputs).map(([n, s]) => [n, input(n, s.dtype, s.shape)]));
      const o = enc.encode(t, { hidden: cfg.taps, kv: false });
      return Object.fromEntries(cfg.taps.map((i) => [`hidden_states.${i}`, o.hidden.get(i)!]));
    });
    const taps = await runGraph(encGraph, ef);
    const two = await runStep(await tinyTapsStep(), { ...taps, condition_mask: ef.attention_mask!, ...lat }, (n) => weights.get(n));
    expect(Number.isFinite(toFloat64(one.loss!)[0]!)).toBe(true);
    expect(rel(one.loss!, two.loss!)).toBeLessThanOrEqual(1e-5);
    expect(rel(one.grad_norm!, two.grad_norm!)).toBeLessThanOrEqual(1e-5);
  });
});

describe('conditioning constraints', () => {
  it('kv-fusion and hsi name what does not match the VLM', () => {
    expect(() => checkConfig(withConditioning(PRESETS['ablation-5b']!, 'kv-fusion'))).toThrow(/KV fusion.*kv heads: 32 != 8/);
    expect(() => checkConfig(withConditioning(PRESETS['unifusion-8b']!, 'kv-fusion'))).toThrow(/depth vs VLM layers: 32 != 28; DiT width vs VLM hidden: 5120 != 3584; DiT heads vs VLM heads: 40 != 28; DiT kv heads vs VLM kv heads: 40 != 4/);
    expect(() => checkConfig(withConditioning(PRESETS['unifusion-8b']!, 'hsi'))).toThrow(/hidden-state injection.*32 != 28.*5120 != 3584/);
    // the ablation DiT is as deep and as wide as Llama-3.1-8B: HSI fits, heads may differ
    expect(() => checkConfig(withConditioning(PRESETS['ablation-5b']!, 'hsi'))).not.toThrow();
    expect(() => new UniFusion(withConditioning(PRESETS.krea2!, 'hsi'))).toThrow(/depth vs VLM layers: 28 != 36/);
    for (const c of CONDITIONINGS) expect(() => checkConfig(withConditioning(PRESETS.tiny!, c))).not.toThrow();
  });

  it('taps must be increasing hidden_states indices of the VLM', () => {
    expect(() => checkConfig({ ...PRESETS.tiny!, taps: [1, 5] })).toThrow(/tap 5 is not a hidden_states index of a 4-layer VLM/);
    expect(() => checkConfig({ ...PRESETS.tiny!, taps: [2, 1] })).toThrow(/strictly increasing/);
    expect(tapsEvery(3, 2, 36)).toEqual([2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35]);
    expect(tapsEvery(3, 0, 28)).toEqual([0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
  });

  it('an encoder must have the config\'s VLM shapes', () => {
    const enc = decoderTapEncoder(tinyStack(), VLMS.tiny);
    expect(() => trace('x', () => ({ v: uniFusionForward(PRESETS['ablation-5b']!, { encoder: enc }).velocity }))).toThrow(/encoder tiny does not have the shapes of the config's VLM llama-3.1-8b: layers 4 != 32/);
  });
});

describe('presets', { timeout: 60_000 }, () => {
  // D width, L depth, F SwiGLU width, hd head dim; no gate, no biases, KV = heads, C = 16, p = 2, tdim 256:
  // 64D + D + (256D + D + D^2 + D) + (6D^2 + 6D) + L (8D + 4D^2 + 2hd + 3DF) + (3D + 64D + 64)
  const formula = (D: number, L: number, F: number, hd: number) => 64 * D + D + (256 * D + D + D * D + D) + (6 * D * D + 6 * D) + L * (8 * D + 4 * D * D + 2 * hd + 3 * D * F) + (3 * D + 64 * D + 64);

  it('the paper DiTs: ablation-5b 5,086,175,296 (~5B), unifusion-8b 7,946,309,696 (~8B); krea2 12,423,150,656', () => {
    expect(ditParamCount(PRESETS['ablation-5b']!.dit)).toBe(5_086_175_296);
    expect(formula(4096, 32, 7168, 128)).toBe(5_086_175_296);
    expect(ditParamCount(PRESETS['unifusion-8b']!.dit)).toBe(7_946_309_696);
    expect(formula(5120, 32, 8960, 128)).toBe(7_946_309_696);
    expect(ditParamCount(PRESETS.krea2!.dit)).toBe(12_423_150_656);
    expect(swigluWidth(6144, 4)).toBe(16384);
    expect(swigluWidth(2560, 4)).toBe(6912);
  });

  it.each([['ablation-5b', 5_086_175_296], ['unifusion-8b', 7_946_309_696], ['krea2', 12_423_150_656], ['tiny', ditParamCount(PRESETS.tiny!.dit)]] as [string, number][])(
    'graphs/dit.ts %s compiles as a skeleton; manifest and inspect count %d params',
    async (preset, count) => {
      const c = compileGraph(ditGraph.trace(preset), { weights: 'skeleton', preset });
      expect(c.manifest.paramCount).toBe(count);
      expect(c.manifest.inputs.map((i) => `${i.name}:${i.shape.join(',')}`)).toEqual(['latents:batch,' + PRESETS[preset]!.dit.channels + ',h*2,w*2', 'timestep:batch', `condition:batch,seq,${PRESETS[preset]!.dit.hidden}`, 'condition_mask:batch,seq']);
      if (preset !== 'ablation-5b') return;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-dit-'));
      try {
        const w = await writeCompiled(dir, c);
        const info = await inspectModel(w.onnxPath);
        // inspect counts every initializer: the params plus a few hundred constant elements (frequencies, shapes)
        expect(info.parameters - count).toBeGreaterThanOrEqual(0);
        expect(info.parameters - count).toBeLessThan(1000);
        expect(JSON.parse(fs.readFileSync(w.manifestPath, 'utf8')).paramCount).toBe(count);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it.each(Object.keys(unifusionGraph.presets).map((k) => [k]))('graphs/unifusion.ts %s compiles (skeleton weights) with its LAP pooling weight exposed', (preset) => {
    const cfg = unifusionGraph.presets[preset]!;
    const c = compileGraph(unifusionGraph.trace(preset), { weights: 'skeleton', preset });
    const model = new UniFusion(cfg);
    expect(c.manifest.paramCount).toBe(model.paramCount());
    const ditCount = c.manifest.params.filter((p) => p.name.startsWith('dit.')).reduce((a, p) => a + (p.shape as number[]).reduce((x, y) => x * y, 1), 0);
    expect(ditCount).toBe(ditParamCount(cfg.dit));
    for (const name of model.poolWeightNames()) {
      expect(name.endsWith(LAP_POOL_PARAM)).toBe(true);
      expect(c.manifest.params.find((p) => p.name === name)?.shape).toEqual([1, cfg.taps.length]);
    }
    if (cfg.conditioning === 'lap') expect(model.poolWeightNames()).toEqual(['lap.projector.weight']);
    expect(c.manifest.outputs).toEqual([{ name: 'velocity', dtype: 'f32', shape: ['batch', cfg.dit.channels, `h*${cfg.dit.patch}`, `w*${cfg.dit.patch}`] }]);
  });

  it.each([['ablation-5b', 5_086_175_296], ['unifusion-8b', 7_946_309_696]] as [string, number][])('inspect of the whole %s pipeline shows the DiT params (%d) apart from LAP and refiner', async (preset, dit) => {
    const c = compileGraph(unifusionGraph.trace(preset), { weights: 'skeleton', preset });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-inspect-'));
    try {
      const info = await inspectModel((await writeCompiled(dir, c)).onnxPath);
      const by = Object.fromEntries(info.parametersByPrefix.map((p) => [p.prefix, p.parameters]));
      expect(by.dit).toBe(dit);
      const sum = (pre: string) => c.manifest.params.filter((p) => p.name.startsWith(pre)).reduce((a, p) => a + (p.shape as number[]).reduce((x, y) => x * y, 1), 0);
      expect(by.lap).toBe(sum('lap.'));
      expect(by.refiner).toBe(sum('refiner.'));
      expect(formatModelInfo(info)).toMatch(new RegExp(`dit +${dit.toLocaleString('en-US')} in`));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('graphs/lap.ts compiles per preset', () => {
    for (const preset of Object.keys(lapGraph.presets)) {
      const c = compileGraph(lapGraph.trace(preset), { weights: 'skeleton' });
      expect(c.manifest.outputs[0]!.shape).toEqual(['batch', 'seq', PRESETS[preset]!.vlm.hidden]);
      expect(c.manifest.params.find((p) => p.name === LAP_POOL_PARAM)?.shape).toEqual([1, PRESETS[preset]!.taps.length]);
    }
  });

  it("krea2's names map onto Krea 2's checkpoint names with its shapes", () => {
    const named = new Map(new UniFusion(PRESETS.krea2!).namedParameters().map(([n, p]) => [krea2Name(n), [...p.shape]]));
    const want: Record<string, number[]> = {
      'txtfusion.projector.weight': [1, 12],
      'txtfusion.layerwise_blocks.1.attn.qknorm.knorm.scale': [128],
      'txtfusion.refiner_blocks.1.mlp.down.weight': [2560, 6912],
      'txtmlp.0.scale': [2560],
      'txtmlp.1.weight': [6144, 2560],
      'txtmlp.3.bias': [6144],
      'first.weight': [6144, 64],
      'tmlp.0.weight': [6144, 256],
      'tproj.1.weight': [36864, 6144],
      'blocks.27.mod.lin': [36864],
      'blocks.0.attn.wk.weight': [1536, 6144],
      'blocks.0.attn.gate.weight': [6144, 6144],
      'blocks.0.mlp.gate.weight': [16384, 6144],
      'last.modulation.lin': [2, 6144],
      'last.linear.weight': [64, 6144],
    };
    for (const [n, shape] of Object.entries(want)) expect(named.get(n), n).toEqual(shape);
  });
});
