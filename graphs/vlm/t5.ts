// The T5 encoder (the paper's T5 baseline; T5-v1.1-XXL as used by diffusion
// models), with Hugging Face T5EncoderModel parameter names:
//   shared.weight
//   encoder.block.N.layer.0.SelfAttention.{q,k,v,o}.weight
//   encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight
//   encoder.block.N.layer.0.layer_norm.weight
//   encoder.block.N.layer.1.DenseReluDense.{wi_0,wi_1,wo | wi,wo}.weight
//   encoder.block.N.layer.1.layer_norm.weight
//   encoder.final_layer_norm.weight
// Outputs `hidden_states.<i>` mean what transformers returns as
// output_hidden_states[i]: 0 = token embeddings, i = output of block i-1, and the
// last one (i = layers) is after the final norm; plus text_mask / pad_mask.
//
// Relative position buckets depend only on (key - query), so they come from a
// host-computed table (exactly torch's float32 bucket arithmetic) gathered by the
// clamped offset: no float log or truncating cast in the graph.
// Lower precision: as transformers, `wo` stays fp32 under fp16 (_keep_in_fp32_modules),
// which turns the residual stream fp32 after the first FFN; the fp16 inf-clamping of
// T5Block is not reproduced (it only acts once values overflow). Softmax runs in f32.
import { constant, defineGraph, dim, Embedding, gelu, headMerge, headSplit, input, Linear, lowest, Module, range, silu, trace, type Param, type Tensor } from '../../src/dsl/index.ts';
import type { Dim } from '../../src/ir/dims.ts';
import type { DType } from '../../src/ir/dtype.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { ConfigReader, EncoderConfigError, keyMask, parseTaps, tokenMasks, type Json, type RenamingEncoderGraph, type TapSpec } from './common.ts';

export type T5Act = 'gelu_new' | 'gelu' | 'gelu_pytorch_tanh' | 'relu' | 'silu';

export interface T5Config {
  vocab: number;
  dModel: number;
  /** per-head width (d_kv); T5 does not tie it to dModel / heads */
  dKv: number;
  dFF: number;
  layers: number;
  heads: number;
  numBuckets: number;
  maxDistance: number;
  eps: number;
  act: T5Act;
  /** gated FFN (wi_0, wi_1, wo) as in v1.1; plain (wi, wo) as in the original T5 */
  gated: boolean;
}

/** T5 v1.1 XXL: the encoder used by diffusion models (FLUX, SD3, PixArt). */
export const T5_V1_1_XXL: T5Config = {
  vocab: 32128,
  dModel: 4096,
  dKv: 64,
  dFF: 10240,
  layers: 24,
  heads: 64,
  numBuckets: 32,
  maxDistance: 128,
  eps: 1e-6,
  act: 'gelu_new',
  gated: true,
};

export const T5_TINY: T5Config = { vocab: 128, dModel: 32, dKv: 8, dFF: 48, layers: 3, heads: 4, numBuckets: 32, maxDistance: 20, eps: 1e-6, act: 'gelu_new', gated: true };

/** transformers' T5Config defaults (used for keys a config.json leaves out). */
const T5_DEFAULTS: Json = {
  vocab_size: 32128,
  d_model: 512,
  d_kv: 64,
  d_ff: 2048,
  num_layers: 6,
  num_heads: 8,
  relative_attention_num_buckets: 32,
  relative_attention_max_distance: 128,
  layer_norm_epsilon: 1e-6,
  feed_forward_proj: 'relu',
};

/** T5Config from a Hugging Face config.json (model_type "t5"; the encoder half). */
export function t5ConfigFromHF(json: Json): T5Config {
  const r = new ConfigReader(json, 't5', T5_DEFAULTS);
  // transformers: "[gated-]<act>", and "gated-gelu" means gelu_new
  const proj = r.str('feed_forward_proj');
  const parts = proj.split('-');
  const gated = parts[0] === 'gated';
  if (parts.length > 2 || (parts.length === 2 && !gated)) r.fail(`feed_forward_proj '${proj}' is not '<act>' or 'gated-<act>'`);
  const act = proj === 'gated-gelu' ? 'gelu_new' : parts[parts.length - 1]!;
  if (!['gelu_new', 'gelu', 'gelu_pytorch_tanh', 'relu', 'silu'].includes(act)) r.fail(`activation '${act}' is not supported (relu, gelu, gelu_new, gelu_pytorch_tanh, silu)`);
  return {
    vocab: r.int('vocab_size'),
    dModel: r.int('d_model'),
    dKv: r.int('d_kv'),
    dFF: r.int('d_ff'),
    layers: r.int('num_layers'),
    heads: r.int('num_heads'),
    numBuckets: r.int('relative_attention_num_buckets', 2),
    maxDistance: r.int('relative_attention_max_distance'),
    eps: r.num('layer_norm_epsilon'),
    act: act as T5Act,
    gated,
  };
}

