// Decoder-only LLM encoders (graphs/vlm) against transformers: tiny random Qwen2, Qwen2.5-VL
// text (M-RoPE), Llama-3.1 (llama3 rope scaling) and Gemma-3 text checkpoints made by
// scripts/py/gen_vlm_text_fixtures.py (test/fixtures/vlm-text, see its README). Each graph is
// built from the checkpoint's config.json, fed its model.safetensors and run in onnxruntime
// (CPU); every tapped hidden state must match transformers' output_hidden_states within
// max|ours - HF| / max|HF| <= 1e-4 (fp32), over the positions where HF's values are meaningful
// (valid_mask: everything but left pads and pads whose sliding window sees no token; the
// embeddings, hidden_states.0, are compared everywhere).
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildEncoder, decoderConfigFromHF, ENCODER_FAMILIES, parseTaps, supportedModelTypes, type Encoder } from '../graphs/vlm/index.ts';
import { DecoderLM, defaultInvFreq, EncoderConfigError, llama3InvFreq, mropeStreams, type LayerKV } from '../graphs/vlm/common.ts';
import { dim, input, range, trace, type Tensor } from '../src/dsl/index.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import type { RefTensor } from '../src/ir/ref.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { toFloat64, type HostTensor } from '../src/io/host.ts';
import { compileGraph } from '../src/compiler.ts';
import { runOnnx } from './helpers/harness.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'vlm-text');
const TOL = 1e-4;

const toRef = (t: HostTensor): RefTensor => ({ dtype: t.dtype, shape: [...t.shape], data: toFloat64(t) });

interface Fixture {
  config: Record<string, unknown>;
  weights: Map<string, HostTensor>;
  io: Map<string, HostTensor>;
  meta: Record<string, string>;
}

const cache = new Map<string, Fixture>();
function load(name: string): Fixture {
  let f = cache.get(name);
  if (!f) {
    const dir = path.join(FIXTURES, name);
    for (const file of ['config.json', 'model.safetensors', 'io.safetensors']) expect(fs.existsSync(path.join(dir, file)), `fixture ${dir}/${file} is missing`).toBe(true);
    const io = readSafetensors(path.join(dir, 'io.safetensors'));
    f = {
      config: JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>,
      weights: readSafetensors(path.join(dir, 'model.safetensors')).tensors,
      io: io.tensors,
      meta: io.metadata,
    };
    cache.set(name, f);
  }
  return f;
}

function get(f: Fixture, name: string): HostTensor {
  const t = f.io.get(name);
  if (!t) throw new Error(`io.safetensors has no '${name}'`);
  return t;
}

/** The checkpoint prefix ('' or a hub prefix) under which every expected weight exists. */
function checkpointPrefix(enc: Encoder, weights: Map<string, HostTensor>): string {
  for (const p of ['', ...enc.hubPrefixes]) if (enc.expectedWeights().every((w) => weights.has(p + w.name))) return p;
  throw new Error(`no prefix of ${JSON.stringify(['', ...enc.hubPrefixes])} holds ${enc.expectedWeights()[0]?.name}`);
}

/** max |a - b| / max |b| over the [B, S] positions where keep is true (rows of `hidden` floats). */
function relErr(got: RefTensor, want: RefTensor, keep: HostTensor | null): number {
  expect(got.shape).toEqual(want.shape);
  const H = want.shape[want.shape.length - 1]!;
  let num = 0, den = 0;
  for (let i = 0; i < want.data.length; i++) {
    if (keep && !keep.data[Math.floor(i / H)]) continue;
    const d = Math.abs(got.data[i]! - want.data[i]!);
    num = Number.isNaN(d) ? Infinity : Math.max(num, d);
    den = Math.max(den, Math.abs(want.data[i]!));
  }
  return num / den;
}

/** cumsum(mask) - 1 per row, 1 at padding (generate()'s position_ids), i64 [B, S] */
function maskPositions(mask: RefTensor): RefTensor {
  const [B, S] = mask.shape as [number, number];
  const data = new Float64Array(B * S);
  for (let b = 0; b < B; b++) {
    let c = 0;
    for (let s = 0; s < S; s++) {
      const m = mask.data[b * S + s] !== 0;
      if (m) c++;
      data[b * S + s] = m ? c - 1 : 1;
    }
  }
  return { dtype: 'i64', shape: [B, S], data };
}

interface Run {
  /** tap spec */
  taps: string;
  positions?: 'arange' | 'mask' | 'input';
  /** io.safetensors prefix of the expected hidden states */
  expect: '' | 'mask_positions.' | 'input_positions.';
  /** also evaluate the float64 reference interpreter */
  reference?: boolean;
}

