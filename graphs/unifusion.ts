// UniFusion: a frozen VLM's hidden states condition a latent DiT (the paper:
// arXiv 2510.12789, §2-4 and App. A). This file holds the config,
// the conditioning variants (one switch), the assembled model, and the two ways
// to put it in a graph:
//
// 1. Taps as graph inputs (the default export; `unifusion compile graphs/unifusion.ts`):
//    the VLM is a separate ONNX model whose outputs feed
//      hidden_states.<i>  f32 [batch, seq, hE]   (transformers' output_hidden_states[i]:
//                                                 0 = embeddings, L = after the final norm)
//      condition_mask     bool [batch, seq]      (true = the token conditions the DiT)
//      key_states.<i>, value_states.<i>  f32 [batch, kv_heads, seq, head_dim]
//                                                (kv-fusion only: VLM layer i's keys after RoPE, values)
//    plus latents f32 [batch, C, 2h, 2w] (x_t) and timestep f32 [batch] (t in [0, 1]);
//    output velocity f32 [batch, C, 2h, 2w].
// 2. Encoder in the graph: any TapEncoder (decoderLMEncoder over graphs/vlm's DecoderLM,
//    decoderTapEncoder over a stack of DSL TransformerBlocks, or your own) runs first,
//    frozen, in the same graph; its own inputs (input_ids, attention_mask, ...) replace the taps.
//
// Conditioning variants (UniFusionConfig.conditioning; paper §2.1, App. A.2):
//   'last-layer'  hidden_states.L -> [refiner] -> RMSNorm adapter + projection -> input sequence
//   'penultimate' the same from hidden_states.(L-1)
//   'lap'         (default) LAP over the taps -> refiner -> projection -> input sequence
//   'lap-hsi'     one LAP (+ projection) per DiT layer, added to the condition tokens
//                 before that layer; no refiner
//   'hsi'         hidden_states.i added to the condition tokens before DiT layer i
//                 (i = 0..L-1; the first starts them), so DiT depth = VLM layers and
//                 DiT width = VLM hidden
//   'kv-fusion'   VLM layer i's keys/values are put in front of DiT layer i's own; no
//                 condition tokens; DiT depth, width, heads and kv heads = the VLM's
// The DiT, refiner and LAP are in dit.ts, refiner.ts and lap.ts; presets in presets.ts.
import { constant, defineGraph, dim, headSplit, input, Module, range, rope, type Embedding, type Tensor, type TransformerBlock } from '../src/dsl/index.ts';
import { dimMul } from '../src/ir/dims.ts';
import type { BatchTensorSpec, TrainStepDefinition } from '../src/train/step.ts';
import { LAP, type LapConfig } from './lap.ts';
import { ConditionProjection, Refiner, type RefinerConfig } from './refiner.ts';
import { DiT, type DiTConfig } from './dit.ts';
import { PRESETS, withConditioning } from './presets.ts';
import { DecoderLM, tokenMasks, type DecoderConfig, type LayerKV } from './vlm/index.ts';
import type { DType } from '../src/ir/dtype.ts';

export const CONDITIONINGS = ['last-layer', 'penultimate', 'kv-fusion', 'hsi', 'lap', 'lap-hsi'] as const;
export type Conditioning = (typeof CONDITIONINGS)[number];

/** The frozen VLM's language model, as far as the conditioning needs to know it. */
export interface VlmSpec {
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** for stand-in encoders (benchmarks); not used by the conditioning */
  intermediate?: number;
  vocab?: number;
  ropeTheta?: number;
}

export interface UniFusionConfig {
  conditioning: Conditioning;
  vlm: VlmSpec;
  /** hidden_states indices pooled by LAP ('lap', 'lap-hsi'), in pooling-weight order */
  taps: number[];
  /** LAP blocks; width = vlm.hidden, n = taps.length */
  lap: Omit<LapConfig, 'hidden' | 'layers'>;
  /** bidirectional refiner in front of the projection (last-layer, penultimate, lap) */
  refiner: RefinerConfig;
  dit: DiTConfig;
  /**
   * What the network outputs; the graph always returns the velocity. 'velocity' (default): the
   * DiT's output is v. 'x0': the DiT predicts the clean latents and v = (x_t - x0_hat) / max(t,
   * X0_T_MIN) (JiT, Li & He 2025): a pixel-space DiT with patches wider than its width cannot carry
   * the noise through to predict v = eps - x0, but the clean image lies on a low-dimensional manifold.
   */
  prediction?: 'velocity' | 'x0';
}

