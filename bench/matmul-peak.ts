// Reference FLOP/s: one large fp32 MatMul (default 2048 x 2048 x 2048) in
// onnxruntime-node on the CPU EP with the benchmarks' thread count, i.e. what
// MLAS's GEMM achieves on this machine. bench/train-step.ts calls matmulPeak()
// in its own process to express the train step's FLOP/s as a share of it.
//
//   npx tsx bench/matmul-peak.ts [--n 2048] [--runs 5] [--threads 2]   -> one JSON line
import { argValue, isMain, median, printJson, round } from './lib.ts';

export interface MatmulPeakResult {
  bench: 'matmul-peak';
  n: number;
  threads: number;
  runs: number;
  /** 2 n^3 */
  flop: number;
  median_ms: number;
  min_ms: number;
  /** FLOP/s at the median / best run */
  gflops_median: number;
  gflops_best: number;
}

export async function matmulPeak(n = 2048, runs = 5, threads = 2): Promise<MatmulPeakResult> {
  const ort = await import('onnxruntime-node');
  const { trace, input } = await import('../src/dsl/index.ts');
  const { compileGraph } = await import('../src/compiler.ts');
  const { encodeModel } = await import('../codegen/onnx/proto.ts');
  const g = trace('matmul', () => ({ c: input('a', 'f32', [n, n]).matmul(input('b', 'f32', [n, n])) }));
  const bytes = encodeModel(compileGraph(g, { weights: 'embed' }).emitted.model);
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
  try {
    const a = new Float32Array(n * n), b = new Float32Array(n * n);
    for (let i = 0; i < n * n; i++) (a[i] = ((i * 7919) % 1000) / 1000 - 0.5), (b[i] = ((i * 104729) % 1000) / 1000 - 0.5);
    const feeds = { a: new ort.Tensor('float32', a, [n, n]), b: new ort.Tensor('float32', b, [n, n]) };
    await session.run(feeds); // warm-up
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await session.run(feeds);
      ms.push(performance.now() - t0);
    }
    const flop = 2 * n ** 3;
    const med = median(ms), best = Math.min(...ms);
    return { bench: 'matmul-peak', n, threads, runs, flop, median_ms: round(med, 2), min_ms: round(best, 2), gflops_median: round(flop / med / 1e6, 1), gflops_best: round(flop / best / 1e6, 1) };
  } finally {
    await session.release();
  }
}

if (isMain(import.meta.url)) printJson(await matmulPeak(argValue('n', 2048), argValue('runs', 5), argValue('threads', 2)));