const report: string[] = [];

async function check(name: string, run: Run): Promise<number> {
  const f = load(name);
  const probe = buildEncoder(f.config, run.taps, { positions: run.positions });
  const prefix = checkpointPrefix(probe, f.weights);
  const enc = buildEncoder(f.config, run.taps, { positions: run.positions, prefix });
  const graph = enc.trace();

  // the graph's params are exactly expectedWeights(), all present in the checkpoint with the same shapes
  const expected = enc.expectedWeights();
  expect(graph.params().map((p) => p.params.name).sort()).toEqual(expected.map((w) => w.name).sort());
  const paramValues = new Map<string, HostTensor>();
  for (const w of expected) {
    const t = f.weights.get(w.name);
    expect(t, `checkpoint tensor ${w.name}`).toBeDefined();
    expect(t!.shape).toEqual(w.shape);
    paramValues.set(w.name, t!);
  }
  // dead layers stay out: only layers below the highest tap, the final norm only for tap L
  const L = enc.numLayers;
  const last = Math.max(...enc.taps);
  const layerIds = new Set(expected.map((w) => /(?:^|\.)layers\.(\d+)\./.exec(w.name)?.[1]).filter((x) => x !== undefined));
  expect(layerIds.size).toBe(Math.min(last, L));
  expect(expected.some((w) => w.name === `${prefix}norm.weight`)).toBe(last === L);

  const feeds: Record<string, RefTensor> = { input_ids: toRef(get(f, 'input_ids')), attention_mask: toRef(get(f, 'attention_mask')) };
  if (run.positions === 'input') feeds.position_ids = run.expect === 'mask_positions.' ? maskPositions(feeds.attention_mask!) : toRef(get(f, 'position_ids'));
  const engines: [string, Record<string, RefTensor>][] = [['onnxruntime', await runOnnx(graph, feeds, { paramValues })]];
  if (run.reference) engines.push(['reference', evaluate(graph, feeds, { params: new Map([...paramValues].map(([k, v]) => [k, toRef(v)])) })]);

  expect(graph.outputs.map((o) => o.name)).toEqual(enc.outputs);
  const valid = get(f, 'valid_mask');
  let worst = 0;
  for (const [engine, out] of engines) {
    for (const i of enc.taps) {
      const want = toRef(get(f, `${run.expect}hidden_states.${i}`));
      const got = out[`hidden_states.${i}`];
      expect(got, `${engine} hidden_states.${i}`).toBeDefined();
      const err = relErr(got!, want, i === 0 ? null : valid);
      worst = Math.max(worst, err);
      report.push(`${name} [${run.taps}${run.positions ? `, ${run.positions}` : ''}] ${engine} hidden_states.${i}: max rel err ${err.toExponential(2)}`);
      expect(err, `${name} ${engine} hidden_states.${i} (${run.taps}, ${run.positions ?? 'arange'})`).toBeLessThanOrEqual(TOL);
    }
    // masks: text = attention_mask != 0, pad = its complement
    const am = get(f, 'attention_mask');
    expect([...out.text_mask!.data]).toEqual([...am.data].map((v) => (Number(v) !== 0 ? 1 : 0)));
    expect([...out.pad_mask!.data]).toEqual([...am.data].map((v) => (Number(v) === 0 ? 1 : 0)));
  }
  return worst;
}

const CASES = ['qwen2', 'qwen2_5_vl_text', 'qwen3', 'qwen3_vl_text', 'llama3', 'gemma3_text', 'gemma3_softcap_bidir'];

