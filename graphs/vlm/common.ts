// Decoder-only LLM encoders (Qwen2/2.5(-VL), Llama-3.x, Gemma-3) with Hugging Face
// semantics and parameter names, shared by qwen2.ts, llama.ts and gemma3.ts.
//
// One normalised config (DecoderConfig) describes all three families; the family
// files turn a config.json into it (HF class defaults for missing keys, legacy and
// transformers-5 rope layouts). DecoderLM holds the modules under HF base-model
// names (`embed_tokens.weight`, `layers.N.self_attn.q_proj.weight`, `norm.weight`)
// and computes only the layers the taps need.
//
// Tap indices are transformers' `output_hidden_states=True` tuple indices:
//   hidden_states[0]      = the input of decoder layer 0: the token embeddings
//                           (Gemma: after the sqrt(hidden) scaling, in the model dtype)
//   hidden_states[i]      = the output of decoder layer i-1 (0-based, `model.layers[i-1]`),
//                           i.e. of the i-th layer counting from 1, for 1 <= i < L
//   hidden_states[L]      = the output of the last layer AFTER the final norm
//                           (transformers replaces the raw last-layer output with
//                           last_hidden_state), L = num_hidden_layers.
import { dimSub, isStatic, type Dim } from '../../src/ir/dims.ts';
import type { DType } from '../../src/ir/dtype.ts';
import { concat, constant, Embedding, gelu, headMerge, headSplit, Linear, lowest, Module, range, silu, type GraphDefinition, type Param, type Tensor } from '../../src/dsl/index.ts';
import type { Graph } from '../../src/ir/graph.ts';

export class EncoderConfigError extends Error {
  override name = 'EncoderConfigError';
}

// ---------------------------------------------------------------------------------------------
// Tap specs
// ---------------------------------------------------------------------------------------------

/**
 * Which hidden states to output, as a string or explicit indices (0..L, see the file header).
 * Forms (joined with '+' for a union, e.g. `every:3+last`):
 *   every:K[:offset]  indices offset, offset+K, offset+2K, ... <= L; offset defaults to K, so
 *                     `every:3` = [3, 6, 9, ...]: the outputs of every 3rd layer counted from 1
 *                     (the paper's "every third layer"), without the embeddings. On InternVL3-8B
 *                     (Qwen2.5-7B, L = 28) that is [3, 6, ..., 27] (9 taps); `every:3:0` adds 0.
 *                     Krea 2 taps Qwen3-VL-4B (L = 36) at hidden_states[2, 5, ..., 35]: `every:3:2`,
 *                     the outputs of 0-based decoder layers 1, 4, ..., 34; index 36 (normed) is not
 *                     among them.
 *   list:a,b,c        explicit indices; negative ones count from the end as Python tuple
 *                     indexing does (-1 = L, -2 = L-1).
 *   last              [L]: the last hidden state, after the final norm (= last_hidden_state).
 *   penultimate       [L-1]: hidden_states[-2], the output of layer L-2 (0-based), un-normed.
 * The result is sorted and de-duplicated; anything outside 0..L is an error.
 */
export type TapSpec = string | readonly number[];

