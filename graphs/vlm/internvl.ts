// InternVL3 as a text+image encoder: InternViT over the image tiles, pixel shuffle,
// MLP projector, the image features written over the embeddings of the
// <IMG_CONTEXT> tokens (in order: batch row by row, left to right; tiles in
// pixel_values order), then the LLM (Qwen2.5 for InternVL3) with hidden-state taps.
// This is transformers' InternVLModel.forward (model_type "internvl", the "-hf"
// checkpoints).
//
// Graph inputs:  input_ids       i64 [batch, seq]   with image_seq_length <IMG_CONTEXT> ids per tile
//                attention_mask  i64 [batch, seq]   1 = token, 0 = padding
//                pixel_values    f32 [tiles, 3, 448, 448]   (runtime/tiling.ts: all images'
//                                tiles concatenated in the order their tokens appear)
// Graph outputs: hidden_states.<i> f32 [batch, seq, hidden]: transformers' output_hidden_states[i]
//                of the language model (0 = embeddings with image features placed)
//                text_mask  bool [batch, seq]   a text token (not image, not padding)
//                image_mask bool [batch, seq]   an <IMG_CONTEXT> token
//                pad_mask   bool [batch, seq]   padding
// The number of <IMG_CONTEXT> tokens must be tiles * image_seq_length (transformers raises
// otherwise; the graph cannot: fewer tokens drop trailing features, more read past the end,
// which onnxruntime rejects). checkImageTokens() checks it on the host.
//
// Parameter names are InternVLModel's (transformers 5: `vision_tower.*`, `multi_modal_projector.*`,
// `language_model.*` = the LLM's base-model names). internvlParamName() maps checkpoint names
// of the Hub "-hf" layout (`language_model.model.*`) and of transformers-5 saves (`model.*`).
import { defineGraph, dim, input, range, trace, type Tensor } from '../../src/dsl/index.ts';
import { Module } from '../../src/dsl/module.ts';
import type { DType } from '../../src/ir/dtype.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { ConfigReader, DecoderLM, EncoderConfigError, keyMask, parseTaps, positionsFromMask, type DecoderConfig, type Json, type RenamingEncoderGraph, type TapSpec } from './common.ts';
import { decoderConfigFromHF } from './index.ts';
import { InternViT, internViTConfigFromHF, InternVLProjector, pixelShuffle, type InternViTConfig, type VisionAct } from './internvit.ts';

export interface InternVLConfig {
  vision: InternViTConfig;
  text: DecoderConfig;
  imageTokenId: number;
  /** 1 / downsample_ratio: the pixel shuffle folds r x r patches into one token */
  shuffle: number;
  projectorAct: VisionAct;
  /** vision_feature_layer (-1: last_hidden_state) */
  featureLayer: number;
}

/** transformers' InternVLConfig defaults. */
const INTERNVL_DEFAULTS: Json = {
  image_token_id: 151667,
  downsample_ratio: 0.5,
  projector_hidden_act: 'gelu',
  vision_feature_layer: -1,
  vision_feature_select_strategy: 'default',
};

/** InternVLConfig from a config.json with model_type "internvl" (text_config defaults to qwen2). */
export function internvlConfigFromHF(json: Json): InternVLConfig {
  const r = new ConfigReader(json, 'internvl', INTERNVL_DEFAULTS);
  if (r.has('model_type') && r.str('model_type') !== 'internvl') r.fail(`model_type '${r.str('model_type')}' is not internvl`);
  const vj = r.obj('vision_config') ?? {};
  const tj = { model_type: 'qwen2', ...(r.obj('text_config') ?? r.fail("'text_config' is missing")) };
  const ratio = r.num('downsample_ratio');
  const shuffle = Math.round(1 / ratio);
  if (Math.abs(shuffle * ratio - 1) > 1e-9) r.fail(`downsample_ratio ${ratio} is not 1/integer`);
  const strategy = r.str('vision_feature_select_strategy');
  if (strategy !== 'default') r.fail(`vision_feature_select_strategy '${strategy}' is not supported (default: drop the CLS token)`);
  const fl = r.raw('vision_feature_layer');
  if (typeof fl !== 'number' || !Number.isInteger(fl)) return r.fail(`vision_feature_layer ${JSON.stringify(fl)}: only a single layer index is supported`);
  const act = r.str('projector_hidden_act');
  const projectorAct: VisionAct = act === 'gelu' ? 'gelu' : act === 'gelu_pytorch_tanh' || act === 'gelu_new' ? 'gelu_tanh' : act === 'silu' ? 'silu' : r.fail(`projector_hidden_act '${act}' is not supported`);
  const vision = internViTConfigFromHF(vj);
  const grid = vision.imageSize / vision.patch;
  if (grid % shuffle !== 0) r.fail(`a ${grid}x${grid} patch grid does not fold by ${shuffle}`);
  return { vision, text: decoderConfigFromHF(tj), imageTokenId: r.int('image_token_id', 0), shuffle, projectorAct, featureLayer: fl };
}

