// The prompt side of a pipeline, end to end with a real VLM package: import-hf over the tiny
// InternVL fixture (test/fixtures/vlm-gen/internvl; its VlmPackage conditions are tested against
// transformers in vlm-package.test.ts), a random-weight pixel-space UniFusion DiT taking its taps,
// assemble --vlm, then sample / edit through the CLI and the library. The reference for every
// image is the same pipeline fed the conditions of an independently loaded VlmPackage
// (`conditions:`), so each test checks that the pipeline hands the VLM exactly the right request:
// prompt, rewrite or not, system prompt, template kept or dropped, images, negative prompt.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importHf } from '../src/cli/import-hf.ts';
import { sampleCommand } from '../src/cli/sample.ts';
import { editCommand } from '../src/cli/edit.ts';
import { compileGraph, writeCompiled } from '../src/compiler.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { Rng } from '../src/ir/init.ts';
import { encodePng, readPngText, type RgbImage } from '../runtime/images/png.ts';
import { decodeImage } from '../runtime/images/decode.ts';
import { assemble, Pipeline, type ConditionOptions, type ConditionRequest, type ConditionResult, type PromptEncoder } from '../runtime/pipeline/index.ts';
import { VlmPackage, DEFAULT_SYSTEM_PROMPT } from '../runtime/vlm/index.ts';
import { PRESETS, VLMS } from '../graphs/presets.ts';
import type { UniFusionConfig } from '../graphs/unifusion.ts';
import { ditGraph, randomParams } from './helpers/pipeline-fixtures.ts';
import { GEN_FIXTURES } from './helpers/vlm.ts';

// the fixture InternVL: 3 text layers of width 32; the DiT takes hidden_states 1..3
const CFG: UniFusionConfig = { ...PRESETS['tiny-pixel']!, vlm: { ...VLMS.tiny, layers: 3 }, taps: [1, 2, 3] };
let tmp: string;
let vlm: VlmPackage;
const p = (...xs: string[]) => path.join(tmp, ...xs);

function randomImage(w: number, h: number, seed: number): RgbImage {
  const r = new Rng(seed, 'img');
  return { width: w, height: h, data: Uint8Array.from({ length: w * h * 3 }, () => Math.floor(r.uniform() * 256)) };
}

async function pngPixels(file: string): Promise<Uint8Array> {
  return (await decodeImage(file)).data;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-pipe-vlm-'));
  await importHf(path.join(GEN_FIXTURES, 'internvl'), { out: p('vlm'), taps: 'list:1,2,3' });
  vlm = await VlmPackage.load(p('vlm'));
  const g = ditGraph(CFG);
  await writeCompiled(p('dit'), compileGraph(g, { paramValues: randomParams([g], 17) }));
  // the dropped condition: the VLM's empty prompt
  writeSafetensors(p('null.safetensors'), (await vlm.condition([{ prompt: '' }], { rewrite: false })).tensors);
  const base = { vlm: p('vlm'), dit: p('dit', 'unifusion.onnx'), nullCondition: p('null.safetensors'), size: [16, 16] as [number, number], scheduler: { steps: 3, guidance: 3 } };
  await assemble({ ...base, out: p('pipe') });
  await assemble({ ...base, out: p('pipe-keep'), dropTemplate: false });
  await assemble({ ...base, out: p('pipe-rw'), rewrite: true, systemPrompt: 'Describe the picture in five words.' });
  await assemble({ ...base, nullCondition: undefined, out: p('pipe-nonull') });
  fs.writeFileSync(p('a.png'), encodePng(randomImage(40, 24, 1)));
  fs.writeFileSync(p('b.png'), encodePng(randomImage(20, 20, 2)));
  fs.writeFileSync(p('prompts.txt'), 'a red circle\n\ntwo blue squares at the top\n');
}, 120_000);