describe('decoder encoders match transformers (test/fixtures/vlm-text)', () => {
  it('the table covers every fixture folder', () => {
    const dirs = fs.readdirSync(FIXTURES).filter((d) => fs.statSync(path.join(FIXTURES, d)).isDirectory()).sort();
    expect([...CASES].sort()).toEqual(dirs);
  });

  it.each(CASES)('%s: every hidden state, default (arange) positions, padded batch', async (name) => {
    const L = Number(load(name).meta.num_hidden_layers);
    await check(name, { taps: `every:1:0`, expect: '', reference: true });
    expect(buildEncoder(load(name).config, 'every:1:0').taps).toEqual(Array.from({ length: L + 1 }, (_, i) => i));
  });

  it.each(CASES)('%s: positions from the mask (generate-style), left padding exact on real tokens', async (name) => {
    await check(name, { taps: 'list:0,1,-1', positions: 'mask', expect: 'mask_positions.' });
  });

  it.each(CASES)('%s: taps below the top build only the layers they need', async (name) => {
    await check(name, { taps: 'list:1', expect: '' });
    await check(name, { taps: 'penultimate', expect: '' });
  });

  it.each(['qwen2_5_vl_text', 'qwen3_vl_text'])('%s: M-RoPE with explicit [3, B, S] position_ids (image-like h/w streams)', async (name) => {
    const f = load(name);
    const pos = get(f, 'position_ids');
    expect(pos.shape).toEqual([3, 3, 10]);
    // the streams really differ, so the sections are exercised
    let differ = 0;
    for (let i = 0; i < 30; i++) differ += Number(pos.data[i]) !== Number(pos.data[30 + i]) ? 1 : 0;
    expect(differ).toBeGreaterThan(0);
    await check(name, { taps: 'every:1:0', positions: 'input', expect: 'input_positions.' });
  });

  it.each(['qwen3', 'gemma3_text'])('%s: per-layer keys (after q/k norm and RoPE) and values equal past_key_values', async (name) => {
    const f = load(name);
    const cfg = decoderConfigFromHF(f.config);
    const kv: LayerKV[] = [];
    const graph = trace('kv', () => {
      const ids = input('input_ids', 'i64', [dim('batch'), dim('seq')]);
      const mask = input('attention_mask', 'i64', [dim('batch'), dim('seq')]);
      const lm = new DecoderLM(cfg, [cfg.layers]).named('model');
      const hs = lm.forward(lm.embed(ids), { attentionMask: mask, positions: range(ids.dim(1)), taps: [cfg.layers], kv });
      const out: Record<string, Tensor> = { ...hs };
      kv.forEach((e, i) => ((out[`kv.${i}.key`] = e.key), (out[`kv.${i}.value`] = e.value)));
      return out;
    });
    expect(kv.length).toBe(cfg.layers);
    const paramValues = new Map(graph.params().map((p) => [p.params.name, f.weights.get(p.params.name)!] as const));
    const out = await runOnnx(graph, { input_ids: toRef(get(f, 'input_ids')), attention_mask: toRef(get(f, 'attention_mask')) }, { paramValues });
    const valid = get(f, 'valid_mask');
    for (let i = 0; i < cfg.layers; i++)
      for (const which of ['key', 'value']) {
        const want = toRef(get(f, `kv.${i}.${which}`));
        const got = out[`kv.${i}.${which}`]!;
        expect(got.shape).toEqual(want.shape);
        // [B, KV, S, D]: keep (b, s) positions HF computes meaningfully (layer 0 sees only embeddings)
        const [B, KV, S, D] = want.shape as [number, number, number, number];
        let num = 0, den = 0;
        for (let j = 0; j < want.data.length; j++) {
          const b = Math.floor(j / (KV * S * D)), t = Math.floor(j / D) % S;
          if (i > 0 && !valid.data[b * S + t]) continue;
          num = Math.max(num, Math.abs(got.data[j]! - want.data[j]!));
          den = Math.max(den, Math.abs(want.data[j]!));
        }
        report.push(`${name} kv.${i}.${which}: max rel err ${(num / den).toExponential(2)}`);
        expect(num / den, `${name} kv.${i}.${which}`).toBeLessThanOrEqual(TOL);
      }
  });

  it('llama3: a [B, S] position_ids input fed the generate-style positions', async () => {
    await check('llama3', { taps: 'every:1:0', positions: 'input', expect: 'mask_positions.' });
  });

  it('rope inverse frequencies equal the model buffers (llama3 and linear scaling, Gemma local/global)', () => {
    for (const name of CASES) {
      const f = load(name);
      const cfg = decoderConfigFromHF(f.config);
      for (const kind of ['full', 'sliding'] as const) {
        const want = [...toFloat64(get(f, `rope.${kind}.inv_freq`))];
        expect(cfg.rope[kind].invFreq.map(Math.fround), `${name} ${kind}`).toEqual(want);
      }
    }
  });

  afterAll(() => {
    if (process.env.UNIFUSION_PARITY_REPORT) console.log(report.join('\n'));
  });
});

