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
import { argValue, isMain, printJson, round, waitQuiet } from './lib.ts';

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

export interface SplitBenchResult {
  bench: 'sample-split';
  threads: number;
  config: string;
  images: number;
  steps: number;
  rounds: number;
  /** median denoise ms per run of all the images, split graphs vs the single graph */
  split_ms: number;
  single_ms: number;
  /** single / split */
  speedup: number;
}

/**
 * The split graphs (condition tokens once per prompt, the DiT per step on them) vs the single
 * graph that re-runs LAP + refiner + projection at every step, on the shapes demo's shapes: LAP
 * over 3 taps of a 96-wide VLM, refiner 2 blocks, DiT 4 x 96, 8-px patches, 48 x 48 pixel space,
 * 10 Euler steps with CFG (cond + uncond batched), conditions of 12..30 tokens. The same pipeline
 * folder, both paths interleaved per round; outputs checked equal first.
 */
export async function splitBench(rounds = 5, quietMs = 30_000): Promise<SplitBenchResult> {
  const { writeSafetensors: write } = await import('../src/io/safetensors.ts');
  const { trace } = await import('../src/dsl/index.ts');
  const { uniFusionForward } = await import('../graphs/unifusion.ts');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-bench-split-'));
  const p = (...xs: string[]) => path.join(tmp, ...xs);
  try {
    const tiny = PRESETS.tiny!;
    const cfg = {
      ...tiny,
      vlm: { ...tiny.vlm, layers: 4, hidden: 96, heads: 4, kvHeads: 2, headDim: 24 },
      taps: [0, 2, 4],
      lap: { heads: 2, kvHeads: 1, ffn: 64 },
      refiner: { blocks: 2, heads: 4, ffn: 192 },
      dit: { ...tiny.dit, hidden: 96, depth: 4, heads: 4, kvHeads: 4, ffn: 256, channels: 3, patch: 8, ropeAxes: [8, 8, 8] },
      prediction: 'x0' as const,
    };
    const g = trace('unifusion', () => ({ velocity: uniFusionForward(cfg).velocity }));
    fs.mkdirSync(p('run'));
    write(p('run', 'params.safetensors'), randomParams([g], 5));
    fs.writeFileSync(p('run', 'unifusion.json'), JSON.stringify({ format: 'unifusion-run-model', config: cfg, latent: { kind: 'pixel', channels: 3, patch: 8, factor: 1, shift: 0, scale: 1 }, size: [48, 48] }));
    const prompts = 16, perPrompt = 4, steps = 10;
    write(p('null.safetensors'), randomCondition(cfg.taps, 96, [1], 2));
    await assemble({ dit: p('run'), nullCondition: p('null.safetensors'), out: p('pipe'), scheduler: { steps, guidance: 3, shift: 3 } });
    const cond = randomCondition(cfg.taps, 96, Array.from({ length: prompts }, (_, i) => 12 + ((i * 7) % 19)), 3);
    const pipes = { split: await Pipeline.load(p('pipe'), { intraOpThreads: THREADS }), single: await Pipeline.load(p('pipe'), { intraOpThreads: THREADS, split: false }) };
    const run = (which: 'split' | 'single') => pipes[which].generate({ prompts: Array.from({ length: prompts }, (_, i) => `p${i}`), conditions: cond, numImages: perPrompt, seed: 0, progress: false });
    const a = await run('split'), b = await run('single');
    let err = 0, ref = 0;
    a.images.forEach((im, k) => im.latent.forEach((v, j) => ((err = Math.max(err, Math.abs(v - b.images[k]!.latent[j]!))), (ref = Math.max(ref, Math.abs(v))))));
    if (!(err / ref < 1e-4)) throw new Error(`split and single graphs disagree: ${err / ref}`);
    const times = { split: [] as number[], single: [] as number[] };
    for (let r = 0; r < rounds; r++)
      for (const which of (r % 2 ? ['single', 'split'] : ['split', 'single']) as ('split' | 'single')[]) {
        await waitQuiet(0.15, quietMs);
        times[which].push((await run(which)).timings.denoiseMs);
      }
    await pipes.split.close();
    await pipes.single.close();
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    return { bench: 'sample-split', threads: THREADS, config: 'LAP 3 taps x 96, refiner 2 x 96, DiT 4 x 96, patch 8, 48x48 pixel, x0', images: prompts * perPrompt, steps, rounds, split_ms: round(med(times.split), 0), single_ms: round(med(times.single), 0), speedup: round(med(times.single) / med(times.split), 2) };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) printJson(process.argv.includes('--split') ? await splitBench(argValue('rounds', 5), argValue('quiet-ms', 30_000)) : await sampleBench());