/** Smallest t in the x0 -> velocity conversion (JiT clips 1/t the same way). */
export const X0_T_MIN = 0.05;

export const HIDDEN_INPUT = (i: number) => `hidden_states.${i}`;
export const KEY_INPUT = (i: number) => `key_states.${i}`;
export const VALUE_INPUT = (i: number) => `value_states.${i}`;
export const MASK_INPUT = 'condition_mask';

/** hidden_states indices a config consumes. */
export function requiredHidden(cfg: UniFusionConfig): number[] {
  const L = cfg.vlm.layers;
  switch (cfg.conditioning) {
    case 'last-layer': return [L];
    case 'penultimate': return [L - 1];
    case 'lap': case 'lap-hsi': return [...cfg.taps];
    case 'hsi': return Array.from({ length: L }, (_, i) => i);
    case 'kv-fusion': return [];
  }
}

/** Throws a readable error when a config cannot work (variant constraints, taps out of range). */
export function checkConfig(cfg: UniFusionConfig): void {
  const { vlm, dit, conditioning: c } = cfg;
  const where = `UniFusion config (conditioning '${c}', VLM ${vlm.name})`;
  if (!(CONDITIONINGS as readonly string[]).includes(c)) throw new Error(`${where}: unknown conditioning (known: ${CONDITIONINGS.join(', ')})`);
  if (vlm.heads * vlm.headDim !== vlm.hidden && c === 'kv-fusion') {
    // Gemma-style models may have heads * headDim != hidden; the DiT cannot (its head dim is width / heads)
    throw new Error(`${where}: the VLM's heads x head dim (${vlm.heads} x ${vlm.headDim}) differs from its hidden ${vlm.hidden}, which a DiT of that width cannot match`);
  }
  const mismatch = (pairs: [string, number, number][]) => pairs.filter(([, a, b]) => a !== b).map(([what, a, b]) => `${what} ${a} != ${b}`);
  if (c === 'kv-fusion') {
    const bad = mismatch([
      ['DiT depth vs VLM layers:', dit.depth, vlm.layers],
      ['DiT width vs VLM hidden:', dit.hidden, vlm.hidden],
      ['DiT heads vs VLM heads:', dit.heads, vlm.heads],
      ['DiT kv heads vs VLM kv heads:', dit.kvHeads ?? dit.heads, vlm.kvHeads],
    ]);
    if (bad.length) throw new Error(`${where}: layerwise KV fusion puts VLM layer i's keys and values into DiT layer i's attention, so the DiT must match the VLM layer for layer; ${bad.join('; ')}`);
  }
  if (c === 'hsi') {
    const bad = mismatch([
      ['DiT depth vs VLM layers:', dit.depth, vlm.layers],
      ['DiT width vs VLM hidden:', dit.hidden, vlm.hidden],
    ]);
    if (bad.length) throw new Error(`${where}: hidden-state injection adds VLM hidden state i to DiT layer i's condition tokens, so depth and width must match the VLM; ${bad.join('; ')}`);
  }
  if (c === 'lap' || c === 'lap-hsi') {
    if (cfg.taps.length === 0) throw new Error(`${where}: LAP needs at least one tap`);
    cfg.taps.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t > vlm.layers) throw new Error(`${where}: tap ${t} is not a hidden_states index of a ${vlm.layers}-layer VLM (0..${vlm.layers})`);
      if (i > 0 && t <= cfg.taps[i - 1]!) throw new Error(`${where}: taps must be strictly increasing, got [${cfg.taps}]`);
    });
  }
  if (c === 'penultimate' && vlm.layers < 2) throw new Error(`${where}: a ${vlm.layers}-layer VLM has no penultimate layer`);
}

/** The condition as the model consumes it, wherever it comes from (graph inputs or an encoder in the graph). */
export interface ConditionFeatures {
  hidden(i: number): Tensor;
  /** bool [B, S] */
  mask: Tensor;
  kv?(layer: number): { key: Tensor; value: Tensor };
}

