// Generation against transformers' generate() on tiny random checkpoints
// (test/fixtures/vlm-gen, scripts/py/gen_vlm_generate_fixtures.py): greedy token for token on
// left-padded batches and on each prompt alone (right padding must equal the unpadded runs),
// repetition penalty, InternVL with an image, per-step logits; the KV cache against full
// recomputation at every step (1e-5 relative); the logits processors against transformers'
// warpers; seeded sampling reproducible and distributed as the processed softmax.
import { afterAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { PAST_KEY, PAST_VALUE, PRESENT_KEY, PRESENT_VALUE } from '../graphs/vlm/generation.ts';
import { generate, GenerationError, type GenerateOptions } from '../runtime/vlm/generate.ts';
import { processLogits, repetitionPenalty, samplingSettings, SamplingError, softmax, temperature, TokenSampler, topK, topP } from '../runtime/vlm/sampling.ts';
import { VlmTokenizer } from '../runtime/vlm/tokenizer.ts';
import { toFloat64 } from '../src/io/host.ts';
import type { Session } from '../runtime/session.ts';
import { generationSession, genFixture, io, rowOf, sessionOf, visionSession } from './helpers/vlm.ts';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGenerationGraph } from '../graphs/vlm/generation.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { fromFloat64, numel, type HostTensor } from '../src/io/host.ts';
import { Rng } from '../src/ir/init.ts';

const CASES = ['qwen2', 'qwen3', 'llama', 'gemma3', 'internvl'];
const sessions: Session[] = [];
afterAll(async () => {
  for (const s of sessions) await s.release();
});

async function setup(name: string, taps?: string) {
  const f = genFixture(name);
  const { g, session } = await generationSession(f, { taps });
  sessions.push(session);
  const ids = io(f, 'input_ids'), mask = io(f, 'attention_mask');
  const prompts = Array.from({ length: ids.shape[0]! }, (_, b) => rowOf(ids, b, mask));
  let imageFeatures: import("../src/io/host.ts").HostTensor | undefined;
  if (name === 'internvl') {
    const vs = await visionSession(f);
    sessions.push(vs);
    const feats = (await vs.run({ pixel_values: io(f, 'pixel_values') })).image_features!;
    imageFeatures = { dtype: 'f32' as const, shape: [feats.shape[0]! * feats.shape[1]!, feats.shape[2]!], data: feats.data };
  }
  const opts = (o: Partial<GenerateOptions> = {}): GenerateOptions => ({
    maxNewTokens: Number(f.meta.max_new_tokens),
    sampling: samplingSettings({}),
    stopIds: [Number(f.meta.eos)],
    padId: Number(f.meta.pad),
    imageFeatures,
    ...o,
  });
  return { f, g, session, prompts, opts, model: { session, cfg: g.config, taps: g.taps } };
}

/** HF sequences' generated part, per row */
function hfNew(f: ReturnType<typeof genFixture>, key: string, promptLen: number): number[][] {
  const t = io(f, key);
  const [B, W] = t.shape as [number, number];
  return Array.from({ length: B }, (_, b) => rowOf(t, b).slice(promptLen, W));
}
const padTo = (tokens: number[], n: number, pad: number) => [...tokens, ...new Array(n - tokens.length).fill(pad)];

