// The browser page (examples/web) and serve-web. Node side: the page's pipeline module against
// onnxruntime-node, the server's routes and headers, clear errors for bad pipeline folders. Browser
// side: Debian's Chromium, headless through playwright-core, loads the page from serve-web, samples
// with onnxruntime-web (wasm), draws on the canvas; its pixels must equal the Node runtime's for the
// same prompt, seed and steps (within 1/255 per channel), and a screenshot is saved as a CI artifact
// (UNIFUSION_ARTIFACT_DIR, default out/artifacts). Skipped, saying why, where no Chromium exists.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Session } from '../runtime/session.ts';
import { builtinPipeline, pageFiles, pipelineFromDir, serveWeb, type PipelineSource, type StepSource, type WebServer } from '../src/web/serve.ts';
import { serveWebCommand } from '../src/cli/serve-web.ts';
import { compileCommand } from '../src/cli/compile.ts';
import { checkDenoiserManifest, generate, promptBytes, type GenerateRequest, type VelocityFn } from '../examples/web/pipeline.ts';
import { findChromium, launchChromium } from './helpers/chromium.ts';
import { importHf } from '../src/cli/import-hf.ts';
import { compileGraph, writeCompiled } from '../src/compiler.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { assemble, Pipeline } from '../runtime/pipeline/index.ts';
import { VlmPackage } from '../runtime/vlm/index.ts';
import { PRESETS, VLMS } from '../graphs/presets.ts';
import type { UniFusionConfig } from '../graphs/unifusion.ts';
import { ditGraph, randomParams, writeDiffusersVae } from './helpers/pipeline-fixtures.ts';
import { GEN_FIXTURES } from './helpers/vlm.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const made: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-web-'));
  made.push(d);
  return d;
};
afterAll(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

/** The page's generate() on onnxruntime-node: the reference the browser must match. */
async function nodeGenerate(p: PipelineSource, req: GenerateRequest) {
  if (p.kind !== 'step') throw new Error(`${p.label} is a pipeline folder, not a denoiser step`);
  const f = p.files.get(p.manifest.onnx)!;
  const session = await Session.load('bytes' in f ? f.bytes : f.file);
  const run: VelocityFn = async (feeds, shapes) => {
    const out = await session.run({
      input_ids: { dtype: 'i64', shape: shapes.input_ids, data: feeds.input_ids },
      attention_mask: { dtype: 'bool', shape: shapes.attention_mask, data: feeds.attention_mask },
      latents: { dtype: 'f32', shape: shapes.latents, data: feeds.latents },
      timestep: { dtype: 'f32', shape: shapes.timestep, data: feeds.timestep },
    });
    return out.velocity!.data as Float32Array;
  };
  try {
    return await generate(run, p.info, req);
  } finally {
    await session.release();
  }
}

describe('the page pipeline on onnxruntime-node', () => {
  const builtin = builtinPipeline();

  it('samples deterministically; prompt and seed both change the image', async () => {
    const req = { prompt: 'a red circle', seed: 3, steps: 3, size: 8 };
    const a = await nodeGenerate(builtin, req);
    const b = await nodeGenerate(builtin, req);
    expect(Array.from(a.rgba)).toEqual(Array.from(b.rgba));
    const seed = await nodeGenerate(builtin, { ...req, seed: 4 });
    const prompt = await nodeGenerate(builtin, { ...req, prompt: 'a blue square' });
    const diff = (x: Float32Array, y: Float32Array) => Math.max(...x.map((v, i) => Math.abs(v - y[i]!)));
    expect(diff(a.latent, seed.latent)).toBeGreaterThan(0.5);
    expect(diff(a.latent, prompt.latent)).toBeGreaterThan(1e-3);
    expect(a.width).toBe(8);
    expect(a.rgba.length).toBe(8 * 8 * 4);
  });

  it('checks requests and manifests with clear errors', () => {
    expect(() => promptBytes('')).toThrow(/prompt is empty/);
    expect(() => promptBytes('x'.repeat(65))).toThrow(/65 bytes of UTF-8; at most 64/);
    expect(Array.from(promptBytes('é').ids)).toEqual([0xc3n, 0xa9n]);
    const run: VelocityFn = async () => new Float32Array(0);
    return Promise.all([
      expect(generate(run, builtin.info, { prompt: 'x', seed: 1, steps: 0, size: 8 })).rejects.toThrow(/steps must be an integer in 1..100/),
      expect(generate(run, builtin.info, { prompt: 'x', seed: 1, steps: 2, size: 7 })).rejects.toThrow(/size must be a multiple of 2/),
      expect(generate(run, builtin.info, { prompt: 'x', seed: -1, steps: 2, size: 8 })).rejects.toThrow(/seed must be a non-negative integer/),
      expect(generate(run, builtin.info, { prompt: 'x', seed: 1, steps: 2, size: 8 })).rejects.toThrow(/returned 0 velocity values for a latent of 256/),
    ]).then(() => {
      const m = JSON.parse(JSON.stringify(builtin.manifest));
      m.inputs = m.inputs.filter((i: { name: string }) => i.name !== 'timestep');
      m.inputs.push({ name: 'extra', dtype: 'f32', shape: [1] });
      expect(() => checkDenoiserManifest(m, 'x/manifest.json')).toThrow(/x\/manifest.json: not a denoiser step the page can run: no input 'timestep' \(f32, rank 1\); extra input 'extra'/);
    });
  });

  it('serve-web --pipeline takes a compile output folder, and refuses others by name', async () => {
    const dir = tmp();
    await compileCommand('examples/web/tiny-pipeline.ts', { out: dir, quiet: true });
    const p = await pipelineFromDir(dir);
    expect([...p.files.keys()].sort()).toEqual(['manifest.json', 'tiny_dit_step.onnx']);
    // the folder's model is the built-in one (same seed), so both sample the same image
    const req = { prompt: 'same', seed: 9, steps: 2, size: 8 };
    expect(Array.from((await nodeGenerate(p, req)).rgba)).toEqual(Array.from((await nodeGenerate(builtin, req)).rgba));

    const other = tmp();
    await compileCommand('test/graphs/good.ts', { out: other, quiet: true });
    await expect(pipelineFromDir(other)).rejects.toThrow(/manifest.json: not a denoiser step the page can run: no input 'input_ids'/);
    await expect(pipelineFromDir(path.join(other, 'nope'))).rejects.toThrow(/--pipeline '.*nope': neither a pipeline.json \(a pipeline folder, `unifusion assemble`\) nor a readable manifest.json/);
    const evil = tmp();
    fs.writeFileSync(path.join(evil, 'manifest.json'), JSON.stringify({ ...builtin.manifest, onnx: '../secret.onnx' }));
    await expect(pipelineFromDir(evil)).rejects.toThrow(/file name '..\/secret.onnx' must be a plain name inside the folder/);
    await expect(serveWebCommand({ pipeline: other, port: 0, quiet: true })).rejects.toThrow(/not a denoiser step/);
    await expect(serveWebCommand({ port: 70000, quiet: true })).rejects.toThrow(/--port must be an integer in 0..65535, got '70000'/);
  });
});

describe('serve-web', () => {
  let server: WebServer;
  beforeAll(async () => {
    server = await serveWebCommand({ port: 0, quiet: true });
  });
  afterAll(async () => server?.close());

  it('serves the page, the pipeline files and nothing else, cross-origin isolated', async () => {
    const page = await fetch(server.url);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(page.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    expect(await page.text()).toContain('<canvas id="canvas"');
    const wasm = await fetch(new URL('ort-wasm-simd-threaded.jsep.wasm', server.url));
    expect(wasm.headers.get('content-type')).toBe('application/wasm');
    expect(new Uint8Array(await wasm.arrayBuffer()).slice(0, 4)).toEqual(Uint8Array.of(0, 0x61, 0x73, 0x6d));
    const manifest = (await (await fetch(new URL('pipeline/manifest.json', server.url))).json()) as { onnx: string };
    expect(manifest.onnx).toBe('tiny_dit_step.onnx');
    expect((await fetch(new URL('pipeline/tiny_dit_step.onnx', server.url))).status).toBe(200);
    for (const p of ['pipeline/../package.json', '%2e%2e/package.json', 'src/index.ts', 'pipeline/']) expect((await fetch(new URL(p, server.url))).status).toBe(404);
    expect((await fetch(server.url, { method: 'POST' })).status).toBe(405);
  });
});

const chrome = findChromium();
if (!chrome.path) console.warn(`browser test skipped: ${chrome.why}`);

describe.skipIf(!chrome.path)(`the page in headless Chromium (${chrome.why})`, () => {
  let server: WebServer;
  let pipeline: PipelineSource;
  beforeAll(async () => {
    pipeline = builtinPipeline();
    server = await serveWeb({ pipeline, page: await pageFiles(), port: 0 });
  });
  afterAll(async () => server?.close());

  it('loads, samples on wasm, draws the image, and its pixels equal the Node runtime for the same seed', async () => {
    const req = { prompt: 'a red circle above a blue square', seed: 7, steps: 6, size: 16 };
    const { context, close } = await launchChromium(chrome.path!);
    const errors: string[] = [];
    try {
      const page = await context.newPage();
      page.on('pageerror', (e) => errors.push(e.message));
      // no ?ep: the page picks WebGPU only where there is an adapter (none here), so wasm
      await page.goto(`${server.url}?prompt=${encodeURIComponent(req.prompt)}&seed=${req.seed}&steps=${req.steps}&size=${req.size}&autorun=1`);
      await page.waitForFunction(() => ['done', 'error'].includes((window as unknown as { unifusion?: { state: string } }).unifusion?.state ?? ''), null, { timeout: 120_000 });
      const got = await page.evaluate(() => {
        const api = (window as unknown as { unifusion: { state: string; ep?: string; error?: string; last?: { latent: Float32Array } } }).unifusion;
        const c = document.getElementById('canvas') as HTMLCanvasElement;
        const img = c.getContext('2d')!.getImageData(0, 0, c.width, c.height);
        return { state: api.state, ep: api.ep, error: api.error, width: c.width, height: c.height, pixels: Array.from(img.data), latent: api.last ? Array.from(api.last.latent) : [], status: document.getElementById('status')!.textContent, progress: (document.getElementById('progress') as HTMLProgressElement).value };
      });
      const dir = process.env.UNIFUSION_ARTIFACT_DIR ?? path.join(ROOT, 'out', 'artifacts');
      fs.mkdirSync(dir, { recursive: true });
      const shot = path.join(dir, 'browser-page.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect(got.error).toBeUndefined();
      expect(got.state).toBe('done');
      expect(got.ep).toBe('wasm');
      expect(got.progress).toBe(1);
      expect([got.width, got.height]).toEqual([req.size, req.size]);

      const ref = await nodeGenerate(pipeline, req);
      const latentErr = Math.max(...got.latent.map((v, i) => Math.abs(v - ref.latent[i]!)));
      expect(got.latent.length).toBe(ref.latent.length);
      expect(latentErr).toBeLessThan(1e-3);
      const px = got.pixels.map((v, i) => Math.abs(v - ref.rgba[i]!));
      console.log(`browser test: screenshot ${path.relative(process.cwd(), shot)}; ${got.status}; vs onnxruntime-node: latent max |diff| ${latentErr.toExponential(2)}, pixels max |diff| ${Math.max(...px)}, ${px.filter((d) => d > 0).length} of ${px.length} channel values differ`);
      expect(Math.max(...px)).toBeLessThanOrEqual(1);
      // not a blank or constant canvas
      expect(new Set(got.pixels.filter((_, i) => i % 4 === 0)).size).toBeGreaterThan(50);
      expect(fs.statSync(shot).size).toBeGreaterThan(1000);
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });
});

// ---- a pipeline folder (pipeline.json with its VLM): the page runs runtime/pipeline + runtime/vlm
// through the bundle's shims; the reference is Node's Pipeline.generate on the same folder.

/**
 * The tiny import-hf InternVL package + a random pixel-space DiT on its taps, as
 * test/pipeline-vlm.test.ts builds them; and a latent one: the tiny diffusers VAE, a DiT with
 * external weights (a .onnx + data file, as big pipelines are), VERIFI rewriting on by default.
 */
async function tinyFolders(dir: string): Promise<{ pipe: string; noVlm: string; vaeRewrite: string }> {
  const cfg: UniFusionConfig = { ...PRESETS['tiny-pixel']!, vlm: { ...VLMS.tiny, layers: 3 }, taps: [1, 2, 3] };
  const p = (...xs: string[]) => path.join(dir, ...xs);
  await importHf(path.join(GEN_FIXTURES, 'internvl'), { out: p('vlm'), taps: 'list:1,2,3' });
  const g = ditGraph(cfg);
  await writeCompiled(p('dit'), compileGraph(g, { paramValues: randomParams([g], 17) }));
  const vlm = await VlmPackage.load(p('vlm'));
  try {
    writeSafetensors(p('null.safetensors'), (await vlm.condition([{ prompt: '' }], { rewrite: false })).tensors);
  } finally {
    await vlm.close();
  }
  const base = { dit: p('dit', 'unifusion.onnx'), nullCondition: p('null.safetensors'), size: [16, 16] as [number, number], scheduler: { steps: 3, guidance: 3 } };
  await assemble({ ...base, vlm: p('vlm'), out: p('pipe') });
  await assemble({ ...base, out: p('pipe-novlm') });
  const latentCfg: UniFusionConfig = { ...PRESETS.tiny!, vlm: { ...VLMS.tiny, layers: 3 }, taps: [1, 2, 3] };
  const lg = ditGraph(latentCfg);
  await writeCompiled(p('dit-ext'), compileGraph(lg, { paramValues: randomParams([lg], 23), weights: 'external' }));
  writeDiffusersVae(p('vae-src'));
  await importHf(p('vae-src'), { out: p('vae') });
  await assemble({ ...base, dit: p('dit-ext', 'unifusion.onnx'), vae: p('vae'), vlm: p('vlm'), rewrite: true, systemPrompt: 'Describe the picture in five words.', out: p('pipe-vae-rw') });
  return { pipe: p('pipe'), noVlm: p('pipe-novlm'), vaeRewrite: p('pipe-vae-rw') };
}

// built once for both describes below
let foldersOnce: ReturnType<typeof tinyFolders> | undefined;
const sharedFolders = () => (foldersOnce ??= tinyFolders(tmp()));

describe('serve-web --pipeline with a pipeline folder', () => {
  let folders: Awaited<ReturnType<typeof tinyFolders>>;
  beforeAll(async () => {
    folders = await sharedFolders();
  }, 120_000);

  it('serves pipeline.json and exactly the files it hashes, after checking their sha256', async () => {
    const src = await pipelineFromDir(folders.pipe);
    expect(src.kind).toBe('folder');
    const json = JSON.parse(fs.readFileSync(path.join(folders.pipe, 'pipeline.json'), 'utf8')) as { files: Record<string, string> };
    expect([...src.files.keys()].sort()).toEqual(['pipeline.json', ...Object.keys(json.files)].sort());
    expect([...src.files.keys()].some((f) => f.startsWith('vlm/') && f.endsWith('tokenizer.json'))).toBe(true);
    const server = await serveWeb({ pipeline: src, page: new Map(), port: 0 });
    try {
      expect((await fetch(new URL('pipeline/pipeline.json', server.url))).status).toBe(200);
      expect((await fetch(new URL('pipeline/vlm/tokenizer.json', server.url))).status).toBe(200);
      expect((await fetch(new URL('pipeline/manifest.json', server.url))).status).toBe(404);
    } finally {
      await server.close();
    }
    // a changed part is refused before anything is served
    const bad = tmp();
    fs.cpSync(folders.pipe, bad, { recursive: true });
    fs.appendFileSync(path.join(bad, 'vlm', 'tokenizer.json'), ' ');
    await expect(serveWebCommand({ pipeline: bad, port: 0, quiet: true })).rejects.toThrow(/'vlm\/tokenizer.json' does not match the sha256 in pipeline.json/);
    // a hashed file that is a link out of the folder is refused, even with a matching sha256
    const outside = tmp();
    const linked = tmp();
    fs.cpSync(folders.pipe, linked, { recursive: true });
    fs.renameSync(path.join(linked, 'vlm', 'tokenizer.json'), path.join(outside, 'tokenizer.json'));
    fs.symlinkSync(path.join(outside, 'tokenizer.json'), path.join(linked, 'vlm', 'tokenizer.json'));
    await expect(pipelineFromDir(linked)).rejects.toThrow(/'vlm\/tokenizer.json' resolves outside the pipeline folder/);
  });
});

describe.skipIf(!chrome.path)(`a pipeline folder in headless Chromium (${chrome.why})`, () => {
  let folders: Awaited<ReturnType<typeof tinyFolders>>;
  beforeAll(async () => {
    folders = await sharedFolders();
  }, 120_000);

  async function runPage(dir: string, query: string) {
    const server = await serveWeb({ pipeline: await pipelineFromDir(dir), page: await pageFiles(), port: 0 });
    const { context, close } = await launchChromium(chrome.path!);
    const errors: string[] = [];
    try {
      const page = await context.newPage();
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${server.url}?${query}`);
      await page.waitForFunction(() => ['done', 'error'].includes((window as unknown as { unifusion?: { state: string } }).unifusion?.state ?? ''), null, { timeout: 120_000 });
      const got = await page.evaluate(() => {
        const api = (window as unknown as { unifusion: { state: string; kind?: string; ep?: string; error?: string; last?: { latent: Float64Array; meta: unknown } } }).unifusion;
        const c = document.getElementById('canvas') as HTMLCanvasElement;
        const img = c.getContext('2d')!.getImageData(0, 0, c.width, c.height);
        return { state: api.state, kind: api.kind, ep: api.ep, error: api.error, width: c.width, height: c.height, pixels: Array.from(img.data), latent: api.last ? Array.from(api.last.latent) : [], meta: api.last?.meta, status: document.getElementById('status')!.textContent, statusClass: document.getElementById('status')!.className, progress: (document.getElementById('progress') as HTMLProgressElement).value };
      });
      return { got, page, errors, close };
    } catch (e) {
      await close();
      throw e;
    } finally {
      await server.close();
    }
  }

  /** The page's image for a prompt and seed (pipeline defaults otherwise) against Node's Pipeline.generate on the same folder. */
  async function samePixels(dir: string, req: { prompt: string; seed: number }, shotName: string) {
    const { got, page, errors, close } = await runPage(dir, `prompt=${encodeURIComponent(req.prompt)}&seed=${req.seed}&autorun=1`);
    try {
      const art = process.env.UNIFUSION_ARTIFACT_DIR ?? path.join(ROOT, 'out', 'artifacts');
      fs.mkdirSync(art, { recursive: true });
      const shot = path.join(art, shotName);
      await page.screenshot({ path: shot, fullPage: true });
      expect(got.error).toBeUndefined();
      expect(got.state).toBe('done');
      expect(got.kind).toBe('folder');
      expect(got.ep).toBe('wasm');
      expect(got.progress).toBe(1);

      const pl = await Pipeline.load(dir);
      let ref;
      try {
        ref = (await pl.generate({ prompts: [req.prompt], seed: req.seed, progress: false })).images[0]!;
      } finally {
        await pl.close();
      }
      expect([got.width, got.height]).toEqual([ref.image.width, ref.image.height]);
      const meta = got.meta as typeof ref.meta;
      // everything: prompt, rewritten prompt, seed, steps, guidance, schedule, size, pipeline hash
      expect({ ...meta, sigmas: undefined }).toEqual({ ...ref.meta, sigmas: undefined });
      expect(meta.sigmas.map((v) => Math.fround(v))).toEqual(ref.meta.sigmas.map((v) => Math.fround(v)));
      expect(got.latent.length).toBe(ref.latent.length);
      const latentErr = Math.max(...got.latent.map((v, i) => Math.abs(v - ref.latent[i]!)));
      const n = ref.image.width * ref.image.height;
      const rgba = Array.from({ length: n * 4 }, (_, i) => (i % 4 === 3 ? 255 : ref.image.data[Math.floor(i / 4) * 3 + (i % 4)]!));
      const px = got.pixels.map((v, i) => Math.abs(v - rgba[i]!));
      console.log(
        `browser pipeline-folder test (${path.basename(dir)}): screenshot ${path.relative(process.cwd(), shot)}; ${got.status}; vs Node Pipeline.generate: latent max |diff| ${latentErr.toExponential(2)}, pixels max |diff| ${Math.max(...px)}, ${px.filter((d) => d > 0).length} of ${px.length} channel values differ`,
      );
      expect(latentErr).toBeLessThan(1e-3);
      expect(Math.max(...px)).toBeLessThanOrEqual(1);
      // not a degenerate (constant) image; a well-trained flat-colour pipeline has few distinct values, so count colours and coverage
      const colours = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const k = got.pixels.slice(4 * i, 4 * i + 3).join(',');
        colours.set(k, (colours.get(k) ?? 0) + 1);
      }
      expect(colours.size).toBeGreaterThanOrEqual(3);
      expect(Math.max(...colours.values()) / n).toBeLessThan(0.99);
      expect(errors).toEqual([]);
      return meta;
    } finally {
      await close();
    }
  }

  it('loads pipeline.json with its VLM, encodes the prompt (template dropped), samples with CFG against the null condition, draws pixels equal to Node Pipeline.generate', async () => {
    const meta = await samePixels(folders.pipe, { prompt: 'a red circle above a blue square', seed: 5 }, 'browser-pipeline-folder.png');
    expect(meta.rewritten_prompt).toBeUndefined();
    expect([meta.steps, meta.guidance]).toEqual([3, 3]);
  });

  it('VERIFI rewriting (KV-cache generation), a VAE decode and a DiT with external weights: the same image as Node', async () => {
    const files = Object.keys((JSON.parse(fs.readFileSync(path.join(folders.vaeRewrite, 'pipeline.json'), 'utf8')) as { files: Record<string, string> }).files);
    // the DiT's weights really are a separate data file the page must hand to onnxruntime-web
    expect(files.filter((f) => f.startsWith('dit/') && !/\.(onnx|json|ts)$/.test(f)).length).toBeGreaterThan(0);
    const meta = await samePixels(folders.vaeRewrite, { prompt: 'two green triangles', seed: 11 }, 'browser-pipeline-vae-rewrite.png');
    expect(typeof meta.rewritten_prompt).toBe('string');
    expect(meta.rewritten_prompt!.length).toBeGreaterThan(0);
  });

  // the demo's shipped pipeline (examples/shapes/pipeline, a trained shapes-world model) once it is in the tree
  const shapes = process.env.UNIFUSION_SHAPES_PIPELINE ?? path.join(ROOT, 'examples', 'shapes', 'pipeline');
  it.skipIf(!fs.existsSync(path.join(shapes, 'pipeline.json')))(`the demo's shapes pipeline (${path.relative(ROOT, shapes) || shapes}): the same rewritten prompt and image as Node`, async () => {
    const meta = await samePixels(shapes, { prompt: 'a red circle above a blue square', seed: 3 }, 'browser-shapes-pipeline.png');
    expect(meta.pipeline).toBe('shapes');
  }, 300_000);

  it('a bad request shows its error on the page (the runtime\'s own message), no image', async () => {
    const { got, errors, close } = await runPage(folders.pipe, 'prompt=x&seed=1&size=15&autorun=1');
    try {
      expect(got.state).toBe('error');
      expect(got.error).toMatch(/the width 15 is not a multiple of \d+/);
      expect(got.statusClass).toBe('error');
      expect(got.latent).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('a pipeline without a VLM: a clear error on the page, no image', async () => {
    const { got, errors, close } = await runPage(folders.noVlm, 'autorun=1');
    try {
      expect(got.state).toBe('error');
      expect(got.error).toMatch(/has no VLM \(pipeline.json parts.vlm is null\).*assemble it with --vlm/);
      expect(got.status).toMatch(/^error: .*has no VLM/);
      expect(got.statusClass).toBe('error');
      expect(got.latent).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });
});