export function parseTaps(spec: TapSpec, numLayers: number): number[] {
  const L = numLayers;
  const out = new Set<number>();
  const check = (i: number, what: string) => {
    if (!Number.isInteger(i)) throw new EncoderConfigError(`tap ${what}: ${i} is not an integer`);
    const j = i < 0 ? i + L + 1 : i;
    if (j < 0 || j > L) throw new EncoderConfigError(`tap ${what}: index ${i} is outside hidden_states 0..${L} (the model has ${L} layers; negative indices count from ${-(L + 1)})`);
    out.add(j);
  };
  if (typeof spec !== 'string') {
    if (spec.length === 0) throw new EncoderConfigError('tap list is empty');
    for (const i of spec) check(i, `list [${spec.join(', ')}]`);
    return [...out].sort((a, b) => a - b);
  }
  const int = (s: string, what: string): number => {
    if (!/^-?\d+$/.test(s.trim())) throw new EncoderConfigError(`tap spec '${spec}': ${what} '${s}' is not an integer`);
    return Number(s);
  };
  if (spec.trim() === '') throw new EncoderConfigError('tap spec is empty (every:K[:offset] | list:a,b,c | last | penultimate)');
  for (const raw of spec.split('+')) {
    const part = raw.trim();
    if (part === 'last') out.add(L);
    else if (part === 'penultimate') {
      if (L < 1) throw new EncoderConfigError(`tap spec '${spec}': a model with ${L} layers has no penultimate hidden state`);
      out.add(L - 1);
    } else if (part.startsWith('every:')) {
      const args = part.slice(6).split(':');
      if (args.length > 2) throw new EncoderConfigError(`tap spec '${part}': expected every:K or every:K:offset`);
      const k = int(args[0]!, 'K');
      if (k < 1) throw new EncoderConfigError(`tap spec '${part}': K must be >= 1`);
      const off = args.length === 2 ? int(args[1]!, 'offset') : k;
      if (off < 0 || off > L) throw new EncoderConfigError(`tap spec '${part}': offset ${off} is outside hidden_states 0..${L} (the model has ${L} layers)`);
      for (let i = off; i <= L; i += k) out.add(i);
    } else if (part.startsWith('list:')) {
      const items = part.slice(5).split(',');
      if (items.length === 0 || items.some((s) => s.trim() === '')) throw new EncoderConfigError(`tap spec '${part}': expected list:a,b,c`);
      for (const s of items) check(int(s, 'index'), `spec '${part}'`);
    } else throw new EncoderConfigError(`tap spec '${part}' is not every:K[:offset], list:a,b,c, last or penultimate`);
  }
  return [...out].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------
// The normalised config
// ---------------------------------------------------------------------------------------------

export type LayerKind = 'full' | 'sliding';

export interface RopeSpec {
  /** inverse frequencies, one per rotated pair (head_dim / 2), scaling (linear, llama3) applied */
  invFreq: number[];
  /** multiplier of cos and sin (transformers' attention_scaling; 1 for default, linear, llama3) */
  attentionScaling: number;
  /** M-RoPE: the position stream (0 = t, 1 = h, 2 = w) that drives each frequency (mropeStreams) */
  streams?: number[];
}

export type Activation = 'silu' | 'gelu' | 'gelu_tanh';

export interface DecoderConfig {
  /** config.json model_type this came from (messages, graph names) */
  modelType: string;
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  eps: number;
  act: Activation;
  /** bias on q_proj/k_proj/v_proj, on o_proj, on the MLP projections */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** 'llama': weight * x̂ (weight init 1); 'gemma': x̂ * (1 + weight), statistics and product in f32 */
  norm: 'llama' | 'gemma';
  /** Gemma-3 sandwich: post_attention_layernorm on the attention output, pre/post_feedforward_layernorm */
  sandwich: boolean;
  /** q_norm / k_norm over the head dim, before RoPE */
  qkNorm: boolean;
  /** multiply the embeddings by this (Gemma: sqrt(hidden), rounded to f32 then the model dtype) */
  embedScale?: number;
  /** multiplier of q·kᵀ (head_dim^-0.5; Gemma: query_pre_attn_scalar^-0.5) */
  attnScale: number;
  layerTypes: LayerKind[];
  /** sliding layers: key k is visible from query q when q - k < window (and k <= q) */
  slidingWindow?: number;
  /** Gemma-3 use_bidirectional_attention: full layers see every key, sliding ones |q - k| < window */
  bidirectional: boolean;
  rope: { full: RopeSpec; sliding: RopeSpec };
}

// ---------------------------------------------------------------------------------------------
// Reading config.json values
// ---------------------------------------------------------------------------------------------

export type Json = Record<string, unknown>;

/** Typed access to a config.json object with the HF class defaults for missing keys. */
export class ConfigReader {
  constructor(
    readonly json: Json,
    readonly what: string,
    readonly defaults: Json = {},
  ) {}
  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }
  raw(key: string): unknown {
    return this.has(key) ? this.json[key] : this.defaults[key];
  }
  fail(msg: string): never {
    throw new EncoderConfigError(`${this.what} config.json: ${msg}`);
  }
  num(key: string): number {
    const v = this.raw(key);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(v === undefined || v === null ? `'${key}' is missing` : `'${key}' is ${JSON.stringify(v)}, not a number`);
    return v;
  }
  int(key: string, min = 1): number {
    const v = this.num(key);
    if (!Number.isInteger(v) || v < min) this.fail(`'${key}' is ${v}, not an integer >= ${min}`);
    return v;
  }
  optNum(key: string): number | undefined {
    const v = this.raw(key);
    return v === undefined || v === null ? undefined : this.num(key);
  }
  bool(key: string): boolean {
    const v = this.raw(key);
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') this.fail(`'${key}' is ${JSON.stringify(v)}, not true/false`);
    return v;
  }
  str(key: string): string {
    const v = this.raw(key);
    if (typeof v !== 'string') this.fail(`'${key}' is ${v === undefined ? 'missing' : JSON.stringify(v) + ', not a string'}`);
    return v;
  }
  obj(key: string): Json | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(`'${key}' is not an object`);
    return v as Json;
  }
}

