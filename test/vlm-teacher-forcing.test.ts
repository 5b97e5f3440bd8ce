// Teacher-forced VERIFI conditions (runtime/vlm condition() with a request's `answer`): the
// condition must be exactly the one a rewrite that generated that answer produces. References:
//   - the VLM's own greedy rewrite (decode-time taps and final-pass taps), whose output text is
//     then given back as the answer: same tokens, same mask, taps within 1e-5;
//   - with images (InternVL), in a batch mixing forced, generated and empty rows: each row equals
//     the same request conditioned alone;
//   - a fixed answer the model would not write: the imported encoder graph (a separate graph,
//     tested against transformers) over [prompt; answer tokens], at the answer positions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { importHf } from '../src/cli/import-hf.ts';
import { VlmPackage, VlmError, type ConditionResult } from '../runtime/vlm/index.ts';
import { Session } from '../runtime/session.ts';
import { encodePng } from '../runtime/images/png.ts';
import { Rng } from '../src/ir/init.ts';
import type { HostTensor } from '../src/io/host.ts';
import { GEN_FIXTURES } from './helpers/vlm.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-vlm-tf-'));
const pkgs: Record<string, VlmPackage> = {};
beforeAll(async () => {
  for (const name of ['qwen2', 'internvl']) {
    await importHf(path.join(GEN_FIXTURES, name), { out: path.join(root, name), taps: 'every:1' });
    pkgs[name] = await VlmPackage.load(path.join(root, name));
  }
  const r = new Rng(3, 'img');
  fs.writeFileSync(path.join(root, 'a.png'), encodePng({ width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, () => Math.floor(r.uniform() * 256)) }));
}, 120_000);
afterAll(async () => {
  for (const p of Object.values(pkgs)) await p.close();
  fs.rmSync(root, { recursive: true, force: true });
});

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) (num = Math.max(num, Math.abs(a[i]! - b[i]!))), (den = Math.max(den, Math.abs(b[i]!)));
  return num / den;
}

/** row b of a condition, its first n tokens, per tensor */
function row(c: ConditionResult, b: number): Record<string, Float32Array | Uint8Array> {
  const n = c.lengths[b]!;
  const out: Record<string, Float32Array | Uint8Array> = {};
  for (const [k, t] of Object.entries(c.tensors)) {
    const S = t.shape[1]!, inner = t.shape.slice(2).reduce((a, x) => a * x, 1);
    out[k] = (t.data as Float32Array).slice(b * S * inner, (b * S + n) * inner);
  }
  return out;
}

function expectSameRow(got: ConditionResult, gb: number, want: ConditionResult, wb: number, tol = 1e-5) {
  expect(got.lengths[gb]).toBe(want.lengths[wb]);
  if (want.lengths[wb] === 0) return; // the empty prompt: no tokens to compare (its mask row is all false, checked by length)
  const g = row(got, gb), w = row(want, wb);
  for (const k of Object.keys(w)) {
    if (k === 'condition_mask') expect([...g[k]!]).toEqual([...w[k]!]);
    else expect(relErr(g[k] as Float32Array, w[k] as Float32Array), k).toBeLessThan(tol);
  }
}

