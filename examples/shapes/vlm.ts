// The shapes demo's tiny VLM: InternVL-style (graphs/vlm/internvl.ts) with a small InternViT
// (48 x 48 tiles, 8-px patches, 2 layers) whose pixel shuffle folds each 16-px cell of the world
// into exactly one of 9 image tokens, an MLP projector, and a small Qwen2 LM with an lm_head.
// This file holds its transformers config.json, its tokenizer (runtime/shapes/prompts.ts) and
// the conversion of VLM rows (runtime/shapes/data.ts) into training tensors.
import { Tokenizer } from '@huggingface/tokenizers';
import { internvlConfigFromHF, InternVLModel, tokensPerTile } from '../../graphs/vlm/internvl.ts';
import { Linear, Module, type Tensor } from '../../src/dsl/index.ts';
import { positionsFromMask } from '../../graphs/vlm/common.ts';
import { range } from '../../src/dsl/index.ts';
import { fromFloat64, type HostTensor } from '../../src/io/host.ts';
import { dynamicTiles } from '../../runtime/tiling.ts';
import { applyChatTemplate, buildTokenizerConfig, buildTokenizerJson, EOS, expandImages, IMG_CONTEXT, PAD } from '../../runtime/shapes/prompts.ts';
import type { VlmRow } from '../../runtime/shapes/data.ts';
import { render, SIZE, type Scene } from '../../runtime/shapes/world.ts';

/** Longest training sequence (the longest row, an edit with a 3-object target, is ~66 tokens). */
export const SEQ = 80;

export interface ShapesTokenizer {
  json: { added_tokens: { id: number; content: string; special: boolean }[]; model: { vocab: Record<string, number> } };
  config: object;
  tok: Tokenizer;
  vocabSize: number;
  id(token: string): number;
}

let cached: ShapesTokenizer | undefined;

/** The VLM's tokenizer, trained once per process from the world's corpus (deterministic). */
export function shapesTokenizer(): ShapesTokenizer {
  if (cached) return cached;
  const json = buildTokenizerJson() as ShapesTokenizer['json'];
  const config = buildTokenizerConfig(json, 256);
  const tok = new Tokenizer(json, config);
  const n = Object.keys(json.model.vocab).length + json.added_tokens.length;
  const id = (t: string) => tok.token_to_id(t) ?? (() => { throw new Error(`token '${t}' is not in the shapes tokenizer`); })();
  cached = { json, config, tok, vocabSize: 16 * Math.ceil(n / 16), id };
  return cached;
}

export interface VlmSize {
  visionHidden: number;
  visionLayers: number;
  textHidden: number;
  textLayers: number;
  textHeads: number;
  textKvHeads: number;
  textIntermediate: number;
}

export const VLM_SIZE: VlmSize = { visionHidden: 64, visionLayers: 2, textHidden: 96, textLayers: 4, textHeads: 4, textKvHeads: 2, textIntermediate: 256 };

/** transformers config.json (model_type internvl; InternVLForConditionalGeneration). */
export function vlmConfigJson(size: VlmSize = VLM_SIZE): Record<string, unknown> {
  const t = shapesTokenizer();
  return {
    architectures: ['InternVLForConditionalGeneration'],
    model_type: 'internvl',
    image_token_id: t.id(IMG_CONTEXT),
    image_seq_length: 9,
    downsample_ratio: 0.5,
    projector_hidden_act: 'gelu',
    vision_feature_layer: -1,
    vision_feature_select_strategy: 'default',
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    vision_config: {
      model_type: 'internvl_vision',
      hidden_size: size.visionHidden,
      num_hidden_layers: size.visionLayers,
      num_attention_heads: 4,
      intermediate_size: 4 * size.visionHidden,
      attention_bias: true,
      use_qk_norm: false,
      norm_type: 'layer_norm',
      layer_norm_eps: 1e-6,
      image_size: [SIZE, SIZE],
      patch_size: [8, 8],
      num_channels: 3,
      hidden_act: 'gelu',
      use_mean_pooling: true,
      layer_scale_init_value: 0.1,
      hidden_dropout_prob: 0.0,
      attention_dropout: 0.0,
      projection_dropout: 0.0,
    },
    text_config: {
      model_type: 'qwen2',
      vocab_size: t.vocabSize,
      hidden_size: size.textHidden,
      intermediate_size: size.textIntermediate,
      num_hidden_layers: size.textLayers,
      num_attention_heads: size.textHeads,
      num_key_value_heads: size.textKvHeads,
      max_position_embeddings: 256,
      rms_norm_eps: 1e-6,
      rope_theta: 10000.0,
      hidden_act: 'silu',
      tie_word_embeddings: false,
      use_sliding_window: false,
      eos_token_id: t.id(EOS),
      pad_token_id: t.id(PAD),
      bos_token_id: null,
    },
    eos_token_id: t.id(EOS),
    pad_token_id: t.id(PAD),
  };
}

/** generation_config.json: greedy, stop at <|im_end|>, pad <|endoftext|>. */
export function generationConfigJson(): Record<string, unknown> {
  const t = shapesTokenizer();
  return { eos_token_id: [t.id(EOS), t.id(PAD)], pad_token_id: t.id(PAD), do_sample: false, max_new_tokens: 48 };
}

