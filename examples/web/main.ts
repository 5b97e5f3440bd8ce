// The page: load the pipeline folder served at ./pipeline/ with onnxruntime-web (WebGPU when the
// browser has an adapter, else wasm; `?ep=wasm` forces one), then generate on submit: prompt and
// seed in, image on the canvas, a progress bar over the denoising steps. Bundled by esbuild
// (src/web/bundle.ts); `unifusion serve-web` serves it.
import * as ort from 'onnxruntime-web';
import { checkDenoiserManifest, generate, type DenoiserInfo, type DenoiserManifest, type Generated, type VelocityFn } from './pipeline.ts';
import { generateFolder, loadFolder, rgbToRgba, type LoadedFolder } from './folder.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(typeof location === 'undefined' ? '' : location.search);

/** What the browser test reads: the state, the last result, the execution provider. */
interface PageApi {
  state: 'loading' | 'ready' | 'running' | 'done' | 'error';
  ep?: string;
  error?: string;
  /** 'folder': a pipeline.json folder (folder.ts); 'step': a compiled denoiser step (pipeline.ts) */
  kind?: 'folder' | 'step';
  last?: { rgba: Uint8ClampedArray; width: number; height: number; latent: Float32Array | Float64Array; ms: number; meta?: unknown };
}
const api: PageApi = { state: 'loading' };

function setState(s: PageApi['state'], msg?: string): void {
  api.state = s;
  document.body.dataset.state = s;
  if (msg !== undefined) {
    const st = $('status');
    st.textContent = msg;
    st.className = s === 'error' ? 'error' : '';
  }
}

async function pickProviders(): Promise<string[]> {
  const forced = params.get('ep');
  if (forced === 'wasm' || forced === 'webgpu') return [forced];
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (gpu) {
    try {
      if (await gpu.requestAdapter()) return ['webgpu', 'wasm'];
    } catch {
      /* no adapter: wasm */
    }
  }
  return ['wasm'];
}

async function fetchOk(url: string): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
  return r;
}

function configureOrt(): void {
  // only the binary: the bundle carries its own JS glue (a URL prefix would make it fetch that too)
  ort.env.wasm.wasmPaths = { wasm: new URL('./ort-wasm-simd-threaded.jsep.wasm', location.href).href };
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
}

/** The served folder's kind: serve-web serves pipeline/pipeline.json only for a pipeline folder. */
async function folderKind(): Promise<'folder' | 'step'> {
  const r = await fetch('pipeline/pipeline.json', { method: 'HEAD' });
  return r.ok ? 'folder' : 'step';
}

async function loadStep(): Promise<{ run: VelocityFn; info: DenoiserInfo; manifest: DenoiserManifest }> {
  const manifest = (await (await fetchOk('pipeline/manifest.json')).json()) as DenoiserManifest;
  const info = checkDenoiserManifest(manifest, 'pipeline/manifest.json');
  const model = new Uint8Array(await (await fetchOk(`pipeline/${manifest.onnx}`)).arrayBuffer());
  const providers = await pickProviders();
  const options: ort.InferenceSession.SessionOptions = { executionProviders: providers };
  if (manifest.externalData) options.externalData = [{ path: manifest.externalData, data: `pipeline/${manifest.externalData}` }];
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(model, options);
    api.ep = providers[0];
  } catch (e) {
    if (providers[0] === 'wasm') throw e;
    session = await ort.InferenceSession.create(model, { ...options, executionProviders: ['wasm'] });
    api.ep = 'wasm';
  }
  const run: VelocityFn = async (f, s) => {
    const out = await session.run({
      input_ids: new ort.Tensor('int64', f.input_ids, s.input_ids),
      attention_mask: new ort.Tensor('bool', f.attention_mask, s.attention_mask),
      latents: new ort.Tensor('float32', f.latents, s.latents),
      timestep: new ort.Tensor('float32', f.timestep, s.timestep),
    });
    const v = out.velocity;
    if (!v) throw new Error('the model returned no velocity');
    return (await v.getData()) as Float32Array;
  };
  return { run, info, manifest };
}

function draw(g: { rgba: Uint8ClampedArray; width: number; height: number }): void {
  const canvas = $<HTMLCanvasElement>('canvas');
  canvas.width = g.width;
  canvas.height = g.height;
  canvas.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(g.rgba), g.width, g.height), 0, 0);
}

function readInputs(): Record<'prompt' | 'seed' | 'steps' | 'size', string> {
  const v = (k: string) => $<HTMLInputElement>(k).value;
  return { prompt: v('prompt'), seed: v('seed'), steps: v('steps'), size: v('size') };
}

/** Wire the form: `run(onStep)` makes one image; progress, status and errors go on the page. */
function wireForm(firstStatus: () => string, run: (onStep: (done: number, total: number) => Promise<void>) => Promise<NonNullable<PageApi['last']> & { what: string }>): void {
  const button = $<HTMLButtonElement>('run');
  const progress = $<HTMLProgressElement>('progress');
  button.disabled = false;
  setState('ready', `ready (${api.ep})`);
  $('form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (api.state === 'running') return;
    button.disabled = true;
    progress.value = 0;
    setState('running', firstStatus());
    const t0 = performance.now();
    try {
      const g = await run(async (done, total) => {
        progress.value = done / total;
        $('status').textContent = `denoising: ${done} / ${total}`;
        // let the progress bar repaint between steps
        await new Promise((r) => requestAnimationFrame(() => r(undefined)));
      });
      draw(g);
      api.last = { ...g, ms: performance.now() - t0 };
      setState('done', `done: ${g.what} in ${api.last.ms.toFixed(0)} ms on ${api.ep}`);
    } catch (e) {
      api.error = e instanceof Error ? e.message : String(e);
      setState('error', `error: ${api.error}`);
    } finally {
      button.disabled = false;
    }
  });
}

