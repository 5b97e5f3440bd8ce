// Benchmark: greedy generation of a small random Qwen2 (8 layers x 512, 8 heads / 4 kv heads,
// SwiGLU 1536, vocab 32k, untied head; 256-token prompts, 128 new tokens), CPU fp32, 1 and 2
// threads (both sides the same count; a peer process per count):
// our generation graph (graphs/vlm/generation.ts, one graph for prefill and decode) driven by
// runtime/vlm/generate.ts in onnxruntime-node, vs transformers' generate (PyTorch eager,
// DynamicCache) in a Python child (bench/py/decode_eager.py), same weights, same prompts.
//
// The peer makes the model and saves it as a Hugging Face folder; we compile its generation graph
// (no taps) with those weights. Before timing, the greedy tokens of both sides are compared
// (batch 1 and 4). Then rounds, each waiting for a quiet machine, take turns: ours with the KV
// cache fed back as onnxruntime's own output tensors ('reuse'), ours with present.* pre-allocated
// in JS and written by onnxruntime ('preallocate'), torch. Reported per batch size: prefill
// tokens/s (B x 256 / prefill time) and decode tokens/s (B x 127 / time of the 127 decode
// forwards; torch: generate() minus one separate prefill of the same batch), medians over rounds,
// ours / torch ratios, KV-cache bytes per token, peak RSS.
//
// Why 1 thread too: on this shared 2-core machine, PyTorch's 2-thread eager decode (OpenMP
// barriers around every small op) slows down several-fold whenever another process runs, far more
// than onnxruntime's thread pool; the 1-thread figures are the ones load barely moves.
//
//   npx tsx bench/decode.ts [--rounds 3] [--new 128] [--prompt 256] [--threads 1,2]   -> one JSON line
//
// Ours vs ours (no Python peer): `--target cpu[,cuda,...]` compiles the same generation graph (same
// config, seeded random weights) unfused and fused for each target, checks the greedy tokens of
// each fused graph against the unfused one, and times them in interleaved rounds on the CPU EP
// ('reuse' cache), reporting decode / prefill tokens/s and the fused / unfused ratios. A cuda or
// webgpu graph runs on the CPU EP too (its ops all have CPU kernels): what that measures is the
// graph's form (e.g. kv_sdpa's Attention-23 with past -> present), not that EP's kernels.
//
// A side `T/-rule` is target T without one of its fusion rules (e.g. cpu/-sdpa), to see which
// fusion a difference comes from.
//
//   npx tsx bench/decode.ts --target cpu,cuda[,cpu/-sdpa] [--rounds 3] [--new 128] [--prompt 256] [--threads 2]
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { argValue, BENCH_DIR, isMain, median, Peer, printJson, procStatusKB, python, round, waitQuiet } from './lib.ts';
import { buildGenerationGraph } from '../graphs/vlm/generation.ts';
import { compileGraph } from '../src/compiler.ts';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import type { HostTensor } from '../src/io/host.ts';
import { Session } from '../runtime/session.ts';
import { generate, type GenerateOptions } from '../runtime/vlm/generate.ts';
import { samplingSettings } from '../runtime/vlm/sampling.ts';
import { Rng } from '../src/ir/init.ts';
import { isTarget, TARGETS, type Target } from '../src/ir/target.ts';
import { pipelineFor } from '../src/passes/pipeline.ts';
import { TARGET_TABLE } from '../src/passes/fusion/targets.ts';

export const CFG = { layers: 8, hidden: 512, heads: 8, kvHeads: 4, intermediate: 1536, vocab: 32000, prompt: 256, newTokens: 128, batches: [1, 4] };

interface Side {
  prefill_ms: number[];
  decode_ms: number[];
}

export interface BatchFigures {
  [batch: string]: {
    ours_reuse: { prefill_tok_s: number; decode_tok_s: number };
    ours_preallocate: { prefill_tok_s: number; decode_tok_s: number };
    torch: { prefill_tok_s: number; decode_tok_s: number };
    decode_ratio: number;
    prefill_ratio: number;
  };
}

export interface DecodeBenchResult {
  bench: 'decode';
  config: typeof CFG & { params: number };
  rounds: number;
  tokens_equal: Record<string, boolean>;
  kv_cache_bytes_per_token: number;
  /** by intra-op thread count (both sides), then batch size */
  threads: Record<string, BatchFigures>;
  goal_decode_ratio: number;
  met: boolean;
  peak_rss_mib: { ours: number; torch: number };
  versions: { torch: string; transformers: string };
  load: { waited_s: number; busy_max: number };
}