afterAll(async () => {
  await vlm?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The pipeline's images for given conditions (the reference path: no encoder involved). */
async function withConditions(pipe: string, prompts: (string | ConditionRequest)[], c: ConditionResult | { tensors: ConditionResult['tensors'] }, extra: Record<string, unknown> = {}) {
  const pl = await Pipeline.load(pipe);
  try {
    return await pl.generate({ prompts: prompts.map((q) => (typeof q === 'string' ? q : q.prompt)), conditions: c.tensors, rewrite: false, seed: 5, progress: false, ...extra });
  } finally {
    await pl.close();
  }
}

describe('sample with the pipeline VLM', () => {
  it('--prompt without rewrite: the VLM condition of the user text (template dropped), CFG against the stored empty-prompt condition', async () => {
    await sampleCommand({ pipeline: p('pipe'), prompt: 'a red circle', rewrite: false, seed: 5, out: p('s1'), quiet: true, progress: false });
    const want = await withConditions(p('pipe'), ['a red circle'], await vlm.condition([{ prompt: 'a red circle' }], { rewrite: false }));
    expect(await pngPixels(p('s1', '0000-seed5.png'))).toEqual(want.images[0]!.image.data);
    // the template tokens matter: keeping them is another condition, another image
    const keep = await withConditions(p('pipe'), ['a red circle'], await vlm.condition([{ prompt: 'a red circle' }], { rewrite: false, keepTemplate: true }));
    expect(keep.images[0]!.image.data).not.toEqual(want.images[0]!.image.data);
  });

  it('pipeline.json dropTemplate: false keeps the template tokens', async () => {
    const pl = await Pipeline.load(p('pipe-keep'));
    const got = await pl.generate({ prompts: ['a red circle'], rewrite: false, seed: 5, progress: false });
    await pl.close();
    const want = await withConditions(p('pipe'), ['a red circle'], await vlm.condition([{ prompt: 'a red circle' }], { rewrite: false, keepTemplate: true }));
    expect(got.images[0]!.latent).toEqual(want.images[0]!.latent);
  });

  it('--prompts FILE (--vlm-batch 1: one VLM call per prompt): same images as the VLM batch condition, rows padded', async () => {
    await sampleCommand({ pipeline: p('pipe'), prompts: p('prompts.txt'), rewrite: false, seed: 5, numImages: 2, vlmBatch: '1', out: p('s2'), quiet: true, progress: false });
    const prompts = ['a red circle', 'two blue squares at the top'];
    const c = await vlm.condition(prompts.map((q) => ({ prompt: q })), { rewrite: false });
    expect(c.lengths[0]).not.toBe(c.lengths[1]); // padding is exercised
    const want = await withConditions(p('pipe'), prompts, c, { numImages: 2 });
    const files = JSON.parse(fs.readFileSync(p('s2', 'samples.json'), 'utf8')).images as string[];
    expect(files).toHaveLength(4);
    // one VLM call per prompt vs one padded batch: the same condition up to float rounding (the VLM graphs
    // are fused for cpu, whose attention kernels sum in a batch-dependent order), so a pixel may round
    // one step the other way; anything more is a real difference
    for (const [k, f] of files.entries()) {
      const got = await pngPixels(p('s2', f)), exp = want.images[k]!.image.data;
      expect(got.length).toBe(exp.length);
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - exp[i]!));
      expect(worst).toBeLessThanOrEqual(1);
    }
    expect(fs.existsSync(p('s2', 'grid.png'))).toBe(true);
  });

  it('--rewrite --system-prompt: VERIFI rewriting by the VLM; the rewritten prompt in the PNG text; the condition = the generated tokens', async () => {
    const sys = 'You are a painter.';
    await sampleCommand({ pipeline: p('pipe'), prompt: 'a red circle', rewrite: true, systemPrompt: sys, seed: 5, out: p('s3'), quiet: true, progress: false });
    const gen = await vlm.generate([{ prompt: 'a red circle' }], { systemPrompt: sys });
    expect(gen.texts[0]!.length).toBeGreaterThan(0);
    const text = readPngText(fs.readFileSync(p('s3', '0000-seed5.png')));
    expect(text.rewritten_prompt).toBe(gen.texts[0]);
    const c = await vlm.condition([{ prompt: 'a red circle' }], { rewrite: true, systemPrompt: sys });
    expect(c.rewritten[0]).toBe(gen.texts[0]);
    const want = await withConditions(p('pipe'), ['a red circle'], c);
    expect(await pngPixels(p('s3', '0000-seed5.png'))).toEqual(want.images[0]!.image.data);
    // without --system-prompt the default VERIFI prompt is used
    const pl = await Pipeline.load(p('pipe'));
    const d = await pl.generate({ prompts: ['a red circle'], rewrite: true, seed: 5, progress: false });
    await pl.close();
    expect(d.images[0]!.meta.rewritten_prompt).toBe((await vlm.generate([{ prompt: 'a red circle' }], { systemPrompt: DEFAULT_SYSTEM_PROMPT })).texts[0]);
  });

  it("pipeline.json defaults: rewrite on and its system prompt; --no-rewrite turns it off", async () => {
    const sys = 'Describe the picture in five words.';
    const pl = await Pipeline.load(p('pipe-rw'));
    const on = await pl.generate({ prompts: ['a red circle'], seed: 5, progress: false });
    const off = await pl.generate({ prompts: ['a red circle'], rewrite: false, seed: 5, progress: false });
    await pl.close();
    expect(on.images[0]!.meta.rewritten_prompt).toBe((await vlm.generate([{ prompt: 'a red circle' }], { systemPrompt: sys })).texts[0]);
    const want = await withConditions(p('pipe'), ['a red circle'], await vlm.condition([{ prompt: 'a red circle' }], { rewrite: true, systemPrompt: sys }));
    expect(on.images[0]!.latent).toEqual(want.images[0]!.latent);
    expect(off.images[0]!.meta.rewritten_prompt).toBeUndefined();
    const wantOff = await withConditions(p('pipe'), ['a red circle'], await vlm.condition([{ prompt: 'a red circle' }], { rewrite: false }));
    expect(off.images[0]!.latent).toEqual(wantOff.images[0]!.latent);
  });
});