describe('config.json parsing against transformers (Hub-style configs)', () => {
  const hub = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'hub_configs.json'), 'utf8')) as Record<string, { config: Record<string, unknown>; expect: Record<string, unknown> }>;
  it.each(Object.keys(hub))('%s', (name) => {
    const { config, expect: e } = hub[name]!;
    const c = decoderConfigFromHF(config);
    const act = { silu: 'silu', gelu_pytorch_tanh: 'gelu_tanh', gelu: 'gelu' }[e.hfAct as string];
    expect({ vocab: c.vocab, hidden: c.hidden, layers: c.layers, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, intermediate: c.intermediate, eps: c.eps, act: c.act }).toEqual({
      vocab: e.vocab,
      hidden: e.hidden,
      layers: e.layers,
      heads: e.heads,
      kvHeads: e.kvHeads,
      headDim: e.headDim,
      intermediate: e.intermediate,
      eps: e.eps,
      act,
    });
    expect(Math.fround(c.attnScale)).toBe(Math.fround(e.attnScale as number));
    expect(c.layerTypes).toEqual(e.layerTypes);
    expect(c.layerTypes.includes('sliding') ? c.slidingWindow : null).toBe(e.slidingWindow);
    const inv = e.invFreq as Record<'full' | 'sliding', number[]>;
    for (const kind of ['full', 'sliding'] as const) {
      // float32 evaluation replayed with Math.fround; allow one ulp for torch's pow
      const got = c.rope[kind].invFreq;
      expect(got.length).toBe(inv[kind].length);
      got.forEach((g, i) => expect(Math.abs(g - inv[kind][i]!) / inv[kind][i]!, `${name} ${kind} inv_freq[${i}]`).toBeLessThanOrEqual(1.2e-7));
    }
    expect(c.qkNorm).toBe(e.qkNorm);
    const sec = e.mropeSection as number[] | null;
    if (sec) expect(c.rope.full.streams).toEqual(mropeStreams(sec, e.mropeInterleaved ? 'interleaved' : 'sectioned'));
    else expect(c.rope.full.streams).toBeUndefined();
  });

  it('full-size encoders: parameter counts of the base models, and a bf16 skeleton compile', () => {
    // hand counts (embeddings + layers + final norm; no lm_head, no vision tower)
    const counts: Record<string, number> = {
      'Llama-3.1-8B': 7_504_924_672,
      'Qwen2.5-7B-Instruct': 7_070_619_136,
      'Qwen2.5-VL-7B-Instruct': 7_070_619_136,
      'Qwen3-VL-4B-Instruct': 4_022_468_096,
      'gemma-3-12b-it': 11_766_034_176,
      'gemma-3-1b-it': 999_885_952,
    };
    for (const [name, n] of Object.entries(counts)) {
      const enc = buildEncoder(hub[name]!.config, 'last', { dtype: 'bf16' });
      expect(enc.expectedWeights().reduce((a, w) => a + w.shape.reduce((x, y) => x * y, 1), 0), name).toBe(n);
      expect(enc.expectedWeights().every((w) => w.dtype === 'bf16')).toBe(true);
    }
    // the paper's ablation encoder at every 3rd layer: layers 0..29 of 32, no final norm
    const enc = buildEncoder(hub['Llama-3.1-8B']!.config, 'every:3', { dtype: 'bf16', prefix: 'model' });
    expect(enc.taps).toEqual([3, 6, 9, 12, 15, 18, 21, 24, 27, 30]);
    const c = compileGraph(enc.trace(), { weights: 'skeleton' });
    expect(c.manifest.outputs.map((o) => o.name)).toEqual([...enc.taps.map((i) => `hidden_states.${i}`), 'text_mask', 'pad_mask']);
    expect(c.manifest.outputs.every((o) => o.dtype === (o.name.startsWith('hidden') ? 'f32' : 'bool'))).toBe(true);
    expect(c.manifest.params.some((p) => p.name === 'model.layers.29.mlp.down_proj.weight')).toBe(true);
    expect(c.manifest.params.some((p) => p.name === 'model.layers.30.mlp.down_proj.weight' || p.name === 'model.norm.weight')).toBe(false);
    expect(c.manifest.inputs.map((i) => `${i.name}:${i.dtype}[${i.shape}]`)).toEqual(['input_ids:i64[batch,seq]', 'attention_mask:i64[batch,seq]']);
  });

  it('unknown architectures and malformed configs fail with the key named', () => {
    expect(() => buildEncoder({ model_type: 'mamba' }, 'last')).toThrow(/unknown architecture: model_type 'mamba'.*supported: qwen2/);
    expect(() => buildEncoder({}, 'last')).toThrow(/no model_type/);
    expect(() => buildEncoder({ model_type: 'llama', hidden_size: 'big' }, 'last')).toThrow(/llama config.json: 'hidden_size' is "big", not a number/);
    expect(() => buildEncoder({ model_type: 'llama', rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'last')).toThrow(/rope_type 'yarn' is not supported/);
    expect(() => buildEncoder({ model_type: 'llama', rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'last')).toThrow(/needs 'low_freq_factor'/);
    expect(() => buildEncoder({ model_type: 'qwen2_5_vl', rope_scaling: { type: 'mrope', mrope_section: [1, 2, 3] } }, 'last')).toThrow(/mrope_section \[1,2,3\] must be 3 non-negative integers summing to head_dim \/ 2 = 64/);
    expect(() => buildEncoder({ model_type: 'qwen2', hidden_act: 'relu2' }, 'last')).toThrow(/activation 'relu2' is not supported/);
    expect(supportedModelTypes()).toEqual(Object.keys(ENCODER_FAMILIES));
    expect(() => buildEncoder({ model_type: 'qwen2' }, 'list:40')).toThrow(EncoderConfigError);
  });
});

