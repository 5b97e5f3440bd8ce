// Benchmark 4: one full training step (forward + backward + global-norm clip +
// AdamW) of a DiT-like stack, CPU fp32, 2 threads: our compiled step graph
// (src/train/step.ts compileTrainStep: ONE ONNX graph) in onnxruntime-node vs
// the same model and step in PyTorch eager (bench/py/train_step_eager.py:
// nn.Module + torch.optim.AdamW, torch.set_num_threads(2)) in a Python child.
//
// Model: 8 x TransformerBlock(hidden 512, 8 heads, SwiGLU 1536, RMSNorm,
// qk-norm, 2D RoPE over a 16 x 16 token grid (head dim split 32 + 32: rows,
// columns), bidirectional), then RMSNorm + Linear(512, 512) with bias; input
// tokens x [8, 256, 512], target [8, 256, 512], loss = MSE (a velocity-
// prediction stand-in). AdamW(lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay
// 0.01 on the 2-D weights only), clip the global grad norm to 1. Same batch
// every step.
//
// The peer loads our initial parameters and the batch from a safetensors file
// and its step-1 loss and grad norm and step-2 loss (after one AdamW update)
// must match ours, so both time the same computation. As in block-forward, the
// sides take turns in rounds (never at the same time), each round waiting for
// the rest of the machine to be quiet. Reported: median step time per side,
// their ratio, peak RSS (VmHWM) of each process, the step's FLOP/s and its
// share of one large ORT MatMul's FLOP/s measured in this same process.
//
//   npx tsx bench/train-step.ts [--rounds 6] [--per-round 1] [--warmup 3] [--budget-s 150]   -> one JSON line
//   npx tsx bench/train-step.ts --profile [--profile-steps 2] [--profile-out FILE]  -> + ORT profile by op type
//   npx tsx bench/train-step.ts --no-arena                                  -> ORT without its CPU memory arena
//   npx tsx bench/train-step.ts --target cpu                                -> the step graph fused for a target (after autodiff)
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { argValue, BENCH_DIR, isMain, median, printJson, procStatusKB, python, REPO_ROOT, round, waitQuiet, Peer } from './lib.ts';
import { matmulPeak, type MatmulPeakResult } from './matmul-peak.ts';

export const CFG = { layers: 8, hidden: 512, heads: 8, intermediate: 1536, batch: 8, grid: [16, 16] as [number, number], ropeTheta: 10000 };
export const OPT = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, clipNorm: 1 };
export const THREADS = 2;
const SEQ = CFG.grid[0] * CFG.grid[1];

/**
 * FLOPs of one step, counting matmuls only (2 per multiply-add): forward =
 * layers x (2 T (4 h^2 + 3 h i) + 4 B S^2 h) + 2 T h^2 (proj_out), T = B S
 * tokens; step = 3 x forward (the backward does two matmuls per forward one:
 * input and weight gradients). Norms, RoPE, softmax, AdamW: not counted.
 */
export function stepFlop(c = CFG): { forward: number; step: number; formula: string } {
  const T = c.batch * SEQ, h = c.hidden, i = c.intermediate;
  const forward = c.layers * (2 * T * (4 * h * h + 3 * h * i) + 4 * c.batch * SEQ * SEQ * h) + 2 * T * h * h;
  return { forward, step: 3 * forward, formula: 'step = 3 x [L (2T(4h^2 + 3hi) + 4BS^2h) + 2Th^2], T = B*S (matmuls only)' };
}

