// Training steps as ONE ordinary ONNX graph: trainable params, AdamW moments,
// step, learning rate and a batch in; loss, updated params, updated moments and
// the global gradient norm out. Any onnxruntime (CPU, WebGPU, CUDA, web) runs it
// as an inference session. The compiler differentiates; frozen params get no
// gradient and no optimizer state.
import { isFloat, type DType } from '../ir/dtype.ts';
import type { Dim } from '../ir/dims.ts';
import { Graph } from '../ir/graph.ts';
import type { Node } from '../ir/node.ts';
import { grad } from '../autodiff/grad.ts';
import { currentTrace, DSLError, input, trace } from '../dsl/trace.ts';
import { concat, constant, Tensor } from '../dsl/tensor.ts';
import type { Param } from '../dsl/module.ts';
import { optimize, pipelineFor } from '../passes/pipeline.ts';
import type { Target } from '../ir/target.ts';
import { fuseGraph, type FusionReport } from '../passes/fusion/fuse.ts';
import { TARGET_TABLE } from '../passes/fusion/targets.ts';
import { emitModel, paramTensor, type Emitted } from '../../codegen/onnx/emit.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../io/host.ts';

export interface BatchTensorSpec {
  dtype: DType;
  shape: Dim[];
}

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** clip the global gradient norm to this value */
  clipNorm?: number;
  /** which params decay (default: not norms, biases, embeddings, rank <= 1) */
  decay?: (name: string, shape: readonly number[], param: Param | undefined) => boolean;
  /** micro-batches per step: batch inputs get a leading [M] axis; gradients of the mean loss */
  accumulate?: number;
  /** static loss scale for low-precision compute (gradients are unscaled before the update) */
  lossScale?: number;
  /** EMA decay of the weights: adds ema.<name> inputs and next.ema.<name> outputs */
  ema?: number;
}

export interface TrainStepDefinition {
  name: string;
  batch: Record<string, BatchTensorSpec>;
  /** scalar loss of one (micro-)batch; build modules outside so they are shared across micro-batches */
  loss: (batch: Record<string, Tensor>) => Tensor;
  seed?: number;
  /** mixed precision: compute dtype for params (f32 masters are cast where used) */
  computeDtype?: DType;
}

export interface TrainParamSpec {
  name: string;
  dtype: DType;
  shape: number[];
  decay: boolean;
}

export interface TrainStepSpec {
  name: string;
  params: TrainParamSpec[];
  frozen: string[];
  batch: { name: string; dtype: DType; shape: (number | string)[] }[];
  optimizer: Required<Omit<AdamWOptions, 'decay' | 'clipNorm' | 'ema'>> & { clipNorm: number | null; ema: number | null };
  /** state inputs and the outputs that replace them after a step */
  carry: { input: string; output: string }[];
}

export const STEP_INPUTS = { lr: 'lr', step: 'step' } as const;
export const STEP_OUTPUTS = { loss: 'loss', gradNorm: 'grad_norm' } as const;
export const stateName = {
  m: (p: string) => `adam.m.${p}`,
  v: (p: string) => `adam.v.${p}`,
  ema: (p: string) => `ema.${p}`,
  next: (x: string) => `next.${x}`,
};

function defaultDecay(name: string, shape: readonly number[], param: Param | undefined): boolean {
  if (param?.noDecay) return false;
  if (shape.length <= 1) return false;
  return !/(^|\.)(norm|[a-z_]*norm[a-z_]*|embed[a-z_]*|bias)(\.|$)/.test(name);
}

/**
 * Fusion of the step's forward before autodiff: these rules' fused ops are then differentiated by
 * their own VJP (src/ir/ops/fused.ts), which reads only the fused node's inputs, instead of by
 * the late fusion pass declining them because the backward reads their intermediates.
 */
export interface ForwardFusion {
  target: Target;
  rules: readonly string[];
  onReport?: (r: FusionReport) => void;
}