describe('teacher-forced conditions', () => {
  it("equal the condition of a real generation whose output is that answer (decode-time and final-pass taps)", async () => {
    const p = pkgs.qwen2!;
    const prompts = ['a red circle at the top left', 'two small cats'];
    const opts = { rewrite: true, systemPrompt: 'Rewrite it.', maxNewTokens: 12 };
    const gen = await p.condition(prompts.map((prompt) => ({ prompt })), opts);
    const fp = await p.condition(prompts.map((prompt) => ({ prompt })), { ...opts, tapsFrom: 'final-pass' });
    for (const ids of gen.generatedIds) expect(ids.length).toBeGreaterThan(0);
    // the generated tokens given back (a random model's text need not re-tokenise to the same ids;
    // the text form is checked against the encoder graph below)
    const forced = await p.condition(prompts.map((prompt, b) => ({ prompt, answerIds: gen.generatedIds[b]! })), opts);
    expect(forced.generatedIds).toEqual(gen.generatedIds);
    expect(forced.rewritten).toEqual(gen.rewritten);
    expect(forced.finish).toEqual(['forced', 'forced']);
    for (let b = 0; b < prompts.length; b++) {
      expectSameRow(forced, b, gen, b);
      expectSameRow(forced, b, fp, b);
    }
  });

  it('with images, in a batch mixing forced, generated and empty rows: each row as conditioned alone', async () => {
    const p = pkgs.internvl!;
    const img = path.join(root, 'a.png');
    const opts = { rewrite: true, systemPrompt: 'Rewrite it.', maxNewTokens: 6 };
    const reqs = [
      { prompt: 'make it blue', images: [img], answer: 'a blue square' },
      { prompt: 'a cat', images: [img] },
      { prompt: '' },
      { prompt: 'describe it', answer: 'a dog in the rain' },
    ];
    const batch = await p.condition(reqs, opts);
    expect(batch.finish.map((f) => f === 'forced')).toEqual([true, false, false, true]);
    expect(batch.finish[2]).toBe('empty');
    for (const [b, r] of reqs.entries()) {
      const alone = await p.condition([r], opts);
      expectSameRow(batch, b, alone, 0);
      expect(batch.generatedIds[b]).toEqual(alone.generatedIds[0]);
    }
    // the forced image row: image tokens + the answer's tokens
    const ans = p.tokenizer.encode('a blue square', { addSpecialTokens: false });
    expect(batch.lengths[0]).toBe(ans.length + (await p.condition([{ prompt: '', images: [img] }], { rewrite: false })).lengths[0]!);
  });

  it("a fixed answer: the encoder graph's taps over [prompt; answer tokens] at the answer positions", async () => {
    const p = pkgs.qwen2!;
    const c = await p.condition([{ prompt: 'a red circle', answer: 'a red circle at the top left of a white canvas' }], { rewrite: true, systemPrompt: 'Rewrite it.' });
    const ans = p.tokenizer.encode('a red circle at the top left of a white canvas', { addSpecialTokens: false });
    const ids = [...c.promptIds[0]!, ...ans];
    expect(c.lengths[0]).toBe(ans.length);
    const dir = path.join(root, 'qwen2');
    const s = await Session.load(path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('-encoder.onnx'))!));
    try {
      const feeds: Record<string, HostTensor> = { input_ids: { dtype: 'i64', shape: [1, ids.length], data: BigInt64Array.from(ids.map(BigInt)) }, attention_mask: { dtype: 'i64', shape: [1, ids.length], data: new BigInt64Array(ids.length).fill(1n) } };
      const out = await s.run(feeds);
      const H = p.hidden, P = c.promptIds[0]!.length;
      for (const i of p.taps) {
        const h = out[`hidden_states.${i}`]!.data as Float32Array;
        const want = h.slice(P * H, (P + ans.length) * H);
        expect(relErr(row(c, 0)[`hidden_states.${i}`] as Float32Array, want), `hidden_states.${i}`).toBeLessThan(1e-5);
      }
    } finally {
      await s.release();
    }
  });

  it('an answer without rewrite is refused', async () => {
    await expect(pkgs.qwen2!.condition([{ prompt: 'x', answer: 'y' }], { rewrite: false })).rejects.toThrow(VlmError);
    await expect(pkgs.qwen2!.condition([{ prompt: 'x', answer: 'y' }], { rewrite: false })).rejects.toThrow(/teacher forcing.*rewrite: true/);
    await expect(pkgs.qwen2!.condition([{ prompt: 'x', answerIds: [1, 100000] }], { rewrite: true, systemPrompt: 's' })).rejects.toThrow(/answer token id 100000 is outside the vocabulary/);
  });
});