async function main(): Promise<void> {
  const rounds = argValue('rounds', 3);
  const ti = process.argv.indexOf('--threads');
  const threadList = (ti >= 0 ? process.argv[ti + 1]! : '1,2').split(',').map(Number);
  if (threadList.some((x) => !Number.isInteger(x) || x < 1)) throw new Error('--threads: a comma-separated list of thread counts');
  CFG.newTokens = argValue('new', CFG.newTokens);
  CFG.prompt = argValue('prompt', CFG.prompt);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-bench-decode-'));
  try {
    const py = python();
    const script = path.join(BENCH_DIR, 'py', 'decode_eager.py');
    const common = ['--layers', CFG.layers, '--hidden', CFG.hidden, '--heads', CFG.heads, '--kv-heads', CFG.kvHeads, '--intermediate', CFG.intermediate, '--vocab', CFG.vocab, '--prompt', CFG.prompt, '--batch', Math.max(...CFG.batches), '--new', CFG.newTokens].map(String);
    const made = await new Promise<{ params: number; torch: string; transformers: string }>((resolve, reject) => {
      const c = spawn(py, [script, '--make', dir, ...common], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`decode_eager.py --make exited ${code}`))));
    });

    // our graph: compiled with the peer's weights, no taps
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const g = buildGenerationGraph(config, {});
    const graph = g.trace();
    const weights = readSafetensors(path.join(dir, 'model.safetensors')).tensors;
    const pv = new Map<string, HostTensor>();
    for (const p of graph.params()) pv.set(p.params.name, weights.get(g.checkpointNames(p.params.name).find((n) => weights.has(n))!)!);
    const bytes = encodeModel(compileGraph(graph, { weights: 'embed', paramValues: pv }).emitted.model);
    weights.clear();
    pv.clear();
    const prompts = JSON.parse(fs.readFileSync(path.join(dir, 'prompts.json'), 'utf8')) as number[][];
    const opts = (cache: 'reuse' | 'preallocate'): GenerateOptions => ({ maxNewTokens: CFG.newTokens, sampling: samplingSettings({}), stopIds: [], padId: 0, cache });

    const tokensEqual: Record<string, boolean> = {};
    const sides: Record<string, Record<string, Record<'reuse' | 'preallocate' | 'torch', Side>>> = {};
    let waited = 0, busyMax = 0, torchRss = 0;
    for (const th of threadList) {
      const session = await Session.load(bytes, { intraOpThreads: th });
      const model = { session, cfg: g.config, taps: [] };
      const child = spawn(py, [script, '--serve', dir, ...common, '--threads', String(th)], { stdio: ['pipe', 'pipe', 'pipe'] });
      const peer = new Peer(child);
      await peer.next();
      if (th === threadList[0])
        for (const B of CFG.batches) {
          process.stderr.write(`bench decode: checking tokens, batch ${B}\n`);
          const ours = await generate(model, prompts.slice(0, B), opts('reuse'));
          const theirs = (await peer.request<{ tokens: number[][] }>(`gen ${B}`)).tokens;
          tokensEqual[B] = JSON.stringify(ours.rows.map((r) => r.tokens)) === JSON.stringify(theirs);
          const pre = await generate(model, prompts.slice(0, B), opts('preallocate'));
          if (JSON.stringify(pre.rows) !== JSON.stringify(ours.rows)) throw new Error('preallocated KV outputs changed the tokens');
        }
      const per: Record<string, Record<'reuse' | 'preallocate' | 'torch', Side>> = (sides[th] = {});
      for (const B of CFG.batches) per[B] = { reuse: { prefill_ms: [], decode_ms: [] }, preallocate: { prefill_ms: [], decode_ms: [] }, torch: { prefill_ms: [], decode_ms: [] } };
      for (let r = 0; r < rounds; r++)
        for (const B of CFG.batches)
          for (const mode of ['reuse', 'preallocate', 'torch'] as const) {
            const q = await waitQuiet();
            waited += q.waitedMs;
            busyMax = Math.max(busyMax, q.busy);
            process.stderr.write(`bench decode: ${th} thread(s), round ${r + 1}/${rounds}, batch ${B}, ${mode}\n`);
            if (mode === 'torch') {
              const t = await peer.request<Side>(`run ${B} 1`);
              per[B]!.torch.prefill_ms.push(...t.prefill_ms);
              per[B]!.torch.decode_ms.push(...t.decode_ms);
            } else {
              const res = await generate(model, prompts.slice(0, B), opts(mode));
              per[B]![mode].prefill_ms.push(res.stats.prefillMs);
              per[B]![mode].decode_ms.push(res.stats.decodeMs);
            }
          }
      torchRss = Math.max(torchRss, (await peer.request<{ vmhwm_kb: number }>('mem')).vmhwm_kb);
      peer.close();
      await session.release();
    }

    const t = CFG.layers * 2 * CFG.kvHeads * (CFG.hidden / CFG.heads) * 4;
    const rate = (s: Side, B: number) => ({ prefill_tok_s: round((B * CFG.prompt) / (median(s.prefill_ms) / 1000), 1), decode_tok_s: round((B * (CFG.newTokens - 1)) / (median(s.decode_ms) / 1000), 1) });
    const byThreads: Record<string, BatchFigures> = {};
    for (const th of threadList) {
      const batch: BatchFigures = (byThreads[th] = {});
      for (const B of CFG.batches) {
        const s = sides[th]![B]!;
        const best = rate(s.reuse, B).decode_tok_s >= rate(s.preallocate, B).decode_tok_s ? rate(s.reuse, B) : rate(s.preallocate, B);
        const tr = rate(s.torch, B);
        batch[B] = { ours_reuse: rate(s.reuse, B), ours_preallocate: rate(s.preallocate, B), torch: tr, decode_ratio: round(best.decode_tok_s / tr.decode_tok_s, 3), prefill_ratio: round(best.prefill_tok_s / tr.prefill_tok_s, 3) };
      }
    }
    const goal = 1.5;
    const result: DecodeBenchResult = {
      bench: 'decode',
      config: { ...CFG, params: made.params },
      rounds,
      tokens_equal: tokensEqual,
      kv_cache_bytes_per_token: t,
      threads: byThreads,
      goal_decode_ratio: goal,
      met: Object.values(byThreads).every((bt) => Object.values(bt).every((b) => b.decode_ratio >= goal)),
      peak_rss_mib: { ours: round(procStatusKB('VmHWM') / 1024, 1), torch: round(torchRss / 1024, 1) },
      versions: { torch: made.torch, transformers: made.transformers },
      load: { waited_s: round(waited / 1000, 1), busy_max: round(busyMax, 2) },
    };
    printJson(result);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** CFG as a Qwen2 config.json (what decode_eager.py --make writes, without Python). */