/** One DiT layer's dedicated adapter in 'lap-hsi'. */
export class Injection extends Module {
  lap: LAP;
  proj: ConditionProjection;
  constructor(cfg: UniFusionConfig) {
    super();
    this.lap = new LAP({ ...cfg.lap, hidden: cfg.vlm.hidden, layers: cfg.taps.length });
    this.proj = new ConditionProjection(cfg.vlm.hidden, cfg.dit.hidden, cfg.refiner.eps ?? 1e-5);
  }
  forward(taps: readonly Tensor[]): Tensor {
    return this.proj.forward(this.lap.forward(taps));
  }
}

/** Adapter (LAP / refiner / projection / injections, by variant) + DiT. */
export class UniFusion extends Module {
  lap?: LAP;
  refiner?: Refiner;
  injections?: Injection[];
  dit: DiT;
  constructor(readonly cfg: UniFusionConfig) {
    super();
    checkConfig(cfg);
    const c = cfg.conditioning;
    if (c === 'lap') this.lap = new LAP({ ...cfg.lap, hidden: cfg.vlm.hidden, layers: cfg.taps.length });
    if (c === 'lap' || c === 'last-layer' || c === 'penultimate') this.refiner = new Refiner(cfg.vlm.hidden, cfg.dit.hidden, cfg.refiner);
    if (c === 'lap-hsi') this.injections = Array.from({ length: cfg.dit.depth }, () => new Injection(cfg));
    this.dit = new DiT(cfg.dit);
  }

  /** Names of the LAP pooling weights ([1, n] each; one per DiT layer in 'lap-hsi'). */
  poolWeightNames(): string[] {
    if (this.lap) return [this.lap.poolWeightName];
    return (this.injections ?? []).map((j) => j.lap.poolWeightName);
  }

  /** latents x_t [B, C, 2h, 2w], timestep [B] -> velocity (converted from x0_hat when cfg.prediction is 'x0') */
  forward(f: ConditionFeatures, latents: Tensor, timestep: Tensor): Tensor {
    const out = this.network(f, latents, timestep);
    if ((this.cfg.prediction ?? 'velocity') === 'velocity') return out;
    return latents.sub(out).div(timestep.reshape(timestep.dim(0), 1, 1, 1).maximum(X0_T_MIN));
  }

  /**
   * 'lap' / 'last-layer' / 'penultimate': the condition tokens [B, S, dit.hidden] the DiT attends
   * to (LAP, refiner, projection). They depend on the condition only, not on the latents or t, so
   * a sampler can compute them once per prompt (the split graphs below).
   */
  conditionTokens(f: ConditionFeatures): Tensor {
    const { cfg } = this;
    const L = cfg.vlm.layers;
    switch (cfg.conditioning) {
      case 'last-layer':
      case 'penultimate':
        return this.refiner!.forward(f.hidden(cfg.conditioning === 'last-layer' ? L : L - 1), f.mask);
      case 'lap':
        return this.refiner!.forward(this.lap!.forward(cfg.taps.map((i) => f.hidden(i))), f.mask);
      default:
        throw new Error(`conditioning '${cfg.conditioning}' injects the condition into every DiT layer: it has no separate condition tokens`);
    }
  }

  /** velocity from precomputed condition tokens (the per-step half of the split graphs) */
  forwardOnTokens(tokens: Tensor, mask: Tensor, latents: Tensor, timestep: Tensor): Tensor {
    const out = this.dit.forward(latents, timestep, { mask, tokens });
    if ((this.cfg.prediction ?? 'velocity') === 'velocity') return out;
    return latents.sub(out).div(timestep.reshape(timestep.dim(0), 1, 1, 1).maximum(X0_T_MIN));
  }

  /** The network's own output (velocity or x0_hat, by cfg.prediction). */
  network(f: ConditionFeatures, latents: Tensor, timestep: Tensor): Tensor {
    const { cfg } = this;
    const mask = f.mask;
    switch (cfg.conditioning) {
      case 'last-layer':
      case 'penultimate':
      case 'lap':
        return this.dit.forward(latents, timestep, { mask, tokens: this.conditionTokens(f) });
      case 'lap-hsi': {
        const taps = cfg.taps.map((i) => f.hidden(i));
        return this.dit.forward(latents, timestep, { mask, inject: (i) => this.injections![i]!.forward(taps) });
      }
      case 'hsi':
        return this.dit.forward(latents, timestep, { mask, inject: (i) => f.hidden(i) });
      case 'kv-fusion': {
        if (!f.kv) throw new Error("conditioning 'kv-fusion' needs the VLM's keys and values (the encoder gave none)");
        return this.dit.forward(latents, timestep, { mask, kv: (i) => f.kv!(i) });
      }
    }
  }
}