export function buildTrainStep(def: TrainStepDefinition, opt: AdamWOptions = {}, fuseForward?: ForwardFusion): { graph: Graph; spec: TrainStepSpec } {
  const o = {
    beta1: opt.beta1 ?? 0.9,
    beta2: opt.beta2 ?? 0.999,
    eps: opt.eps ?? 1e-8,
    weightDecay: opt.weightDecay ?? 0.01,
    accumulate: opt.accumulate ?? 1,
    lossScale: opt.lossScale ?? 1,
    clipNorm: opt.clipNorm ?? null,
    ema: opt.ema ?? null,
  };
  if (!Number.isInteger(o.accumulate) || o.accumulate < 1) throw new DSLError(`train step '${def.name}': accumulate must be a positive integer, got ${o.accumulate}`);
  let params: TrainParamSpec[] = [];
  let frozen: string[] = [];
  const carry: { input: string; output: string }[] = [];
  const graph = trace(
    def.name,
    () => {
      const M = o.accumulate;
      const batchIn: Record<string, Tensor> = {};
      for (const [k, s] of Object.entries(def.batch)) batchIn[k] = input(k, s.dtype, M > 1 ? [M, ...s.shape] : s.shape);
      const lr = input(STEP_INPUTS.lr, 'f32', []);
      const step = input(STEP_INPUTS.step, 'f32', []);
      const tr = currentTrace();
      let losses: Tensor[] = [];
      for (let m = 0; m < M; m++) {
        const micro = M === 1 ? batchIn : Object.fromEntries(Object.entries(batchIn).map(([k, t]) => [k, t.slice(0, m, m + 1).squeeze(0)]));
        const l = def.loss(micro);
        if (l.rank !== 0 || !l.isFloat()) throw new DSLError(`train step '${def.name}': loss must be a float scalar, got ${l}`);
        losses.push(l.cast('f32'));
      }
      // (recompute regions name their nodes by identity; a forward rebuilt by fusion would orphan them)
      if (fuseForward && fuseForward.rules.length && tr.regions.length === 0) {
        const fwd = new Graph(`${def.name}.forward`, [], losses.map((l, i) => ({ name: `loss${i}`, node: l.node })));
        // built in the trace's own builder: untouched nodes (params, inputs) come back as themselves
        const { graph, report } = fuseGraph(fwd, fuseForward.rules, fuseForward.target, tr.builder);
        fuseForward.onReport?.(report);
        losses = graph.outputs.map((o) => new Tensor(o.node));
      }
      const pnodes = new Graph('p', [], losses.map((l, i) => ({ name: `l${i}`, node: l.node }))).params();
      const trainable = pnodes.filter((p) => !p.params.frozen && isFloat(p.dtype));
      frozen = pnodes.filter((p) => p.params.frozen).map((p) => p.params.name);
      if (trainable.length === 0) throw new DSLError(`train step '${def.name}': the loss depends on no trainable parameter`);
      // per-micro-batch backward passes, summed: node order keeps one micro-batch's activations live at a time
      let grads: Node[] | undefined;
      for (const l of losses) {
        const scaled = l.mul(o.lossScale / M);
        const gs = grad(tr.builder, scaled.node, trainable, { regions: tr.regions });
        grads = grads ? grads.map((g, i) => tr.apply('add', {}, [g, gs[i]!])) : gs;
      }
      let g = grads!.map((n) => new Tensor(n).cast('f32'));
      if (o.lossScale !== 1) g = g.map((t) => t.mul(1 / o.lossScale));
      const sq = g.map((t) => (t.rank === 0 ? t.square() : t.square().sum(undefined)).reshape(1));
      const gradNorm = (sq.length === 1 ? sq[0]! : concat(sq, 0)).sum().sqrt();
      if (o.clipNorm !== null) {
        const coef = constant(o.clipNorm).div(gradNorm.add(1e-6)).minimum(1);
        g = g.map((t) => t.mul(coef));
      }
      const t = step;
      const bc1 = constant(1).sub(constant(o.beta1).pow(t));
      const bc2 = constant(1).sub(constant(o.beta2).pow(t));
      const outs: Record<string, Tensor> = { [STEP_OUTPUTS.loss]: losses.reduce((a, b) => a.add(b)).mul(1 / M), [STEP_OUTPUTS.gradNorm]: gradNorm };
      params = trainable.map((pn, i) => {
        const name = pn.params.name;
        const shape = pn.params.shape;
        const owner = tr.paramOwners.get(name) as Param | undefined;
        const decay = (opt.decay ?? defaultDecay)(name, shape, owner);
        const p = new Tensor(pn).cast('f32');
        const mIn = input(stateName.m(name), 'f32', shape);
        const vIn = input(stateName.v(name), 'f32', shape);
        const gi = g[i]!;
        const m1 = mIn.mul(o.beta1).add(gi.mul(1 - o.beta1));
        const v1 = vIn.mul(o.beta2).add(gi.square().mul(1 - o.beta2));
        // decoupled weight decay (AdamW): p <- p - lr * (mhat / (sqrt(vhat) + eps) + wd * p)
        let upd = m1.div(bc1).div(v1.div(bc2).sqrt().add(o.eps));
        if (decay && o.weightDecay) upd = upd.add(p.mul(o.weightDecay));
        const p1 = p.sub(lr.mul(upd)).cast(pn.dtype);
        outs[stateName.next(name)] = p1;
        outs[stateName.next(stateName.m(name))] = m1;
        outs[stateName.next(stateName.v(name))] = v1;
        carry.push({ input: name, output: stateName.next(name) }, { input: stateName.m(name), output: stateName.next(stateName.m(name)) }, { input: stateName.v(name), output: stateName.next(stateName.v(name)) });
        if (o.ema !== null) {
          const eIn = input(stateName.ema(name), 'f32', shape);
          outs[stateName.next(stateName.ema(name))] = eIn.mul(o.ema).add(p1.cast('f32').mul(1 - o.ema));
          carry.push({ input: stateName.ema(name), output: stateName.next(stateName.ema(name)) });
        }
        return { name, dtype: pn.dtype, shape: [...shape], decay };
      });
      return outs;
    },
    { seed: def.seed, computeDtype: def.computeDtype },
  );
  const spec: TrainStepSpec = {
    name: def.name,
    params,
    frozen,
    batch: Object.entries(def.batch).map(([name, s]) => ({ name, dtype: s.dtype, shape: (o.accumulate > 1 ? [o.accumulate, ...s.shape] : s.shape).map((d) => (typeof d === 'number' ? d : d.key)) })),
    optimizer: { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, accumulate: o.accumulate, lossScale: o.lossScale, clipNorm: o.clipNorm, ema: o.ema },
    carry,
  };
  return { graph, spec };
}