export function activationFromHF(name: string, r: ConfigReader): Activation {
  switch (name) {
    case 'silu':
    case 'swish':
      return 'silu';
    case 'gelu':
      return 'gelu';
    case 'gelu_pytorch_tanh':
    case 'gelu_new':
      return 'gelu_tanh';
    default:
      return r.fail(`activation '${name}' is not supported (silu, gelu, gelu_pytorch_tanh, gelu_new)`);
  }
}

/** layer_types of transformers 5 configs ('full_attention' | 'sliding_attention'), when present. */
export function layerTypesFromHF(r: ConfigReader, L: number): LayerKind[] | undefined {
  const v = r.json.layer_types;
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length !== L) r.fail(`'layer_types' must list ${L} entries`);
  return v.map((t, i) => {
    if (t === 'full_attention') return 'full';
    if (t === 'sliding_attention') return 'sliding';
    return r.fail(`layer_types[${i}] is ${JSON.stringify(t)} (full_attention | sliding_attention)`);
  });
}

// ---------------------------------------------------------------------------------------------
// RoPE inverse frequencies, evaluated as transformers does in float32 (Math.fround per step)
// ---------------------------------------------------------------------------------------------

const f = Math.fround;

/** 1 / theta^(2i/dim), i < dim/2: transformers' default, in float32. */
export function defaultInvFreq(dim: number, theta: number): number[] {
  return Array.from({ length: dim / 2 }, (_, i) => f(1 / f(Math.pow(f(theta), f((2 * i) / dim)))));
}

export interface RopeParams {
  rope_type: string;
  rope_theta: number;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
  mrope_section?: number[];
  mrope_interleaved?: boolean;
  partial_rotary_factor?: number;
}

/** The inverse frequencies for one rope parameter dict (default | linear | llama3). */
export function ropeFromParams(p: RopeParams, headDim: number, r: ConfigReader): RopeSpec {
  if (p.partial_rotary_factor !== undefined && p.partial_rotary_factor !== 1) r.fail(`partial_rotary_factor ${p.partial_rotary_factor} is not supported`);
  const base = defaultInvFreq(headDim, p.rope_theta);
  const need = (k: keyof RopeParams): number => {
    const v = p[k];
    if (typeof v !== 'number') r.fail(`rope type '${p.rope_type}' needs '${k}'`);
    return v;
  };
  let invFreq: number[];
  switch (p.rope_type) {
    case 'default':
      invFreq = base;
      break;
    case 'linear': {
      const factor = need('factor');
      invFreq = base.map((x) => f(x / factor));
      break;
    }
    case 'llama3':
      invFreq = llama3InvFreq(base, need('factor'), need('low_freq_factor'), need('high_freq_factor'), need('original_max_position_embeddings'));
      break;
    default:
      return r.fail(`rope_type '${p.rope_type}' is not supported (default, linear, llama3, mrope)`);
  }
  let streams: number[] | undefined;
  if (p.mrope_section) {
    const sec = p.mrope_section;
    if (sec.length !== 3 || sec.some((s) => !Number.isInteger(s) || s < 0) || sec[0]! + sec[1]! + sec[2]! !== headDim / 2)
      r.fail(`mrope_section [${sec}] must be 3 non-negative integers summing to head_dim / 2 = ${headDim / 2}`);
    streams = mropeStreams(sec, p.mrope_interleaved ? 'interleaved' : 'sectioned');
  }
  return { invFreq, attentionScaling: 1, ...(streams ? { streams } : {}) };
}

/**
 * M-RoPE: the position stream (0 = t, 1 = h, 2 = w) of each of the head_dim/2 frequencies.
 * 'sectioned' (Qwen2-VL, Qwen2.5-VL): frequencies [0, s0) take t, [s0, s0+s1) h, the rest w.
 * 'interleaved' (Qwen3-VL): frequency i takes h when i % 3 == 1 and i < 3*s1, w when i % 3 == 2
 * and i < 3*s2, t otherwise.
 */
export function mropeStreams(section: readonly number[], layout: 'sectioned' | 'interleaved'): number[] {
  if (layout === 'sectioned') return section.flatMap((s, j) => Array.from({ length: s }, () => j));
  const n = section[0]! + section[1]! + section[2]!;
  return Array.from({ length: n }, (_, i) => (i % 3 === 1 && i < 3 * section[1]! ? 1 : i % 3 === 2 && i < 3 * section[2]! ? 2 : 0));
}