export interface TrainStepResult {
  bench: 'train-step';
  config: typeof CFG & { seq: number; params: number };
  optimizer: typeof OPT;
  threads: number;
  rounds: number;
  per_round: number;
  warmup: number;
  /** onnxruntime's CPU memory arena (enableCpuMemArena; --no-arena turns it off) */
  arena: boolean;
  ours: {
    ort: string;
    /** the fusion target of the step graph (null: not fused) */
    target: string | null;
    compile_ms: number;
    session_create_ms: number;
    runs: number;
    median_ms: number;
    min_ms: number;
    all_ms: number[];
    onnx_nodes: number;
    op_counts: Record<string, number>;
    /** VmHWM before creating the session (Node + compiler + initial state) and at the end */
    rss_before_session_mib: number;
    peak_rss_mib: number;
    losses: number[];
    grad_norm_1: number;
  };
  torch: { torch: string; threads: number; runs: number; median_ms: number; min_ms: number; all_ms: number[]; peak_rss_mib: number; losses: number[]; grad_norm_1: number; matmul_gflops: number };
  check: { loss1_rel: number; loss2_rel: number; grad_norm1_rel: number };
  /** ours / torch, overall medians (lower is better for us) */
  ratio: number;
  ratio_rounds_median: number;
  ratio_rounds: number[];
  goal_ratio: number;
  met: boolean;
  flops: { formula: string; step_gflop: number; ours_gflops: number; torch_gflops: number; matmul: MatmulPeakResult; ours_share_of_matmul: number; torch_share_of_ort_matmul: number };
  /** rounds run, their foreign CPU load, and which counted (clean); the figures above use the clean rounds (all rounds if none was clean) */
  load: { foreign_max: number; rounds_run: number; rounds_clean: number; waited_s: number; rounds: RoundRecord[] };
  profile?: ProfileSummary;
}

export interface ProfileSummary {
  steps: number;
  /** kernel time per step by ONNX op type, descending */
  by_op: { op: string; ms_per_step: number; share: number; nodes: number }[];
  kernel_ms_per_step: number;
  /** wall time of each profiled session.run (the profiler itself adds some) */
  run_ms: number[];
  /** kernel time per step in coarse groups (see categorize()) */
  by_category: { category: string; ms_per_step: number; share: number; nodes: number }[];
  /** kernel time per step by op type and output shape, the 30 largest */
  by_op_shape: { op: string; shape: string; ms_per_step: number; share: number; nodes: number }[];
  /** the slowest nodes (one step) */
  top_nodes: { name: string; op: string; ms: number; shape?: string }[];
}


const mib = (kb: number) => round(kb / 1024, 1);

/** a round is disturbed when more than this share of the machine's CPU went to other processes during a turn */
const FOREIGN_MAX = 0.1;

interface RoundRecord {
  ours_ms: number[];
  torch_ms: number[];
  /** share of all CPUs used by other processes during our turn and the peer's */
  foreign: [number, number];
  clean: boolean;
}

interface CpuSnap {
  busy: number;
  total: number;
  self: number;
  peer: number;
}