describe('greedy generation equals transformers generate(do_sample=False)', () => {
  it.each(CASES)('%s: left-padded batch, token for token (eos stops a row, pads after)', async (name) => {
    const { f, prompts, opts, model } = await setup(name);
    const S = io(f, 'input_ids').shape[1]!;
    const want = hfNew(f, 'greedy.sequences', S);
    const r = await generate(model, prompts, opts());
    const N = Number(f.meta.max_new_tokens);
    r.rows.forEach((row, b) => expect(padTo(row.tokens, N, Number(f.meta.pad)), `${name} row ${b}`).toEqual(want[b]));
    expect(r.rows.some((row) => row.finish === 'stop')).toBe(true);
    expect(r.rows[0]!.kept).toBe(r.rows[0]!.tokens.length - 1);
  });

  it.each(CASES)('%s: each prompt alone, and the right-padded batch, equal the unpadded runs', async (name) => {
    const { f, prompts, opts, model } = await setup(name);
    for (const padding of ['left', 'right'] as const) {
      const r = await generate(model, prompts, opts({ padding }));
      prompts.forEach((p, b) => {
        const solo = rowOf(io(f, `solo.${b}.sequences`), 0).slice(p.length);
        if (padding === 'right' && name === 'gemma3') return; // sliding windows count cache slots (as transformers'); see generate.ts
        expect(r.rows[b]!.tokens, `${name} ${padding} row ${b}`).toEqual(solo.slice(0, r.rows[b]!.tokens.length));
        expect(r.rows[b]!.tokens.length === solo.length || r.rows[b]!.finish === 'stop').toBe(true);
      });
    }
  });

  it.each(CASES)('%s: repetition penalty 1.3', async (name) => {
    const { f, prompts, opts, model } = await setup(name);
    const S = io(f, 'input_ids').shape[1]!;
    const want = hfNew(f, 'rep.sequences', S);
    const r = await generate(model, prompts, opts({ sampling: samplingSettings({ repetitionPenalty: 1.3 }) }));
    r.rows.forEach((row, b) => expect(padTo(row.tokens, Number(f.meta.max_new_tokens), Number(f.meta.pad)), `${name} row ${b}`).toEqual(want[b]));
  });
});

describe('KV cache', () => {
  it.each(CASES)('%s: cached logits equal full recomputation at every step (1e-5) and transformers (1e-4)', async (name) => {
    const { f, g, session, prompts, opts, model } = await setup(name);
    const cfg = g.config.text;
    // the greedy continuation of the batch, then step through it by hand
    const r = await generate(model, prompts, opts({ stopIds: [] }));
    const hfLogits = io(f, 'greedy.logits');
    const [N, B, V] = hfLogits.shape as [number, number, number];
    const hf = toFloat64(hfLogits);
    const b = 0; // row 0 alone (image features of row 0 only for InternVL)
    const imageFeats = opts().imageFeatures;
    const nImg = prompts[b]!.filter((id) => id === g.config.internvl?.imageTokenId).length;
    const img = imageFeats ? new ort.Tensor('float32', (imageFeats.data as Float32Array).subarray(0, nImg * cfg.hidden), [nImg, cfg.hidden]) : undefined;
    const noImg = new ort.Tensor('float32', new Float32Array(0), [0, cfg.hidden]);
    const seq = [...prompts[b]!, ...r.rows[b]!.tokens];
    const i64 = (xs: number[], dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(xs.map(BigInt)), dims);
    const pos = (xs: number[]) => (g.config.mrope ? i64([...xs, ...xs, ...xs], [3, 1, xs.length]) : i64(xs, [1, xs.length]));
    const empty = () => new ort.Tensor('float32', new Float32Array(0), [1, cfg.kvHeads, 0, cfg.headDim]);
    const emptyPast = () => Object.fromEntries(Array.from({ length: cfg.layers }, (_, l) => [[PAST_KEY(l), empty()], [PAST_VALUE(l), empty()]]).flat());
    const fetch = Object.fromEntries(['logits', ...Array.from({ length: cfg.layers }, (_, l) => [PRESENT_KEY(l), PRESENT_VALUE(l)]).flat()].map((n) => [n, null]));
    const feedsOf = (ids: number[], positions: number[], total: number, past: Record<string, ort.Tensor>, withImg: boolean) => ({
      input_ids: i64(ids, [1, ids.length]), attention_mask: i64(new Array(total).fill(1), [1, total]), position_ids: pos(positions), ...past,
      ...(g.config.internvl ? { image_features: withImg && img ? img : noImg } : {}),
    });
    const P = prompts[b]!.length;
    // transformers' row stops at its eos (then it is fed pads): compare its logits up to there
    const hfRow = hfNew(f, 'greedy.sequences', io(f, 'input_ids').shape[1]!)[b]!;
    const hfStop = hfRow.includes(Number(f.meta.eos)) ? hfRow.indexOf(Number(f.meta.eos)) : N;
    let out = await session.runOrt(feedsOf(prompts[b]!, Array.from({ length: P }, (_, i) => i), P, emptyPast(), true), fetch);
    let worstKV = 0, worstHF = 0;
    for (let step = 0; step < N; step++) {
      const n = P + step;
      const full = await session.runOrt(feedsOf(seq.slice(0, n), Array.from({ length: n }, (_, i) => i), n, emptyPast(), true), fetch);
      const a = out.logits!.data as Float32Array, c = full.logits!.data as Float32Array;
      let num = 0, den = 0, numHF = 0;
      for (let v = 0; v < V; v++) {
        num = Math.max(num, Math.abs(a[v]! - c[v]!));
        den = Math.max(den, Math.abs(c[v]!));
        // transformers' batch is left-padded: row b's logits at this step
        if (step <= hfStop) numHF = Math.max(numHF, Math.abs(a[v]! - hf[(step * B + b) * V + v]!));
      }
      worstKV = Math.max(worstKV, num / den);
      worstHF = Math.max(worstHF, numHF / den);
      if (step === N - 1) break;
      const past: Record<string, ort.Tensor> = {};
      for (let l = 0; l < cfg.layers; l++) (past[PAST_KEY(l)] = out[PRESENT_KEY(l)]!), (past[PAST_VALUE(l)] = out[PRESENT_VALUE(l)]!);
      out = await session.runOrt(feedsOf([seq[n]!], [n], n + 1, past, false), fetch);
    }
    expect(worstKV, `${name} KV vs full`).toBeLessThanOrEqual(1e-5);
    expect(worstHF, `${name} vs transformers`).toBeLessThanOrEqual(1e-4);
  });
});