/**
 * Llama 3.1 frequency scaling (transformers' _compute_llama3_parameters): wavelengths above
 * original_max / low_freq_factor are divided by factor, those below original_max /
 * high_freq_factor kept, those between interpolated smoothly. torch evaluates `a / t` as
 * t.reciprocal() * a and compares against thresholds rounded to float32; replayed here.
 */
export function llama3InvFreq(invFreq: readonly number[], factor: number, lowFreqFactor: number, highFreqFactor: number, oldContext: number): number[] {
  const lowWavelen = f(oldContext / lowFreqFactor);
  const highWavelen = f(oldContext / highFreqFactor);
  const twoPi = f(2 * Math.PI);
  return invFreq.map((inv) => {
    const wavelen = f(f(1 / inv) * twoPi);
    const scaled = wavelen > lowWavelen ? f(inv / f(factor)) : inv;
    const smooth = f(f(f(f(1 / wavelen) * f(oldContext)) - f(lowFreqFactor)) / f(highFreqFactor - lowFreqFactor));
    const smoothed = f(f(f(f(1 - smooth) * scaled) / f(factor)) + f(smooth * scaled));
    const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
    return medium ? smoothed : scaled;
  });
}

/** Rope parameter dict from transformers-5 `rope_parameters` or legacy `rope_scaling` + `rope_theta`. */
export function ropeParamsFromHF(r: ConfigReader, defaultTheta: number): RopeParams {
  const rp = r.obj('rope_parameters') ?? r.obj('rope_scaling') ?? {};
  const theta = rp.rope_theta ?? r.json.rope_theta ?? defaultTheta;
  let type = (rp.rope_type ?? rp.type ?? 'default') as unknown;
  if (type === 'mrope') type = 'default'; // Qwen2-VL legacy: {"type": "mrope", "mrope_section": [...]}
  if (typeof type !== 'string') r.fail(`rope type ${JSON.stringify(type)} is not a string`);
  if (typeof theta !== 'number') r.fail(`rope_theta ${JSON.stringify(theta)} is not a number`);
  const out: RopeParams = { ...(rp as Partial<RopeParams>), rope_type: type, rope_theta: theta };
  if (type === 'llama3' && out.original_max_position_embeddings === undefined) out.original_max_position_embeddings = r.num('max_position_embeddings');
  return out;
}

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

export class HFRMSNorm extends Module {
  weight: Param;
  constructor(
    readonly dim: number,
    readonly eps: number,
    readonly style: 'llama' | 'gemma',
    dtype: DType,
  ) {
    super();
    this.weight = this.param([dim], style === 'gemma' ? { kind: 'zeros' } : { kind: 'ones' }, dtype);
  }
  forward(x: Tensor): Tensor {
    const xf = x.upcast();
    const y = xf.mul(xf.square().mean(-1, true).add(this.eps).rsqrt());
    // Llama/Qwen: weight * x̂.to(input dtype); Gemma: (x̂ * (1 + weight.float())).type_as(x)
    if (this.style === 'gemma') return y.mul(this.weight.t.cast(y.dtype).add(1)).cast(x.dtype);
    return this.weight.t.mul(y.cast(x.dtype));
  }
}

export class DecoderMLP extends Module {
  gate_proj: Linear;
  up_proj: Linear;
  down_proj: Linear;
  constructor(readonly cfg: DecoderConfig, dtype: DType) {
    super();
    const o = { bias: cfg.mlpBias, dtype };
    this.gate_proj = new Linear(cfg.hidden, cfg.intermediate, o);
    this.up_proj = new Linear(cfg.hidden, cfg.intermediate, o);
    this.down_proj = new Linear(cfg.intermediate, cfg.hidden, o);
  }
  forward(x: Tensor): Tensor {
    const g = this.gate_proj.forward(x);
    const a = this.cfg.act === 'silu' ? silu(g) : gelu(g, this.cfg.act === 'gelu_tanh' ? 'tanh' : 'none');
    return this.down_proj.forward(a.mul(this.up_proj.forward(x)));
  }
}

/** cos/sin tables [.., S, head_dim] in the compute dtype, shared by every layer of one rope kind. */
export interface RotaryTables {
  cos: Tensor;
  sin: Tensor;
}

/**
 * transformers' rotary embedding: angles = position * inv_freq in f32, emb = cat(angles, angles),
 * cos/sin cast to the model dtype. positions: f32 [S], [B, S], or [3, B, S] (M-RoPE streams t, h,
 * w; each frequency takes the angle of its stream, which equals recomposing cos/sin by section).
 */