describe('assemble --vlm without --null-condition', () => {
  it("stores the VLM's empty-prompt condition as the dropped condition: CFG works and equals the explicit one", async () => {
    const json = JSON.parse(fs.readFileSync(p('pipe-nonull', 'pipeline.json'), 'utf8'));
    expect(json.conditioning.nullCondition).toBe('null_condition.safetensors');
    expect(json.scheduler.guidance).toBe(3);
    expect(fs.readFileSync(p('pipe-nonull', 'null_condition.safetensors'))).toEqual(fs.readFileSync(p('pipe', 'null_condition.safetensors')));
    const a = await Pipeline.load(p('pipe-nonull'));
    const got = await a.generate({ prompts: ['a red circle'], rewrite: false, seed: 5, progress: false });
    await a.close();
    const want = await withConditions(p('pipe'), ['a red circle'], await vlm.condition([{ prompt: 'a red circle' }], { rewrite: false }));
    expect(got.images[0]!.meta.guidance).toBe(3);
    expect(got.images[0]!.latent).toEqual(want.images[0]!.latent);
  });
});

describe('edit with the pipeline VLM', () => {
  it('--image a.png --image b.png --prompt: both images in the VLM prompt, in order', async () => {
    await editCommand({ pipeline: p('pipe'), image: [p('a.png'), p('b.png')], prompt: 'swap the colours', rewrite: false, seed: 5, out: p('e1'), quiet: true, progress: false });
    const c = await vlm.condition([{ prompt: 'swap the colours', images: [p('a.png'), p('b.png')] }], { rewrite: false });
    const textOnly = await vlm.condition([{ prompt: 'swap the colours' }], { rewrite: false });
    expect(c.lengths[0]).toBeGreaterThan(textOnly.lengths[0]! + 16); // image tokens are in
    const want = await withConditions(p('pipe'), ['swap the colours'], c);
    expect(await pngPixels(p('e1', '0000-seed5.png'))).toEqual(want.images[0]!.image.data);
    const meta = JSON.parse(fs.readFileSync(p('e1', '0000-seed5.json'), 'utf8'));
    expect(meta.images_in_prompt).toBe(2);
    // the order matters
    const swapped = await withConditions(p('pipe'), ['swap the colours'], await vlm.condition([{ prompt: 'swap the colours', images: [p('b.png'), p('a.png')] }], { rewrite: false }));
    expect(swapped.images[0]!.image.data).not.toEqual(want.images[0]!.image.data);
  });

  it('--image a.png without a prompt: reconstruction, conditioned on the image tokens alone', async () => {
    await editCommand({ pipeline: p('pipe'), image: [p('a.png')], rewrite: false, seed: 5, out: p('e2'), quiet: true, progress: false });
    const c = await vlm.condition([{ prompt: '', images: [p('a.png')] }], { rewrite: false });
    expect(c.lengths[0]).toBeGreaterThanOrEqual(16);
    const want = await withConditions(p('pipe'), [''], c);
    expect(await pngPixels(p('e2', '0000-seed5.png'))).toEqual(want.images[0]!.image.data);
    expect(JSON.parse(fs.readFileSync(p('e2', '0000-seed5.json'), 'utf8')).prompt).toBe('');
  });

  it('true CFG of an edit: the negative prompt is encoded with the source images', async () => {
    const seen: ConditionRequest[][] = [];
    const spy: PromptEncoder = {
      condition: (reqs: ConditionRequest[], o: ConditionOptions) => (seen.push(reqs), vlm.condition(reqs, o)),
    };
    const img = await decodeImage(p('a.png'));
    const pl = await Pipeline.load(p('pipe'), { encoder: spy });
    const got = await pl.generate({ prompts: [{ prompt: 'make it blue', images: [img] }, { prompt: 'make it red', images: [img] }], negativePrompt: 'blurry', rewrite: false, seed: 5, progress: false });
    expect(seen[1]!.map((r) => [r.prompt, r.images?.length])).toEqual([['blurry', 1], ['blurry', 1]]);
    expect(got.images.map((i) => i.meta.negative_prompt)).toEqual(['blurry', 'blurry']);
    // reference: the same guidance from the two conditions, computed by hand from the DiT
    const cond = await vlm.condition([{ prompt: 'make it blue', images: [img] }], { rewrite: false });
    const neg = await vlm.condition([{ prompt: 'blurry', images: [img] }], { rewrite: false });
    const negText = await vlm.condition([{ prompt: 'blurry' }], { rewrite: false });
    const { seededNoise, flowSigmas } = await import('../runtime/sampler/index.ts');
    const per = 3 * 16 * 16;
    let x = seededNoise([5], per);
    const sig = flowSigmas({ steps: 3, shift: 1 });
    const refDiffers: number[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await pl.velocity(x, [1, 3, 16, 16], sig[i]!, cond.tensors);
      const u = await pl.velocity(x, [1, 3, 16, 16], sig[i]!, neg.tensors);
      const ut = await pl.velocity(x, [1, 3, 16, 16], sig[i]!, negText.tensors);
      refDiffers.push(Math.max(...u.map((v, k) => Math.abs(v - ut[k]!))));
      x = x.map((v, k) => v + (sig[i + 1]! - sig[i]!) * (u[k]! + 3 * (c[k]! - u[k]!)));
    }
    await pl.close();
    expect(Math.max(...refDiffers)).toBeGreaterThan(1e-3); // with or without the images is not the same branch
    let err = 0;
    for (let k = 0; k < per; k++) err = Math.max(err, Math.abs(got.images[0]!.latent[k]! - x[k]!));
    expect(err).toBeLessThan(1e-4);
  });
});