/** InternVLForConditionalGeneration as a DSL module: `model.*` (InternVLModel) + `lm_head`, transformers-5 names. */
export class ShapesVLM extends Module {
  model: InternVLModel;
  lm_head: Linear;
  constructor(config: Record<string, unknown>) {
    super();
    const cfg = internvlConfigFromHF(config);
    this.model = new InternVLModel(cfg, [cfg.text.layers]);
    this.lm_head = new Linear(cfg.text.hidden, cfg.text.vocab, { bias: false, std: 0.02 });
  }
  /** logits [B, S, V] (positions 0..S-1: right padding) */
  logits(ids: Tensor, mask: Tensor, pixels: Tensor): Tensor {
    const L = this.model.cfg.text.layers;
    const hs = this.model.forward(ids, mask, pixels, range(ids.dim(1)));
    return this.lm_head.forward(hs[`hidden_states.${L}`]!);
  }
}

/** Mean next-token cross-entropy over the positions where lossMask is 1. logits [B, S, V], targets i64 [B, S]. */
export function maskedCrossEntropy(logits: Tensor, targets: Tensor, lossMask: Tensor): Tensor {
  const V = logits.dim(-1);
  const m = logits.max(-1, true);
  const lse = logits.sub(m).exp().sum(-1).log().add(m.squeeze(-1));
  const onehot = targets.unsqueeze(-1).eq(range(V as number, { dtype: 'i64' })).cast('f32');
  const target = logits.mul(onehot).sum(-1);
  return lse.sub(target).mul(lossMask).sum().div(lossMask.sum().maximum(1));
}

export interface EncodedRow {
  ids: number[];
  /** first token index of the answer; the answer and its <|im_end|> are predicted */
  answerStart: number;
  answerEnd: number;
  images: Scene[];
}

/** Row -> token ids (chat template, images expanded) and the answer span. */
export function encodeRow(row: VlmRow): EncodedRow {
  const t = shapesTokenizer();
  const per = 9;
  if (row.task === 'lm') {
    const ids = t.tok.encode(row.answer + PAD, { add_special_tokens: false }).ids;
    return { ids, answerStart: 0, answerEnd: ids.length, images: [] };
  }
  const prefix = expandImages(applyChatTemplate(row.messages, true), per);
  const pre: number[] = t.tok.encode(prefix, { add_special_tokens: false }).ids;
  const full: number[] = t.tok.encode(prefix + row.answer + EOS, { add_special_tokens: false }).ids;
  if (pre.some((x, i) => full[i] !== x)) throw new Error(`tokenizing '${prefix}' + answer changed the prefix's tokens`);
  return { ids: full, answerStart: pre.length, answerEnd: full.length, images: row.images };
}

export function pixelValuesOf(scenes: readonly Scene[], count: number): HostTensor<'f32'> {
  const per = 3 * SIZE * SIZE;
  const data = new Float32Array(count * per);
  const black = dynamicTiles({ width: SIZE, height: SIZE, data: new Uint8Array(SIZE * SIZE * 3) }, { size: SIZE, maxNum: 1 }).pixelValues.data as Float32Array;
  for (let i = 0; i < count; i++) {
    const px = i < scenes.length ? (dynamicTiles({ width: SIZE, height: SIZE, data: render(scenes[i]!) }, { size: SIZE, maxNum: 1 }).pixelValues.data as Float32Array) : black;
    data.set(px, i * per);
  }
  return { dtype: 'f32', shape: [count, 3, SIZE, SIZE], data };
}

/** A training batch: right-padded ids, next-token targets, loss mask on the answers, pixel_values (real images first, black fillers after). */
export function vlmBatch(rows: readonly EncodedRow[], seq = SEQ): Record<string, HostTensor> {
  const t = shapesTokenizer();
  const B = rows.length, pad = t.id(PAD);
  const ids = new Array<number>(B * seq).fill(pad), mask = new Array<number>(B * seq).fill(0);
  const targets = new Array<number>(B * seq).fill(pad), lossMask = new Array<number>(B * seq).fill(0);
  const images: Scene[] = [];
  rows.forEach((r, b) => {
    if (r.ids.length > seq) throw new Error(`a row of ${r.ids.length} tokens exceeds the sequence length ${seq}`);
    r.ids.forEach((x, i) => ((ids[b * seq + i] = x), (mask[b * seq + i] = 1)));
    for (let i = 0; i + 1 < r.ids.length; i++) {
      targets[b * seq + i] = r.ids[i + 1]!;
      if (i + 1 >= r.answerStart && i + 1 < r.answerEnd) lossMask[b * seq + i] = 1;
    }
    images.push(...r.images);
  });
  if (images.length > B) throw new Error(`a batch of ${B} rows holds ${images.length} images (the step graph takes at most ${B})`);
  return {
    input_ids: fromFloat64('i64', [B, seq], ids),
    attention_mask: fromFloat64('i64', [B, seq], mask),
    pixel_values: pixelValuesOf(images, B),
    targets: fromFloat64('i64', [B, seq], targets),
    loss_mask: fromFloat64('f32', [B, seq], lossMask),
  };
}

export { positionsFromMask, tokensPerTile };