describe('sampling', () => {
  it('logits processors equal transformers (repetition penalty, temperature, top-k, top-p, the chain)', () => {
    const f = genFixture('qwen2');
    const ids = io(f, 'proc.input_ids'), scores = toFloat64(io(f, 'proc.scores'));
    const V = io(f, 'proc.scores').shape[1]!;
    const check = (key: string, fn: (x: Float64Array, seen: number[]) => void) => {
      const want = toFloat64(io(f, key));
      for (let b = 0; b < 2; b++) {
        const x = scores.slice(b * V, (b + 1) * V);
        fn(x, rowOf(ids, b));
        for (let v = 0; v < V; v++) {
          const w = want[b * V + v]!;
          if (w === -Infinity) expect(x[v], `${key} [${b}, ${v}]`).toBe(-Infinity);
          else expect(Math.abs(x[v]! - w), `${key} [${b}, ${v}]`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(w)));
        }
      }
    };
    check('proc.rep', (x, seen) => repetitionPenalty(x, seen, 1.3));
    check('proc.temp', (x) => temperature(x, 0.7));
    check('proc.topk', (x) => topK(x, 5));
    check('proc.topp', (x) => topP(x, 0.8));
    check('proc.chain', (x, seen) => x.set(processLogits(x, seen, samplingSettings({ repetitionPenalty: 1.3, temperature: 0.7, topK: 5, topP: 0.8 }))));
  });

  it('draws follow the processed distribution (top-p 0.9, temperature 0.8; chi-square)', () => {
    const logits = [2, 1.5, 1, 0.5, 0, -0.5, -1, -3];
    const s = samplingSettings({ temperature: 0.8, topP: 0.9, seed: 7 });
    const p = softmax(processLogits(logits, [], s));
    const sampler = new TokenSampler(s);
    const n = 20000;
    const counts = new Array(logits.length).fill(0);
    for (let i = 0; i < n; i++) counts[sampler.next(logits, [])]++;
    let chi = 0, dof = -1;
    p.forEach((pi, i) => {
      if (pi === 0) return expect(counts[i]).toBe(0);
      chi += (counts[i] - n * pi) ** 2 / (n * pi);
      dof++;
    });
    expect(dof).toBeGreaterThan(2);
    expect(chi).toBeLessThan(25); // p < 0.001 for dof <= 7
  });

  it('seeded top-p sampling is reproducible; another seed gives another continuation', async () => {
    const { prompts, opts, model } = await setup('qwen2');
    const run = (seed: number) => generate(model, prompts, opts({ stopIds: [], sampling: samplingSettings({ temperature: 1.5, topP: 0.95, seed }) }));
    const a = await run(11), b = await run(11), c = await run(12);
    expect(a.rows.map((r) => r.tokens)).toEqual(b.rows.map((r) => r.tokens));
    expect(a.rows.map((r) => r.tokens)).not.toEqual(c.rows.map((r) => r.tokens));
  });

  it('bad settings are refused with the setting named', () => {
    expect(() => samplingSettings({ temperature: 'hot' })).toThrow(SamplingError);
    expect(() => samplingSettings({ temperature: -1 })).toThrow(/temperature must be >= 0/);
    expect(() => samplingSettings({ topP: 0 })).toThrow(/top-p must be > 0/);
    expect(() => samplingSettings({ topP: 1.5 })).toThrow(/top-p must be <= 1/);
    expect(() => samplingSettings({ topK: 2.5 })).toThrow(/top-k must be an integer/);
    expect(() => samplingSettings({ seed: -3 })).toThrow(/seed must be >= 0/);
    expect(() => samplingSettings({ repetitionPenalty: 0 })).toThrow(/repetition penalty must be > 0/);
  });
});

