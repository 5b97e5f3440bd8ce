// kv-attention rule: attention over concat(past, new) whose concats are the grown cache (the
// generation graphs' present.* outputs) -> the kv_sdpa triple -> ONE attention node with past ->
// present: Attention-23 on cuda, MultiHeadAttention on webgpu (H == KV); cpu and portable do not
// run the rule (no measured gain, targets.ts). Every fused graph is run in ORT CPU and compared with
// the float64 reference of the unfused graph, and the generation graphs also with ORT on the
// unfused graph, at prefill (empty past) and at decode steps after a non-empty past, left-padded.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { concat, fused, type Tensor } from '../../src/dsl/index.ts';
import { buildGenerationGraph } from '../../graphs/vlm/generation.ts';
import { Rng } from '../../src/ir/init.ts';
import type { RefTensor } from '../../src/ir/ref.ts';
import type { Target } from '../../src/ir/target.ts';
import { caseGraph, countOps, declines, expectFuses, fuse, onnxOps, randomParams, reference, runOrt, worst } from './helpers.ts';
import { randomRef } from '../helpers/harness.ts';
import { GEN_FIXTURES } from '../helpers/vlm.ts';

const R = ['sdpa', 'kv-attention'];
type X = Record<string, Tensor>;

/** q [B, H, S, D] over past [B, KV, P, D] + new [B, KV, S, D]; the mask random bool [B, 1, S, P + S] */
function cached(B: number, H: number, KV: number, S: number, P: number, D = 8, masked = true) {
  return {
    inputs: {
      q: { shape: [B, H, S, D] }, k: { shape: [B, KV, S, D] }, v: { shape: [B, KV, S, D] }, pk: { shape: [B, KV, P, D] }, pv: { shape: [B, KV, P, D] },
      ...(masked ? { m: { dtype: 'bool' as const, shape: [B, 1, S, P + S] } } : {}),
    },
    build: (x: X) => {
      const key = concat([x.pk!, x.k!], 2), value = concat([x.pv!, x.v!], 2);
      return { o: fused.sdpa(x.q!, key, value, x.m ? { mask: x.m } : {}), present_k: key, present_v: value };
    },
  };
}

describe('kv-attention', () => {
  it('cuda: GQA attention after a past + its present outputs -> one Attention-23 with past/present', async () => {
    const { graph } = await expectFuses(cached(2, 4, 2, 3, 5), R, { kv_sdpa: 3, sdpa: 0, concat: 0 }, { target: 'cuda', onnx: { Attention: 1, Concat: 0 } });
    expect(countOps(graph).kv_sdpa).toBe(3);
  });
  it('cuda: prefill (empty past), decode (S = 1), no mask', async () => {
    await expectFuses(cached(2, 4, 2, 4, 0), R, { kv_sdpa: 3 }, { target: 'cuda', onnx: { Attention: 1, Concat: 0 } });
    await expectFuses(cached(3, 4, 1, 1, 6), R, { kv_sdpa: 3 }, { target: 'cuda', onnx: { Attention: 1, Concat: 0 } });
    await expectFuses(cached(2, 2, 2, 2, 3, 8, false), R, { kv_sdpa: 3 }, { target: 'cuda', onnx: { Attention: 1, Concat: 0 } });
  });
  it('webgpu: MultiHeadAttention with past when H == KV; GQA falls back to Concat + the decomposed attention', async () => {
    await expectFuses(cached(2, 4, 4, 2, 5), R, { kv_sdpa: 3 }, { target: 'webgpu', onnx: { 'com.microsoft.MultiHeadAttention': 1, Concat: 0 } });
    await expectFuses(cached(2, 4, 2, 2, 5), R, { kv_sdpa: 3 }, { target: 'webgpu', onnx: { 'com.microsoft.MultiHeadAttention': 0, Softmax: 1 } });
  });
  it('cpu and portable do not run the rule (Concat + Attention-23 / the decomposition)', async () => {
    await expectFuses(cached(2, 4, 2, 3, 5), ['sdpa'], { kv_sdpa: 0, sdpa: 1, concat: 2 }, { target: 'cpu', onnx: { Attention: 1, Concat: 2 } });
    const { report } = fuse(caseGraph('c', cached(2, 4, 2, 3, 5)), 'cpu');
    expect(report.rules.map((r) => r.rule)).not.toContain('kv-attention');
  });
  it('declines near misses: a concat on the head-dim axis, key and value pieces that do not line up', () => {
    const headAxis = {
      inputs: { q: { shape: [2, 4, 3, 16] }, k: { shape: [2, 2, 3, 8] }, pk: { shape: [2, 2, 3, 8] }, v: { shape: [2, 2, 3, 8] }, pv: { shape: [2, 2, 3, 8] } },
      build: (x: X) => {
        const key = concat([x.pk!, x.k!], 3), value = concat([x.pv!, x.v!], 3);
        return { o: fused.sdpa(x.q!, key, value), key, value };
      },
    };
    expect(declines(headAxis, R, 'cuda')).toEqual({ fused: 0, reasons: [expect.stringMatching(/the key concat is along axis 3, not the sequence axis 2/)] });
    // new keys first: the pattern binds pk := this chunk's keys [.., 3, ..] and k := the cache [.., 5, ..], which the values do not match
    const swapped = {
      inputs: { q: { shape: [2, 4, 3, 8] }, k: { shape: [2, 2, 3, 8] }, v: { shape: [2, 2, 3, 8] }, pk: { shape: [2, 2, 5, 8] }, pv: { shape: [2, 2, 5, 8] } },
      build: (x: X) => {
        const key = concat([x.k!, x.pk!], 2), value = concat([x.pv!, x.v!], 2);
        return { o: fused.sdpa(x.q!, key, value), present_k: key, present_v: value };
      },
    };
    expect(declines(swapped, R, 'cuda')).toEqual({ fused: 0, reasons: [expect.stringMatching(/the key and value caches do not line up/)] });
  });
  it('a cache that is also read elsewhere still fuses: its readers get the fused node\'s present output', async () => {
    const c = cached(2, 4, 2, 3, 5);
    const also = { inputs: c.inputs, build: (x: X) => { const r = c.build(x); return { o: r.o, s: r.present_k.sum(-1) }; } };
    await expectFuses(also, R, { kv_sdpa: 2 }, { target: 'cuda', onnx: { Attention: 1, Concat: 0 } });
  });
});

