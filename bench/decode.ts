// Benchmark: greedy generation of a small random Qwen2 (8 layers x 512, 8 heads / 4 kv heads,
// SwiGLU 1536, vocab 32k, untied head; 256-token prompts, 128 new tokens), CPU fp32, 2 threads:
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
//   npx tsx bench/decode.ts [--rounds 3] [--new 128] [--prompt 256]      -> one JSON line
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

export const CFG = { layers: 8, hidden: 512, heads: 8, kvHeads: 4, intermediate: 1536, vocab: 32000, prompt: 256, newTokens: 128, batches: [1, 4] };
export const THREADS = 2;

interface Side {
  prefill_ms: number[];
  decode_ms: number[];
}

export interface DecodeBenchResult {
  bench: 'decode';
  config: typeof CFG & { params: number };
  threads: number;
  rounds: number;
  tokens_equal: Record<string, boolean>;
  kv_cache_bytes_per_token: number;
  batch: Record<string, {
    ours_reuse: { prefill_tok_s: number; decode_tok_s: number };
    ours_preallocate: { prefill_tok_s: number; decode_tok_s: number };
    torch: { prefill_tok_s: number; decode_tok_s: number };
    decode_ratio: number;
    prefill_ratio: number;
  }>;
  goal_decode_ratio: number;
  met: boolean;
  peak_rss_mib: { ours: number; torch: number };
  versions: { torch: string; transformers: string };
  load: { waited_s: number; busy_max: number };
}

async function main(): Promise<void> {
  const rounds = argValue('rounds', 3);
  CFG.newTokens = argValue('new', CFG.newTokens);
  CFG.prompt = argValue('prompt', CFG.prompt);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-bench-decode-'));
  try {
    const py = python();
    const script = path.join(BENCH_DIR, 'py', 'decode_eager.py');
    const common = ['--layers', CFG.layers, '--hidden', CFG.hidden, '--heads', CFG.heads, '--kv-heads', CFG.kvHeads, '--intermediate', CFG.intermediate, '--vocab', CFG.vocab, '--prompt', CFG.prompt, '--batch', Math.max(...CFG.batches), '--new', CFG.newTokens, '--threads', THREADS].map(String);
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
    const session = await Session.load(encodeModel(compileGraph(graph, { weights: 'embed', paramValues: pv }).emitted.model), { intraOpThreads: THREADS });
    weights.clear();
    pv.clear();
    const prompts = JSON.parse(fs.readFileSync(path.join(dir, 'prompts.json'), 'utf8')) as number[][];
    const model = { session, cfg: g.config, taps: [] };
    const opts = (cache: 'reuse' | 'preallocate'): GenerateOptions => ({ maxNewTokens: CFG.newTokens, sampling: samplingSettings({}), stopIds: [], padId: 0, cache });

    const child = spawn(py, [script, '--serve', dir, ...common], { stdio: ['pipe', 'pipe', 'pipe'] });
    const peer = new Peer(child);
    await peer.next();
    const tokensEqual: Record<string, boolean> = {};
    for (const B of CFG.batches) {
      process.stderr.write(`bench decode: checking tokens, batch ${B}\n`);
      const ours = await generate(model, prompts.slice(0, B), opts('reuse'));
      const theirs = (await peer.request<{ tokens: number[][] }>(`gen ${B}`)).tokens;
      tokensEqual[B] = JSON.stringify(ours.rows.map((r) => r.tokens)) === JSON.stringify(theirs);
      const pre = await generate(model, prompts.slice(0, B), opts('preallocate'));
      if (JSON.stringify(pre.rows) !== JSON.stringify(ours.rows)) throw new Error('preallocated KV outputs changed the tokens');
    }

    const sides: Record<string, Record<'reuse' | 'preallocate' | 'torch', Side>> = {};
    for (const B of CFG.batches) sides[B] = { reuse: { prefill_ms: [], decode_ms: [] }, preallocate: { prefill_ms: [], decode_ms: [] }, torch: { prefill_ms: [], decode_ms: [] } };
    let waited = 0, busyMax = 0;
    for (let r = 0; r < rounds; r++)
      for (const B of CFG.batches) {
        for (const mode of ['reuse', 'preallocate', 'torch'] as const) {
          const q = await waitQuiet();
          waited += q.waitedMs;
          busyMax = Math.max(busyMax, q.busy);
          process.stderr.write(`bench decode: round ${r + 1}/${rounds}, batch ${B}, ${mode}\n`);
          if (mode === 'torch') {
            const t = await peer.request<Side>(`run ${B} 1`);
            sides[B]!.torch.prefill_ms.push(...t.prefill_ms);
            sides[B]!.torch.decode_ms.push(...t.decode_ms);
          } else {
            const res = await generate(model, prompts.slice(0, B), opts(mode));
            sides[B]![mode].prefill_ms.push(res.stats.prefillMs);
            sides[B]![mode].decode_ms.push(res.stats.decodeMs);
          }
        }
      }
    const torchMem = await peer.request<{ vmhwm_kb: number }>('mem');
    peer.close();
    await session.release();

    const t = CFG.layers * 2 * CFG.kvHeads * (CFG.hidden / CFG.heads) * 4;
    const rate = (s: Side, B: number) => ({ prefill_tok_s: round((B * CFG.prompt) / (median(s.prefill_ms) / 1000), 1), decode_tok_s: round((B * (CFG.newTokens - 1)) / (median(s.decode_ms) / 1000), 1) });
    const batch: DecodeBenchResult['batch'] = {};
    for (const B of CFG.batches) {
      const s = sides[B]!;
      const best = rate(s.reuse, B).decode_tok_s >= rate(s.preallocate, B).decode_tok_s ? rate(s.reuse, B) : rate(s.preallocate, B);
      const tr = rate(s.torch, B);
      batch[B] = { ours_reuse: rate(s.reuse, B), ours_preallocate: rate(s.preallocate, B), torch: tr, decode_ratio: round(best.decode_tok_s / tr.decode_tok_s, 3), prefill_ratio: round(best.prefill_tok_s / tr.prefill_tok_s, 3) };
    }
    const goal = 1.5;
    const result: DecodeBenchResult = {
      bench: 'decode',
      config: { ...CFG, params: made.params },
      threads: THREADS,
      rounds,
      tokens_equal: tokensEqual,
      kv_cache_bytes_per_token: t,
      batch,
      goal_decode_ratio: goal,
      met: Object.values(batch).every((b) => b.decode_ratio >= goal),
      peak_rss_mib: { ours: round(procStatusKB('VmHWM') / 1024, 1), torch: round(torchMem.vmhwm_kb / 1024, 1) },
      versions: { torch: made.torch, transformers: made.transformers },
      load: { waited_s: round(waited / 1000, 1), busy_max: round(busyMax, 2) },
    };
    printJson(result);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await main();