function qwen2Config(): object {
  return {
    model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], hidden_act: 'silu', hidden_size: CFG.hidden, intermediate_size: CFG.intermediate, num_hidden_layers: CFG.layers,
    num_attention_heads: CFG.heads, num_key_value_heads: CFG.kvHeads, vocab_size: CFG.vocab, rms_norm_eps: 1e-6, rope_parameters: { rope_theta: 10000, rope_type: 'default' },
    max_position_embeddings: 4096, tie_word_embeddings: false, use_sliding_window: false, sliding_window: null, eos_token_id: 2, pad_token_id: 0,
  };
}

export interface FusedDecodeResult {
  bench: 'decode-fused';
  config: typeof CFG;
  rounds: number;
  threads: number;
  /** greedy tokens of each fused graph == the unfused graph's (batch 1 and 4) */
  tokens_equal: Record<string, Record<string, boolean>>;
  /** fused node counts per target (IR kinds) */
  fused: Record<string, Record<string, number>>;
  /** per side ('unfused' or a target), per batch: medians over rounds */
  figures: Record<string, Record<string, { prefill_tok_s: number; decode_tok_s: number }>>;
  /** per target, per batch: fused / unfused decode and prefill tokens/s */
  ratios: Record<string, Record<string, { decode: number; prefill: number }>>;
  load: { waited_s: number; busy_max: number; loadavg_1m_start: number; loadavg_1m_end: number };
}