// ---------------------------------------------------------------------------
// The generation graphs (graphs/vlm/generation.ts) with random weights: fused for cuda vs unfused

function i64(shape: number[], data: number[]): RefTensor {
  return { dtype: 'i64', shape, data: Float64Array.from(data) };
}

/** feeds of one chunk: S tokens after P cached slots; row b is left-padded by `pad * b` slots (across the cache) */
function chunkFeeds(cfg: { text: { kvHeads: number; headDim: number; layers: number; vocab: number }; mrope: boolean }, B: number, S: number, P: number, pad: number, seed: number): Record<string, RefTensor> {
  const rng = new Rng(seed, 'gen');
  const T = P + S;
  const mask: number[] = [], pos: number[] = [];
  for (let b = 0; b < B; b++) {
    const row = Array.from({ length: T }, (_, j) => (j < pad * b ? 0 : 1));
    mask.push(...row);
    let c = 0;
    const all = row.map((m) => (m ? c++ : 1)); // cumsum(mask) - 1, 1 at padding (transformers)
    pos.push(...all.slice(P));
  }
  const feeds: Record<string, RefTensor> = {
    input_ids: i64([B, S], Array.from({ length: B * S }, () => Math.floor(rng.uniform() * cfg.text.vocab))),
    attention_mask: i64([B, T], mask),
    position_ids: cfg.mrope ? i64([3, B, S], [...pos, ...pos, ...pos]) : i64([B, S], pos),
  };
  const { kvHeads, headDim } = cfg.text;
  for (let l = 0; l < cfg.text.layers; l++)
    for (const kv of ['key', 'value']) feeds[`past_key_values.${l}.${kv}`] = randomRef('f32', [B, kvHeads, P, headDim], rng);
  return feeds;
}

describe('kv-attention on the generation graphs', () => {
  for (const [name, target] of [['qwen2', 'cuda'], ['qwen3', 'cuda'], ['gemma3', 'cuda'], ['llama', 'webgpu']] as [string, Target][]) {
    it(`${name} (${target}): fused attention nodes; ORT equals the unfused graph and float64 at prefill and decode, left-padded`, async () => {
      const config = JSON.parse(fs.readFileSync(path.join(GEN_FIXTURES, name, 'config.json'), 'utf8')) as object;
      const gg = buildGenerationGraph(config);
      const g = gg.trace();
      const L = gg.numLayers;
      const { graph, report } = fuse(g, target);
      const kvRule = report.rules.find((r) => r.rule === 'kv-attention')!;
      expect(kvRule.fused.length, JSON.stringify(kvRule.declined)).toBe(L);
      expect(countOps(graph).kv_sdpa).toBe(3 * L);
      const onnx = onnxOps(graph, target);
      // GQA fixtures: cuda has Attention-23 with past; webgpu's MultiHeadAttention needs H == KV, so it keeps the decomposition
      if (target === 'cuda') expect(onnx.Attention).toBe(L);
      const params = randomParams(g, 3);
      for (const [S, P, pad] of [[5, 0, 2], [1, 6, 2], [3, 4, 3]] as const) {
        const feeds = chunkFeeds(gg.config, 2, S, P, pad, 11 + S + P);
        const want = reference(g, feeds, params);
        const plain = await runOrt(g, feeds, params, target);
        const got = await runOrt(graph, feeds, params, target);
        for (const k of gg.outputs) {
          expect(worst(got[k]!, plain[k]!, 1e-5, 1e-4), `${k} S=${S} P=${P}: fused vs unfused ORT`).toBeLessThanOrEqual(1);
          expect(worst(got[k]!, want[k]!, 1e-5, 1e-4), `${k} S=${S} P=${P}: fused ORT vs float64`).toBeLessThanOrEqual(1);
        }
      }
    });
  }
});