export function rotaryTables(positions: Tensor, spec: RopeSpec, dtype: DType): RotaryTables {
  const invf = constant(spec.invFreq, 'f32');
  const p = positions.cast('f32');
  let ang: Tensor;
  if (p.rank === 3) {
    if (!spec.streams) throw new EncoderConfigError(`[3, B, S] position ids need an M-RoPE model (mrope_section), got ${positions}`);
    const n = spec.invFreq.length;
    const onehot = constant(
      [0, 1, 2].flatMap((j) => spec.streams!.map((s) => (s === j ? 1 : 0))),
      'f32',
      [3, 1, 1, n],
    );
    ang = p.unsqueeze(-1).mul(invf).mul(onehot).sum(0); // [B, S, n]: adding exact zeros
  } else ang = p.unsqueeze(-1).mul(invf);
  const emb = concat([ang, ang], -1);
  let cos = emb.cos();
  let sin = emb.sin();
  if (spec.attentionScaling !== 1) (cos = cos.mul(spec.attentionScaling)), (sin = sin.mul(spec.attentionScaling));
  // [B, S, D] -> [B, 1, S, D] to broadcast over heads; [S, D] broadcasts as it is
  const align = (t: Tensor) => (t.rank === 3 ? t.unsqueeze(1) : t).cast(dtype);
  return { cos: align(cos), sin: align(sin) };
}

/** q * cos + rotate_half(q) * sin, rotate_half(x) = cat(-x2, x1). */
export function applyRotary(x: Tensor, t: RotaryTables): Tensor {
  const D = x.dim(-1);
  if (!isStatic(D)) throw new EncoderConfigError(`rotary: head dim of ${x} must be static`);
  const [x1, x2] = x.split(-1, [D / 2, D / 2]) as [Tensor, Tensor];
  return x.mul(t.cos).add(concat([x2.neg(), x1], -1).mul(t.sin));
}

/**
 * Attention masks per layer kind (bool [B, 1, S, S], true = attend; built on first use), as
 * transformers' create_causal_mask / create_sliding_window_causal_mask build them from a 2D
 * attention_mask: causal AND key not padding, and for sliding layers q - k < window. Gemma-3's
 * use_bidirectional_attention ORs in its overlays: full layers keep only the padding mask, sliding
 * ones |q - k| < window.
 */
export function attentionMasks(attentionMask: Tensor, cfg: DecoderConfig): (kind: LayerKind) => Tensor {
  const S = attentionMask.dim(1);
  const memo = new Map<LayerKind, Tensor>();
  return (kind) => {
    let m = memo.get(kind);
    if (m) return m;
    const keys = keyMask(attentionMask).reshape(attentionMask.dim(0), 1, 1, S);
    const qi = range(S).unsqueeze(-1);
    const kj = range(S).unsqueeze(0);
    if (kind === 'full') m = cfg.bidirectional ? keys : qi.ge(kj).and(keys);
    else {
      const W = cfg.slidingWindow;
      if (W === undefined) throw new EncoderConfigError(`${cfg.modelType}: sliding layers without a sliding_window`);
      const near = qi.sub(kj).lt(W);
      m = (cfg.bidirectional ? near.and(kj.sub(qi).lt(W)) : qi.ge(kj).and(near)).and(keys);
    }
    memo.set(kind, m);
    return m;
  };
}

/** bool [B, S]: true where attention_mask is non-zero (a token, not padding). */
export function keyMask(attentionMask: Tensor): Tensor {
  return attentionMask.dtype === 'bool' ? attentionMask : attentionMask.eq(0).not();
}

/**
 * Eager attention as transformers computes it: (q kᵀ) * scale, masked scores set to the
 * lowest finite value (a fully masked row becomes a uniform average, as the
 * additive min-value mask gives), softmax in f32, cast back. GQA: query head h uses kv head
 * h / (H / KV) (transformers' repeat_kv), done by broadcasting.
 */
export function attend(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, scale: number): Tensor {
  const [B, H, S, D] = q.shape as [Dim, number, Dim, number];
  const KV = k.dim(1) as number;
  const G = H / KV;
  const qg = G > 1 ? q.reshape(B, KV, G, S, D) : q;
  const kg = G > 1 ? k.unsqueeze(2) : k;
  const vg = G > 1 ? v.unsqueeze(2) : v;
  const m = G > 1 ? keep.unsqueeze(2) : keep;
  const s = m.where(qg.matmul(kg.T).mul(scale), lowest(q.dtype));
  const p = s.upcast().softmax(-1).cast(q.dtype);
  const o = p.matmul(vg);
  return G > 1 ? o.reshape(B, H, S, D) : o;
}