// ---------------------------------------------------------------- encoders in the graph

/** What UniFusion asks of an encoder. */
export interface EncoderRequest {
  /** hidden_states indices */
  hidden: number[];
  /** every layer's keys (after RoPE) and values */
  kv: boolean;
}

export interface EncoderOutput {
  /** hidden_states.<i> [B, S, hE] for every requested index (transformers' indexing) */
  hidden: ReadonlyMap<number, Tensor>;
  /** bool [B, S]: tokens that condition the DiT (padding false; VERIFI may also drop prompt tokens) */
  mask: Tensor;
  /** per layer [B, KV, S, hd], when requested */
  kv?: { key: Tensor; value: Tensor }[];
}

/**
 * A VLM that runs in the same graph as UniFusion. graphs/vlm/* modules plug in by
 * implementing this; its params should be frozen and named apart from
 * UniFusion's (lap., refiner., injections., dit.). Its batch dim must be dim('batch').
 */
export interface TapEncoder {
  readonly spec: VlmSpec;
  /** the encoder's graph inputs by name (e.g. input_ids i64 [batch, seq]) */
  readonly inputs: Record<string, BatchTensorSpec>;
  encode(inputs: Record<string, Tensor>, want: EncoderRequest): EncoderOutput;
}

/** A decoder-only stack in Hugging Face layout made of DSL TransformerBlocks. */
export interface DecoderStack extends Module {
  embed_tokens: Embedding;
  layers: TransformerBlock[];
  norm: { forward(x: Tensor): Tensor };
}

/**
 * TapEncoder over a DecoderStack (Llama / Qwen2 / Qwen3 text models built from the
 * DSL; the example transformer). Inputs input_ids i64 [batch, seq] and
 * attention_mask bool [batch, seq] (true = token, also the condition mask).
 * Freezes the stack. Keys/values are recomputed from each layer's input with the
 * layer's own weights; the builder interns them into the nodes the layer made.
 */
export function decoderTapEncoder(stack: DecoderStack, spec: VlmSpec, opts: { causal?: boolean; positions?: (ids: Tensor) => Tensor[] } = {}): TapEncoder {
  stack.freeze();
  if (stack.layers.length !== spec.layers) throw new Error(`decoderTapEncoder: the stack has ${stack.layers.length} layers, spec ${spec.name} says ${spec.layers}`);
  const B = dim('batch'), S = dim('seq');
  return {
    spec,
    inputs: { input_ids: { dtype: 'i64', shape: [B, S] }, attention_mask: { dtype: 'bool', shape: [B, S] } },
    encode(ins, want) {
      const ids = ins.input_ids!, mask = ins.attention_mask!;
      const positions = opts.positions?.(ids) ?? [range(ids.dim(1))];
      const need = new Set(want.hidden);
      const L = spec.layers;
      // run the layers up to the highest requested state only (all of them for keys/values)
      const top = want.kv ? L : Math.max(0, ...want.hidden);
      const hidden = new Map<number, Tensor>();
      const kv: { key: Tensor; value: Tensor }[] = [];
      let h = stack.embed_tokens.forward(ids);
      for (let i = 0; i < Math.min(top, L); i++) {
        if (need.has(i)) hidden.set(i, h);
        const layer = stack.layers[i]!;
        if (want.kv) kv.push(layerKV(layer, h, positions));
        h = layer.forward(h, { positions, causal: opts.causal ?? true, keyMask: mask });
      }
      if (need.has(top) && top < L) hidden.set(top, h);
      if (need.has(L)) hidden.set(L, stack.norm.forward(h));
      return { hidden, mask, kv: want.kv ? kv : undefined };
    },
  };
}

/**
 * TapEncoder over graphs/vlm's DecoderLM (transformers' Qwen2 / Qwen2.5-VL text / Qwen3(-VL)
 * text / Llama / Gemma-3 text base models, HF parameter names, as `import-hf` writes them).
 * Inputs input_ids i64 and attention_mask i64 [batch, seq] (1 = token), positions 0..S-1 (its
 * 'arange' mode); condition mask = the text mask (not padding). Built once for the layers `cfg`
 * needs (every layer for kv-fusion), frozen; `prefix` names its params (e.g. 'model').
 */