describe('tap specs', () => {
  it('every:K[:offset] counts hidden_states indices (0 = embeddings, L = after the final norm)', () => {
    expect(parseTaps('every:3', 28)).toEqual([3, 6, 9, 12, 15, 18, 21, 24, 27]); // InternVL3-8B's LLM
    expect(parseTaps('every:3:0', 28)).toEqual([0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
    expect(parseTaps('every:3:2', 36)).toEqual([2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35]); // Krea 2 on Qwen3-VL-4B
    expect(parseTaps('every:4', 8)).toEqual([4, 8]);
    expect(parseTaps('every:1:0', 3)).toEqual([0, 1, 2, 3]);
  });
  it('list, last, penultimate, unions', () => {
    expect(parseTaps('list:5,1,5,0', 8)).toEqual([0, 1, 5]);
    expect(parseTaps('list:-1,-2', 8)).toEqual([7, 8]);
    expect(parseTaps('last', 8)).toEqual([8]);
    expect(parseTaps('penultimate', 8)).toEqual([7]);
    expect(parseTaps('every:3+last', 8)).toEqual([3, 6, 8]);
    expect(parseTaps([2, 0, 2], 4)).toEqual([0, 2]);
  });
  it('errors name the spec and the valid range', () => {
    expect(() => parseTaps('list:9', 8)).toThrow(/index 9 is outside hidden_states 0..8 \(the model has 8 layers/);
    expect(() => parseTaps('list:-10', 8)).toThrow(/outside hidden_states 0..8/);
    expect(() => parseTaps('every:0', 8)).toThrow(/K must be >= 1/);
    expect(() => parseTaps('every:3:9', 8)).toThrow(/offset 9 is outside hidden_states 0..8/);
    expect(() => parseTaps('every:x', 8)).toThrow(/K 'x' is not an integer/);
    expect(() => parseTaps('list:1,,2', 8)).toThrow(/expected list:a,b,c/);
    expect(() => parseTaps('first', 8)).toThrow(/'first' is not every:K\[:offset\], list:a,b,c, last or penultimate/);
    expect(() => parseTaps('', 8)).toThrow(/empty/);
    expect(() => parseTaps([], 8)).toThrow(/empty/);
  });
});

describe('rope frequency scaling', () => {
  it('M-RoPE stream layouts: Qwen2.5-VL sections, Qwen3-VL interleaving', () => {
    expect(mropeStreams([2, 1, 1], 'sectioned')).toEqual([0, 0, 1, 2]);
    expect(mropeStreams([4, 2, 2], 'interleaved')).toEqual([0, 1, 2, 0, 1, 2, 0, 0]);
    // Qwen3-VL-4B: [24, 20, 20] -> h at 1, 4, ..., 58; w at 2, 5, ..., 59; t elsewhere
    const q3 = mropeStreams([24, 20, 20], 'interleaved');
    expect(q3.filter((s) => s === 1).length).toBe(20);
    expect(q3.filter((s) => s === 2).length).toBe(20);
    expect(q3.slice(57)).toEqual([0, 1, 2, 0, 0, 0, 0]);
  });

  it('llama3: high frequencies kept, low ones divided by factor, the band between interpolated', () => {
    const base = defaultInvFreq(128, 500000);
    const scaled = llama3InvFreq(base, 8, 1, 4, 8192);
    // wavelength 2π/inv below 8192/4 = 2048 keeps, above 8192 divides by 8
    base.forEach((b, i) => {
      const wl = (2 * Math.PI) / b;
      if (wl < 2048) expect(scaled[i]).toBe(b);
      else if (wl > 8192) expect(scaled[i]).toBe(Math.fround(b / 8));
      else expect(scaled[i]! < b && scaled[i]! > b / 8).toBe(true);
    });
  });
});