/**
 * transformers' T5 bucket of a relative position (key - query). Exact buckets for
 * small distances, log-spaced ones up to maxDistance, one bucket beyond. torch
 * evaluates the log branch in float32 and truncates; Math.fround replays that
 * (a float64 evaluation could land on the other side of an integer boundary).
 */
export function relativePositionBucket(rel: number, bidirectional: boolean, numBuckets: number, maxDistance: number): number {
  let nb = numBuckets;
  let bucket = 0;
  let r = rel;
  if (bidirectional) {
    nb = Math.floor(nb / 2);
    if (r > 0) bucket += nb;
    r = Math.abs(r);
  } else r = -Math.min(r, 0);
  const maxExact = Math.floor(nb / 2);
  if (r < maxExact) return bucket + r;
  const f = Math.fround;
  const logRatio = f(Math.log(f(r / maxExact)));
  const scaled = f(f(logRatio / f(Math.log(maxDistance / maxExact))) * (nb - maxExact));
  return bucket + Math.min(maxExact + Math.trunc(scaled), nb - 1);
}

/**
 * Buckets for relative positions -maxDistance..maxDistance (index rel + maxDistance).
 * Every |rel| >= maxDistance falls in the last bucket of its side, so clamping the
 * relative position into this range before the lookup is exact for any length.
 */
export function bucketTable(bidirectional: boolean, numBuckets: number, maxDistance: number): number[] {
  return Array.from({ length: 2 * maxDistance + 1 }, (_, i) => relativePositionBucket(i - maxDistance, bidirectional, numBuckets, maxDistance));
}

function activation(x: Tensor, act: T5Act): Tensor {
  switch (act) {
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
      return gelu(x, 'tanh');
    case 'gelu':
      return gelu(x);
    case 'relu':
      return x.maximum(0);
    case 'silu':
      return silu(x);
  }
}

/** T5LayerNorm: RMS without mean subtraction, no bias; statistics in f32, cast to the weight's dtype, then scaled. */
export class T5LayerNorm extends Module {
  weight: Param;
  constructor(
    readonly dim: number,
    readonly eps: number,
    dtype: DType,
  ) {
    super();
    this.weight = this.param([dim], { kind: 'ones' }, dtype);
  }
  forward(x: Tensor): Tensor {
    const xf = x.upcast();
    return this.weight.t.mul(xf.mul(xf.square().mean(-1, true).add(this.eps).rsqrt()).cast(this.weight.dtype));
  }
}

export class T5Attention extends Module {
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  relative_attention_bias?: Embedding;
  constructor(readonly cfg: T5Config, hasRelativeBias: boolean, dtype: DType) {
    super();
    const inner = cfg.heads * cfg.dKv;
    this.q = new Linear(cfg.dModel, inner, { bias: false, dtype });
    this.k = new Linear(cfg.dModel, inner, { bias: false, dtype });
    this.v = new Linear(cfg.dModel, inner, { bias: false, dtype });
    this.o = new Linear(inner, cfg.dModel, { bias: false, dtype });
    if (hasRelativeBias) this.relative_attention_bias = new Embedding(cfg.numBuckets, cfg.heads, { std: cfg.dModel ** -0.5, dtype });
  }

  /** Position bias [1, heads, S, S] for a (symbolic) length S, bidirectional buckets. */
  positionBias(S: Dim): Tensor {
    if (!this.relative_attention_bias) throw new EncoderConfigError('t5: only block 0 holds relative_attention_bias');
    const M = this.cfg.maxDistance;
    const rel = range(S).unsqueeze(0).sub(range(S).unsqueeze(1)); // [q, k] = k - q
    const idx = rel.maximum(-M).minimum(M).add(M);
    const buckets = constant(bucketTable(true, this.cfg.numBuckets, M), 'i64').gather(idx, 0); // [S, S]
    return this.relative_attention_bias.forward(buckets).transpose(2, 0, 1).unsqueeze(0);
  }

  /**
   * x [B, S, d]; bias [1, H, S, S]; keep bool [B, 1, 1, S] (true = attend). T5 folds the
   * scale into its init: no 1/sqrt(d_kv). Softmax in f32 (transformers: in the model dtype).
   */
  forward(x: Tensor, bias: Tensor, keep: Tensor): Tensor {
    const { heads, dKv } = this.cfg;
    const q = headSplit(this.q.forward(x), heads, dKv);
    const k = headSplit(this.k.forward(x), heads, dKv);
    const v = headSplit(this.v.forward(x), heads, dKv);
    const s = q.matmul(k.T).upcast().add(bias.upcast());
    const p = keep.where(s, lowest(s.dtype)).softmax(-1).cast(v.dtype);
    return this.o.forward(headMerge(p.matmul(v)));
  }
}