export function decoderLMEncoder(dcfg: DecoderConfig, cfg: UniFusionConfig, opts: { prefix?: string; dtype?: DType } = {}): TapEncoder {
  const taps = cfg.conditioning === 'kv-fusion' ? [dcfg.layers] : requiredHidden(cfg);
  const lm = new DecoderLM(dcfg, taps, opts.dtype ?? 'f32');
  if (opts.prefix) lm.named(opts.prefix);
  lm.freeze();
  const B = dim('batch'), S = dim('seq');
  return {
    spec: { name: dcfg.modelType, layers: dcfg.layers, hidden: dcfg.hidden, heads: dcfg.heads, kvHeads: dcfg.kvHeads, headDim: dcfg.headDim, intermediate: dcfg.intermediate, vocab: dcfg.vocab },
    inputs: { input_ids: { dtype: 'i64', shape: [B, S] }, attention_mask: { dtype: 'i64', shape: [B, S] } },
    encode(ins, want) {
      const mask = ins.attention_mask!;
      const kv: LayerKV[] | undefined = want.kv ? [] : undefined;
      const hs = lm.forward(lm.embed(ins.input_ids!), { attentionMask: mask, positions: range(mask.dim(1)), taps, kv });
      const hidden = new Map(want.hidden.map((i) => [i, hs[HIDDEN_INPUT(i)] ?? fail(`${dcfg.modelType} encoder built for taps [${taps}] has no hidden_states.${i}`)] as const));
      return { hidden, mask: tokenMasks(mask).text_mask, kv };
    },
  };
}

/** A TransformerBlock's keys (QK-norm and RoPE applied, as its attention uses them) and values for input h. */
export function layerKV(layer: TransformerBlock, h: Tensor, positions: Tensor[]): { key: Tensor; value: Tensor } {
  const a = layer.self_attn;
  const x = layer.input_layernorm.forward(h);
  let key = headSplit(a.k_proj.forward(x), a.kvHeads, a.headDim);
  if (a.q_norm && a.k_norm) key = a.k_norm.forward(key);
  const r = a.cfg.rope;
  if (r) key = rope(key, positions, r.sections ?? [a.headDim], { theta: r.theta, style: r.style });
  return { key, value: headSplit(a.v_proj.forward(x), a.kvHeads, a.headDim) };
}

// ---------------------------------------------------------------- graphs and train steps

export interface BuildOptions {
  /** run this encoder in the graph instead of taking its taps as inputs */
  encoder?: TapEncoder;
}

/** The condition's graph inputs (taps mode) or the encoder's own. */
export function conditionInputs(cfg: UniFusionConfig, opts: BuildOptions = {}): Record<string, BatchTensorSpec> {
  if (opts.encoder) {
    checkEncoder(cfg, opts.encoder.spec);
    return { ...opts.encoder.inputs };
  }
  const B = dim('batch'), S = dim('seq');
  const { vlm } = cfg;
  const out: Record<string, BatchTensorSpec> = {};
  for (const i of requiredHidden(cfg)) out[HIDDEN_INPUT(i)] = { dtype: 'f32', shape: [B, S, vlm.hidden] };
  out[MASK_INPUT] = { dtype: 'bool', shape: [B, S] };
  if (cfg.conditioning === 'kv-fusion')
    for (let i = 0; i < vlm.layers; i++) {
      out[KEY_INPUT(i)] = { dtype: 'f32', shape: [B, vlm.kvHeads, S, vlm.headDim] };
      out[VALUE_INPUT(i)] = { dtype: 'f32', shape: [B, vlm.kvHeads, S, vlm.headDim] };
    }
  return out;
}

function checkEncoder(cfg: UniFusionConfig, spec: VlmSpec): void {
  const v = cfg.vlm;
  const keys = ['layers', 'hidden', 'heads', 'kvHeads', 'headDim'] as const;
  const bad = keys.filter((k) => v[k] !== spec[k]).map((k) => `${k} ${spec[k]} != ${v[k]}`);
  if (bad.length) throw new Error(`encoder ${spec.name} does not have the shapes of the config's VLM ${v.name}: ${bad.join(', ')}`);
}

