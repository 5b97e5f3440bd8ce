// Benchmark: one denoise step (the conditional and unconditional rows of CFG in one batched call)
// of a mid DiT (bench/configs.ts DENOISE_STEP: 12 x 768, 12 heads, 32 x 32 image tokens, 256
// condition tokens), CPU fp32, 2 threads: ours (graphs/dit.ts compiled to ONNX, weights as
// initializers, runtime/session.ts on onnxruntime-node) vs the same DiT in PyTorch eager
// (bench/py/denoise_step_eager.py, same weights, F.scaled_dot_product_attention). The outputs are
// checked equal first; then the sides take turns in rounds, each turn after the machine is quiet,
// and a round in which other processes used more than 10% of the CPUs does not count.
//
//   npx tsx bench/denoise-step.ts [--rounds 4] [--per-round 1] [--warmup 1] [--budget-s 300]   -> one JSON line
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compileGraph } from '../src/compiler.ts';
import { dim, input, trace } from '../src/dsl/index.ts';
import { dimMul } from '../src/ir/dims.ts';
import { Rng } from '../src/ir/init.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../src/io/host.ts';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { DiT, ditParamCount } from '../graphs/dit.ts';
import { Session } from '../runtime/session.ts';
import { argValue, BENCH_DIR, foreignLoad, isMain, loadSnap, median, Peer, printJson, procStatusKB, python, REPO_ROOT, round, waitQuiet } from './lib.ts';
import { DENOISE_STEP } from './configs.ts';
import type { Target } from '../src/ir/target.ts';

const THREADS = 2;
const FOREIGN_MAX = 0.1;

export interface DenoiseStepResult {
  bench: 'denoise-step';
  config: typeof DENOISE_STEP & { params: number; image_tokens: number };
  threads: number;
  /** the fusion target the graph was compiled for (null: unfused) — `unifusion compile` defaults to cpu */
  target: Target | null;
  check: { max_abs_diff: number; max_abs_ref: number; rel: number };
  ours: { compile_ms: number; session_ms: number; median_ms: number; all_ms: number[]; peak_rss_mib: number };
  torch: { version: string; median_ms: number; all_ms: number[]; peak_rss_mib: number };
  ratio: number;
  goal: number;
  rounds: { ours_ms: number[]; torch_ms: number[]; foreign: [number, number]; clean: boolean }[];
}

/** The bench's DiT graph: latents, timestep, condition tokens (DiT width) + mask -> velocity. */
export function denoiseGraph(c = DENOISE_STEP) {
  return trace('dit_denoise', () => {
    const B = dim('batch'), S = dim('seq');
    const latents = input('latents', 'f32', [B, c.dit.channels, dimMul(dim('h'), c.dit.patch), dimMul(dim('w'), c.dit.patch)]);
    const timestep = input('timestep', 'f32', [B]);
    const tokens = input('condition', 'f32', [B, S, c.dit.hidden]);
    const mask = input('condition_mask', 'bool', [B, S]);
    return { velocity: new DiT(c.dit).forward(latents, timestep, { tokens, mask }) };
  });
}

/** Random weights, none at its zero init (adaLN-zero would make every block the identity). */
export function denoiseWeights(graph: ReturnType<typeof denoiseGraph>, seed = 1): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const p of graph.params()) {
    const { name, shape } = p.params;
    const r = new Rng(seed, name);
    const n = shape.reduce((a, b) => a * b, 1);
    const fan = shape.length === 2 ? shape[1]! : 1;
    const s = shape.length === 2 ? 1 / Math.sqrt(fan) : 0.1;
    out.set(name, fromFloat64('f32', [...shape], Float64Array.from({ length: n }, () => s * r.normal())));
  }
  return out;
}

export function denoiseInputs(c = DENOISE_STEP, seed = 2): Record<string, HostTensor> {
  const r = new Rng(seed, 'inputs');
  const B = c.batch, L = c.latent, S = c.condTokens, D = c.dit.hidden, C = c.dit.channels;
  return {
    latents: fromFloat64('f32', [B, C, L, L], Float64Array.from({ length: B * C * L * L }, () => r.normal())),
    timestep: fromFloat64('f32', [B], new Float64Array(B).fill(c.timestep)),
    condition: fromFloat64('f32', [B, S, D], Float64Array.from({ length: B * S * D }, () => r.normal())),
    condition_mask: fromFloat64('bool', [B, S], Array.from({ length: B * S }, (_, i) => (i % S < c.validTokens[Math.floor(i / S)]! ? 1 : 0))),
  };
}

