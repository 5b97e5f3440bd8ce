// Benchmark 3: CPU fp32 forward of ONE transformer block (hidden 512, 8 heads,
// 8 kv heads, SwiGLU intermediate 1408, RMSNorm, RoPE, bidirectional) on
// x [4, 256, 512]: our compiled ONNX in onnxruntime-node (2 intra-op threads)
// vs PyTorch eager (bench/py/block_eager.py: torch.set_num_threads(2),
// torch.no_grad, F.scaled_dot_product_attention) in a Python child process.
//
// The peer loads our block's parameters and input from a safetensors file and
// checks its output against ORT's, so both time the same computation. The two
// sides take turns in rounds (ours then torch, torch then ours, ...), never
// running at the same time, so a burst of load from elsewhere on the machine
// hits both alike; before each round it waits for the rest of the machine to be
// quiet (bench/lib.ts waitQuiet). Reported: the median per-forward time of each side over all
// its timed runs, their ratio, and the median of per-round ratios.
// Batch and seq stay symbolic in the ONNX graph (as compiled models ship).
//
//   npx tsx bench/block-forward.ts [--rounds 10] [--per-round 3] [--warmup 5]   -> one JSON line
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { argValue, BENCH_DIR, isMain, median, printJson, python, REPO_ROOT, round, waitQuiet, Peer } from './lib.ts';

export const CFG = { hidden: 512, heads: 8, kvHeads: 8, intermediate: 1408, batch: 4, seq: 256, ropeTheta: 10000 };
export const THREADS = 2;

export interface BlockForwardResult {
  bench: 'block-forward';
  config: typeof CFG;
  threads: number;
  rounds: number;
  per_round: number;
  ours: { ort: string; session_create_ms: number; runs: number; median_ms: number; min_ms: number; all_ms: number[]; onnx_nodes: number; op_counts: Record<string, number> };
  torch: { torch: string; threads: number; runs: number; median_ms: number; min_ms: number; all_ms: number[]; max_abs_diff: number; max_abs_ref: number };
  /** ours / torch, overall medians (lower is better for us) */
  ratio: number;
  /** median over rounds of (ours round median / torch round median) */
  ratio_rounds_median: number;
  ratio_rounds: number[];
  goal: string;
  /** CPU busy fraction of the machine (other processes) sampled before each round, and time spent waiting for quiet */
  load: { busy_before_rounds: number[]; waited_s: number };
}