/** Condition features from named tensors (graph inputs or a train step's batch). */
export function conditionFeatures(cfg: UniFusionConfig, t: Record<string, Tensor>, opts: BuildOptions = {}): ConditionFeatures {
  const get = (name: string) => t[name] ?? fail(`no tensor '${name}'`);
  if (!opts.encoder)
    return {
      hidden: (i) => get(HIDDEN_INPUT(i)),
      mask: get(MASK_INPUT),
      kv: (i) => ({ key: get(KEY_INPUT(i)), value: get(VALUE_INPUT(i)) }),
    };
  const enc = opts.encoder;
  const out = enc.encode(Object.fromEntries(Object.keys(enc.inputs).map((k) => [k, get(k)])), { hidden: requiredHidden(cfg), kv: cfg.conditioning === 'kv-fusion' });
  return {
    hidden: (i) => out.hidden.get(i) ?? fail(`encoder ${enc.spec.name} did not return hidden_states.${i}`),
    mask: out.mask,
    kv: out.kv ? (i) => out.kv![i] ?? fail(`encoder ${enc.spec.name} returned no keys/values for layer ${i}`) : undefined,
  };
}

function fail(msg: string): never {
  throw new Error(msg);
}

/** latents (x_t or x0) f32 [batch, C, 2h, 2w]. */
export function latentSpec(cfg: UniFusionConfig): BatchTensorSpec {
  const p = cfg.dit.patch;
  return { dtype: 'f32', shape: [dim('batch'), cfg.dit.channels, dimMul(dim('h'), p), dimMul(dim('w'), p)] };
}

/** Inside a trace: declare the inputs, build the model, return { velocity }. */
export function uniFusionForward(cfg: UniFusionConfig, opts: BuildOptions = {}): { velocity: Tensor; model: UniFusion } {
  const model = new UniFusion(cfg);
  const t: Record<string, Tensor> = {};
  for (const [name, s] of Object.entries(conditionInputs(cfg, opts))) t[name] = input(name, s.dtype, s.shape);
  const lat = latentSpec(cfg);
  const latents = input('latents', lat.dtype, lat.shape);
  const timestep = input('timestep', 'f32', [dim('batch')]);
  return { velocity: model.forward(conditionFeatures(cfg, t, opts), latents, timestep), model };
}

// ---------------------------------------------------------------- split graphs for sampling
// The adapter (LAP + refiner + projection) of 'lap' / 'last-layer' / 'penultimate' depends only on
// the condition, yet in the single graph it runs again at every denoising step. Sampling compiles
// it apart: condition -> condition_tokens once per prompt, then the DiT per step on the tokens.
// Both graphs build the whole UniFusion module, so parameter names are the single graph's.

export const CONDITION_TOKENS = 'condition_tokens';

/** Conditioning variants whose adapter can run apart from the DiT. */
export function hasConditionTokens(cfg: UniFusionConfig): boolean {
  return cfg.conditioning === 'lap' || cfg.conditioning === 'last-layer' || cfg.conditioning === 'penultimate';
}

/** Inside a trace: the condition inputs -> condition_tokens f32 [batch, seq, dit.hidden]. */
export function uniFusionConditionForward(cfg: UniFusionConfig): { condition_tokens: Tensor } {
  if (!hasConditionTokens(cfg)) throw new Error(`conditioning '${cfg.conditioning}' cannot be split into condition and DiT graphs`);
  const model = new UniFusion(cfg);
  const t: Record<string, Tensor> = {};
  for (const [name, s] of Object.entries(conditionInputs(cfg))) t[name] = input(name, s.dtype, s.shape);
  return { condition_tokens: model.conditionTokens(conditionFeatures(cfg, t)) };
}

/** Inside a trace: condition_tokens, condition_mask, latents, timestep -> velocity. */
export function uniFusionTokensForward(cfg: UniFusionConfig): { velocity: Tensor } {
  if (!hasConditionTokens(cfg)) throw new Error(`conditioning '${cfg.conditioning}' cannot be split into condition and DiT graphs`);
  const model = new UniFusion(cfg);
  const B = dim('batch'), S = dim('seq');
  const tokens = input(CONDITION_TOKENS, 'f32', [B, S, cfg.dit.hidden]);
  const mask = input(MASK_INPUT, 'bool', [B, S]);
  const lat = latentSpec(cfg);
  const latents = input('latents', lat.dtype, lat.shape);
  const timestep = input('timestep', 'f32', [dim('batch')]);
  return { velocity: model.forwardOnTokens(tokens, mask, latents, timestep) };
}