async function mainStep(): Promise<void> {
  const { run, info, manifest } = await loadStep();
  $('about').textContent = `${manifest.name}${manifest.preset ? ` (preset ${manifest.preset})` : ''}: ${manifest.paramCount.toLocaleString('en-US')} params, ${info.channels} latent channels, on ${api.ep}.`;
  wireForm(
    () => `denoising: 0 / ${$<HTMLInputElement>('steps').value}`,
    async (onStep) => {
      const i = readInputs();
      const req = { prompt: i.prompt, seed: Number(i.seed), steps: Number(i.steps), size: Number(i.size) };
      const g: Generated = await generate(run, info, req, onStep);
      return { ...g, ms: 0, what: `${req.steps} steps (seed ${req.seed})` };
    },
  );
}

async function fetchBytes(name: string): Promise<Uint8Array> {
  return new Uint8Array(await (await fetchOk(`pipeline/${name.split('/').map(encodeURIComponent).join('/')}`)).arrayBuffer());
}

async function mainFolder(): Promise<void> {
  const providers = await pickProviders();
  api.ep = providers[0];
  setState('loading', 'fetching the pipeline folder');
  let f: LoadedFolder;
  try {
    f = await loadFolder(fetchBytes, providers, (done, total, name) => ($('status').textContent = `fetching the pipeline folder: ${done} / ${total} files (${name})`));
  } catch (e) {
    // WebGPU can refuse a graph that wasm runs: retry once on wasm
    if (providers[0] === 'wasm' || (e instanceof Error && /has no VLM|pipeline\.json/.test(e.message))) throw e;
    api.ep = 'wasm';
    f = await loadFolder(fetchBytes, ['wasm']);
  }
  const j = f.json, sizeInput = $<HTMLInputElement>('size');
  $('about').textContent = `pipeline ${j.name}: ${j.parts.vae ? 'VAE latents' : 'pixel space'}, ${j.conditioning.taps.length} VLM taps (${j.conditioning.rewrite ? 'VERIFI rewriting by default' : 'prompts encoded as given'}), ${j.scheduler.steps} steps, guidance ${j.scheduler.guidance}; ${(f.bytes / 1e6).toFixed(1)} MB, on ${api.ep}.`;
  $('size-label').textContent = 'image size';
  $('prompt').removeAttribute('maxlength');
  sizeInput.min = String(j.resolutions.multiple);
  sizeInput.step = String(j.resolutions.multiple);
  sizeInput.max = '1024';
  if (params.get('size') === null) sizeInput.value = String(j.resolutions.default[0]);
  if (params.get('steps') === null) $<HTMLInputElement>('steps').value = String(j.scheduler.steps);
  const rewrite = params.get('rewrite');
  const rewriting = () => (rewrite !== null ? rewrite === '1' : j.conditioning.rewrite) && $<HTMLInputElement>('prompt').value.trim() !== '';
  wireForm(
    () => (rewriting() ? 'VERIFI: the VLM rewrites the prompt…' : 'encoding the prompt with the VLM…'),
    async (onStep) => {
      const i = readInputs();
      const req = { prompt: i.prompt, seed: Number(i.seed), steps: Number(i.steps), size: Number(i.size), ...(rewrite !== null ? { rewrite: rewrite === '1' } : {}) };
      if (!Number.isSafeInteger(req.seed) || req.seed < 0) throw new Error(`seed must be a non-negative integer, got '${i.seed}'`);
      let written = '';
      const r = await generateFolder(f, req, onStep, (t) => {
        written += t;
        $('status').textContent = `VERIFI: the VLM rewrites the prompt: ${written}`;
      });
      const im = r.images[0]!;
      return { rgba: rgbToRgba(im.image.data, im.image.width, im.image.height), width: im.image.width, height: im.image.height, latent: im.latent, meta: im.meta, ms: 0, what: `${im.meta.steps} steps, guidance ${im.meta.guidance} (seed ${req.seed})${im.meta.rewritten_prompt !== undefined ? `; rewritten: ${im.meta.rewritten_prompt}` : ''}` };
    },
  );
}

async function main(): Promise<void> {
  for (const k of ['prompt', 'seed', 'steps', 'size']) {
    const v = params.get(k);
    if (v !== null) $<HTMLInputElement>(k).value = v;
  }
  configureOrt();
  api.kind = await folderKind();
  await (api.kind === 'folder' ? mainFolder() : mainStep());
  if (params.get('autorun') === '1') $<HTMLFormElement>('form').requestSubmit();
}

// onnxruntime-web starts its wasm threads as workers of this same bundle: only the page runs the UI
if (typeof document !== 'undefined') {
  (window as unknown as { unifusion: PageApi }).unifusion = api;
  main().catch((e: unknown) => {
    api.error = e instanceof Error ? e.message : String(e);
    setState('error', `error: ${api.error}`);
  });
}
