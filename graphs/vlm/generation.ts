// Generation graphs: the decoder LLMs of graphs/vlm (and InternVL's language model) with an LM
// head and a KV cache, compiled from the same DecoderLM declaration as the encoder graphs, with
// the input/output names transformers.js uses.
//
// ONE graph serves prefill and decode: the cache length `past` is symbolic and 0 at prefill
// (past_key_values of shape [B, KV, 0, head_dim]). Why one: onnxruntime-node sessions do not
// share initializers, so a prefill graph and a decode graph would hold the weights twice in memory
// (16 GB more for an 8B model in f16), twice the session start-up; the single graph costs nothing
// at prefill (concat with a 0-length past is a copy of this chunk's keys, which a separate
// prefill graph would have to output as present.* anyway); a fused GroupQueryAttention lowering
// (the fusion pass) can still specialise it.
//
// Graph inputs:  input_ids        i64 [batch, seq]          this chunk's tokens
//                attention_mask   i64 [batch, past+seq]     1 = token, 0 = padding, for every cached
//                                                           token and then this chunk's
//                position_ids     i64 [batch, seq], or [3, batch, seq] for M-RoPE (Qwen2.5-VL /
//                                 Qwen3-VL text): transformers' generate() positions
//                                 (cumsum(mask) - 1), made by the runtime
//                past_key_values.<l>.key|value   f32 [batch, kv_heads, past, head_dim], l = 0..L-1
//                                 (keys after q/k norm and RoPE, as transformers' cache holds them)
//                image_features   f32 [image_tokens, hidden]  (InternVL only: the vision graph's
//                                 output, flattened; written over the <IMG_CONTEXT> tokens of this
//                                 chunk in order; 0 rows at decode)
// Graph outputs: logits           f32 [batch, 1, vocab] at the last real token of each row in this
//                                 chunk (the last position with attention_mask 1: S-1 for left
//                                 padding, the row's length - 1 for right padding), or [batch, seq,
//                                 vocab] with `logits: 'all'`
//                present.<l>.key|value  f32 [batch, kv_heads, past+seq, head_dim]
//                hidden_states.<i>      f32 [batch, seq, hidden] for each tap i (transformers'
//                                 output_hidden_states indices, as the encoder graphs)
//
// Masks are transformers' with a cache: causal over cache slots, key padding, sliding windows
// over slots (common.ts cachedAttentionMasks). The LM head is `lm_head.weight`, or the embedding
// matrix when the config ties them (tie_word_embeddings, with each class's default); Gemma's
// final_logit_softcapping is applied when set.
//
// Parameter names are the encoder graphs' (base-model names: `embed_tokens.weight`,
// `layers.N....`, `norm.weight`; InternVL `language_model.*`) plus `lm_head.weight`;
// checkpointNames() lists where checkpoints keep each.
//
// InternVL's vision part is a graph of its own (internvlVisionGraph: pixel_values ->
// image_features), run once per prompt: the decode steps never touch the vision tower.
import { concat, constant, defineGraph, dim, input, Linear, Module, range, trace, type Tensor } from '../../src/dsl/index.ts';
import { dimAdd } from '../../src/ir/dims.ts';
import type { DType } from '../../src/ir/dtype.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { DecoderLM, EncoderConfigError, parseTaps, type DecoderConfig, type Json, type LayerKV, type TapSpec } from './common.ts';
import { decoderConfigFromHF, ENCODER_FAMILIES } from './index.ts';
import { internvlCheckpointNames, internvlConfigFromHF, tokensPerTile, type InternVLConfig } from './internvl.ts';
import { InternViT, InternVLProjector, pixelShuffle } from './internvit.ts';

export const PAST_KEY = (l: number) => `past_key_values.${l}.key`;
export const PAST_VALUE = (l: number) => `past_key_values.${l}.value`;
export const PRESENT_KEY = (l: number) => `present.${l}.key`;
export const PRESENT_VALUE = (l: number) => `present.${l}.value`;

/** tie_word_embeddings defaults of transformers' config classes (the key read is the top-level one). */
const TIE_DEFAULTS: Record<string, boolean> = { gemma3_text: true, gemma3: true, internvl: true };

