// Fusion benchmark: peak memory (and time) of ONE attention core at 4096 tokens, CPU fp32, 2 threads:
// q, k, v [1, 12, 4096, 64] plus a key-padding mask, through our sdpa as
//   unfused    the DSL composite's primitives (scores and probabilities materialised: [1, 12, 4096, 4096]
//              f32 = 768 MiB each)
//   cpu        the fused sdpa lowered for --target cpu (com.microsoft MultiHeadAttention)
//   cuda       the fused sdpa lowered for --target cuda (ai.onnx Attention-23), run on the CPU EP
// Each variant runs in a fresh Node process, so its VmHWM (peak RSS) is its own; reported is the
// peak minus the process's RSS right before the session was created, and the median of 3 runs.
//
//   npx tsx bench/fusion-attention-memory.ts [--seq 4096] [--heads 12]   -> one JSON line
import * as path from 'node:path';
import { argValue, BENCH_DIR, isMain, median, printJson, procStatusKB, round, runTsx, waitQuiet } from './lib.ts';

const VARIANTS = ['unfused', 'cpu', 'cuda'] as const;
type Variant = (typeof VARIANTS)[number];

interface ChildResult {
  variant: Variant;
  onnx_ops: Record<string, number>;
  rss_before_mib: number;
  peak_mib: number;
  peak_over_baseline_mib: number;
  run_ms: number[];
}

export interface AttentionMemoryResult {
  bench: 'fusion-attention-memory';
  config: { batch: number; heads: number; seq: number; head_dim: number; valid_keys: number; threads: number };
  variants: Record<Variant, ChildResult & { median_ms: number }>;
  /** unfused peak over baseline / fused (cpu) peak over baseline */
  memory_ratio_cpu: number;
  memory_ratio_cuda_lowering: number;
  scores_mib: number;
}

async function child(variant: Variant, seq: number, heads: number): Promise<ChildResult> {
  const ort = await import('onnxruntime-node');
  const { trace, input, sdpa } = await import('../src/dsl/index.ts');
  const { compileGraph } = await import('../src/compiler.ts');
  const { encodeModel } = await import('../codegen/onnx/proto.ts');
  const D = 64, B = 1;
  const g = trace('attention', () => {
    const q = input('q', 'f32', [B, heads, seq, D]), k = input('k', 'f32', [B, heads, seq, D]), v = input('v', 'f32', [B, heads, seq, D]);
    const m = input('key_mask', 'bool', [B, seq]);
    return { o: sdpa(q, k, v, { keyMask: m }) };
  });
  const c = variant === 'unfused' ? compileGraph(g) : compileGraph(g, { target: variant });
  const ops: Record<string, number> = {};
  for (const n of c.emitted.model.graph!.node!) ops[(n.domain ? `${n.domain}.` : '') + n.opType!] = (ops[(n.domain ? `${n.domain}.` : '') + n.opType!] ?? 0) + 1;
  const n = B * heads * seq * D;
  const mk = () => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 0.5;
    return new ort.Tensor('float32', a, [B, heads, seq, D]);
  };
  const feeds = { q: mk(), k: mk(), v: mk(), key_mask: new ort.Tensor('bool', Uint8Array.from({ length: seq }, (_, i) => (i < seq - 256 ? 1 : 0)), [B, seq]) };
  const before = procStatusKB('VmRSS');
  const s = await ort.InferenceSession.create(encodeModel(c.emitted.model), { executionProviders: ['cpu'], intraOpNumThreads: 2, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
  const ms: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await s.run(feeds);
    ms.push(performance.now() - t0);
  }
  await s.release();
  const peak = procStatusKB('VmHWM');
  return { variant, onnx_ops: ops, rss_before_mib: round(before / 1024, 1), peak_mib: round(peak / 1024, 1), peak_over_baseline_mib: round((peak - before) / 1024, 1), run_ms: ms.map((x) => round(x, 1)) };
}

export async function attentionMemory(seq = 4096, heads = 12): Promise<AttentionMemoryResult> {
  const res = {} as AttentionMemoryResult['variants'];
  for (const v of VARIANTS) {
    await waitQuiet(0.15, 60_000);
    const r = await runTsx<ChildResult>(path.join(BENCH_DIR, 'fusion-attention-memory.ts'), ['--child', v, '--seq', String(seq), '--heads', String(heads)]);
    res[v] = { ...r.json, median_ms: round(median(r.json.run_ms), 1) };
  }
  return {
    bench: 'fusion-attention-memory',
    config: { batch: 1, heads, seq, head_dim: 64, valid_keys: seq - 256, threads: 2 },
    variants: res,
    memory_ratio_cpu: round(res.unfused.peak_over_baseline_mib / Math.max(1, res.cpu.peak_over_baseline_mib), 2),
    memory_ratio_cuda_lowering: round(res.unfused.peak_over_baseline_mib / Math.max(1, res.cuda.peak_over_baseline_mib), 2),
    scores_mib: round((heads * seq * seq * 4) / 2 ** 20, 0),
  };
}

if (isMain(import.meta.url)) {
  const i = process.argv.indexOf('--child');
  if (i >= 0) printJson(await child(process.argv[i + 1] as Variant, argValue('seq', 4096), argValue('heads', 12)));
  else printJson(await attentionMemory(argValue('seq', 4096), argValue('heads', 12)));
}