export class DecoderAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;
  q_norm?: HFRMSNorm;
  k_norm?: HFRMSNorm;
  constructor(readonly cfg: DecoderConfig, dtype: DType) {
    super();
    const { hidden, heads, kvHeads, headDim } = cfg;
    this.q_proj = new Linear(hidden, heads * headDim, { bias: cfg.qkvBias, dtype });
    this.k_proj = new Linear(hidden, kvHeads * headDim, { bias: cfg.qkvBias, dtype });
    this.v_proj = new Linear(hidden, kvHeads * headDim, { bias: cfg.qkvBias, dtype });
    this.o_proj = new Linear(heads * headDim, hidden, { bias: cfg.oBias, dtype });
    if (cfg.qkNorm) {
      this.q_norm = new HFRMSNorm(headDim, cfg.eps, cfg.norm, dtype);
      this.k_norm = new HFRMSNorm(headDim, cfg.eps, cfg.norm, dtype);
    }
  }
  /**
   * kv: receives this layer's keys (after q/k norm and RoPE) and values, [B, KV, S, head_dim]
   * (with `past`: the cache's keys/values followed by this chunk's, [B, KV, P + S, head_dim]).
   * past: the KV cache of the tokens before this chunk (generation); keep is then [.., S, P + S].
   */
  forward(x: Tensor, rot: RotaryTables, keep: Tensor, kv?: LayerKV[], past?: LayerKV): Tensor {
    const { heads, kvHeads, headDim } = this.cfg;
    let q = headSplit(this.q_proj.forward(x), heads, headDim);
    let k = headSplit(this.k_proj.forward(x), kvHeads, headDim);
    let v = headSplit(this.v_proj.forward(x), kvHeads, headDim);
    if (this.q_norm && this.k_norm) (q = this.q_norm.forward(q)), (k = this.k_norm.forward(k));
    q = applyRotary(q, rot);
    k = applyRotary(k, rot);
    if (past) (k = concat([past.key, k], 2)), (v = concat([past.value, v], 2));
    kv?.push({ key: k, value: v });
    return this.o_proj.forward(headMerge(attend(q, k, v, keep, this.cfg.attnScale)));
  }
}

export class DecoderLayer extends Module {
  input_layernorm: HFRMSNorm;
  self_attn: DecoderAttention;
  post_attention_layernorm: HFRMSNorm;
  pre_feedforward_layernorm?: HFRMSNorm;
  post_feedforward_layernorm?: HFRMSNorm;
  mlp: DecoderMLP;
  constructor(readonly cfg: DecoderConfig, dtype: DType) {
    super();
    const norm = () => new HFRMSNorm(cfg.hidden, cfg.eps, cfg.norm, dtype);
    this.input_layernorm = norm();
    this.self_attn = new DecoderAttention(cfg, dtype);
    this.post_attention_layernorm = norm();
    if (cfg.sandwich) {
      this.pre_feedforward_layernorm = norm();
      this.post_feedforward_layernorm = norm();
    }
    this.mlp = new DecoderMLP(cfg, dtype);
  }
  forward(x: Tensor, rot: RotaryTables, keep: Tensor, kv?: LayerKV[], past?: LayerKV): Tensor {
    const a = this.self_attn.forward(this.input_layernorm.forward(x), rot, keep, kv, past);
    if (!this.cfg.sandwich) {
      const h = x.add(a);
      return h.add(this.mlp.forward(this.post_attention_layernorm.forward(h)));
    }
    const h = x.add(this.post_attention_layernorm.forward(a));
    return h.add(this.post_feedforward_layernorm!.forward(this.mlp.forward(this.pre_feedforward_layernorm!.forward(h))));
  }
}

/** One layer's attention keys and values, as transformers' cache holds them (model dtype). */
export interface LayerKV {
  key: Tensor;
  value: Tensor;
}

export interface DecoderCall {
  /** i64 or bool [B, S]: non-zero = token, 0 = padding */
  attentionMask: Tensor;
  /** [S], [B, S] or (M-RoPE) [3, B, S] position ids, any numeric dtype */
  positions: Tensor;
  /** hidden_states indices to return (checked: within 0..L) */
  taps: readonly number[];
  /**
   * When given, receives every built layer's keys (after q/k norm and RoPE) and values,
   * [B, KV, S, head_dim], as transformers' past_key_values holds them (KV fusion).
   */
  kv?: LayerKV[];
}

/**
 * The base model (transformers' Qwen2Model / LlamaModel / Gemma3TextModel) holding only the
 * layers the taps need: `layers` = the highest tap (or L), `norm` only when L is tapped.
 */