/** What generation needs to know of a config.json beyond the DecoderConfig. */
export interface CausalLMConfig {
  /** 'internvl' or a decoder family's model_type */
  modelType: string;
  text: DecoderConfig;
  /** the LM head is the embedding matrix */
  tied: boolean;
  /** Gemma: logits = cap * tanh(logits / cap) */
  finalSoftcap?: number;
  /** max_position_embeddings of the language model (the context the runtime allows) */
  contextLength: number;
  /** M-RoPE: position_ids [3, B, S] */
  mrope: boolean;
  internvl?: InternVLConfig;
}

function textJson(json: Json): Json {
  const mt = json.model_type;
  if ((mt === 'internvl' || mt === 'gemma3' || mt === 'qwen3_vl' || mt === 'qwen2_5_vl') && json.text_config && typeof json.text_config === 'object') return json.text_config as Json;
  return json;
}

/** The CausalLMConfig of a config.json (decoder families of graphs/vlm/index.ts, and internvl). */
export function causalLMConfigFromHF(config: object): CausalLMConfig {
  const json = config as Json;
  const mt = json.model_type;
  if (typeof mt !== 'string') throw new EncoderConfigError('config.json has no model_type string');
  const internvl = mt === 'internvl' ? internvlConfigFromHF(json) : undefined;
  if (!internvl && !(mt in ENCODER_FAMILIES)) throw new EncoderConfigError(`model_type '${mt}' has no generation graph (supported: ${[...Object.keys(ENCODER_FAMILIES), 'internvl'].join(', ')})`);
  const text = internvl ? internvl.text : decoderConfigFromHF(json);
  const tj = textJson(json);
  let tied = typeof json.tie_word_embeddings === 'boolean' ? json.tie_word_embeddings : (TIE_DEFAULTS[mt] ?? false);
  // Qwen2.5-VL: pre-v5 saves kept the flag in text_config (transformers forwards it outward)
  if (mt === 'qwen2_5_vl' && tj !== json && tj.tie_word_embeddings === true) tied = true;
  const cap = tj.final_logit_softcapping;
  if (cap !== undefined && cap !== null && (typeof cap !== 'number' || !(cap > 0))) throw new EncoderConfigError(`${mt} config.json: final_logit_softcapping ${JSON.stringify(cap)} is not a positive number`);
  const ctx = tj.max_position_embeddings ?? json.max_position_embeddings;
  const contextLength = typeof ctx === 'number' && Number.isInteger(ctx) && ctx > 0 ? ctx : CONTEXT_DEFAULTS[text.modelType] ?? 32768;
  return { modelType: mt, text, tied, finalSoftcap: typeof cap === 'number' ? cap : undefined, contextLength, mrope: text.rope.full.streams !== undefined, internvl };
}

/** max_position_embeddings class defaults, for configs that leave it out. */
const CONTEXT_DEFAULTS: Record<string, number> = { qwen2: 32768, qwen2_5_vl: 32768, qwen2_5_vl_text: 32768, qwen3: 32768, qwen3_vl: 128000, qwen3_vl_text: 128000, llama: 2048, gemma3_text: 131072, gemma3: 131072 };

export interface GenerationOptions {
  /** hidden states to output besides the logits (default: none) */
  taps?: TapSpec;
  /** parameter and compute dtype (default f32); logits, hidden states and the cache are f32 at the boundary */
  dtype?: DType;
  /** 'last' (default): logits of each row's last real token in the chunk; 'all': every position */
  logits?: 'last' | 'all';
  name?: string;
}

export interface GenerationGraph {
  modelType: string;
  config: CausalLMConfig;
  /** decoder layers (= past_key_values pairs) */
  numLayers: number;
  taps: number[];
  name: string;
  outputs: string[];
  build(): Record<string, Tensor>;
  trace(): Graph;
  definition: ReturnType<typeof defineGraph<null>> & { trace(preset?: string): Graph };
  expectedWeights(): { name: string; shape: number[]; dtype: DType }[];
  /** graph parameter name -> the checkpoint names it may be stored under, most likely first */
  checkpointNames(graphName: string): string[];
}

/** The language model with its head: DecoderLM (all layers, final norm) + lm_head (unless tied). */
class CausalLM {
  readonly lm: DecoderLM;
  readonly head?: Linear;
  constructor(readonly cfg: CausalLMConfig, dtype: DType, prefix: string) {
    const t = cfg.text;
    this.lm = new DecoderLM(t, [t.layers], dtype);
    if (prefix) this.lm.named(prefix);
    if (!cfg.tied) this.head = new Linear(t.hidden, t.vocab, { bias: false, dtype }).named('lm_head');
  }
  logits(x: Tensor): Tensor {
    let y = this.head ? this.head.forward(x) : x.matmul(this.lm.embed_tokens.weight.t.T);
    y = y.cast('f32');
    const cap = this.cfg.finalSoftcap;
    return cap === undefined ? y : y.div(cap).tanh().mul(cap);
  }
  params(): [string, { shape: readonly number[]; dtype: DType }][] {
    return [...this.lm.namedParameters(), ...(this.head ? this.head.namedParameters() : [])];
  }
}

