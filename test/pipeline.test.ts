// Pipeline round trip on the tiny preset: compile --params (trained weights baked, checked against
// the float64 reference), import a VAE, assemble, sample through the CLI (byte-identical PNGs per
// seed, metadata, grids), the batched-CFG loop against separate cond / uncond DiT calls, pixel
// space, the library API with an in-process encoder, and every bad input the issue lists.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileCommand } from '../src/cli/compile.ts';
import { assembleCommand } from '../src/cli/assemble.ts';
import { sampleCommand } from '../src/cli/sample.ts';
import { editCommand } from '../src/cli/edit.ts';
import { importHf } from '../src/cli/import-hf.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { fromFloat64, toFloat64, toRefTensor } from '../src/io/host.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import { compileGraph, writeCompiled } from '../src/compiler.ts';
import { Session } from '../runtime/session.ts';
import { readPngText } from '../runtime/images/png.ts';
import { CachedPromptEncoder, Pipeline, sliceRows, assemble } from '../runtime/pipeline/index.ts';
import { cfgCombine, flowSigmas, seededNoise } from '../runtime/sampler/index.ts';
import { PRESETS } from '../graphs/presets.ts';
import { ditGraph, randomCondition, randomParams, writeDiffusersVae } from './helpers/pipeline-fixtures.ts';

const TINY = PRESETS.tiny!;
let tmp: string;
const p = (...xs: string[]) => path.join(tmp, ...xs);

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-pipe-'));
  writeSafetensors(p('trained.safetensors'), randomParams([ditGraph(TINY)], 21));
  await compileCommand('graphs/unifusion.ts', { preset: 'tiny', out: p('dit'), params: [p('trained.safetensors')], quiet: true });
  writeDiffusersVae(p('vae-src'));
  await importHf(p('vae-src'), { out: p('vae') });
  writeSafetensors(p('null.safetensors'), randomCondition(TINY.taps, 32, [2], 5));
  writeSafetensors(p('cond.safetensors'), randomCondition(TINY.taps, 32, [5, 3], 6), { prompts: JSON.stringify(['a red square', 'two blue circles']) });
  await assembleCommand({ dit: p('dit', 'unifusion.onnx'), vae: p('vae'), nullCondition: p('null.safetensors'), out: p('pipe'), size: '16x16', steps: '4', guidance: '3', quiet: true });
}, 120_000);

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('compile --params', () => {
  it('bakes the trained weights in (onnxruntime vs the float64 reference with the same params)', async () => {
    const params = randomParams([ditGraph(TINY)], 21);
    const s = await Session.load(p('dit', 'unifusion.onnx'));
    const feeds = { ...randomCondition(TINY.taps, 32, [4, 2], 9), latents: fromFloat64('f32', [2, 4, 8, 8], seededNoise([1, 2], 256)), timestep: fromFloat64('f32', [2], [0.7, 0.2]) };
    const got = toFloat64((await s.run(feeds)).velocity!);
    await s.release();
    const g = ditGraph(TINY);
    const want = evaluate(compileGraph(g, { paramValues: params }).graph, Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, toRefTensor(v)])), { params: new Map([...params].map(([k, v]) => [k, toRefTensor(v)])) }).velocity!.data;
    let err = 0, ref = 0;
    for (let i = 0; i < got.length; i++) (err = Math.max(err, Math.abs(got[i]! - want[i]!))), (ref = Math.max(ref, Math.abs(want[i]!)));
    expect(ref).toBeGreaterThan(0.01); // trained (non-zero) weights: adaLN-zero init would give 0
    expect(err / ref).toBeLessThan(1e-4);
  });

  it('a train run folder: trained params from params.safetensors, frozen ones (the in-graph VLM) from its step graph', async () => {
    const { trainCommand } = await import('../src/cli/train.ts');
    const { loadTrainedParams, matchParams } = await import('../runtime/pipeline/params.ts');
    const { trace } = await import('../src/dsl/index.ts');
    const { decoderLMEncoder, uniFusionForward } = await import('../graphs/unifusion.ts');
    const { decoderConfigFromHF } = await import('../graphs/vlm/index.ts');
    const { paramTensor } = await import('../codegen/onnx/emit.ts');
    const ex = await import('../examples/train-unifusion-tiny.ts');
    await trainCommand('examples/train-unifusion-tiny.ts', { steps: 2, out: p('run-tiny'), quiet: true, progress: false });
    const graph = trace('unifusion_tiny', () => {
      const encoder = decoderLMEncoder(decoderConfigFromHF(ex.TINY_VLM_CONFIG), ex.CONFIG, { prefix: 'vlm' });
      return { velocity: uniFusionForward(ex.CONFIG, { encoder }).velocity };
    }, { seed: ex.default.seed });
    const t = loadTrainedParams([p('run-tiny')]);
    matchParams(graph, t); // every param has a value, nothing left over
    const frozen = graph.params().filter((q) => q.params.frozen);
    expect(frozen.length).toBeGreaterThan(0);
    for (const q of frozen) {
      expect(t.source.get(q.params.name)).toMatch(/train-step\.onnx$/);
      expect([...t.params.get(q.params.name)!.data]).toEqual([...paramTensor(q).data]); // frozen: still the seeded init
    }
    const trained = graph.params().find((q) => !q.params.frozen && q.params.name.startsWith('dit.'))!;
    expect(t.source.get(trained.params.name)).toMatch(/params\.safetensors$/);
  });

  it('refuses weights that do not fit, naming them', async () => {
    const bad = randomParams([ditGraph(TINY)], 1);
    const name = [...bad.keys()][0]!;
    bad.set(name, fromFloat64('f32', [3], [1, 2, 3]));
    bad.set('nonsense.weight', fromFloat64('f32', [1], [0]));
    writeSafetensors(p('bad.safetensors'), bad);
    await expect(compileCommand('graphs/unifusion.ts', { preset: 'tiny', out: p('dit-bad'), params: [p('bad.safetensors')], quiet: true })).rejects.toThrow(new RegExp(`'${name.replace(/\./g, '\\.')}' is f32\\[3\\].*'nonsense\\.weight'`));
    expect(fs.existsSync(p('dit-bad'))).toBe(false);
  });
});