export class DecoderLM extends Module {
  embed_tokens: Embedding;
  layers: DecoderLayer[];
  norm?: HFRMSNorm;
  constructor(
    readonly cfg: DecoderConfig,
    readonly taps: readonly number[],
    readonly dtype: DType = 'f32',
  ) {
    super();
    for (const t of taps) if (!Number.isInteger(t) || t < 0 || t > cfg.layers) throw new EncoderConfigError(`${cfg.modelType}: tap ${t} is outside hidden_states 0..${cfg.layers}`);
    if (taps.length === 0) throw new EncoderConfigError(`${cfg.modelType}: no hidden states tapped`);
    const last = Math.max(...taps);
    this.embed_tokens = new Embedding(cfg.vocab, cfg.hidden, { dtype, std: 0.02 });
    this.layers = Array.from({ length: last }, () => new DecoderLayer(cfg, dtype));
    if (last === cfg.layers) this.norm = new HFRMSNorm(cfg.hidden, cfg.eps, cfg.norm, dtype);
  }

  /** Token embeddings (Gemma: times sqrt(hidden) in the model dtype): hidden_states[0]. */
  embed(inputIds: Tensor): Tensor {
    const e = this.embed_tokens.forward(inputIds);
    return this.cfg.embedScale === undefined ? e : e.mul(constant(Math.fround(this.cfg.embedScale), e.dtype));
  }

  /**
   * Run from embeddings (hidden_states[0], e.g. with image features already placed) and return
   * fp32 `hidden_states.<i>` for this module's taps, in increasing order.
   */
  forward(embeds: Tensor, call: DecoderCall): Record<string, Tensor> {
    const L = this.cfg.layers;
    const want = new Set(this.taps);
    const out: Record<string, Tensor> = {};
    const emit = (i: number, t: Tensor) => (out[`hidden_states.${i}`] = t.cast('f32'));
    let h = embeds;
    if (want.has(0)) emit(0, h);
    const masks = this.layers.length ? attentionMasks(call.attentionMask, this.cfg) : undefined;
    const tables = new Map<LayerKind, RotaryTables>();
    const rot = (kind: LayerKind) => {
      let t = tables.get(kind);
      if (!t) tables.set(kind, (t = rotaryTables(call.positions, this.cfg.rope[kind], h.dtype)));
      return t;
    };
    this.layers.forEach((layer, i) => {
      const kind = this.cfg.layerTypes[i]!;
      h = layer.forward(h, rot(kind), masks!(kind), call.kv);
      if (i + 1 < L && want.has(i + 1)) emit(i + 1, h);
    });
    if (this.norm) emit(L, this.norm.forward(h));
    return out;
  }

  /**
   * Run a chunk of tokens after a KV cache (generation; P = 0 at prefill). Needs every layer and
   * the final norm (build with L among the taps). Returns the chunk's taps, the final norm's
   * output and the grown cache.
   */
  step(embeds: Tensor, call: DecoderStepCall): DecoderStepOutput {
    const L = this.cfg.layers;
    if (this.layers.length !== L || !this.norm) throw new EncoderConfigError(`${this.cfg.modelType}: generation needs all ${L} layers and the final norm (build the DecoderLM with tap ${L})`);
    if (call.past.length !== L) throw new EncoderConfigError(`${this.cfg.modelType}: ${call.past.length} past key/value pairs for ${L} layers`);
    for (const t of call.taps) if (!Number.isInteger(t) || t < 0 || t > L) throw new EncoderConfigError(`${this.cfg.modelType}: tap ${t} is outside hidden_states 0..${L}`);
    const want = new Set(call.taps);
    const hidden: Record<string, Tensor> = {};
    const emit = (i: number, t: Tensor) => (hidden[`hidden_states.${i}`] = t.cast('f32'));
    let h = embeds;
    if (want.has(0)) emit(0, h);
    const masks = cachedAttentionMasks(call.attentionMask, embeds.dim(1), this.cfg);
    const tables = new Map<LayerKind, RotaryTables>();
    const rot = (kind: LayerKind) => {
      let t = tables.get(kind);
      if (!t) tables.set(kind, (t = rotaryTables(call.positions, this.cfg.rope[kind], h.dtype)));
      return t;
    };
    const present: LayerKV[] = [];
    this.layers.forEach((layer, i) => {
      const kind = this.cfg.layerTypes[i]!;
      h = layer.forward(h, rot(kind), masks(kind), present, call.past[i]);
      if (i + 1 < L && want.has(i + 1)) emit(i + 1, h);
    });
    const last = this.norm.forward(h);
    if (want.has(L)) emit(L, last);
    return { hidden, last, present };
  }
}