describe('stops, streaming and limits', () => {
  it('stop strings cut the row before the string; the callback sees every token in order', async () => {
    const { f, prompts, opts, model } = await setup('qwen2');
    const tok = VlmTokenizer.load(f.dir);
    const base = await generate(model, prompts, opts({ stopIds: [] }));
    const row1 = base.rows[1]!.tokens;
    const stop = tok.decode(row1.slice(3, 5));
    const seen: number[][] = prompts.map(() => []);
    const r = await generate(model, prompts, opts({ stopIds: [], stopStrings: [stop], decode: (ids) => tok.decode(ids), onToken: (b, id) => seen[b]!.push(id) }));
    expect(r.rows[1]!.finish).toBe('stop-string');
    const kept = tok.decode(r.rows[1]!.tokens.slice(0, r.rows[1]!.kept));
    expect(kept.includes(stop)).toBe(false);
    expect(tok.decode(r.rows[1]!.tokens).includes(stop)).toBe(true);
    expect(tok.decode(row1).startsWith(kept)).toBe(true);
    r.rows.forEach((row, b) => expect(seen[b]).toEqual(row.tokens));
  });

  it('a prompt over the context is refused naming both lengths; out-of-vocabulary ids too', async () => {
    const { prompts, opts, model } = await setup('qwen2');
    const long = new Array(250).fill(5);
    await expect(generate(model, [long], opts({ maxNewTokens: 10 }))).rejects.toThrow(/250 tokens.*260.*context of 256/);
    await expect(generate(model, [[1, 99999]], opts())).rejects.toThrow(GenerationError);
    const r = await generate(model, prompts, opts({ maxNewTokens: 0 }));
    expect(r.rows.every((row) => row.tokens.length === 0)).toBe(true);
  });
});

