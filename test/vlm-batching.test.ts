// condition() in chunks (batchSize): hundreds of prompts through the VLM in batches of N give the
// same result as one batch — greedy rewrites, teacher-forced and empty rows, images, streamed
// tokens on the right rows, and sampled rewrites with explicit per-request seeds. Reference: the
// same call without batchSize (rows padded together), within 1e-5.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importHf } from '../src/cli/import-hf.ts';
import { VlmPackage, type ConditionResult } from '../runtime/vlm/index.ts';
import { encodePng } from '../runtime/images/png.ts';
import { Rng } from '../src/ir/init.ts';
import { GEN_FIXTURES } from './helpers/vlm.ts';

let tmp: string;
let vlm: VlmPackage;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-vlm-batch-'));
  await importHf(path.join(GEN_FIXTURES, 'internvl'), { out: path.join(tmp, 'vlm'), taps: 'list:1,2,3' });
  vlm = await VlmPackage.load(path.join(tmp, 'vlm'));
  const r = new Rng(4, 'img');
  fs.writeFileSync(path.join(tmp, 'a.png'), encodePng({ width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, () => Math.floor(r.uniform() * 256)) }));
}, 60_000);
afterAll(async () => {
  await vlm?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function expectSame(a: ConditionResult, b: ConditionResult) {
  expect(a.lengths).toEqual(b.lengths);
  expect(a.generatedIds).toEqual(b.generatedIds);
  expect(a.rewritten).toEqual(b.rewritten);
  expect(a.finish).toEqual(b.finish);
  expect(a.promptIds).toEqual(b.promptIds);
  const S = Math.max(...a.lengths, 1);
  for (const [k, t] of Object.entries(b.tensors)) {
    const u = a.tensors[k]!;
    expect(u.shape).toEqual(t.shape);
    expect(t.shape[1]).toBe(S);
    let err = 0, ref = 0;
    for (let i = 0; i < t.data.length; i++) (err = Math.max(err, Math.abs(Number(u.data[i]) - Number(t.data[i])))), (ref = Math.max(ref, Math.abs(Number(t.data[i]))));
    expect(err / Math.max(ref, 1e-30), k).toBeLessThan(1e-5);
  }
}

describe('condition() batchSize', () => {
  const img = () => path.join(tmp, 'a.png');
  const reqs = () => [
    { prompt: 'a red circle' },
    { prompt: '' },
    { prompt: 'two blue squares at the top', images: [img()] },
    { prompt: 'make it green', answer: 'a green circle' },
    { prompt: 'a cat' },
    { prompt: 'three small dots', images: [img()] },
    { prompt: 'a long prompt about many shapes in many colours' },
  ];
  const sys = { systemPrompt: 'Rewrite it.', maxNewTokens: 5 };

  it('greedy rewrites (with forced, empty and image rows): chunks of 1, 3 and 4 equal one batch; tokens stream to their rows', async () => {
    const whole = await vlm.condition(reqs(), { rewrite: true, ...sys });
    for (const n of [1, 3, 4]) {
      const streamed = reqs().map(() => '');
      const c = await vlm.condition(reqs(), { rewrite: true, ...sys, batchSize: n, onToken: (b, t) => (streamed[b] += t) });
      expectSame(c, whole);
      reqs().forEach((r, b) => expect(streamed[b]).toBe('answer' in r ? '' : whole.rewritten[b]));
    }
    expect(whole.finish).toContain('forced');
    expect(whole.finish).toContain('empty');
  });

  it('no rewrite, and sampled rewrites with per-request seeds', async () => {
    const plain = reqs().filter((r) => !('answer' in r));
    expectSame(await vlm.condition(plain, { rewrite: false, batchSize: 2 }), await vlm.condition(plain, { rewrite: false }));
    const seeds = plain.map((_, i) => 100 + i);
    const o = { rewrite: true, ...sys, temperature: 1.5, topK: 20, seeds };
    const whole = await vlm.condition(plain, o);
    expectSame(await vlm.condition(plain, { ...o, batchSize: 2 }), whole);
    await expect(vlm.condition(plain, { rewrite: false, batchSize: 0 })).rejects.toThrow(/batch size must be an integer >= 1/);
  });
});
