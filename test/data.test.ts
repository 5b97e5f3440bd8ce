// runtime/data: dataset errors by line, the loader's measured dropout rate / task mix / t
// distribution, buckets, and image training end to end (pixel space, tiny preset shapes) into a
// run folder that assembles and samples.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../src/ir/init.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { encodePng, type RgbImage } from '../runtime/images/png.ts';
import { aspectBuckets, assignBucket, encodeDataset, imageBatches, loadDataset, parseTaskMix, parseTimestepDistribution, sampleTimestep, trainOnImages } from '../runtime/data/index.ts';
import { assemble, LatentCodec, Pipeline } from '../runtime/pipeline/index.ts';
import { PRESETS } from '../graphs/presets.ts';
import { HashEncoder } from './helpers/pipeline-fixtures.ts';

const TINY = PRESETS.tiny!;
let tmp: string;
const p = (...xs: string[]) => path.join(tmp, ...xs);

function solid(w: number, h: number, rgb: [number, number, number], mark = 0): RgbImage {
  const d = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) d.set(i % 7 === mark ? [255 - rgb[0], 255 - rgb[1], 255 - rgb[2]] : rgb, i * 3);
  return { width: w, height: h, data: d };
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-data-'));
  fs.mkdirSync(p('ds'));
  const colors: [string, [number, number, number]][] = [['red', [220, 30, 30]], ['green', [30, 200, 40]], ['blue', [30, 40, 220]], ['yellow', [230, 220, 30]]];
  const rows: string[] = [];
  colors.forEach(([name, c], i) => {
    fs.writeFileSync(p('ds', `${name}.png`), encodePng(solid(24, 16, c, i)));
    rows.push(JSON.stringify({ image: `${name}.png`, caption: `a ${name} picture` }));
  });
  rows.push(JSON.stringify({ source: 'red.png', instruction: 'make it blue', target: 'blue.png' }));
  rows.push(JSON.stringify({ sources: ['green.png', 'yellow.png'], instruction: 'mix them', target: 'yellow.png' }));
  fs.writeFileSync(p('ds', 'data.jsonl'), rows.join('\n') + '\n');
  // a dataset with problems on known lines
  fs.mkdirSync(p('bad'));
  fs.copyFileSync(p('ds', 'red.png'), p('bad', 'red.png'));
  fs.writeFileSync(p('bad', 'broken.png'), 'not a png');
  fs.writeFileSync(
    p('bad', 'rows.jsonl'),
    [
      JSON.stringify({ image: 'red.png', caption: 'ok' }),
      '{"image": "red.png", caption: oops}',
      JSON.stringify({ image: 'red.png' }),
      '',
      JSON.stringify({ image: 'nope.png', caption: 'missing' }),
      JSON.stringify({ source: 'red.png', instruction: 'x' }),
      JSON.stringify({ image: 'broken.png', caption: 'undecodable' }),
    ].join('\n'),
  );
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('dataset', () => {
  it('reports every invalid row with its file and line; skips them on request', async () => {
    const err = await loadDataset(p('bad')).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toMatch(/4 invalid row\(s\)/);
    expect(msg).toMatch(/rows\.jsonl:2: not valid JSON/);
    expect(msg).toMatch(/rows\.jsonl:3: 'caption' must be a string/);
    expect(msg).toMatch(/rows\.jsonl:5: image file 'nope\.png' not found/);
    expect(msg).toMatch(/rows\.jsonl:6: an edit row needs 'target'/);
    const ds = await loadDataset(p('bad'), { invalid: 'skip' });
    expect(ds.rows.map((r) => r.line)).toEqual([1, 7]);
    expect(ds.skipped.map((s) => s.line)).toEqual([2, 3, 5, 6]);
    // the undecodable image is found when the data is encoded, by line too
    const codec = new LatentCodec({ kind: 'pixel', channels: 3, patch: 4, factor: 1, shift: 0, scale: 1 }, null);
    const enc = { encoder: new HashEncoder(TINY.taps, 32), codec, buckets: [{ width: 16, height: 16 }], seqAxes: {} };
    await expect(encodeDataset(ds, enc)).rejects.toThrow(/rows\.jsonl:7: broken\.png: cannot read the image/);
    const e = await encodeDataset(ds, { ...enc, invalid: 'skip' });
    expect(e.skipped.map((s) => s.line)).toEqual([7]);
    expect(e.examples.map((x) => x.task)).toEqual(['t2i', 'recon']);
  });
});

