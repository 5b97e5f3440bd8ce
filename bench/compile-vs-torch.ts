// Benchmark 2: compile the small decoder stack (examples/transformer.ts preset
// 'small': 5 layers x 96 wide, vocab 1024, 4 heads / 2 kv heads, intermediate
// 256, RoPE, causal + padding mask, dynamic batch and seq) to ONNX bytes with
// weights embedded, vs torch.onnx.export(dynamo=True) of the same model written
// in plain PyTorch (bench/py/export_small.py), run as a child process.
//
// Ours: in-process, trace + passes + emit + encode; the first (cold) compile in
// the process is reported and doubles as the warm-up, then the median of
// `--runs` (default 5). Torch: the first (cold) export after imports, then the
// median of `--torch-runs` (default 3) further exports; each export includes
// serialising the ModelProto to bytes. Import times are reported separately.
//
//   npx tsx bench/compile-vs-torch.ts [--runs 5] [--torch-runs 3]   -> one JSON line
import * as path from 'node:path';
import { argValue, BENCH_DIR, isMain, median, printJson, python, round, runJson, waitQuiet } from './lib.ts';

export const GOAL_RATIO = 10;
const PRESET = 'small';

interface TorchOut {
  torch: string;
  onnxscript: string;
  import_s: number;
  params: number;
  cold_total_s: number;
  warm_runs: number;
  warm_export_s: number;
  warm_serialize_s: number;
  warm_total_s: number;
  warm_all_total_s: number[];
  onnx_nodes: number;
  onnx_bytes: number;
  opset: number;
}

export interface CompileVsTorchResult {
  bench: 'compile-vs-torch';
  preset: string;
  ours: {
    import_s: number;
    cold_s: number;
    runs: number;
    median_s: number;
    all_s: number[];
    onnx_nodes: number;
    onnx_bytes: number;
    opset: number;
    params: number;
  };
  torch: TorchOut;
  /** torch warm median / ours warm median */
  ratio_warm: number;
  /** torch first export / ours first compile */
  ratio_cold: number;
  goal_ratio: number;
  met: boolean;
  /** CPU busy fraction of the machine (other processes) sampled before each side */
  load: { busy_before_ours: number; busy_before_torch: number; waited_s: number };
}

export async function compileVsTorch(runs = 5, torchRuns = 3): Promise<CompileVsTorchResult> {
  const ti0 = performance.now();
  const [{ default: def }, { compileGraph }, { encodeModel, OPSET }] = await Promise.all([
    import('../examples/transformer.ts'),
    import('../src/compiler.ts'),
    import('../codegen/onnx/proto.ts'),
  ]);
  const ti1 = performance.now();
  const once = () => {
    const t0 = performance.now();
    const c = compileGraph(def.trace(PRESET), { preset: PRESET });
    const bytes = encodeModel(c.emitted.model);
    return { ms: performance.now() - t0, c, bytes };
  };
  const q1 = await waitQuiet();
  const cold = once();
  if (cold.c.manifest.weights !== 'embed') throw new Error(`expected embedded weights, got ${cold.c.manifest.weights}`);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(once().ms);

  const q2 = await waitQuiet();
  const t = await runJson<TorchOut>(python(), [path.join(BENCH_DIR, 'py', 'export_small.py'), '--runs', String(torchRuns)]);
  const torch = t.json;
  if (torch.params !== cold.c.manifest.paramCount)
    throw new Error(`the PyTorch peer has ${torch.params} parameters, ours ${cold.c.manifest.paramCount}: the models differ`);
  const oursMed = median(times) / 1000;
  const ratio_warm = torch.warm_total_s / oursMed;
  return {
    bench: 'compile-vs-torch',
    preset: PRESET,
    ours: {
      import_s: round((ti1 - ti0) / 1000, 3),
      cold_s: round(cold.ms / 1000, 4),
      runs,
      median_s: round(oursMed, 4),
      all_s: times.map((x) => round(x / 1000, 4)),
      onnx_nodes: cold.c.manifest.onnxNodes,
      onnx_bytes: cold.bytes.length,
      opset: OPSET,
      params: cold.c.manifest.paramCount,
    },
    torch: {
      ...torch,
      import_s: round(torch.import_s, 3),
      cold_total_s: round(torch.cold_total_s, 3),
      warm_export_s: round(torch.warm_export_s, 3),
      warm_serialize_s: round(torch.warm_serialize_s, 4),
      warm_total_s: round(torch.warm_total_s, 3),
      warm_all_total_s: torch.warm_all_total_s.map((x) => round(x, 3)),
    },
    ratio_warm: round(ratio_warm, 1),
    ratio_cold: round(torch.cold_total_s / (cold.ms / 1000), 1),
    goal_ratio: GOAL_RATIO,
    met: ratio_warm >= GOAL_RATIO && torch.cold_total_s / (cold.ms / 1000) >= GOAL_RATIO,
    load: { busy_before_ours: round(q1.busy, 2), busy_before_torch: round(q2.busy, 2), waited_s: round((q1.waitedMs + q2.waitedMs) / 1000, 1) },
  };
}

if (isMain(import.meta.url)) printJson(await compileVsTorch(argValue('runs', 5), argValue('torch-runs', 3)));