/** A chunk of tokens run after `past` (generation: the prompt at P = 0, then one token per step). */
export interface DecoderStepCall {
  /** i64 or bool [B, P + S]: every cached token, then this chunk's; non-zero = token, 0 = padding */
  attentionMask: Tensor;
  /** [B, S] or (M-RoPE) [3, B, S] position ids of this chunk */
  positions: Tensor;
  /** one entry per decoder layer: keys (after q/k norm and RoPE) and values [B, KV, P, head_dim] */
  past: readonly LayerKV[];
  /** hidden_states indices to return for this chunk's tokens */
  taps: readonly number[];
}

export interface DecoderStepOutput {
  /** fp32 hidden_states.<i> [B, S, hidden] for the requested taps */
  hidden: Record<string, Tensor>;
  /** the final norm's output [B, S, hidden] in the model dtype (the LM head's input) */
  last: Tensor;
  /** per layer: past followed by this chunk, [B, KV, P + S, head_dim] */
  present: LayerKV[];
}

/**
 * Attention masks for a chunk of S queries after P cached keys (bool [B, 1, S, P + S]), as
 * transformers builds them with a cache: query s sits at cache slot P + s and sees slot j when
 * j <= P + s and attention_mask[j] != 0, on sliding layers also when (P + s) - j < window. Slots,
 * not position ids, as in transformers: with left padding they differ by a per-row constant.
 */
export function cachedAttentionMasks(attentionMask: Tensor, S: Dim, cfg: DecoderConfig): (kind: LayerKind) => Tensor {
  if (cfg.bidirectional) throw new EncoderConfigError(`${cfg.modelType}: a bidirectional model (use_bidirectional_attention) cannot generate`);
  const T = attentionMask.dim(1);
  const memo = new Map<LayerKind, Tensor>();
  return (kind) => {
    let m = memo.get(kind);
    if (m) return m;
    const keys = keyMask(attentionMask).reshape(attentionMask.dim(0), 1, 1, T);
    const slots = range(T);
    const qi = slots.split(0, [dimSub(T, S), S])[1]!.unsqueeze(-1); // [S, 1]: P .. P + S - 1
    const kj = slots.unsqueeze(0); // [1, T]
    m = qi.ge(kj);
    if (kind === 'sliding') {
      const W = cfg.slidingWindow;
      if (W === undefined) throw new EncoderConfigError(`${cfg.modelType}: sliding layers without a sliding_window`);
      m = m.and(qi.sub(kj).lt(W));
    }
    m = m.and(keys);
    memo.set(kind, m);
    return m;
  };
}

/**
 * Position ids from the attention mask as transformers' generate() makes them:
 * cumsum(mask) - 1, and 1 at padding. Left-padded rows then match their unpadded run.
 */
export function positionsFromMask(attentionMask: Tensor): Tensor {
  const S = attentionMask.dim(1);
  const m = keyMask(attentionMask);
  const tri = range(S).unsqueeze(-1).le(range(S).unsqueeze(0)).cast('f32'); // [k, q]: k <= q
  const cs = m.cast('f32').matmul(tri); // [B, S]: tokens up to and including q
  return m.where(cs.sub(1), constant(1, 'f32'));
}

/** Token masks of a text-only sequence (bool [B, S]); VLM encoders add `image_mask` and drop image tokens from text_mask. */
export function tokenMasks(attentionMask: Tensor): { text_mask: Tensor; pad_mask: Tensor } {
  const tok = keyMask(attentionMask);
  return { text_mask: tok, pad_mask: tok.not() };
}

/** What every encoder builder hands out (decoder LLMs, InternVL, T5): a traceable graph, its taps and its weights. */
export interface EncoderGraph {
  modelType: string;
  /** the (language) model's layer count L: taps lie in 0..L */
  numLayers: number;
  /** sorted hidden_states indices */
  taps: number[];
  name: string;
  /** output names in order: hidden_states.<i>..., then the token masks */
  outputs: string[];
  /** Trace the graph's body inside an active trace (declares the inputs); returns its outputs. */
  build(): Record<string, Tensor>;
  trace(): Graph;
  /** a defineGraph value (preset 'default') for the CLI's compile */
  definition: GraphDefinition<null> & { trace(preset?: string): Graph };
  /** the graph's parameters exactly: name, shape, dtype */
  expectedWeights(): { name: string; shape: number[]; dtype: DType }[];
}

/** An encoder whose checkpoint names are not its graph names plus a prefix (InternVL, T5). */
export interface RenamingEncoderGraph extends EncoderGraph {
  /** checkpoint name -> graph name (undefined: not used by the encoder) */
  paramName(checkpointName: string): string | undefined;
  /** graph name -> the checkpoint names it may be stored under, most likely first */
  checkpointNames(graphName: string): string[];
}