describe('loader', () => {
  it('measured condition-dropout rate, task mix and timestep distributions match what was asked', async () => {
    const ds = await loadDataset(p('ds'));
    const codec = new LatentCodec({ kind: 'pixel', channels: 3, patch: 4, factor: 1, shift: 0, scale: 1 }, null);
    const seqAxes = { ...Object.fromEntries(TINY.taps.map((t) => [`hidden_states.${t}`, 1])), condition_mask: 1 };
    const data = await encodeDataset(ds, { encoder: new HashEncoder(TINY.taps, 32), codec, buckets: [{ width: 16, height: 16 }], seqAxes });
    expect(data.examples.length).toBe(4 * 2 + 2);
    const { source, last } = imageBatches(data, { batch: 8, dropout: 0.2, taskMix: parseTaskMix('85,5,10'), t: parseTimestepDistribution('logit-normal:0.5,0.8'), seqAxes });
    const rng = new Rng(1, 'data');
    let n = 0, dropped = 0;
    const tasks = { t2i: 0, recon: 0, edit: 0 };
    const logits: number[] = [];
    let droppedMaskOk = true;
    for (let s = 0; s < 500; s++) {
      const b = await source(s, rng, { seed: 1 });
      const info = last()!;
      const S = b.condition_mask!.shape[1]!;
      info.dropped.forEach((d, i) => {
        n++;
        if (d) {
          dropped++;
          // the dropped row is the null condition (the empty prompt: one padding-free token in this encoder)
          const row = (b['hidden_states.1']!.data as Float32Array).subarray(i * S * 32, i * S * 32 + 32);
          if (Math.abs(row[0]! - (data.nullCondition['hidden_states.1']!.data as Float32Array)[0]!) > 0) droppedMaskOk = false;
        }
        tasks[info.tasks[i]!]++;
      });
      for (const t of info.timesteps) logits.push(Math.log(t / (1 - t)));
      expect(b.latents!.shape).toEqual([8, 3, 16, 16]);
      expect(b.timestep!.shape).toEqual([8]);
    }
    // binomial: sd of the rate = sqrt(p (1 - p) / n) = 0.0063 at n = 4000
    expect(Math.abs(dropped / n - 0.2)).toBeLessThan(0.025);
    expect(droppedMaskOk).toBe(true);
    expect(Math.abs(tasks.t2i / n - 0.85)).toBeLessThan(0.025);
    expect(Math.abs(tasks.recon / n - 0.05)).toBeLessThan(0.015);
    expect(Math.abs(tasks.edit / n - 0.1)).toBeLessThan(0.02);
    const mean = logits.reduce((a, b) => a + b, 0) / logits.length;
    const sd = Math.sqrt(logits.reduce((a, b) => a + (b - mean) ** 2, 0) / logits.length);
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
    expect(Math.abs(sd - 0.8)).toBeLessThan(0.05);
    const r2 = new Rng(2, 'u');
    const us = Array.from({ length: 4000 }, () => sampleTimestep(r2, { kind: 'uniform' }));
    expect(Math.abs(us.reduce((a, b) => a + b, 0) / us.length - 0.5)).toBeLessThan(0.02);
    expect(Math.min(...us)).toBeGreaterThan(0);
    expect(() => parseTaskMix('1,2')).toThrow(/three weights/);
    expect(() => parseTimestepDistribution('gauss')).toThrow(/logit-normal/);
  });

  it('aspect buckets: multiples, nearest aspect, one bucket per batch', () => {
    const b = aspectBuckets(48, 48, 4);
    expect(b[0]).toEqual({ width: 48, height: 48 });
    for (const x of b) expect([x.width % 4, x.height % 4]).toEqual([0, 0]);
    expect(b[assignBucket(b, 1920, 1080)]).toEqual({ width: 64, height: 36 });
    expect(b[assignBucket(b, 300, 400)]).toEqual({ width: 40, height: 56 });
  });
});