/** <IMG_CONTEXT> tokens per tile: (grid / r)^2 (256 for 448 px, patch 14, ratio 0.5). */
export function tokensPerTile(cfg: InternVLConfig): number {
  return (cfg.vision.imageSize / cfg.vision.patch / cfg.shuffle) ** 2;
}

/** Host-side check that the prompt carries one <IMG_CONTEXT> run per tile. */
export function checkImageTokens(inputIds: ArrayLike<number | bigint>, tiles: number, cfg: InternVLConfig): void {
  let n = 0;
  for (let i = 0; i < inputIds.length; i++) if (Number(inputIds[i]) === cfg.imageTokenId) n++;
  const want = tiles * tokensPerTile(cfg);
  if (n !== want) throw new EncoderConfigError(`input_ids hold ${n} image tokens (id ${cfg.imageTokenId}) but ${tiles} tiles give ${want} features`);
}

/**
 * Map a checkpoint tensor name to the graph's name, or undefined for tensors the encoder
 * does not use (lm_head). Handles the Hub "-hf" layout (`language_model.model.*`,
 * `language_model.lm_head.*`) and transformers-5 saves (`model.*`, `lm_head.*`).
 */
export function internvlParamName(name: string): string | undefined {
  if (name.startsWith('lm_head.') || name.startsWith('language_model.lm_head.')) return undefined;
  const n = name.startsWith('model.') ? name.slice(6) : name;
  if (n.startsWith('language_model.model.')) return 'language_model.' + n.slice('language_model.model.'.length);
  return n;
}

/** Where checkpoints store a graph parameter: the Hub "-hf" layout first, then transformers-5 saves. */
export function internvlCheckpointNames(graphName: string): string[] {
  if (graphName.startsWith('language_model.')) {
    const rest = graphName.slice('language_model.'.length);
    return [`language_model.model.${rest}`, `model.language_model.${rest}`];
  }
  return [graphName, `model.${graphName}`];
}

export class InternVLModel extends Module {
  vision_tower: InternViT;
  multi_modal_projector: InternVLProjector;
  language_model: DecoderLM;
  constructor(
    readonly cfg: InternVLConfig,
    readonly taps: readonly number[],
    dtype: DType = 'f32',
  ) {
    super();
    const v = cfg.vision;
    this.vision_tower = new InternViT(v, cfg.featureLayer, dtype);
    this.multi_modal_projector = new InternVLProjector(v.hidden * cfg.shuffle * cfg.shuffle, cfg.text.hidden, cfg.projectorAct, dtype);
    this.language_model = new DecoderLM(cfg.text, taps, dtype);
  }

  /** pixel_values [T, C, S, S] -> projected features [T, tokensPerTile, hidden] (InternVLModel.get_image_features). */
  imageFeatures(pixels: Tensor): Tensor {
    const feats = this.vision_tower.forward(pixels).slice(1, 1); // drop CLS ("default" strategy)
    const n = this.cfg.vision.imageSize / this.cfg.vision.patch;
    return this.multi_modal_projector.forward(pixelShuffle(feats, n, this.cfg.shuffle));
  }

  /**
   * Token embeddings with the image features written over the <IMG_CONTEXT> tokens, in
   * order (transformers' masked_scatter). The k-th image token of the flattened batch
   * takes feature row k: k = (image tokens in earlier rows) + (in this row up to here) - 1,
   * prefix counts as triangular matmuls (exact in f32 below 2^24 tokens).
   */
  placeImages(inputIds: Tensor, imageMask: Tensor, features: Tensor): Tensor {
    const embeds = this.language_model.embed(inputIds);
    const [B, S] = [inputIds.dim(0), inputIds.dim(1)];
    const H = this.cfg.text.hidden;
    const m = imageMask.cast('f32');
    const upto = range(S).unsqueeze(-1).le(range(S).unsqueeze(0)).cast('f32'); // [k, q]: k <= q
    const inRow = m.matmul(upto); // [B, S]
    const before = range(B).unsqueeze(-1).lt(range(B).unsqueeze(0)).cast('f32'); // [b', b]: b' < b
    const rowStart = m.sum(-1).unsqueeze(0).matmul(before).reshape(B, 1); // [B, 1]
    const k = inRow.add(rowStart).sub(1).maximum(0).cast('i64');
    const flat = features.reshape(-1, H).cast(embeds.dtype);
    const placed = flat.gather(k, 0); // [B, S, H]
    return imageMask.unsqueeze(-1).where(placed, embeds);
  }