export interface CompiledTrainStep {
  graph: Graph;
  spec: TrainStepSpec;
  emitted: Emitted;
  /** seeded initial params and zero optimizer state, by input name */
  initialState(): Map<string, HostTensor>;
}

/** Build, optimise and emit a step graph: trainable params are graph inputs; frozen ones stay weights. */
export function compileTrainStep(
  def: TrainStepDefinition,
  opt: AdamWOptions = {},
  /** target: fuse the step graph for this execution provider (its train rules before autodiff, all its rules after, like any graph); default: no fusion */
  emit: {
    weights?: 'embed' | 'external' | 'skeleton';
    debug?: boolean;
    target?: Target;
    onFusion?: (r: FusionReport) => void;
    /** rules fused into the forward before autodiff (default with a target: its table's train.rules); onFusion gets their report first */
    trainFusion?: readonly string[];
  } = {},
): CompiledTrainStep {
  const trainRules = emit.target ? (emit.trainFusion ?? TARGET_TABLE[emit.target].train.rules) : [];
  const built = buildTrainStep(def, opt, emit.target && trainRules.length ? { target: emit.target, rules: trainRules, onReport: emit.onFusion } : undefined);
  const graph = optimize(built.graph, { debug: emit.debug, passes: emit.target ? pipelineFor(emit.target, { onReport: emit.onFusion }) : undefined });
  const trainable = new Set(built.spec.params.map((p) => p.name));
  const emitted = emitModel(graph, { weights: emit.weights ?? 'embed', paramAsInput: (p) => trainable.has(p.params.name), target: emit.target });
  return {
    graph,
    spec: built.spec,
    emitted,
    initialState() {
      const byName = new Map(graph.params().map((p) => [p.params.name, p]));
      const st = new Map<string, HostTensor>();
      for (const p of built.spec.params) {
        st.set(p.name, paramTensor(byName.get(p.name)!));
        st.set(stateName.m(p.name), fromFloat64('f32', p.shape, new Float64Array(p.shape.reduce((a, d) => a * d, 1))));
        st.set(stateName.v(p.name), fromFloat64('f32', p.shape, new Float64Array(p.shape.reduce((a, d) => a * d, 1))));
        if (built.spec.optimizer.ema !== null) {
          const init = paramTensor(byName.get(p.name)!);
          st.set(stateName.ema(p.name), fromFloat64('f32', p.shape, toFloat64(init)));
        }
      }
      return st;
    },
  };
}
