// Benchmark 4b: variants of the train step's graph against each other, in ONE process, in
// interleaved rounds (each round runs every variant once, the order rotating), so that a
// machine loaded by other work slows all variants alike and their per-round ratios still say
// which graph is faster. This is how a training-graph change (a fusion before autodiff, a VJP
// form) is judged before the full bench/train-step.ts run against PyTorch.
//
// A variant is either a compile spec of bench/train-step.ts's model, `TARGET[+RULE,RULE...]`
// (`none` = unfused; `cpu` = fused after autodiff; `cpu+rms-norm,swiglu` = those rules also fused
// into the forward before autodiff, see src/train/step.ts trainFusion), or an ONNX file written
// by `--emit` (so graphs made by two versions of the compiler can be compared; the files must
// have the benchmark's inputs).
//
//   npx tsx bench/train-step-ab.ts none cpu cpu+rms-norm [--rounds 6] [--warmup 2]   -> one JSON line
//   npx tsx bench/train-step-ab.ts --emit FILE cpu                                     -> writes FILE
import * as fs from 'node:fs';
import { argValue, foreignLoad, isMain, loadSnap, median, printJson, round } from './lib.ts';
import { CFG, compileBenchStep, THREADS } from './train-step.ts';
import type { Target } from '../src/ir/target.ts';

interface Variant {
  name: string;
  bytes: Uint8Array;
  nodes: number;
  fused: Record<string, number>;
}

function parseSpec(spec: string): { target?: Target; trainFusion?: string[] } {
  const [t, rules] = spec.split('+') as [string, string | undefined];
  const target = t === 'none' ? undefined : (t as Target);
  if (rules !== undefined && !target) throw new Error(`variant '${spec}': fusing before autodiff needs a target`);
  return { target, ...(rules !== undefined ? { trainFusion: rules.split(',').filter(Boolean) } : {}) };
}

async function variant(spec: string): Promise<Variant> {
  const { encodeModel, decodeModel } = await import('../codegen/onnx/proto.ts');
  if (spec.endsWith('.onnx')) {
    const bytes = fs.readFileSync(spec);
    const m = decodeModel(bytes);
    const fused: Record<string, number> = {};
    for (const n of m.graph!.node!) fused[n.opType!] = (fused[n.opType!] ?? 0) + 1;
    return { name: spec, bytes, nodes: m.graph!.node!.length, fused };
  }
  const step = await compileBenchStep(parseSpec(spec));
  const fused: Record<string, number> = {};
  for (const n of step.graph.nodes()) if (/^(rms_norm|layer_norm|gelu|rope|sdpa|swiglu|add_rms_norm|add_layer_norm|ada_rms_norm|kv_sdpa|layer_pool)$/.test(n.op)) fused[n.op] = (fused[n.op] ?? 0) + 1;
  return { name: spec, bytes: encodeModel(step.emitted.model), nodes: step.emitted.model.graph!.node!.length, fused };
}

export async function trainStepAB(specs: readonly string[], rounds: number, warmup: number) {
  const ort = await import('onnxruntime-node');
  const { numel } = await import('../src/io/host.ts');
  // one set of feeds for every variant: the benchmark's seeded initial state and a random batch
  const base = await compileBenchStep({});
  const init = base.initialState();
  const shape = [CFG.batch, CFG.grid[0] * CFG.grid[1], CFG.hidden];
  const feeds: Record<string, import('onnxruntime-node').Tensor> = {};
  for (const [k, v] of init) feeds[k] = new ort.Tensor('float32', v.data as Float32Array, v.shape);
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  for (const k of ['x', 'target']) feeds[k] = new ort.Tensor('float32', Float32Array.from({ length: numel(shape) }, rnd), shape);
  feeds.lr = new ort.Tensor('float32', Float32Array.of(1e-3), []);
  feeds.step = new ort.Tensor('float32', Float32Array.of(1), []);

  const vs: Variant[] = [];
  for (const s of specs) vs.push(await variant(s));
  const opts = { executionProviders: ['cpu'], intraOpNumThreads: THREADS, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', enableCpuMemArena: false } as const; // (no arena: several step sessions must fit in memory at once)
  const sessions = [];
  for (const v of vs) sessions.push(await ort.InferenceSession.create(v.bytes, opts));
  const losses: number[] = [];
  for (const [i, s] of sessions.entries()) {
    for (let w = 0; w < warmup; w++) {
      const out = await s.run(feeds);
      if (w === 0) losses[i] = (out.loss!.data as Float32Array)[0]!;
    }
  }
  const ms: number[][] = vs.map(() => []);
  const foreign: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const a = loadSnap();
    for (let j = 0; j < vs.length; j++) {
      const i = (j + r) % vs.length;
      const t0 = performance.now();
      await sessions[i]!.run(feeds);
      ms[i]!.push(performance.now() - t0);
    }
    foreign.push(round(foreignLoad(a, loadSnap()), 3));
  }
  const ratioRounds = (i: number) => ms[i]!.map((m, r) => round(m / ms[0]![r]!, 3));
  return {
    bench: 'train-step-ab',
    threads: THREADS,
    rounds,
    warmup,
    foreign_load_per_round: foreign,
    variants: vs.map((v, i) => ({
      name: v.name,
      onnx_nodes: v.nodes,
      fused: v.fused,
      loss_step1: losses[i],
      median_ms: round(median(ms[i]!), 1),
      all_ms: ms[i]!.map((m) => round(m, 1)),
      ratio_to_first_rounds: ratioRounds(i),
      ratio_to_first: round(median(ratioRounds(i)), 3),
    })),
  };
}

if (isMain(import.meta.url)) {
  const args = process.argv.slice(2);
  const ei = args.indexOf('--emit');
  if (ei >= 0) {
    const file = args[ei + 1]!;
    const spec = args.filter((a, i) => !a.startsWith('--') && i !== ei + 1)[0] ?? 'cpu';
    const v = await variant(spec);
    fs.writeFileSync(`${file}.tmp`, v.bytes);
    fs.renameSync(`${file}.tmp`, file);
    printJson({ emitted: file, spec, onnx_nodes: v.nodes, fused: v.fused });
  } else {
    const skip = new Set<number>();
    args.forEach((a, i) => a.startsWith('--') && (skip.add(i), skip.add(i + 1)));
    const specs = args.filter((_, i) => !skip.has(i));
    if (specs.length < 2) throw new Error('give at least two variants (specs like none, cpu, cpu+rms-norm, or .onnx files)');
    printJson(await trainStepAB(specs, argValue('rounds', 6), argValue('warmup', 2)));
  }
}