  forward(inputIds: Tensor, attentionMask: Tensor, pixels: Tensor, positions: Tensor): Record<string, Tensor> {
    const image = inputIds.eq(this.cfg.imageTokenId);
    const embeds = this.placeImages(inputIds, image, this.imageFeatures(pixels));
    const hs = this.language_model.forward(embeds, { attentionMask, positions, taps: this.taps });
    const tok = keyMask(attentionMask);
    return { ...hs, text_mask: tok.and(image.not()), image_mask: image.and(tok), pad_mask: tok.not() };
  }
}

export interface InternVLEncoderOptions {
  dtype?: DType;
  /** LLM positions: 'arange' (transformers' default, 0..S-1) or 'mask' (cumsum of the mask - 1) */
  positions?: 'arange' | 'mask';
  name?: string;
}

export interface InternVLEncoder extends RenamingEncoderGraph {
  modelType: 'internvl';
  config: InternVLConfig;
  /** image tokens per 448^2 tile */
  tokensPerTile: number;
}

/** The InternVL encoder graph for a config.json object (model_type "internvl"). */
export function internvlEncoderFromHF(config: object, taps: TapSpec, opts: InternVLEncoderOptions = {}): InternVLEncoder {
  const cfg = internvlConfigFromHF(config as Json);
  const tapList = parseTaps(taps, cfg.text.layers);
  const dtype = opts.dtype ?? 'f32';
  const positions = opts.positions ?? 'arange';
  const name = opts.name ?? 'internvl-encoder';
  const model = () => new InternVLModel(cfg, tapList, dtype);
  const build = (): Record<string, Tensor> => {
    const B = dim('batch'), S = dim('seq'), T = dim('tiles');
    const ids = input('input_ids', 'i64', [B, S]);
    const mask = input('attention_mask', 'i64', [B, S]);
    const px = cfg.vision.imageSize;
    const pixels = input('pixel_values', 'f32', [T, cfg.vision.channels, px, px]);
    const pos = positions === 'mask' ? positionsFromMask(mask) : range(S);
    return model().forward(ids, mask, dtype === 'f32' ? pixels : pixels.cast(dtype), pos);
  };
  return {
    modelType: 'internvl',
    config: cfg,
    numLayers: cfg.text.layers,
    taps: tapList,
    name,
    outputs: [...tapList.map((i) => `hidden_states.${i}`), 'text_mask', 'image_mask', 'pad_mask'],
    tokensPerTile: tokensPerTile(cfg),
    build,
    trace: () => trace(name, build),
    definition: defineGraph<null>({ name, description: `InternVL encoder, hidden_states taps [${tapList.join(', ')}]`, presets: { default: null }, build: () => build() }),
    expectedWeights: () => model().namedParameters().map(([n, p]) => ({ name: n, shape: [...p.shape], dtype: p.dtype })),
    paramName: internvlParamName,
    checkpointNames: internvlCheckpointNames,
  };
}

/** InternVL3-8B-hf's architecture (InternViT-300M + Qwen2.5-7B): the keys this encoder reads. */
export const INTERNVL3_8B: Json = {
  model_type: 'internvl',
  image_token_id: 151667,
  downsample_ratio: 0.5,
  projector_hidden_act: 'gelu',
  vision_feature_layer: -1,
  vision_feature_select_strategy: 'default',
  vision_config: {
    model_type: 'internvl_vision',
    hidden_size: 1024,
    num_hidden_layers: 24,
    num_attention_heads: 16,
    intermediate_size: 4096,
    attention_bias: true,
    use_qk_norm: false,
    norm_type: 'layer_norm',
    layer_norm_eps: 1e-6,
    image_size: [448, 448],
    patch_size: [14, 14],
    hidden_act: 'gelu',
    use_mean_pooling: true,
  },
  text_config: {
    model_type: 'qwen2',
    vocab_size: 151674,
    hidden_size: 3584,
    intermediate_size: 18944,
    num_hidden_layers: 28,
    num_attention_heads: 28,
    num_key_value_heads: 4,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    hidden_act: 'silu',
  },
};
