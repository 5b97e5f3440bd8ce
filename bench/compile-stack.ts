// Benchmark 1: compile the 32-layer x 4096-wide decoder stack
// (examples/transformer.ts, preset 'stack-32x4096') with weights 'skeleton'
// (external data declared, no values made): trace + passes + emit to an
// in-memory ModelProto + encode to bytes. Each run is a fresh Node process so
// its peak RSS (VmHWM) is the compile's own; the parent reports medians.
//
//   npx tsx bench/compile-stack.ts [--runs 3]     -> one JSON line
import { argValue, isMain, median, printJson, procStatusKB, round, runTsx, waitQuiet } from './lib.ts';
import type { Pass } from '../src/passes/pass.ts';

export const GOAL_S = 2;
const PRESET = 'stack-32x4096';

interface ChildOut {
  importMs: number;
  traceMs: number;
  compileMs: number;
  passesMs: number;
  emitMs: number;
  encodeMs: number;
  totalMs: number;
  passMs: Record<string, number>;
  rssBeforeKB: number;
  hwmBeforeKB: number;
  hwmKB: number;
  irNodes: number;
  onnxNodes: number;
  onnxBytes: number;
  params: number;
  externalBytes: number;
}

async function child(): Promise<void> {
  const rssBeforeKB = procStatusKB('VmRSS');
  const hwmBeforeKB = procStatusKB('VmHWM');
  const t0 = performance.now();
  const [{ default: def }, { compileGraph }, { encodeModel }, { DEFAULT_PIPELINE }] = await Promise.all([
    import('../examples/transformer.ts'),
    import('../src/compiler.ts'),
    import('../codegen/onnx/proto.ts'),
    import('../src/passes/pipeline.ts'),
  ]);
  const t1 = performance.now();
  // the default pipeline, each pass wrapped in a timer (same passes, same order)
  const passMs: Record<string, number> = {};
  const passes: Pass[] = DEFAULT_PIPELINE.map((p, i) => ({
    name: p.name,
    run(g) {
      const s = performance.now();
      const r = p.run(g);
      passMs[`${i}:${p.name}`] = round(performance.now() - s, 1);
      return r;
    },
  }));
  const graph = def.trace(PRESET);
  const t2 = performance.now();
  const compiled = compileGraph(graph, { weights: 'skeleton', passes, preset: PRESET });
  const t3 = performance.now();
  const bytes = encodeModel(compiled.emitted.model);
  const t4 = performance.now();
  const hwmKB = procStatusKB('VmHWM');
  const passesMs = Object.values(passMs).reduce((a, b) => a + b, 0);
  const out: ChildOut = {
    importMs: round(t1 - t0, 1),
    traceMs: round(t2 - t1, 1),
    compileMs: round(t3 - t2, 1),
    passesMs: round(passesMs, 1),
    emitMs: round(t3 - t2 - passesMs, 1),
    encodeMs: round(t4 - t3, 1),
    totalMs: round(t4 - t1, 1),
    passMs,
    rssBeforeKB,
    hwmBeforeKB,
    hwmKB,
    irNodes: compiled.manifest.irNodes,
    onnxNodes: compiled.manifest.onnxNodes,
    onnxBytes: bytes.length,
    params: compiled.manifest.paramCount,
    externalBytes: compiled.emitted.externalBytes,
  };
  printJson(out);
}

export interface CompileStackResult {
  bench: 'compile-stack';
  preset: string;
  runs: number;
  /** median compile time (trace + passes + emit + encode), seconds */
  compile_s: number;
  compile_all_s: number[];
  /** median peak RSS of the child process, MiB */
  peak_rss_mib: number;
  peak_rss_all_mib: number[];
  /** median RSS of the child before importing the compiler, MiB (Node + tsx baseline) */
  baseline_rss_mib: number;
  breakdown_ms: { import: number; trace: number; passes: number; emit: number; encode: number };
  passes_ms: Record<string, number>;
  child_wall_s: number;
  ir_nodes: number;
  onnx_nodes: number;
  onnx_bytes: number;
  params: number;
  external_bytes: number;
  goal_s: number;
  met: boolean;
  /** CPU busy fraction of the machine (other processes) sampled before each run */
  load: { busy_before_runs: number[]; waited_s: number };
}

export async function compileStack(runs = 3): Promise<CompileStackResult> {
  const outs: ChildOut[] = [];
  const walls: number[] = [];
  const busy: number[] = [];
  let waitedMs = 0;
  for (let i = 0; i < runs; i++) {
    const q = await waitQuiet();
    busy.push(round(q.busy, 2));
    waitedMs += q.waitedMs;
    const r = await runTsx<ChildOut>(new URL(import.meta.url).pathname, ['--child']);
    outs.push(r.json);
    walls.push(r.wallMs);
  }
  const med = (f: (o: ChildOut) => number) => median(outs.map(f));
  const passNames = Object.keys(outs[0]!.passMs);
  const compile_s = round(med((o) => o.totalMs) / 1000, 3);
  return {
    bench: 'compile-stack',
    preset: PRESET,
    runs,
    compile_s,
    compile_all_s: outs.map((o) => round(o.totalMs / 1000, 3)),
    peak_rss_mib: round(med((o) => o.hwmKB) / 1024, 1),
    peak_rss_all_mib: outs.map((o) => round(o.hwmKB / 1024, 1)),
    baseline_rss_mib: round(med((o) => o.rssBeforeKB) / 1024, 1),
    breakdown_ms: {
      import: med((o) => o.importMs),
      trace: med((o) => o.traceMs),
      passes: med((o) => o.passesMs),
      emit: med((o) => o.emitMs),
      encode: med((o) => o.encodeMs),
    },
    passes_ms: Object.fromEntries(passNames.map((k) => [k, med((o) => o.passMs[k] ?? NaN)])),
    child_wall_s: round(median(walls) / 1000, 2),
    ir_nodes: outs[0]!.irNodes,
    onnx_nodes: outs[0]!.onnxNodes,
    onnx_bytes: outs[0]!.onnxBytes,
    params: outs[0]!.params,
    external_bytes: outs[0]!.externalBytes,
    goal_s: GOAL_S,
    met: compile_s <= GOAL_S,
    load: { busy_before_runs: busy, waited_s: round(waitedMs / 1000, 1) },
  };
}

if (isMain(import.meta.url)) {
  if (process.argv.includes('--child')) await child();
  else printJson(await compileStack(argValue('runs', 3)));
}