export class T5LayerSelfAttention extends Module {
  SelfAttention: T5Attention;
  layer_norm: T5LayerNorm;
  constructor(cfg: T5Config, hasRelativeBias: boolean, dtype: DType) {
    super();
    this.SelfAttention = new T5Attention(cfg, hasRelativeBias, dtype);
    this.layer_norm = new T5LayerNorm(cfg.dModel, cfg.eps, dtype);
  }
  forward(x: Tensor, bias: Tensor, keep: Tensor): Tensor {
    return x.add(this.SelfAttention.forward(this.layer_norm.forward(x), bias, keep).cast(x.dtype));
  }
}

export class T5DenseActDense extends Module {
  wi_0?: Linear;
  wi_1?: Linear;
  wi?: Linear;
  wo: Linear;
  constructor(readonly cfg: T5Config, dtype: DType) {
    super();
    if (cfg.gated) {
      this.wi_0 = new Linear(cfg.dModel, cfg.dFF, { bias: false, dtype });
      this.wi_1 = new Linear(cfg.dModel, cfg.dFF, { bias: false, dtype });
    } else this.wi = new Linear(cfg.dModel, cfg.dFF, { bias: false, dtype });
    // transformers keeps `wo` in fp32 when loading in fp16 (_keep_in_fp32_modules)
    this.wo = new Linear(cfg.dFF, cfg.dModel, { bias: false, dtype: dtype === 'f16' ? 'f32' : dtype });
  }
  forward(x: Tensor): Tensor {
    const h = this.cfg.gated ? activation(this.wi_0!.forward(x), this.cfg.act).mul(this.wi_1!.forward(x)) : activation(this.wi!.forward(x), this.cfg.act);
    return this.wo.forward(h.cast(this.wo.weight.dtype));
  }
}

export class T5LayerFF extends Module {
  DenseReluDense: T5DenseActDense;
  layer_norm: T5LayerNorm;
  constructor(cfg: T5Config, dtype: DType) {
    super();
    this.DenseReluDense = new T5DenseActDense(cfg, dtype);
    this.layer_norm = new T5LayerNorm(cfg.dModel, cfg.eps, dtype);
  }
  /** with an fp32 `wo` under fp16, the residual stream turns fp32 (torch type promotion) */
  forward(x: Tensor): Tensor {
    const f = this.DenseReluDense.forward(this.layer_norm.forward(x));
    return f.dtype === x.dtype ? x.add(f) : x.cast('f32').add(f.cast('f32'));
  }
}

export class T5Block extends Module {
  layer: [T5LayerSelfAttention, T5LayerFF];
  constructor(cfg: T5Config, index: number, dtype: DType) {
    super();
    this.layer = [new T5LayerSelfAttention(cfg, index === 0, dtype), new T5LayerFF(cfg, dtype)];
  }
  forward(x: Tensor, bias: Tensor, keep: Tensor): Tensor {
    return this.layer[1].forward(this.layer[0].forward(x, bias, keep));
  }
}

export class T5Stack extends Module {
  block: T5Block[];
  final_layer_norm?: T5LayerNorm;
  /** holds the blocks the taps need (the highest tap, or all) and the final norm only when L is tapped */
  constructor(readonly cfg: T5Config, blocks: number, dtype: DType) {
    super();
    this.block = Array.from({ length: blocks }, (_, i) => new T5Block(cfg, i, dtype));
    if (blocks === cfg.layers) this.final_layer_norm = new T5LayerNorm(cfg.dModel, cfg.eps, dtype);
  }
}

export class T5EncoderModel extends Module {
  shared: Embedding;
  encoder: T5Stack;
  readonly taps: number[];
  constructor(
    readonly cfg: T5Config,
    taps: readonly number[],
    dtype: DType = 'f32',
  ) {
    super();
    this.taps = parseTaps(taps, cfg.layers);
    this.shared = new Embedding(cfg.vocab, cfg.dModel, { dtype });
    this.encoder = new T5Stack(cfg, Math.max(...this.taps), dtype);
  }