describe('assemble', () => {
  it('writes pipeline.json with parts, conditioning, latent format, sizes and every hash', () => {
    const j = JSON.parse(fs.readFileSync(p('pipe', 'pipeline.json'), 'utf8'));
    expect(j.parts).toEqual({ vlm: null, dit: { onnx: 'dit/unifusion.onnx', manifest: 'dit/manifest.json' }, vae: { dir: 'vae', decoder: 'vae/vae_decoder.onnx', encoder: 'vae/vae_encoder.onnx' } });
    expect(j.conditioning).toMatchObject({ taps: [1, 2, 3, 4], hidden: 32, nullCondition: 'null_condition.safetensors' });
    expect(j.latent).toEqual({ kind: 'vae', channels: 4, patch: 2, factor: 2, shift: 0.1, scale: 0.5 });
    expect(j.resolutions).toMatchObject({ multiple: 4, default: [16, 16] });
    expect(Object.keys(j.files).sort()).toEqual(expect.arrayContaining(['dit/unifusion.onnx', 'dit/manifest.json', 'vae/vae_decoder.onnx', 'null_condition.safetensors']));
  });

  it('catches mismatches before writing: latent channels, pixel space without 3 channels, taps the VLM lacks', async () => {
    const vae16 = p('vae16-src');
    writeDiffusersVae(vae16, { ...(await import('./helpers/pipeline-fixtures.ts')).TINY_VAE, latentChannels: 8 });
    await importHf(vae16, { out: p('vae16') });
    await expect(assembleCommand({ dit: p('dit', 'unifusion.onnx'), vae: p('vae16'), out: p('x1'), quiet: true })).rejects.toThrow(/8 latent channels, the DiT takes 4/);
    await expect(assembleCommand({ dit: p('dit', 'unifusion.onnx'), out: p('x2'), quiet: true })).rejects.toThrow(/pixel space needs a 3-channel DiT/);
    fs.mkdirSync(p('vlm'), { recursive: true });
    fs.writeFileSync(p('vlm', 'manifest.json'), JSON.stringify({ models: [{ outputs: [{ name: 'hidden_states.1', dtype: 'f32', shape: ['batch', 'seq', 32] }, { name: 'hidden_states.3', dtype: 'f32', shape: ['batch', 'seq', 32] }] }] }));
    await expect(assembleCommand({ vlm: p('vlm'), dit: p('dit', 'unifusion.onnx'), vae: p('vae'), out: p('x3'), quiet: true })).rejects.toThrow(/does not emit hidden_states\.2, hidden_states\.4.*--taps list:1,2,3,4/);
    await expect(assembleCommand({ dit: p('dit', 'unifusion.onnx'), vae: p('vae'), out: p('x4'), size: '18x16', quiet: true })).rejects.toThrow(/multiples of 4/);
    for (const x of ['x1', 'x2', 'x3', 'x4']) expect(fs.existsSync(p(x))).toBe(false);
  });
});

