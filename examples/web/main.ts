// The page: load the pipeline folder served at ./pipeline/ with onnxruntime-web (WebGPU when the
// browser has an adapter, else wasm; `?ep=wasm` forces one), then generate on submit: prompt and
// seed in, image on the canvas, a progress bar over the denoising steps. Bundled by esbuild
// (src/web/bundle.ts); `unifusion serve-web` serves it.
import * as ort from 'onnxruntime-web';
import { checkDenoiserManifest, generate, type DenoiserInfo, type DenoiserManifest, type Generated, type VelocityFn } from './pipeline.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(typeof location === 'undefined' ? '' : location.search);

/** What the browser test reads: the state, the last result, the execution provider. */
interface PageApi {
  state: 'loading' | 'ready' | 'running' | 'done' | 'error';
  ep?: string;
  error?: string;
  last?: Generated & { ms: number };
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

async function load(): Promise<{ run: VelocityFn; info: DenoiserInfo; manifest: DenoiserManifest }> {
  // only the binary: the bundle carries its own JS glue (a URL prefix would make it fetch that too)
  ort.env.wasm.wasmPaths = { wasm: new URL('./ort-wasm-simd-threaded.jsep.wasm', location.href).href };
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
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

function draw(g: Generated): void {
  const canvas = $<HTMLCanvasElement>('canvas');
  canvas.width = g.width;
  canvas.height = g.height;
  canvas.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(g.rgba), g.width, g.height), 0, 0);
}

async function main(): Promise<void> {
  for (const k of ['prompt', 'seed', 'steps', 'size']) {
    const v = params.get(k);
    if (v !== null) $<HTMLInputElement>(k).value = v;
  }
  const { run, info, manifest } = await load();
  $('about').textContent = `${manifest.name}${manifest.preset ? ` (preset ${manifest.preset})` : ''}: ${manifest.paramCount.toLocaleString('en-US')} params, ${info.channels} latent channels, on ${api.ep}.`;
  const button = $<HTMLButtonElement>('run');
  const progress = $<HTMLProgressElement>('progress');
  button.disabled = false;
  setState('ready', `ready (${api.ep})`);
  $('form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (api.state === 'running') return;
    const req = {
      prompt: $<HTMLInputElement>('prompt').value,
      seed: Number($<HTMLInputElement>('seed').value),
      steps: Number($<HTMLInputElement>('steps').value),
      size: Number($<HTMLInputElement>('size').value),
    };
    button.disabled = true;
    progress.value = 0;
    setState('running', `denoising: 0 / ${req.steps}`);
    const t0 = performance.now();
    try {
      const g = await generate(run, info, req, async (done, total) => {
        progress.value = done / total;
        $('status').textContent = `denoising: ${done} / ${total}`;
        // let the progress bar repaint between steps
        await new Promise((r) => requestAnimationFrame(() => r(undefined)));
      });
      draw(g);
      api.last = { ...g, ms: performance.now() - t0 };
      setState('done', `done: ${req.steps} steps in ${api.last.ms.toFixed(0)} ms on ${api.ep} (seed ${req.seed})`);
    } catch (e) {
      api.error = e instanceof Error ? e.message : String(e);
      setState('error', `error: ${api.error}`);
    } finally {
      button.disabled = false;
    }
  });
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