/**
 * The row-wise last real token of the chunk, as a one-hot [B, 1, S] (f32): the last of the S
 * trailing attention_mask columns that is non-zero (slot 0 for a row with none).
 */
function lastTokenSelector(chunkMask: Tensor): Tensor {
  const S = chunkMask.dim(1);
  const pos1 = range(S, { dtype: 'f32' }).add(1); // 1..S
  const m = chunkMask.dtype === 'bool' ? chunkMask : chunkMask.eq(0).not();
  const last = m.where(pos1, constant(0, 'f32')).max(-1, true).sub(1).maximum(0); // [B, 1]
  return range(S, { dtype: 'f32' }).unsqueeze(0).eq(last).cast('f32').unsqueeze(1); // [B, 1, S]
}

/**
 * InternVL: the embeddings with image_features [N, H] written over the chunk's <IMG_CONTEXT>
 * tokens in order (batch row by row), as transformers' masked_scatter. A zero row is put in front
 * so that a chunk without features (decode: N = 0) gathers nothing out of range; image tokens past
 * the N-th keep their embeddings (what transformers does when a decode step samples the image id).
 */
function placeImageFeatures(embeds: Tensor, ids: Tensor, features: Tensor, imageTokenId: number): Tensor {
  const [B, S] = [ids.dim(0), ids.dim(1)];
  const H = embeds.dim(-1);
  const image = ids.eq(imageTokenId);
  const m = image.cast('f32');
  const upto = range(S).unsqueeze(-1).le(range(S).unsqueeze(0)).cast('f32'); // [k, q]: k <= q
  const before = range(B).unsqueeze(-1).lt(range(B).unsqueeze(0)).cast('f32'); // [b', b]: b' < b
  const k = m.matmul(upto).add(m.sum(-1).unsqueeze(0).matmul(before).reshape(B, 1)); // 1-based index of each image token
  const table = concat([constant(0, embeds.dtype).expand(1, H), features.cast(embeds.dtype)], 0); // [N + 1, H]
  const count = constant(1, 'f32').expand(features.dim(0)).sum(); // N as f32 (0 when empty)
  const ok = image.and(k.le(count));
  const placed = table.gather(ok.where(k, constant(0, 'f32')).cast('i64'), 0); // [B, S, H]
  return ok.unsqueeze(-1).where(placed, embeds);
}