/** Ours vs ours: the unfused generation graph vs the graph fused for each target, same weights, interleaved. */
async function fusedVsUnfused(targets: string[], rounds: number, threads: number): Promise<void> {
  const load0 = os.loadavg()[0]!;
  const g = buildGenerationGraph(qwen2Config(), {});
  const graph = g.trace();
  const rng = new Rng(1, 'bench-decode');
  const pv = new Map<string, HostTensor>();
  for (const p of graph.params()) {
    const n = p.params.shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    const norm = p.params.name.endsWith('norm.weight');
    for (let i = 0; i < n; i++) d[i] = norm ? 1 + 0.1 * rng.normal() : 0.05 * rng.normal();
    pv.set(p.params.name, { dtype: 'f32', shape: [...p.params.shape], data: d });
  }
  const sides: string[] = ['unfused', ...targets];
  const sessions = new Map<string, Session>();
  const fusedCounts: Record<string, Record<string, number>> = {};
  for (const side of sides) {
    const [t, drop] = side.split('/-') as [Target, string | undefined];
    const passes = drop ? pipelineFor(t, { rules: TARGET_TABLE[t].rules.filter((r) => r !== drop) }) : undefined;
    const c = compileGraph(graph, { weights: 'embed', paramValues: pv, ...(side === 'unfused' ? {} : { target: t, passes }) });
    if (side !== 'unfused') fusedCounts[side] = c.manifest.fused;
    sessions.set(side, await Session.load(encodeModel(c.emitted.model), { intraOpThreads: threads }));
  }
  pv.clear();
  const prng = new Rng(2, 'prompts');
  const prompts = Array.from({ length: Math.max(...CFG.batches) }, () => Array.from({ length: CFG.prompt }, () => 3 + Math.floor(prng.uniform() * (CFG.vocab - 3))));
  const opts: GenerateOptions = { maxNewTokens: CFG.newTokens, sampling: samplingSettings({}), stopIds: [], padId: 0, cache: 'reuse' };
  const model = (side: string) => ({ session: sessions.get(side)!, cfg: g.config, taps: [] });
  const tokensEqual: Record<string, Record<string, boolean>> = {};
  for (const B of CFG.batches) {
    process.stderr.write(`bench decode: checking tokens, batch ${B}\n`);
    const want = JSON.stringify((await generate(model('unfused'), prompts.slice(0, B), opts)).rows.map((r) => r.tokens));
    for (const t of targets) (tokensEqual[t] ??= {})[B] = JSON.stringify((await generate(model(t), prompts.slice(0, B), opts)).rows.map((r) => r.tokens)) === want;
  }
  const per: Record<string, Record<string, Side>> = {};
  for (const side of sides) per[side] = Object.fromEntries(CFG.batches.map((B) => [B, { prefill_ms: [], decode_ms: [] }]));
  let waited = 0, busyMax = 0;
  for (let r = 0; r < rounds; r++)
    for (const B of CFG.batches)
      for (const side of r % 2 ? [...sides].reverse() : sides) {
        const q = await waitQuiet();
        waited += q.waitedMs;
        busyMax = Math.max(busyMax, q.busy);
        process.stderr.write(`bench decode: round ${r + 1}/${rounds}, batch ${B}, ${side}\n`);
        const res = await generate(model(side), prompts.slice(0, B), opts);
        per[side]![B]!.prefill_ms.push(res.stats.prefillMs);
        per[side]![B]!.decode_ms.push(res.stats.decodeMs);
      }
  for (const s of sessions.values()) await s.release();
  const rate = (s: Side, B: number) => ({ prefill_tok_s: round((B * CFG.prompt) / (median(s.prefill_ms) / 1000), 1), decode_tok_s: round((B * (CFG.newTokens - 1)) / (median(s.decode_ms) / 1000), 1) });
  const figures: FusedDecodeResult['figures'] = {};
  for (const side of sides) figures[side] = Object.fromEntries(CFG.batches.map((B) => [B, rate(per[side]![B]!, B)]));
  const ratios: FusedDecodeResult['ratios'] = {};
  for (const t of targets)
    ratios[t] = Object.fromEntries(CFG.batches.map((B) => [B, { decode: round(figures[t]![B]!.decode_tok_s / figures.unfused![B]!.decode_tok_s, 3), prefill: round(figures[t]![B]!.prefill_tok_s / figures.unfused![B]!.prefill_tok_s, 3) }]));
  const result: FusedDecodeResult = {
    bench: 'decode-fused', config: CFG, rounds, threads, tokens_equal: tokensEqual, fused: fusedCounts, figures, ratios,
    load: { waited_s: round(waited / 1000, 1), busy_max: round(busyMax, 2), loadavg_1m_start: round(load0, 2), loadavg_1m_end: round(os.loadavg()[0]!, 2) },
  };
  printJson(result);
}

const ta = process.argv.indexOf('--target');
if (isMain(import.meta.url) && ta >= 0) {
  const targets = (process.argv[ta + 1] ?? '').split(',');
  const bad = targets.filter((t) => { const [tt, drop] = t.split('/-'); return !isTarget(tt) || (drop !== undefined && !TARGET_TABLE[tt].rules.includes(drop)); });
  if (bad.length) {
    process.stderr.write(`bench decode: --target must be a comma-separated list of ${TARGETS.join(', ')} (each optionally /-<one of its rules>), got '${bad.join(', ')}'\n`);
    process.exit(2);
  }
  CFG.newTokens = argValue('new', CFG.newTokens);
  CFG.prompt = argValue('prompt', CFG.prompt);
  await fusedVsUnfused(targets, argValue('rounds', 3), argValue('threads', 2));
} else if (isMain(import.meta.url)) await main();