describe('sample', () => {
  const run = (out: string, extra: Record<string, unknown> = {}) => sampleCommand({ pipeline: p('pipe'), condition: p('cond.safetensors'), numImages: '2', seed: '3', out: p(out), quiet: true, ...extra });

  it('writes a PNG per image with its metadata, a sidecar, a grid; the same seed gives byte-identical PNGs', async () => {
    await run('s1');
    await run('s2');
    const files = fs.readdirSync(p('s1')).filter((f) => f.endsWith('.png')).sort();
    expect(files).toEqual(['0000-seed3.png', '0001-seed4.png', '0002-seed5.png', '0003-seed6.png', 'grid.png']);
    for (const f of files) expect(Buffer.compare(fs.readFileSync(p('s1', f)), fs.readFileSync(p('s2', f)))).toBe(0);
    const text = readPngText(fs.readFileSync(p('s1', '0002-seed5.png')));
    const hash = (await Pipeline.load(p('pipe'))).hash;
    expect(text).toMatchObject({ prompt: 'two blue circles', seed: '5', steps: '4', guidance: '3', sampler: 'euler', pipeline_hash: hash, true_cfg: 'false' });
    expect(JSON.parse(text.unifusion!).sigmas).toEqual([1, 0.75, 0.5, 0.25, 0]);
    expect(JSON.parse(fs.readFileSync(p('s1', '0002-seed5.json'), 'utf8'))).toMatchObject({ prompt: 'two blue circles', seed: 5, width: 16, height: 16 });
    // images differ between seeds
    expect(Buffer.compare(fs.readFileSync(p('s1', '0000-seed3.png')), fs.readFileSync(p('s1', '0001-seed4.png')))).not.toBe(0);
  });

  it('--init-latents replaces the seeded noise: the noise of each seed given explicitly gives the same PNGs', async () => {
    writeSafetensors(p('init.safetensors'), { latents: fromFloat64('f64', [4, 4, 8, 8], seededNoise([3, 4, 5, 6], 256)) });
    await run('s4', { initLatents: p('init.safetensors') });
    for (const f of ['0000-seed3.png', '0003-seed6.png']) {
      const { decode } = await import('fast-png');
      expect([...decode(fs.readFileSync(p('s4', f))).data]).toEqual([...decode(fs.readFileSync(p('s1', f))).data]);
    }
    writeSafetensors(p('init-bad.safetensors'), { latents: fromFloat64('f32', [1, 4, 8, 8], seededNoise([3], 256)) });
    await expect(run('e7', { initLatents: p('init-bad.safetensors') })).rejects.toThrow(/initial latents have 256 values; 4 images of \[4, 8, 8\] need 1024/);
  });

  it('image k does not depend on the batch around it: seed 4 alone is image 1', async () => {
    writeSafetensors(p('cond0.safetensors'), sliceRows(randomCondition(TINY.taps, 32, [5, 3], 6), 0, 1));
    await sampleCommand({ pipeline: p('pipe'), condition: p('cond0.safetensors'), seed: '4', out: p('s3'), quiet: true, batchSize: '1' });
    const a = readPngText(fs.readFileSync(p('s3', '0000-seed4.png'))), b = readPngText(fs.readFileSync(p('s1', '0001-seed4.png')));
    expect(a.seed).toBe(b.seed);
    // same pixels (prompt labels differ: the single file has none)
    const { decode } = await import('fast-png');
    expect([...decode(fs.readFileSync(p('s3', '0000-seed4.png'))).data]).toEqual([...decode(fs.readFileSync(p('s1', '0001-seed4.png'))).data]);
  });

  it('the batched CFG loop equals Euler on separate conditional and unconditional DiT calls', async () => {
    const pipe = await Pipeline.load(p('pipe'));
    const cond = randomCondition(TINY.taps, 32, [5, 3], 6);
    const nul = randomCondition(TINY.taps, 32, [2], 5);
    const r = await pipe.generate({ prompts: ['a', 'b'], conditions: cond, seed: 10, steps: 3, guidance: 2.5, width: 16, height: 16 });
    await pipe.close();
    const s = await Session.load(p('pipe', 'dit', 'unifusion.onnx'));
    const x = seededNoise([10, 11], 256);
    const sig = flowSigmas({ steps: 3 });
    for (let i = 0; i < 3; i++) {
      const run = async (c: Record<string, ReturnType<typeof fromFloat64>>, b: number, xs: Float64Array) =>
        toFloat64((await s.run({ ...c, latents: fromFloat64('f32', [1, 4, 8, 8], xs), timestep: fromFloat64('f32', [1], [sig[i]!]) })).velocity!);
      for (let b = 0; b < 2; b++) {
        const xb = x.subarray(b * 256, (b + 1) * 256);
        // unpadded rows: each prompt at its own length
        const len = [5, 3][b]!;
        const cb = Object.fromEntries(Object.entries(sliceRows(cond, b, b + 1)).map(([k, t]) => [k, k === 'condition_mask' ? fromFloat64('bool', [1, len], toFloat64(t).slice(0, len)) : fromFloat64('f32', [1, len, 32], toFloat64(t).slice(0, len * 32))]));
        const v = cfgCombine(await run(cb, b, Float64Array.from(xb)), await run(nul, b, Float64Array.from(xb)), 2.5);
        for (let k = 0; k < 256; k++) xb[k] += (sig[i + 1]! - sig[i]!) * v[k]!;
      }
    }
    await s.release();
    // f32 DiT calls, padded vs unpadded rows and batch 4 vs 1 sum in different orders; guidance 2.5 amplifies
    let err = 0, ref = 0;
    for (let k = 0; k < 512; k++) (err = Math.max(err, Math.abs(r.images[Math.floor(k / 256)]!.latent[k % 256]! - x[k]!))), (ref = Math.max(ref, Math.abs(x[k]!)));
    expect(err / ref).toBeLessThan(1e-4);
    expect(r.evaluations).toBe(3);
    expect(r.images[0]!.image.width).toBe(16);
  });

  it('bad input: steps, guidance, size, missing part, changed file, unwritable output', async () => {
    await expect(run('e1', { steps: '0' })).rejects.toThrow(/--steps must be a positive integer, got '0'/);
    await expect(run('e1', { guidance: '-1' })).rejects.toThrow(/--guidance must be a non-negative number, got '-1'/);
    await expect(run('e1', { guidance: 'abc' })).rejects.toThrow(/--guidance must be a non-negative number, got 'abc'/);
    await expect(run('e1', { size: '18x16' })).rejects.toThrow(/width 18 is not a multiple of 4 \(VAE factor 2 x DiT patch 2\); try 16 or 20/);
    await expect(run('e1', { size: 'big' })).rejects.toThrow(/WIDTHxHEIGHT/);
    await expect(sampleCommand({ pipeline: p('pipe'), condition: p('cond.safetensors'), out: '/proc/uf-nope', quiet: true })).rejects.toThrow(/--out .\/proc\/uf-nope.: .\/proc. is a virtual file system/);
    fs.cpSync(p('pipe'), p('pipe-missing'), { recursive: true });
    fs.rmSync(p('pipe-missing', 'vae', 'vae_decoder.onnx'));
    await expect(sampleCommand({ pipeline: p('pipe-missing'), condition: p('cond.safetensors'), out: p('e2'), quiet: true })).rejects.toThrow(/incomplete: missing part file 'vae\/vae_decoder\.onnx'/);
    fs.cpSync(p('pipe'), p('pipe-changed'), { recursive: true });
    const f = p('pipe-changed', 'dit', 'unifusion.onnx');
    const bytes = fs.readFileSync(f);
    bytes[bytes.length - 10] ^= 1;
    fs.writeFileSync(f, bytes);
    await expect(sampleCommand({ pipeline: p('pipe-changed'), condition: p('cond.safetensors'), out: p('e3'), quiet: true })).rejects.toThrow(/'dit\/unifusion\.onnx' does not match the sha256/);
    await expect(sampleCommand({ pipeline: p('nowhere'), condition: p('cond.safetensors'), out: p('e4'), quiet: true })).rejects.toThrow(/no pipeline\.json/);
    await expect(run(path.join('pipe', 'out'))).rejects.toThrow(/lies inside the input --pipeline/);
    await expect(sampleCommand({ pipeline: p('pipe'), prompt: 'a cat', out: p('e5'), quiet: true })).rejects.toThrow(/has no VLM: give the conditions/);
    await expect(editCommand({ pipeline: p('pipe'), out: p('e6'), quiet: true })).rejects.toThrow(/at least one --image/);
    for (const e of ['e1', 'e2', 'e3', 'e4', 'e5', 'e6']) expect(fs.existsSync(p(e))).toBe(false);
  });

  it('img2img: strength 1 from an image equals pure noise sampling only in schedule, and low strength stays near the input', async () => {
    const pipe = await Pipeline.load(p('pipe'));
    const cond = sliceRows(randomCondition(TINY.taps, 32, [5, 3], 6), 0, 1);
    const src = (await pipe.generate({ prompts: ['x'], conditions: cond, seed: 1, steps: 4, guidance: 1 })).images[0]!;
    const low = await pipe.generate({ prompts: ['x'], conditions: cond, seed: 2, steps: 10, guidance: 1, initImages: [src.image], strength: 0.1 });
    expect(low.evaluations).toBe(1);
    const enc = await pipe.encodeImages([src.image], 16, 16);
    let d = 0;
    for (let i = 0; i < enc.length; i++) d = Math.max(d, Math.abs(low.images[0]!.latent[i]! - enc[i]!));
    expect(d).toBeLessThan(1); // one step from sigma 0.1: close to the encoded input
    expect(low.images[0]!.meta.strength).toBe(0.1);
    await pipe.close();
  });
});