describe('the generation graph at prefill equals transformers on every decoder family (test/fixtures/vlm-text)', () => {
  const TEXT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'vlm-text');
  it.each(['qwen2', 'qwen2_5_vl_text', 'qwen3', 'qwen3_vl_text', 'llama3', 'gemma3_text'])('%s: every hidden state (M-RoPE: explicit [3, B, S] position_ids)', async (name) => {
    const dir = path.join(TEXT, name);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const weights = readSafetensors(path.join(dir, 'model.safetensors')).tensors;
    const fx = readSafetensors(path.join(dir, 'io.safetensors')).tensors;
    const g = buildGenerationGraph(config, { taps: 'every:1:0' });
    const graph = g.trace();
    const rng = new Rng(3);
    const pv = new Map<string, HostTensor>();
    for (const p of graph.params()) {
      const c = g.checkpointNames(p.params.name).find((n) => weights.has(n));
      // base-model fixtures have no LM head: any values do (logits are not compared here)
      pv.set(p.params.name, c ? weights.get(c)! : fromFloat64('f32', [...p.params.shape], Float64Array.from({ length: numel(p.params.shape) }, () => rng.normal())));
    }
    const s = await sessionOf(graph, pv);
    sessions.push(s);
    const ids = fx.get('input_ids')!, mask = fx.get('attention_mask')!;
    const [B, S] = ids.shape as [number, number];
    const cfg = g.config.text;
    let positions: HostTensor, prefix: string;
    if (g.config.mrope) (positions = fx.get('position_ids')!), (prefix = 'input_positions.');
    else {
      const pos = new BigInt64Array(B * S);
      for (let b = 0; b < B; b++) {
        let c = 0;
        for (let j = 0; j < S; j++) pos[b * S + j] = Number(mask.data[b * S + j]) ? BigInt(c++) : 1n;
      }
      (positions = { dtype: 'i64', shape: [B, S], data: pos }), (prefix = 'mask_positions.');
    }
    const feeds: Record<string, HostTensor> = { input_ids: ids, attention_mask: mask, position_ids: positions };
    for (let l = 0; l < cfg.layers; l++) for (const n of [PAST_KEY(l), PAST_VALUE(l)]) feeds[n] = { dtype: 'f32', shape: [B, cfg.kvHeads, 0, cfg.headDim], data: new Float32Array(0) };
    const out = await s.run(feeds);
    const valid = fx.get('valid_mask')!;
    for (const i of g.taps) {
      const want = toFloat64(fx.get(`${prefix}hidden_states.${i}`)!), got = toFloat64(out[`hidden_states.${i}`]!);
      let num = 0, den = 0;
      for (let k = 0; k < want.length; k++) {
        if (i > 0 && !valid.data[Math.floor(k / cfg.hidden)]) continue;
        (num = Math.max(num, Math.abs(got[k]! - want[k]!))), (den = Math.max(den, Math.abs(want[k]!)));
      }
      expect(num / den, `${name} hidden_states.${i}`).toBeLessThanOrEqual(1e-4);
    }
    expect(out.logits!.shape).toEqual([B, 1, cfg.vocab]);
    expect(out[PRESENT_KEY(0)]!.shape).toEqual([B, cfg.kvHeads, S, cfg.headDim]);

    // the decode loop's positions (three equal streams for M-RoPE text): greedy with the cache
    // equals greedy by full recomputation, on the left-padded batch
    const prompts = Array.from({ length: B }, (_, b) => rowOf(ids, b, mask));
    const r = await generate({ session: s, cfg: g.config, taps: g.taps }, prompts, { maxNewTokens: 4, sampling: samplingSettings({}), stopIds: [], padId: 0 });
    for (let b = 0; b < B; b++) {
      const seq = [...prompts[b]!];
      for (let t = 0; t < 4; t++) {
        const n = seq.length;
        const p = Array.from({ length: n }, (_, j) => BigInt(j));
        const f: Record<string, HostTensor> = {
          input_ids: { dtype: 'i64', shape: [1, n], data: BigInt64Array.from(seq.map(BigInt)) },
          attention_mask: { dtype: 'i64', shape: [1, n], data: new BigInt64Array(n).fill(1n) },
          position_ids: g.config.mrope ? { dtype: 'i64', shape: [3, 1, n], data: BigInt64Array.from([...p, ...p, ...p]) } : { dtype: 'i64', shape: [1, n], data: BigInt64Array.from(p) },
        };
        for (let l = 0; l < cfg.layers; l++) for (const k of [PAST_KEY(l), PAST_VALUE(l)]) f[k] = { dtype: 'f32', shape: [1, cfg.kvHeads, 0, cfg.headDim], data: new Float32Array(0) };
        const lg = (await s.run(f, ['logits'])).logits!.data as Float32Array;
        let best = 0;
        for (let v = 1; v < lg.length; v++) if (lg[v]! > lg[best]!) best = v;
        seq.push(best);
      }
      expect(r.rows[b]!.tokens, `${name} row ${b}`).toEqual(seq.slice(prompts[b]!.length));
    }
  });
});