/** The generation graph (module header) for a config.json object. */
export function buildGenerationGraph(config: object, opts: GenerationOptions = {}): GenerationGraph {
  const cfg = causalLMConfigFromHF(config);
  const t = cfg.text;
  const L = t.layers;
  const taps = opts.taps === undefined ? [] : parseTaps(opts.taps, L);
  const dtype = opts.dtype ?? 'f32';
  if (!['f32', 'f16', 'bf16', 'f64'].includes(dtype)) throw new EncoderConfigError(`generation dtype must be a float type, got ${dtype}`);
  const logitsMode = opts.logits ?? 'last';
  const internvl = cfg.internvl;
  const prefix = internvl ? 'language_model' : '';
  const name = opts.name ?? `${cfg.modelType}-generation`;
  const make = () => new CausalLM(cfg, dtype, prefix);
  const build = (): Record<string, Tensor> => {
    const B = dim('batch'), S = dim('seq'), P = dim('past');
    const ids = input('input_ids', 'i64', [B, S]);
    const mask = input('attention_mask', 'i64', [B, dimAdd(P, S)]);
    const positions = input('position_ids', 'i64', cfg.mrope ? [3, B, S] : [B, S]);
    const past: LayerKV[] = Array.from({ length: L }, (_, l) => ({
      key: input(PAST_KEY(l), 'f32', [B, t.kvHeads, P, t.headDim]).cast(dtype),
      value: input(PAST_VALUE(l), 'f32', [B, t.kvHeads, P, t.headDim]).cast(dtype),
    }));
    const m = make();
    let embeds = m.lm.embed(ids);
    if (internvl) embeds = placeImageFeatures(embeds, ids, input('image_features', 'f32', [dim('image_tokens'), t.hidden]), internvl.imageTokenId);
    const out = m.lm.step(embeds, { attentionMask: mask, positions, past, taps });
    const res: Record<string, Tensor> = {};
    const x = logitsMode === 'all' ? out.last : lastTokenSelector(mask.split(1, [P, S])[1]!).cast(out.last.dtype).matmul(out.last);
    res.logits = m.logits(x);
    out.present.forEach((kv, l) => {
      res[PRESENT_KEY(l)] = kv.key.cast('f32');
      res[PRESENT_VALUE(l)] = kv.value.cast('f32');
    });
    return { ...res, ...out.hidden };
  };
  const outputs = ['logits', ...Array.from({ length: L }, (_, l) => [PRESENT_KEY(l), PRESENT_VALUE(l)]).flat(), ...taps.map((i) => `hidden_states.${i}`)];
  const checkpointNames = (g: string): string[] => {
    if (g === 'lm_head.weight') return internvl ? ['language_model.lm_head.weight', 'lm_head.weight'] : ['lm_head.weight', 'language_model.lm_head.weight', 'model.lm_head.weight'];
    if (internvl) return internvlCheckpointNames(g);
    const prefixes = ENCODER_FAMILIES[cfg.modelType]?.hubPrefixes ?? [''];
    return [...new Set([...prefixes, ''].map((p) => p + g))];
  };
  return {
    modelType: cfg.modelType,
    config: cfg,
    numLayers: L,
    taps,
    name,
    outputs,
    build,
    trace: () => trace(name, build),
    definition: defineGraph<null>({ name, description: `${cfg.modelType} generation (KV cache), taps [${taps.join(', ')}]`, presets: { default: null }, build: () => build() }),
    expectedWeights: () => make().params().map(([n, p]) => ({ name: n, shape: [...p.shape], dtype: p.dtype })),
    checkpointNames,
  };
}

/** InternVL's vision tower + projector under InternVLModel's names. */
class InternVLVision extends Module {
  vision_tower: InternViT;
  multi_modal_projector: InternVLProjector;
  constructor(readonly cfg: InternVLConfig, dtype: DType) {
    super();
    const v = cfg.vision;
    this.vision_tower = new InternViT(v, cfg.featureLayer, dtype);
    this.multi_modal_projector = new InternVLProjector(v.hidden * cfg.shuffle * cfg.shuffle, cfg.text.hidden, cfg.projectorAct, dtype);
  }
  /** pixel_values [T, C, S, S] -> [T, tokensPerTile, hidden] (InternVLModel.get_image_features) */
  forward(pixels: Tensor): Tensor {
    const feats = this.vision_tower.forward(pixels).slice(1, 1); // drop CLS ("default" strategy)
    const n = this.cfg.vision.imageSize / this.cfg.vision.patch;
    return this.multi_modal_projector.forward(pixelShuffle(feats, n, this.cfg.shuffle));
  }
}

export interface VisionGraph {
  name: string;
  config: InternVLConfig;
  tokensPerTile: number;
  trace(): Graph;
  expectedWeights(): { name: string; shape: number[]; dtype: DType }[];
  checkpointNames(graphName: string): string[];
}

/**
 * InternVL's image features: pixel_values f32 [tiles, 3, 448, 448] (runtime/tiling.ts) ->
 * image_features f32 [tiles, tokens_per_tile, hidden], the rows the generation graph's
 * image_features input takes (flattened to [tiles * tokens_per_tile, hidden]).
 */
export function internvlVisionGraph(config: object, opts: { dtype?: DType; name?: string } = {}): VisionGraph {
  const cfg = internvlConfigFromHF(config as Json);
  const dtype = opts.dtype ?? 'f32';
  const name = opts.name ?? 'internvl-vision';
  const make = () => new InternVLVision(cfg, dtype);
  const build = (): Record<string, Tensor> => {
    const px = cfg.vision.imageSize;
    const pixels = input('pixel_values', 'f32', [dim('tiles'), cfg.vision.channels, px, px]);
    return { image_features: make().forward(dtype === 'f32' ? pixels : pixels.cast(dtype)).cast('f32') };
  };
  return {
    name,
    config: cfg,
    tokensPerTile: tokensPerTile(cfg),
    trace: () => trace(name, build),
    expectedWeights: () => make().namedParameters().map(([n, p]) => ({ name: n, shape: [...p.shape], dtype: p.dtype })),
    checkpointNames: internvlCheckpointNames,
  };
}
