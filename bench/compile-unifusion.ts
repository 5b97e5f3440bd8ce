// Benchmark: compile the full unifusion-8b pipeline (graphs/unifusion.ts) with the
// VLM in the graph: encoder taps + LAP + refiner + DiT, as one forward graph and as
// one AdamW train-step graph (rectified-flow loss, frozen encoder), weights
// 'skeleton' (nothing materialised). Timed: trace + passes (+ autodiff for the step)
// + emit + encode to bytes. Each measurement is a fresh Node process, so its peak
// RSS (VmHWM) is that compile's own; the parent reports medians.
//
// The encoder is graphs/vlm's Qwen2 DecoderLM (transformers' Qwen2Model semantics and
// names) with InternVL3-8B's LLM config (Qwen2.5-7B: 28 layers, hidden 3584, 28 heads /
// 4 kv heads, SwiGLU 18944, q/k/v bias, rope theta 1e6, vocab 151674), plugged in through
// decoderLMEncoder; the taps are hidden_states 0, 3, ..., 27 (so layers 0..26 are built).
// The vision tower is not in this graph (text taps).
//
//   npx tsx bench/compile-unifusion.ts [--runs 3]     -> one JSON line
import { argValue, isMain, median, printJson, procStatusKB, round, runTsx, waitQuiet } from './lib.ts';

export const GOAL_S = 5;
export const GOAL_RSS_MIB = 1536;
const PRESET = 'unifusion-8b';
type Mode = 'forward' | 'train';

interface ChildOut {
  mode: Mode;
  importMs: number;
  buildMs: number;
  encodeMs: number;
  totalMs: number;
  rssBeforeKB: number;
  hwmKB: number;
  irNodes: number;
  onnxNodes: number;
  onnxBytes: number;
  params: number;
  trainable: number;
}

async function child(mode: Mode): Promise<void> {
  const rssBeforeKB = procStatusKB('VmRSS');
  const t0 = performance.now();
  const [{ PRESETS }, uf, { decoderConfigFromHF }, { compileGraph }, { compileTrainStep }, { encodeModel }, { trace }] = await Promise.all([
    import('../graphs/presets.ts'),
    import('../graphs/unifusion.ts'),
    import('../graphs/vlm/index.ts'),
    import('../src/compiler.ts'),
    import('../src/train/step.ts'),
    import('../codegen/onnx/proto.ts'),
    import('../src/dsl/index.ts'),
  ]);
  const t1 = performance.now();
  const cfg = PRESETS[PRESET]!;
  const v = cfg.vlm;
  const qwen2 = decoderConfigFromHF({
    model_type: 'qwen2',
    vocab_size: v.vocab,
    hidden_size: v.hidden,
    intermediate_size: v.intermediate,
    num_hidden_layers: v.layers,
    num_attention_heads: v.heads,
    num_key_value_heads: v.kvHeads,
    rope_theta: v.ropeTheta,
    rms_norm_eps: 1e-6,
    hidden_act: 'silu',
  });
  const encoder = uf.decoderLMEncoder(qwen2, cfg, { prefix: 'model' });
  let model, irNodes: number, params: number, trainable: number;
  if (mode === 'forward') {
    const graph = trace(PRESET, () => ({ velocity: uf.uniFusionForward(cfg, { encoder }).velocity }));
    const c = compileGraph(graph, { weights: 'skeleton', preset: PRESET });
    model = c.emitted.model;
    irNodes = c.manifest.irNodes;
    params = c.manifest.paramCount;
    trainable = c.manifest.trainableParamCount;
  } else {
    const st = compileTrainStep(uf.uniFusionTrainStep(cfg, { encoder, name: `${PRESET}_train` }), {}, { weights: 'skeleton' });
    model = st.emitted.model;
    irNodes = st.graph.nodes().length;
    params = st.graph.paramCount();
    trainable = st.spec.params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  }
  const t2 = performance.now();
  const bytes = encodeModel(model);
  const t3 = performance.now();
  const out: ChildOut = {
    mode,
    importMs: round(t1 - t0, 1),
    buildMs: round(t2 - t1, 1),
    encodeMs: round(t3 - t2, 1),
    totalMs: round(t3 - t1, 1),
    rssBeforeKB,
    hwmKB: procStatusKB('VmHWM'),
    irNodes,
    onnxNodes: model.graph?.node?.length ?? 0,
    onnxBytes: bytes.length,
    params,
    trainable,
  };
  printJson(out);
}

export interface ModeResult {
  /** median compile time (trace + passes [+ autodiff] + emit + encode), seconds */
  compile_s: number;
  compile_all_s: number[];
  peak_rss_mib: number;
  peak_rss_all_mib: number[];
  baseline_rss_mib: number;
  breakdown_ms: { import: number; build: number; encode: number };
  ir_nodes: number;
  onnx_nodes: number;
  onnx_bytes: number;
  params: number;
  trainable_params: number;
  met: boolean;
}

export interface CompileUniFusionResult {
  bench: 'compile-unifusion';
  preset: string;
  runs: number;
  forward: ModeResult;
  train: ModeResult;
  goal_s: number;
  goal_rss_mib: number;
  load: { busy_before_runs: number[]; waited_s: number };
}

export async function compileUniFusion(runs = 3): Promise<CompileUniFusionResult> {
  const outs: Record<Mode, ChildOut[]> = { forward: [], train: [] };
  const busy: number[] = [];
  let waitedMs = 0;
  for (let i = 0; i < runs; i++)
    for (const mode of ['forward', 'train'] as const) {
      const q = await waitQuiet();
      busy.push(round(q.busy, 2));
      waitedMs += q.waitedMs;
      outs[mode].push((await runTsx<ChildOut>(new URL(import.meta.url).pathname, ['--child', mode])).json);
    }
  const summary = (os: ChildOut[]): ModeResult => {
    const med = (f: (o: ChildOut) => number) => median(os.map(f));
    const compile_s = round(med((o) => o.totalMs) / 1000, 3);
    const peak = round(med((o) => o.hwmKB) / 1024, 1);
    return {
      compile_s,
      compile_all_s: os.map((o) => round(o.totalMs / 1000, 3)),
      peak_rss_mib: peak,
      peak_rss_all_mib: os.map((o) => round(o.hwmKB / 1024, 1)),
      baseline_rss_mib: round(med((o) => o.rssBeforeKB) / 1024, 1),
      breakdown_ms: { import: med((o) => o.importMs), build: med((o) => o.buildMs), encode: med((o) => o.encodeMs) },
      ir_nodes: os[0]!.irNodes,
      onnx_nodes: os[0]!.onnxNodes,
      onnx_bytes: os[0]!.onnxBytes,
      params: os[0]!.params,
      trainable_params: os[0]!.trainable,
      met: compile_s <= GOAL_S && peak <= GOAL_RSS_MIB,
    };
  };
  return {
    bench: 'compile-unifusion',
    preset: PRESET,
    runs,
    forward: summary(outs.forward),
    train: summary(outs.train),
    goal_s: GOAL_S,
    goal_rss_mib: GOAL_RSS_MIB,
    load: { busy_before_runs: busy, waited_s: round(waitedMs / 1000, 1) },
  };
}

if (isMain(import.meta.url)) {
  const i = process.argv.indexOf('--child');
  if (i >= 0) await child(process.argv[i + 1] as Mode);
  else printJson(await compileUniFusion(argValue('runs', 3)));
}