describe('image training', () => {
  it('trains, writes grids / metrics / loss curve / params, resumes, and the run assembles and samples', async () => {
    const cfg = { ...TINY, dit: { ...TINY.dit, channels: 3, patch: 4 } };
    const codec = new LatentCodec({ kind: 'pixel', channels: 3, patch: 4, factor: 1, shift: 0, scale: 1 }, null);
    const encoder = new HashEncoder(TINY.taps, 32);
    const common = { config: cfg, dataset: p('ds'), out: p('run'), encoder, encoderId: 'hash-encoder v1', codec, size: [16, 16] as [number, number], batch: 4, lr: 3e-3, sampleEvery: 6, sampleSteps: 3, optimizer: { ema: 0.9 }, progress: false as const };
    const r = await trainOnImages({ ...common, steps: 12 });
    expect(r.stepsDone).toBe(12);
    expect(r.samples).toEqual(['samples/step-000000006.png', 'samples/step-000000012.png']);
    const grid = await sharp(p('run', r.samples[1]!)).metadata();
    expect([grid.width, grid.height]).toEqual([2 * 16 + 6, 4 * 16 + 10]); // 4 prompts x 2 seeds, 2 columns
    const lossPng = await sharp(p('run', 'loss.png')).metadata();
    expect(lossPng.width).toBeGreaterThan(300);
    const metrics = fs.readFileSync(p('run', 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(metrics.length).toBe(12);
    const params = readSafetensors(p('run', 'params.safetensors')).tensors;
    expect([...params.keys()].some((k) => k.startsWith('ema.'))).toBe(true);
    expect(JSON.parse(fs.readFileSync(p('run', 'unifusion.json'), 'utf8'))).toMatchObject({ format: 'unifusion-run-model', size: [16, 16], nullCondition: 'null_condition.safetensors', latent: { kind: 'pixel' } });
    await expect(trainOnImages({ ...common, steps: 18 })).rejects.toThrow(/not empty.*--resume/);
    const calls = encoder.calls;
    const r2 = await trainOnImages({ ...common, steps: 18, resume: true });
    expect(r2.stepsDone).toBe(18);
    expect(encoder.calls).toBe(calls); // the encoded dataset came from the run folder
    expect(r2.encoded.conditions.length).toBe(r.encoded.conditions.length);
    expect([...r2.encoded.latents[0]!.data]).toEqual([...r.encoded.latents[0]!.data].map(Math.fround));
    expect(r2.records.length).toBe(6);
    // the run is a DiT source for assembly; its dropped condition becomes CFG's
    const a = await assemble({ dit: p('run'), out: p('pipe') });
    expect(a.json.conditioning.nullCondition).toBe('null_condition.safetensors');
    expect(a.json.latent.kind).toBe('pixel');
    const pipe = await Pipeline.load(p('pipe'), { encoder });
    const out = await pipe.generate({ prompts: ['a red picture'], steps: 3, guidance: 2, seed: 0 });
    expect(out.images[0]!.image.width).toBe(16);
    await pipe.close();
  });

  it('the CLI path: train graphs/unifusion.ts --preset tiny --dataset --conditions --vae (t2i only), errors for bad flags', async () => {
    const { trainImagesCommand } = await import('../src/cli/train-images.ts');
    const { writeDiffusersVae } = await import('./helpers/pipeline-fixtures.ts');
    const { importHf } = await import('../src/cli/import-hf.ts');
    const { writeSafetensors } = await import('../src/io/safetensors.ts');
    writeDiffusersVae(p('vae-src'));
    await importHf(p('vae-src'), { out: p('vae') });
    const prompts = ['a red picture', 'a green picture', 'a blue picture', 'a yellow picture', ''];
    const c = await new HashEncoder(TINY.taps, 32).condition(prompts.map((x) => ({ prompt: x })));
    writeSafetensors(p('conds.safetensors'), c.tensors, { prompts: JSON.stringify(prompts) });
    const base = { dataset: p('ds'), conditions: p('conds.safetensors'), vae: p('vae'), size: '16x16', steps: '3', batch: '2', taskMix: '1,0,0', out: p('cli-run'), quiet: true, progress: false };
    await trainImagesCommand('graphs/unifusion.ts', { ...base, preset: 'tiny' });
    expect(fs.existsSync(p('cli-run', 'params.safetensors'))).toBe(true);
    expect(JSON.parse(fs.readFileSync(p('cli-run', 'unifusion.json'), 'utf8')).latent).toMatchObject({ kind: 'vae', channels: 4, factor: 2 });
    const a = await assemble({ dit: p('cli-run'), vae: p('vae'), out: p('cli-pipe') });
    expect(a.json.latent.kind).toBe('vae');
    await expect(assemble({ dit: p('cli-run'), out: p('cli-pipe2') })).rejects.toThrow(/trained on VAE latents; give that VAE/);
    await expect(trainImagesCommand('graphs/unifusion.ts', { ...base, out: p('x'), steps: '0' })).rejects.toThrow(/--steps must be a positive integer/);
    await expect(trainImagesCommand('graphs/unifusion.ts', { ...base, out: p('x'), size: '18x16' })).rejects.toThrow(/multiples of 4/);
    await expect(trainImagesCommand('graphs/unifusion.ts', { ...base, out: p('x'), taskMix: '85,5,10' })).rejects.toThrow(/image prompts need the pipeline's VLM/);
    await expect(trainImagesCommand('graphs/dit.ts', { ...base, out: p('x') })).rejects.toThrow(/is not one/);
    await expect(trainImagesCommand('graphs/unifusion.ts', { ...base, out: p('ds', 'inside') })).rejects.toThrow(/lies inside the input --dataset/);
  });

  it('it learns: 160 steps on four solid colours, then CFG sampling of each caption gives its colour', async () => {
    fs.mkdirSync(p('colours'));
    const colours: [string, [number, number, number]][] = [['red', [220, 30, 30]], ['green', [30, 200, 40]], ['blue', [30, 40, 220]], ['yellow', [230, 220, 30]]];
    fs.writeFileSync(p('colours', 'data.jsonl'), colours.map(([n, c]) => (fs.writeFileSync(p('colours', `${n}.png`), encodePng(solid(16, 16, c, -1))), JSON.stringify({ image: `${n}.png`, caption: `a ${n} square` }))).join('\n'));
    const cfg = PRESETS['tiny-pixel']!;
    const codec = new LatentCodec({ kind: 'pixel', channels: 3, patch: 4, factor: 1, shift: 0, scale: 1 }, null);
    const encoder = new HashEncoder(cfg.taps, 32);
    const r = await trainOnImages({ config: cfg, dataset: p('colours'), out: p('colour-run'), encoder, codec, size: [16, 16], steps: 160, batch: 8, lr: 3e-3, warmup: 10, taskMix: { t2i: 1, recon: 0, edit: 0 }, dropout: 0.1, progress: false, sampleSteps: 4 });
    const first = r.records.slice(0, 10).reduce((a, x) => a + x.loss, 0) / 10, last = r.records.slice(-10).reduce((a, x) => a + x.loss, 0) / 10;
    expect(last).toBeLessThan(0.5 * first);
    await assemble({ dit: p('colour-run'), out: p('colour-pipe') });
    const pipe = await Pipeline.load(p('colour-pipe'), { encoder });
    const out = await pipe.generate({ prompts: colours.map(([n]) => `a ${n} square`), steps: 20, guidance: 3, seed: 0 });
    await pipe.close();
    out.images.forEach((im, i) => {
      const m = [0, 0, 0];
      for (let k = 0; k < 256; k++) for (let c = 0; c < 3; c++) m[c]! += im.image.data[k * 3 + c]! / 256;
      const d = colours.map(([, c]) => Math.hypot(m[0]! - c[0], m[1]! - c[1], m[2]! - c[2]));
      expect(d.indexOf(Math.min(...d))).toBe(i); // nearest its own prompt's colour
      expect(d[i]!).toBeLessThan(80);
    });
  });
});