describe('library API and pixel space', () => {
  it('an in-process encoder, a pixel-space pipeline (no VAE), Heun, true CFG, early stop', async () => {
    const cfg = { ...TINY, dit: { ...TINY.dit, channels: 3, patch: 4 } };
    const g = ditGraph(cfg);
    await writeCompiled(p('pix-dit'), compileGraph(g, { paramValues: randomParams([g], 3) }));
    writeSafetensors(p('pix-null.safetensors'), randomCondition(TINY.taps, 32, [1], 8));
    const r = await assemble({ dit: p('pix-dit', 'unifusion.onnx'), nullCondition: p('pix-null.safetensors'), out: p('pix'), pixelShift: 0, pixelScale: 2, size: [16, 16] });
    expect(r.json.latent).toEqual({ kind: 'pixel', channels: 3, patch: 4, factor: 1, shift: 0, scale: 2 });
    const enc = new CachedPromptEncoder(new Map([
      ['a circle', randomCondition(TINY.taps, 32, [3], 11)],
      ['', randomCondition(TINY.taps, 32, [1], 12)],
    ]));
    const pipe = await Pipeline.load(p('pix'), { encoder: enc });
    const steps: number[] = [];
    const out = await pipe.generate({ prompts: ['a circle'], numImages: 3, steps: 6, sampler: 'heun', guidance: 4, trueCfg: true, cfgNorm: true, cfgTruncation: 0.5, seed: 0, onStep: (s) => (steps.push(s.step), s.step < 3) });
    expect(out.stopped).toBe(true);
    expect(steps).toEqual([0, 1, 2, 3]);
    expect(out.evaluations).toBe(8);
    expect(out.images.map((i) => [i.image.width, i.image.height, i.meta.seed, i.meta.true_cfg, i.meta.negative_prompt])).toEqual([[16, 16, 0, true, ''], [16, 16, 1, true, ''], [16, 16, 2, true, '']]);
    // pixel decode: rgb = latent / scale + shift, mapped from [-1, 1]
    const lat = out.images[0]!.latent;
    const v = Math.min(1, Math.max(0, lat[0]! / 2 / 2 + 0.5));
    expect(out.images[0]!.image.data[0]).toBe(Math.round(v * 255));
    await expect(pipe.generate({ prompts: ['unknown'], steps: 1 })).rejects.toThrow(/no condition for the prompt "unknown"/);
    await pipe.close();
  });
});