/**
 * Rectified flow (paper §2.2, arXiv 2510.12789): x_t = (1 - t) x0 + t eps, the model
 * predicts the velocity eps - x0; loss = mean((v - (eps - x0))^2). t [B] is sampled
 * host-side (sampleLogitNormal) and fed in.
 */
export function rectifiedFlowLoss(velocity: (xt: Tensor, t: Tensor) => Tensor, x0: Tensor, noise: Tensor, t: Tensor): Tensor {
  const tb = t.reshape(t.dim(0), 1, 1, 1);
  const xt = x0.mul(tb.rsub(1)).add(noise.mul(tb));
  const sq = velocity(xt, t).sub(noise.sub(x0)).square();
  // mean as sum / (sum of ones): reduce_mean's gradient takes 1/N from a dim_value node, which the
  // fold pass currently evaluates to NaN when N has symbolic dims (batch, h, w)
  return sq.sum().div(constant(1).expand(...sq.shape).sum());
}

/** Logit-normal timesteps sigmoid(mean + std z), z ~ N(0, 1) (SD3's default: mean 0, std 1). */
export function sampleLogitNormal(rng: { normal(): number }, n: number, opts: { mean?: number; std?: number } = {}): Float64Array {
  return Float64Array.from({ length: n }, () => 1 / (1 + Math.exp(-((opts.mean ?? 0) + (opts.std ?? 1) * rng.normal()))));
}

/**
 * A train step definition for compileTrainStep: batch = the condition inputs (or the
 * encoder's), latents (clean x0), noise, timestep; loss = rectifiedFlowLoss. The
 * encoder (if any) is frozen, so only the adapter and the DiT train.
 */
export function uniFusionTrainStep(cfg: UniFusionConfig, opts: BuildOptions & { name?: string; seed?: number } = {}): TrainStepDefinition & { model: UniFusion } {
  const model = new UniFusion(cfg);
  const lat = latentSpec(cfg);
  const batch: Record<string, BatchTensorSpec> = { ...conditionInputs(cfg, opts), latents: lat, noise: lat, timestep: { dtype: 'f32', shape: [dim('batch')] } };
  return {
    name: opts.name ?? `unifusion_train_${cfg.conditioning}`,
    batch,
    seed: opts.seed,
    model,
    loss: (b) => {
      const f = conditionFeatures(cfg, b, opts);
      return rectifiedFlowLoss((xt, t) => model.forward(f, xt, t), b.latents!, b.noise!, b.timestep!);
    },
  };
}

/** Our parameter name -> Krea 2's checkpoint name (its SingleStreamDiT + TextFusionTransformer). */
export function krea2Name(name: string): string {
  const rules: [RegExp, string][] = [
    [/^lap\./, 'txtfusion.'],
    [/^refiner\.blocks\./, 'txtfusion.refiner_blocks.'],
    [/^refiner\.proj\.norm\./, 'txtmlp.0.'],
    [/^refiner\.proj\.fc1\./, 'txtmlp.1.'],
    [/^refiner\.proj\.fc2\./, 'txtmlp.3.'],
    [/^dit\.tmlp\.fc1\./, 'tmlp.0.'],
    [/^dit\.tmlp\.fc2\./, 'tmlp.2.'],
    [/^dit\.tproj\.fc\./, 'tproj.1.'],
    [/^dit\./, ''],
  ];
  for (const [re, to] of rules) if (re.test(name)) return name.replace(re, to);
  return name;
}

/** The pipeline with taps as inputs, for every preset (and every variant of tiny: tiny-hsi, ...). */
export default defineGraph<UniFusionConfig>({
  name: 'unifusion',
  description: 'UniFusion adapter (LAP / refiner / variants) + DiT: VLM hidden states, latents x_t, timestep -> velocity',
  presets: {
    ...PRESETS,
    ...Object.fromEntries(CONDITIONINGS.filter((c) => c !== 'lap').map((c) => [`tiny-${c}`, withConditioning(PRESETS.tiny!, c)])),
  },
  defaultPreset: 'tiny',
  build: (cfg) => ({ velocity: uniFusionForward(cfg).velocity }),
});