export async function blockForward(rounds = 10, perRound = 3, warmup = 5): Promise<BlockForwardResult> {
  const ort = await import('onnxruntime-node');
  const { trace, input, dim, range, TransformerBlock } = await import('../src/dsl/index.ts');
  const { compileGraph } = await import('../src/compiler.ts');
  const { encodeModel } = await import('../codegen/onnx/proto.ts');
  const { paramTensor } = await import('../codegen/onnx/emit.ts');
  const { Rng } = await import('../src/ir/init.ts');
  const { writeSafetensors } = await import('../src/io/safetensors.ts');
  type HostTensor = import('../src/io/host.ts').HostTensor;

  const B = dim('batch'), S = dim('seq');
  const graph = trace('block', () => {
    const x = input('x', 'f32', [B, S, CFG.hidden]);
    const blk = new TransformerBlock({ hidden: CFG.hidden, heads: CFG.heads, kvHeads: CFG.kvHeads, intermediate: CFG.intermediate, act: 'swiglu', norm: 'rms', rope: { theta: CFG.ropeTheta } });
    return { y: blk.forward(x, { positions: [range(S)] }) };
  });
  const compiled = compileGraph(graph, { weights: 'embed' });
  const bytes = encodeModel(compiled.emitted.model);
  const opCounts: Record<string, number> = {};
  for (const n of compiled.emitted.model.graph!.node!) opCounts[n.opType!] = (opCounts[n.opType!] ?? 0) + 1;

  const rng = new Rng(1234);
  const n = CFG.batch * CFG.seq * CFG.hidden;
  const xData = new Float32Array(n);
  for (let i = 0; i < n; i++) xData[i] = rng.normal();

  const tc0 = performance.now();
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['cpu'],
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const sessionMs = performance.now() - tc0;
  const feeds = { x: new ort.Tensor('float32', xData, [CFG.batch, CFG.seq, CFG.hidden]) };
  let y: Float32Array | undefined;
  for (let i = 0; i < warmup; i++) y = (await session.run(feeds)).y!.data as Float32Array;
  const ours = async (k: number) => {
    const ms: number[] = [];
    for (let i = 0; i < k; i++) {
      const t0 = performance.now();
      await session.run(feeds);
      ms.push(performance.now() - t0);
    }
    return ms;
  };

  // hand the peer our parameters, input and output
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-bench-block-'));
  let peer: Peer | undefined;
  try {
    const file = path.join(dir, 'block.safetensors');
    const tensors: Record<string, HostTensor> = {};
    for (const p of compiled.graph.params()) tensors[p.params.name] = paramTensor(p);
    tensors['__x'] = { dtype: 'f32', shape: [CFG.batch, CFG.seq, CFG.hidden], data: xData };
    tensors['__y_ours'] = { dtype: 'f32', shape: [CFG.batch, CFG.seq, CFG.hidden], data: y! };
    writeSafetensors(file, tensors);
    const cfgArgs = ['--hidden', CFG.hidden, '--heads', CFG.heads, '--kv-heads', CFG.kvHeads, '--intermediate', CFG.intermediate, '--rope-theta', CFG.ropeTheta].map(String);
    const child = spawn(python(), [path.join(BENCH_DIR, 'py', 'block_eager.py'), '--serve', '--weights', file, '--threads', String(THREADS), '--warmup', String(warmup), ...cfgArgs], {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    peer = new Peer(child);
    const ready = await peer.next<{ ready: boolean; torch: string; threads: number; max_abs_diff: number; max_abs_ref: number }>();
    const tol = 1e-3 * Math.max(1, ready.max_abs_ref);
    if (!(ready.max_abs_diff <= tol)) throw new Error(`PyTorch block output differs from ours by ${ready.max_abs_diff} (> ${tol}): the blocks are not the same computation`);

    const oursAll: number[] = [];
    const torchAll: number[] = [];
    const ratios: number[] = [];
    const busy: number[] = [];
    let waitedMs = 0;
    for (let r = 0; r < rounds; r++) {
      const q = await waitQuiet();
      busy.push(round(q.busy, 2));
      waitedMs += q.waitedMs;
      let a: number[], b: number[];
      if (r % 2 === 0) (a = await ours(perRound)), (b = await peer.run(perRound));
      else (b = await peer.run(perRound)), (a = await ours(perRound));
      oursAll.push(...a);
      torchAll.push(...b);
      ratios.push(median(a) / median(b));
    }
    const oursMed = median(oursAll);
    const torchMed = median(torchAll);
    return {
      bench: 'block-forward',
      config: CFG,
      threads: THREADS,
      rounds,
      per_round: perRound,
      ours: {
        ort: ort.env.versions.common,
        session_create_ms: round(sessionMs, 1),
        runs: oursAll.length,
        median_ms: round(oursMed, 2),
        min_ms: round(Math.min(...oursAll), 2),
        all_ms: oursAll.map((x) => round(x, 2)),
        onnx_nodes: compiled.manifest.onnxNodes,
        op_counts: opCounts,
      },
      torch: {
        torch: ready.torch,
        threads: ready.threads,
        runs: torchAll.length,
        median_ms: round(torchMed, 2),
        min_ms: round(Math.min(...torchAll), 2),
        all_ms: torchAll.map((x) => round(x, 2)),
        max_abs_diff: ready.max_abs_diff,
        max_abs_ref: ready.max_abs_ref,
      },
      ratio: round(oursMed / torchMed, 2),
      ratio_rounds_median: round(median(ratios), 2),
      ratio_rounds: ratios.map((x) => round(x, 2)),
      goal: 'report (no target)',
      load: { busy_before_rounds: busy, waited_s: round(waitedMs / 1000, 1) },
    };
  } finally {
    peer?.close();
    fs.rmSync(dir, { recursive: true, force: true });
    await session.release();
  }
}

if (isMain(import.meta.url)) printJson(await blockForward(argValue('rounds', 10), argValue('per-round', 3), argValue('warmup', 5)));