export async function denoiseStep(rounds = 4, perRound = 1, warmup = 1, budgetMs = 300_000, target: Target | null = 'cpu'): Promise<DenoiseStepResult> {
  const c = DENOISE_STEP;
  const t0 = performance.now();
  const graph = denoiseGraph(c);
  const weights = denoiseWeights(graph);
  const compiled = compileGraph(graph, { paramValues: weights, weights: 'embed', ...(target ? { target } : {}) });
  const compileMs = performance.now() - t0;
  const feeds = denoiseInputs(c);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-bench-denoise-'));
  let peer: Peer | undefined;
  let session: Session | undefined;
  try {
    const file = path.join(dir, 'weights.safetensors'), outFile = path.join(dir, 'torch-velocity.safetensors');
    const all: Record<string, HostTensor> = Object.fromEntries(weights);
    for (const [k, v] of Object.entries(feeds)) all[`__${k}`] = v;
    writeSafetensors(file, all);
    const s0 = performance.now();
    session = await Session.load(encodeModel(compiled.emitted.model), { intraOpThreads: THREADS });
    const sessionMs = performance.now() - s0;
    const ours = async (k: number) => {
      const ms: number[] = [];
      for (let i = 0; i < k; i++) {
        const t = performance.now();
        await session!.run(feeds, ['velocity']);
        ms.push(performance.now() - t);
      }
      return ms;
    };
    const v = toFloat64((await session.run(feeds, ['velocity'])).velocity!);
    const child = spawn(python(), [path.join(BENCH_DIR, 'py', 'denoise_step_eager.py'), '--serve', '--weights', file, '--config', JSON.stringify(c.dit), '--out-file', outFile, '--threads', String(THREADS), '--warmup', String(warmup)], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    peer = new Peer(child);
    await ours(warmup);
    const ready = await peer.next<{ ready: boolean; torch: string; threads: number }>();
    const tv = toFloat64(readSafetensors(outFile).tensors.get('velocity')!);
    let diff = 0, ref = 0;
    for (let i = 0; i < v.length; i++) (diff = Math.max(diff, Math.abs(v[i]! - tv[i]!))), (ref = Math.max(ref, Math.abs(tv[i]!)));
    const check = { max_abs_diff: diff, max_abs_ref: ref, rel: diff / ref };
    if (!(check.rel < 1e-3)) throw new Error(`PyTorch and ours disagree on the denoise step: max |diff| ${diff} of max |ref| ${ref}`);

    const pids = [child.pid!];
    const turn = async (fn: () => Promise<number[]>) => {
      await waitQuiet(0.15, 30_000);
      const a = loadSnap(pids);
      const ms = await fn();
      return { ms, foreign: foreignLoad(a, loadSnap(pids)) };
    };
    const recs: DenoiseStepResult['rounds'] = [];
    const tr = performance.now();
    for (let r = 0; recs.filter((x) => x.clean).length < rounds && performance.now() - tr < budgetMs; r++) {
      let a, b;
      if (r % 2 === 0) (a = await turn(() => ours(perRound))), (b = await turn(() => peer!.run(perRound)));
      else (b = await turn(() => peer!.run(perRound))), (a = await turn(() => ours(perRound)));
      recs.push({ ours_ms: a.ms.map((x) => round(x, 1)), torch_ms: b.ms.map((x) => round(x, 1)), foreign: [round(a.foreign, 3), round(b.foreign, 3)], clean: a.foreign <= FOREIGN_MAX && b.foreign <= FOREIGN_MAX });
    }
    const used = recs.some((x) => x.clean) ? recs.filter((x) => x.clean) : recs;
    const oursMs = used.flatMap((x) => x.ours_ms), torchMs = used.flatMap((x) => x.torch_ms);
    const mem = await peer.request<{ vmhwm_kb: number }>('mem');
    const hw = c.latent / c.dit.patch;
    return {
      bench: 'denoise-step',
      config: { ...c, params: ditParamCount(c.dit), image_tokens: hw * hw },
      threads: THREADS,
      target,
      check,
      ours: { compile_ms: round(compileMs, 0), session_ms: round(sessionMs, 0), median_ms: round(median(oursMs), 1), all_ms: oursMs, peak_rss_mib: round(procStatusKB('VmHWM') / 1024, 1) },
      torch: { version: ready.torch, median_ms: round(median(torchMs), 1), all_ms: torchMs, peak_rss_mib: round(mem.vmhwm_kb / 1024, 1) },
      ratio: round(median(oursMs) / median(torchMs), 3),
      goal: 0.8,
      rounds: recs,
    };
  } finally {
    peer?.close();
    await session?.release();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `--target cpu|cuda|webgpu|portable|none` (default cpu, as `unifusion compile`; none = unfused) */
function targetArg(): Target | null {
  const i = process.argv.indexOf('--target');
  const v = i >= 0 ? process.argv[i + 1] : 'cpu';
  if (v === 'none') return null;
  if (!v || !['cpu', 'cuda', 'webgpu', 'portable'].includes(v)) throw new Error(`--target: expected cpu, cuda, webgpu, portable or none, got '${v}'`);
  return v as Target;
}

if (isMain(import.meta.url)) {
  printJson(await denoiseStep(argValue('rounds', 4), argValue('per-round', 1), argValue('warmup', 1), argValue('budget-s', 300) * 1000, targetArg()));
}
