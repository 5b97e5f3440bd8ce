// Benchmark: `sample` end to end on tiny pipelines, with the time breakdown the sample command
// reports (load + verify, rewrite, encode, denoise, decode, PNG writing), 2 threads:
//   vae    the tiny preset's DiT (4 x 32) on 4 latent channels + a tiny AutoencoderKL (factor 2),
//          4 prompts x 2 images at 32 x 32, 20 Euler steps, CFG 3 (cond + uncond batched)
//   pixel  a pixel-space DiT of the tiny preset's shapes (3 channels, patch 4) at 48 x 48 (the
//          shapes-world demo's size), 64 images, 20 steps, CFG 3, in batches of 32
// Conditions are precomputed (the VLM runtime is not in this build): rewrite and encode are ~0 here.
//
//   npx tsx bench/sample.ts   -> one JSON line
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compileGraph, writeCompiled } from '../src/compiler.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { importHf } from '../src/cli/import-hf.ts';
import { writeSamples } from '../src/cli/sample.ts';
import { assemble, Pipeline } from '../runtime/pipeline/index.ts';
import { PRESETS } from '../graphs/presets.ts';
import { ditGraph, randomCondition, randomParams, writeDiffusersVae } from '../test/helpers/pipeline-fixtures.ts';
import { isMain, printJson, round, waitQuiet } from './lib.ts';

const THREADS = 2;

export interface SampleCase {
  name: string;
  images: number;
  size: string;
  steps: number;
  guidance: number;
  load_ms: number;
  rewrite_ms: number;
  encode_ms: number;
  denoise_ms: number;
  decode_ms: number;
  write_ms: number;
  total_ms: number;
  dit_calls: number;
  ms_per_image: number;
}

export interface SampleBenchResult {
  bench: 'sample';
  threads: number;
  note: string;
  cases: SampleCase[];
}

async function runCase(name: string, dir: string, o: { prompts: number; images: number; size: number; steps: number; guidance: number; batch?: number }): Promise<SampleCase> {
  await waitQuiet(0.15, 60_000);
  const t0 = performance.now();
  const pipe = await Pipeline.load(dir, { intraOpThreads: THREADS });
  const loadMs = performance.now() - t0;
  const cond = randomCondition(PRESETS.tiny!.taps, 32, Array.from({ length: o.prompts }, (_, i) => 4 + (i % 5)), 3);
  const r = await pipe.generate({ prompts: Array.from({ length: o.prompts }, (_, i) => `prompt ${i}`), conditions: cond, numImages: o.images / o.prompts, steps: o.steps, guidance: o.guidance, width: o.size, height: o.size, seed: 0, maxBatch: o.batch, progress: false });
  const t1 = performance.now();
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-bench-sample-out-'));
  fs.rmdirSync(out);
  await writeSamples(out, r, { inputs: [{ path: dir, what: '--pipeline' }], command: 'sample' });
  const writeMs = performance.now() - t1;
  fs.rmSync(out, { recursive: true, force: true });
  await pipe.close();
  const total = performance.now() - t0;
  const t = r.timings;
  return {
    name,
    images: r.images.length,
    size: `${o.size}x${o.size}`,
    steps: o.steps,
    guidance: o.guidance,
    load_ms: round(loadMs, 0),
    rewrite_ms: round(t.rewriteMs, 1),
    encode_ms: round(t.encodeMs, 1),
    denoise_ms: round(t.denoiseMs, 0),
    decode_ms: round(t.decodeMs, 0),
    write_ms: round(writeMs, 0),
    total_ms: round(total, 0),
    dit_calls: r.evaluations,
    ms_per_image: round(total / r.images.length, 1),
  };
}

export async function sampleBench(): Promise<SampleBenchResult> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-bench-sample-'));
  const p = (...xs: string[]) => path.join(tmp, ...xs);
  try {
    const tiny = PRESETS.tiny!;
    // vae pipeline
    const g = ditGraph(tiny);
    await writeCompiled(p('dit'), compileGraph(g, { paramValues: randomParams([g], 1) }));
    writeDiffusersVae(p('vae-src'));
    await importHf(p('vae-src'), { out: p('vae') });
    writeSafetensors(p('null.safetensors'), randomCondition(tiny.taps, 32, [1], 2));
    await assemble({ dit: p('dit', 'unifusion.onnx'), vae: p('vae'), nullCondition: p('null.safetensors'), out: p('pipe-vae'), size: [32, 32] });
    // pixel pipeline
    const pcfg = { ...tiny, dit: { ...tiny.dit, channels: 3, patch: 4 } };
    const pg = ditGraph(pcfg);
    await writeCompiled(p('pdit'), compileGraph(pg, { paramValues: randomParams([pg], 1) }));
    await assemble({ dit: p('pdit', 'unifusion.onnx'), nullCondition: p('null.safetensors'), out: p('pipe-pixel'), size: [48, 48] });
    const cases = [
      await runCase('vae: tiny DiT + tiny VAE', p('pipe-vae'), { prompts: 4, images: 8, size: 32, steps: 20, guidance: 3 }),
      await runCase('pixel: tiny DiT, 48x48, batches of 32', p('pipe-pixel'), { prompts: 8, images: 64, size: 48, steps: 20, guidance: 3, batch: 32 }),
    ];
    return { bench: 'sample', threads: THREADS, note: 'conditions precomputed (no VLM runtime in this build): rewrite/encode ~0', cases };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) printJson(await sampleBench());