function procTicks(pid: number | 'self'): number {
  // utime + stime (fields 14, 15; after the ")" closing the command name)
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

function cpuSnap(peerPid: number): CpuSnap {
  const v = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  let peer = 0;
  try {
    peer = procTicks(peerPid);
  } catch {
    /* peer gone: counted as foreign */
  }
  return { busy: total - v[3]! - v[4]!, total, self: procTicks('self'), peer };
}

/** share of all CPUs used between a and b by processes other than this one and the peer */
function foreignShare(a: CpuSnap, b: CpuSnap): number {
  const dt = b.total - a.total;
  if (dt <= 0) return 0;
  return Math.max(0, (b.busy - a.busy - (b.self - a.self) - (b.peer - a.peer)) / dt);
}
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

/**
 * Coarse groups of the step graph's kernels, from op type and output shape:
 * GEMMs; the ReduceSums over the batch axis that finish weight gradients
 * (output [1, out, in]); param-shaped element-wise work (rank <= 2 outputs:
 * AdamW, clipping, the grad norm); layout ops; the rest (activation
 * element-wise work of forward and backward: norms, RoPE, SwiGLU, softmax).
 */
function categorize(op: string, shape: number[] | undefined): string {
  if (op === 'MatMul' || op === 'FusedMatMul' || op === 'Gemm') return 'GEMM (MatMul, FusedMatMul, Gemm)';
  if (op === 'ReduceSum' && shape && shape.length === 3 && shape[0] === 1 && shape[1]! > 1 && shape[2]! > 1) return 'weight-grad batch ReduceSum ([B,in,out] -> [1,in,out])';
  if (op === 'Transpose' || op === 'Concat' || op === 'Split' || op === 'Expand' || op === 'Reshape' || op === 'Unsqueeze' || op === 'Squeeze' || op === 'Slice') return 'layout (Transpose, Concat, Split, Expand, Reshape)';
  if (shape && shape.length <= 2) return 'param-shaped element-wise (AdamW, clip, grad norm)';
  return 'activation element-wise / reductions (norms, RoPE, SwiGLU, softmax, their grads)';
}

async function summarizeProfile(file: string, steps: number): Promise<ProfileSummary> {
  type Ev = { cat?: string; name?: string; dur?: number; args?: { op_name?: string; output_type_shape?: unknown } };
  const evs = JSON.parse(fs.readFileSync(file, 'utf8')) as Ev[];
  const byOp = new Map<string, { us: number; nodes: Set<string> }>();
  const byOpShape = new Map<string, { us: number; nodes: Set<string> }>();
  const byCat = new Map<string, { us: number; nodes: Set<string> }>();
  const byNode = new Map<string, { op: string; us: number; shape?: string }>();
  let total = 0;
  for (const e of evs) {
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || e.dur === undefined) continue;
    const op = e.args?.op_name ?? '?';
    const node = e.name.slice(0, -'_kernel_time'.length);
    const o = byOp.get(op) ?? { us: 0, nodes: new Set<string>() };
    o.us += e.dur;
    o.nodes.add(node);
    byOp.set(op, o);
    const shape = e.args?.output_type_shape ? JSON.stringify(e.args.output_type_shape).replace(/"float"|[{}"]/g, '').replace(/^\[:?|\]$/g, '') : '?';
    const os_ = byOpShape.get(`${op} ${shape}`) ?? { us: 0, nodes: new Set<string>() };
    os_.us += e.dur;
    os_.nodes.add(node);
    byOpShape.set(`${op} ${shape}`, os_);
    const outShape = (e.args?.output_type_shape as Record<string, number[]>[] | undefined)?.[0];
    const cat = categorize(op, outShape ? Object.values(outShape)[0] : undefined);
    const c = byCat.get(cat) ?? { us: 0, nodes: new Set<string>() };
    c.us += e.dur;
    c.nodes.add(node);
    byCat.set(cat, c);
    const n = byNode.get(node) ?? { op, us: 0, shape: e.args?.output_type_shape ? JSON.stringify(e.args.output_type_shape) : undefined };
    n.us += e.dur;
    byNode.set(node, n);
    total += e.dur;
  }
  return {
    steps,
    kernel_ms_per_step: round(total / 1000 / steps, 1),
    run_ms: evs.filter((e) => e.cat === 'Session' && e.name === 'model_run').map((e) => round(e.dur! / 1000, 0)),
    by_category: [...byCat.entries()].sort((a, b) => b[1].us - a[1].us).map(([category, o]) => ({ category, ms_per_step: round(o.us / 1000 / steps, 1), share: round(o.us / total, 3), nodes: o.nodes.size })),
    by_op_shape: [...byOpShape.entries()].sort((a, b) => b[1].us - a[1].us).slice(0, 30).map(([k, o]) => ({ op: k.slice(0, k.indexOf(' ')), shape: k.slice(k.indexOf(' ') + 1), ms_per_step: round(o.us / 1000 / steps, 1), share: round(o.us / total, 3), nodes: o.nodes.size })),
    by_op: [...byOp.entries()].sort((a, b) => b[1].us - a[1].us).map(([op, o]) => ({ op, ms_per_step: round(o.us / 1000 / steps, 1), share: round(o.us / total, 3), nodes: o.nodes.size })),
    top_nodes: [...byNode.entries()].sort((a, b) => b[1].us - a[1].us).slice(0, 25).map(([name, n]) => ({ name, op: n.op, ms: round(n.us / 1000 / steps, 1), shape: n.shape?.slice(0, 200) })),
  };
}

/** The benchmark's model and its compiled step graph (shared by trainStep and bench/train-step-ab.ts). */
export async function compileBenchStep(opts: { target?: import('../src/ir/target.ts').Target; trainFusion?: readonly string[] } = {}) {
  const { Module, RMSNorm, Linear, TransformerBlock, gridPositions } = await import('../src/dsl/index.ts');
  type Tensor = import('../src/dsl/index.ts').Tensor;
  const { compileTrainStep } = await import('../src/train/step.ts');

  class DiTStack extends Module {
    layers: InstanceType<typeof TransformerBlock>[];
    norm_out: InstanceType<typeof RMSNorm>;
    proj_out: InstanceType<typeof Linear>;
    constructor() {
      super();
      const half = CFG.hidden / CFG.heads / 2;
      this.layers = Array.from(
        { length: CFG.layers },
        () => new TransformerBlock({ hidden: CFG.hidden, heads: CFG.heads, intermediate: CFG.intermediate, act: 'swiglu', norm: 'rms', qkNorm: true, rope: { theta: CFG.ropeTheta, sections: [half, half] } }),
      );
      this.norm_out = new RMSNorm(CFG.hidden);
      this.proj_out = new Linear(CFG.hidden, CFG.hidden);
    }
    forward(x: Tensor): Tensor {
      const positions = gridPositions(CFG.grid[0], CFG.grid[1]);
      let h = x;
      for (const l of this.layers) h = l.forward(h, { positions });
      return this.proj_out.forward(this.norm_out.forward(h));
    }
  }

  const shape = [CFG.batch, SEQ, CFG.hidden];
  const model = new DiTStack();
  return compileTrainStep(
    { name: 'dit_train_step', batch: { x: { dtype: 'f32', shape }, target: { dtype: 'f32', shape } }, loss: (b) => model.forward(b.x!).sub(b.target!).square().mean(), seed: 1234 },
    { beta1: OPT.beta1, beta2: OPT.beta2, eps: OPT.eps, weightDecay: OPT.weightDecay, clipNorm: OPT.clipNorm },
    { target: opts.target, ...(opts.trainFusion ? { trainFusion: opts.trainFusion } : {}) },
  );
}

export async function trainStep(rounds = 6, perRound = 1, warmup = 3, budgetMs = 150_000, opts: { profile?: boolean; profileSteps?: number; profileOut?: string; arena?: boolean; target?: import('../src/ir/target.ts').Target } = {}): Promise<TrainStepResult> {
  if (warmup < 2) throw new Error('--warmup must be >= 2 (steps 1 and 2 are the agreement check)');
  const ort = await import('onnxruntime-node');
  const { encodeModel } = await import('../codegen/onnx/proto.ts');
  const { Rng } = await import('../src/ir/init.ts');
  const { writeSafetensors } = await import('../src/io/safetensors.ts');
  const { numel } = await import('../src/io/host.ts');
  type HostTensor = import('../src/io/host.ts').HostTensor;

  const shape = [CFG.batch, SEQ, CFG.hidden];
  const tc = performance.now();
  const step = await compileBenchStep({ target: opts.target });
  const bytes = encodeModel(step.emitted.model);
  const compileMs = performance.now() - tc;
  const opCounts: Record<string, number> = {};
  for (const n of step.emitted.model.graph!.node!) opCounts[n.opType!] = (opCounts[n.opType!] ?? 0) + 1;
  const init = step.initialState();
  const nParams = step.spec.params.reduce((a, p) => a + numel(p.shape), 0);

  const rng = new Rng(4321);
  const n = numel(shape);
  const xData = new Float32Array(n), tData = new Float32Array(n);
  for (let i = 0; i < n; i++) xData[i] = rng.normal();
  for (let i = 0; i < n; i++) tData[i] = rng.normal();

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-bench-train-'));
  let peer: Peer | undefined;
  try {
    // hand the peer our initial params (and which ones decay) and the batch
    const file = path.join(dir, 'train.safetensors');
    const tensors: Record<string, HostTensor> = {};
    for (const p of step.spec.params) tensors[p.name] = init.get(p.name)!;
    tensors['__x'] = { dtype: 'f32', shape, data: xData };
    tensors['__target'] = { dtype: 'f32', shape, data: tData };
    writeSafetensors(file, tensors, { decay: JSON.stringify(step.spec.params.filter((p) => p.decay).map((p) => p.name)) });

    const ortOpts = { executionProviders: ['cpu'], intraOpNumThreads: THREADS, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', enableCpuMemArena: opts.arena ?? true } as const;
    const toOrt = (t: HostTensor) => new ort.Tensor('float32', t.data as Float32Array, t.shape);
    const fresh = () => new Map<string, import('onnxruntime-node').Tensor>([...init].map(([k, v]) => [k, toOrt(v)] as const));
    const batchFeeds = { x: new ort.Tensor('float32', xData, shape), target: new ort.Tensor('float32', tData, shape) };
    const lr = new ort.Tensor('float32', Float32Array.of(OPT.lr), []);
    let state = fresh();
    let t = 0;
    const losses: number[] = [];
    let gradNorm1 = NaN;
    /** one training step on `sess`, carrying next.* into the state; returns ms of session.run */
    const runStep = async (sess: import('onnxruntime-node').InferenceSession) => {
      t++;
      const feeds: Record<string, import('onnxruntime-node').Tensor> = { ...batchFeeds, lr, step: new ort.Tensor('float32', Float32Array.of(t), []) };
      for (const [k, v] of state) feeds[k] = v;
      const t0 = performance.now();
      const out = await sess.run(feeds);
      const ms = performance.now() - t0;
      const loss = (out.loss!.data as Float32Array)[0]!;
      if (t <= 2) losses.push(loss);
      if (t === 1) gradNorm1 = (out.grad_norm!.data as Float32Array)[0]!;
      const next = new Map<string, import('onnxruntime-node').Tensor>();
      for (const c of step.spec.carry) next.set(c.input, out[c.output]!);
      state = next;
      return ms;
    };

    const rssBeforeSession = procStatusKB('VmHWM');
    const ts0 = performance.now();
    const session = await ort.InferenceSession.create(bytes, ortOpts);
    const sessionMs = performance.now() - ts0;
    let released = false;
    try {
      const child = spawn(python(), [path.join(BENCH_DIR, 'py', 'train_step_eager.py'), '--serve', '--weights', file, '--threads', String(THREADS), '--warmup', String(warmup), '--layers', String(CFG.layers), '--hidden', String(CFG.hidden), '--heads', String(CFG.heads), '--intermediate', String(CFG.intermediate), '--grid', `${CFG.grid[0]}x${CFG.grid[1]}`, '--rope-theta', String(CFG.ropeTheta), '--lr', String(OPT.lr), '--beta1', String(OPT.beta1), '--beta2', String(OPT.beta2), '--eps', String(OPT.eps), '--weight-decay', String(OPT.weightDecay), '--clip-norm', String(OPT.clipNorm)], {
        cwd: REPO_ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      peer = new Peer(child);
      // our warm-up (steps 1..warmup) while the peer imports torch and loads: they overlap only here, untimed
      for (let i = 0; i < warmup; i++) await runStep(session);
      const ready = await peer.next<{ ready: boolean; torch: string; threads: number; losses: number[]; grad_norm_1: number }>();
      const check = { loss1_rel: rel(losses[0]!, ready.losses[0]!), loss2_rel: rel(losses[1]!, ready.losses[1]!), grad_norm1_rel: rel(gradNorm1, ready.grad_norm_1) };
      if (!(check.loss1_rel <= 1e-4 && check.grad_norm1_rel <= 1e-3 && check.loss2_rel <= 1e-3)) {
        throw new Error(`PyTorch and ours disagree (not the same step): losses ours ${losses} torch ${ready.losses}, grad norm ours ${gradNorm1} torch ${ready.grad_norm_1}`);
      }

      // reference GEMM rate: best of two measurements (before and after the rounds), each the best of 5
      const q0 = await waitQuiet(0.15, 60_000);
      const mmA = await matmulPeak(2048, 5, THREADS);
      const torchMmA = (await peer.request<{ gflops: number }>('matmul 2048 5')).gflops;
      let waitedMs = q0.waitedMs;

      // Rounds: each side's turn waits for quiet first, and the CPU time used by processes other
      // than ours and the peer's during the turn is measured (/proc); a round where either turn
      // saw more than FOREIGN_MAX of the machine busy elsewhere is "disturbed" and does not count.
      // Rounds go on until `rounds` clean ones or the time budget is spent.
      const peerPid = child.pid!;
      const turn = async (fn: () => Promise<number[]>) => {
        const q = await waitQuiet(0.15, 30_000);
        waitedMs += q.waitedMs;
        const c0 = cpuSnap(peerPid);
        const ms = await fn();
        return { ms, foreign: foreignShare(c0, cpuSnap(peerPid)) };
      };
      const ours = async (k: number) => {
        const ms: number[] = [];
        for (let i = 0; i < k; i++) ms.push(await runStep(session));
        return ms;
      };
      const theirs = async (k: number) => (await peer!.request<{ ms: number[] }>(`run ${k}`)).ms;
      const all: RoundRecord[] = [];
      const tr0 = performance.now();
      for (let r = 0; all.filter((x) => x.clean).length < rounds && performance.now() - tr0 < budgetMs; r++) {
        let a, b;
        if (r % 2 === 0) (a = await turn(() => ours(perRound))), (b = await turn(() => theirs(perRound)));
        else (b = await turn(() => theirs(perRound))), (a = await turn(() => ours(perRound)));
        all.push({ ours_ms: a.ms, torch_ms: b.ms, foreign: [round(a.foreign, 3), round(b.foreign, 3)], clean: a.foreign <= FOREIGN_MAX && b.foreign <= FOREIGN_MAX });
      }
      const used = all.some((x) => x.clean) ? all.filter((x) => x.clean) : all;
      const oursAll = used.flatMap((x) => x.ours_ms), torchAll = used.flatMap((x) => x.torch_ms);
      const ratios = used.map((x) => median(x.ours_ms) / median(x.torch_ms));
      await waitQuiet(0.15, 30_000);
      const mmB = await matmulPeak(2048, 5, THREADS);
      const torchMmB = (await peer.request<{ gflops: number }>('matmul 2048 5')).gflops;
      const mm = mmB.gflops_median > mmA.gflops_median ? mmB : mmA;
      const torchMm = Math.max(torchMmA, torchMmB);
      const torchMem = await peer.request<{ vmhwm_kb: number }>('mem');
      const peakOurs = procStatusKB('VmHWM');

      let profile: ProfileSummary | undefined;
      if (opts.profile) {
        // a second session with ORT's profiler on (after the timed part, so it does not disturb it)
        released = true;
        await session.release();
        const ps = await ort.InferenceSession.create(bytes, { ...ortOpts, enableProfiling: true, profileFilePrefix: path.join(dir, 'ort-profile') });
        await runStep(ps); // the first run of a session is not representative
        await waitQuiet(0.15, 60_000);
        const k = opts.profileSteps ?? 2;
        for (let i = 0; i < k + 1; i++) await runStep(ps);
        ps.endProfiling();
        await ps.release();
        const pf = fs.readdirSync(dir).find((f) => f.startsWith('ort-profile') && f.endsWith('.json'));
        if (!pf) throw new Error('ORT wrote no profile file');
        if (opts.profileOut) fs.copyFileSync(path.join(dir, pf), opts.profileOut);
        // drop the first run's events: keep only the last k runs (runs are separated by model_run events)
        const evs = JSON.parse(fs.readFileSync(path.join(dir, pf), 'utf8')) as { cat?: string; name?: string; ts?: number }[];
        const runStarts = evs.filter((e) => e.cat === 'Session' && e.name === 'model_run').map((e) => e.ts!).sort((x, y) => x - y);
        const from = runStarts[runStarts.length - k]!;
        fs.writeFileSync(path.join(dir, 'kept.json'), JSON.stringify(evs.filter((e) => (e.ts ?? 0) >= from)));
        profile = await summarizeProfile(path.join(dir, 'kept.json'), k);
      }

      const fl = stepFlop();
      const oursMed = median(oursAll), torchMed = median(torchAll);
      const goal = 0.8;
      return {
        bench: 'train-step',
        config: { ...CFG, seq: SEQ, params: nParams },
        optimizer: OPT,
        threads: THREADS,
        rounds,
        per_round: perRound,
        warmup,
        arena: opts.arena ?? true,
        ours: {
          ort: ort.env.versions.common,
          target: opts.target ?? null,
          compile_ms: round(compileMs, 0),
          session_create_ms: round(sessionMs, 0),
          runs: oursAll.length,
          median_ms: round(oursMed, 1),
          min_ms: round(Math.min(...oursAll), 1),
          all_ms: oursAll.map((x) => round(x, 1)),
          onnx_nodes: step.emitted.model.graph!.node!.length,
          op_counts: opCounts,
          rss_before_session_mib: mib(rssBeforeSession),
          peak_rss_mib: mib(peakOurs),
          losses,
          grad_norm_1: gradNorm1,
        },
        torch: {
          torch: ready.torch,
          threads: ready.threads,
          runs: torchAll.length,
          median_ms: round(torchMed, 1),
          min_ms: round(Math.min(...torchAll), 1),
          all_ms: torchAll.map((x) => round(x, 1)),
          peak_rss_mib: mib(torchMem.vmhwm_kb),
          losses: ready.losses,
          grad_norm_1: ready.grad_norm_1,
          matmul_gflops: round(torchMm, 1),
        },
        check: { loss1_rel: Number(check.loss1_rel.toExponential(2)), loss2_rel: Number(check.loss2_rel.toExponential(2)), grad_norm1_rel: Number(check.grad_norm1_rel.toExponential(2)) },
        ratio: round(oursMed / torchMed, 2),
        ratio_rounds_median: round(median(ratios), 2),
        ratio_rounds: ratios.map((x) => round(x, 2)),
        goal_ratio: goal,
        met: oursMed / torchMed <= goal,
        flops: {
          formula: fl.formula,
          step_gflop: round(fl.step / 1e9, 1),
          ours_gflops: round(fl.step / oursMed / 1e6, 1),
          torch_gflops: round(fl.step / torchMed / 1e6, 1),
          matmul: mm,
          ours_share_of_matmul: round(fl.step / oursMed / 1e6 / mm.gflops_median, 3),
          torch_share_of_ort_matmul: round(fl.step / torchMed / 1e6 / mm.gflops_median, 3),
        },
        load: { foreign_max: FOREIGN_MAX, rounds_run: all.length, rounds_clean: all.filter((x) => x.clean).length, waited_s: round(waitedMs / 1000, 1), rounds: all.map((x) => ({ ...x, ours_ms: x.ours_ms.map((v) => round(v, 1)), torch_ms: x.torch_ms.map((v) => round(v, 1)) })) },
        ...(profile ? { profile } : {}),
      };
    } finally {
      if (!released) await session.release();
    }
  } finally {
    peer?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const ti = process.argv.indexOf('--target');
  printJson(await trainStep(argValue('rounds', 6), argValue('per-round', 1), argValue('warmup', 3), argValue('budget-s', 150) * 1000, { target: ti >= 0 ? (process.argv[ti + 1] as import('../src/ir/target.ts').Target) : undefined, arena: !process.argv.includes('--no-arena'), profile: process.argv.includes('--profile'), profileSteps: argValue('profile-steps', 2), profileOut: process.argv.includes('--profile-out') ? process.argv[process.argv.indexOf('--profile-out') + 1] : undefined }));
}