  /**
   * input_ids i64 [B, S]; attention_mask i64 or bool [B, S] (nonzero = token). Returns fp32
   * `hidden_states.<i>` for each tap. Padded query positions are computed as transformers
   * does (they attend to the unpadded keys), so they match too.
   */
  forward(inputIds: Tensor, attentionMask: Tensor): Record<string, Tensor> {
    const L = this.cfg.layers;
    const want = new Set(this.taps);
    const tok = keyMask(attentionMask);
    const keep = tok.reshape(tok.dim(0), 1, 1, tok.dim(1));
    const out: Record<string, Tensor> = {};
    const emit = (i: number, t: Tensor) => (out[`hidden_states.${i}`] = t.cast('f32'));
    let h = this.shared.forward(inputIds);
    if (want.has(0)) emit(0, h);
    const blocks = this.encoder.block;
    if (blocks.length === 0) return out;
    const bias = blocks[0]!.layer[0].SelfAttention.positionBias(inputIds.dim(1));
    blocks.forEach((block, i) => {
      h = block.forward(h, bias, keep);
      if (i + 1 < L && want.has(i + 1)) emit(i + 1, h);
    });
    if (this.encoder.final_layer_norm) emit(L, this.encoder.final_layer_norm.forward(h));
    return out;
  }
}

export interface T5EncoderOptions {
  /** parameter and compute dtype (outputs are f32); default f32 */
  dtype?: DType;
  name?: string;
}

export interface T5Encoder extends RenamingEncoderGraph {
  modelType: 't5';
  config: T5Config;
  /** checkpoint prefixes of the names: T5EncoderModel and T5ForConditionalGeneration files both use none */
  hubPrefixes: string[];
}

/**
 * Checkpoint names -> graph names. `encoder.embed_tokens.weight` is tied to `shared.weight`
 * (some encoder-only files carry only it); the decoder half and lm_head are not used.
 */
export function t5ParamName(name: string): string | undefined {
  if (name === 'encoder.embed_tokens.weight') return 'shared.weight';
  if (name.startsWith('decoder.') || name.startsWith('lm_head.')) return undefined;
  return name;
}

/** Graph name -> checkpoint candidates: the shared embedding may be stored as its tied encoder copy only. */
export function t5CheckpointNames(graphName: string): string[] {
  return graphName === 'shared.weight' ? ['shared.weight', 'encoder.embed_tokens.weight'] : [graphName];
}

function t5Graph(cfg: T5Config, taps: readonly number[], dtype: DType): Record<string, Tensor> {
  const B = dim('batch'), S = dim('seq');
  const ids = input('input_ids', 'i64', [B, S]);
  const mask = input('attention_mask', 'i64', [B, S]);
  const model = new T5EncoderModel(cfg, taps, dtype);
  return { ...model.forward(ids, mask), ...tokenMasks(mask) };
}

/**
 * The T5 encoder graph for a config.json object (model_type "t5"). Inputs input_ids and
 * attention_mask (i64 [batch, seq], 1 = token); outputs fp32 `hidden_states.<i>` for the
 * taps, text_mask and pad_mask (bool [batch, seq]).
 */
export function t5EncoderFromHF(config: object, taps: TapSpec, opts: T5EncoderOptions = {}): T5Encoder {
  const cfg = t5ConfigFromHF(config as Json);
  const tapList = parseTaps(taps, cfg.layers);
  const dtype = opts.dtype ?? 'f32';
  const name = opts.name ?? 't5-encoder';
  const build = () => t5Graph(cfg, tapList, dtype);
  return {
    modelType: 't5',
    config: cfg,
    numLayers: cfg.layers,
    taps: tapList,
    name,
    outputs: [...tapList.map((i) => `hidden_states.${i}`), 'text_mask', 'pad_mask'],
    hubPrefixes: [''],
    build,
    trace: () => trace(name, build),
    definition: defineGraph<null>({ name, description: `T5 encoder, hidden_states taps [${tapList.join(', ')}]`, presets: { default: null }, build: () => build() }),
    expectedWeights: () => new T5EncoderModel(cfg, tapList, dtype).namedParameters().map(([n, p]) => ({ name: n, shape: [...p.shape], dtype: p.dtype })),
    paramName: t5ParamName,
    checkpointNames: t5CheckpointNames,
  };
}

export interface T5GraphConfig {
  model: T5Config;
  taps: TapSpec;
  dtype?: DType;
}

/** The graph body for a T5Config (inside a trace): declares the inputs, returns the outputs. */
export function buildT5Encoder(c: T5GraphConfig): Record<string, Tensor> {
  return t5Graph(c.model, parseTaps(c.taps, c.model.layers), c.dtype ?? 'f32');
}

export default defineGraph<T5GraphConfig>({
  name: 't5_encoder',
  description: 'T5 encoder (HF T5EncoderModel names), hidden_states taps',
  presets: {
    tiny: { model: T5_TINY, taps: 'every:1:0' },
    't5-v1_1-xxl': { model: T5_V1_1_XXL, taps: 'last' },
  },
  build: buildT5Encoder,
});
