// InternViT (InternVL's vision tower), its pixel shuffle and the MLP projector, as
// transformers' InternVLVisionModel / InternVLModel compute them, with their
// parameter names (relative to InternVLModel):
//   vision_tower.embeddings.{cls_token, position_embeddings, patch_embeddings.projection.{weight,bias}}
//   vision_tower.encoder.layer.N.{layernorm_before, layernorm_after}.{weight[,bias]}
//   vision_tower.encoder.layer.N.attention.{q_proj,k_proj,v_proj}.{weight[,bias]}
//   vision_tower.encoder.layer.N.attention.projection_layer.{weight,bias}
//   vision_tower.encoder.layer.N.attention.{q_norm,k_norm}.weight      (use_qk_norm: InternViT-6B)
//   vision_tower.encoder.layer.N.mlp.{fc1,fc2}.{weight,bias}
//   vision_tower.encoder.layer.N.{lambda_1, lambda_2}                  (layer scale)
//   vision_tower.layernorm.{weight,bias}                               (only if !use_mean_pooling)
//   multi_modal_projector.{layer_norm, linear_1, linear_2}.{weight,bias}
import {
  Conv2d,
  concat,
  gelu,
  headMerge,
  headSplit,
  LayerNorm,
  Linear,
  Module,
  Param,
  sdpa,
  silu,
  type Tensor,
} from '../../src/dsl/index.ts';
import type { Dim } from '../../src/ir/dims.ts';
import type { DType } from '../../src/ir/dtype.ts';
import { ConfigReader, EncoderConfigError, HFRMSNorm, type Json } from './common.ts';

export type VisionAct = 'gelu' | 'gelu_tanh' | 'silu';

export interface InternViTConfig {
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  /** square input side in pixels (448); tiles must have exactly this size */
  imageSize: number;
  patch: number;
  channels: number;
  /** bias on q/k/v (InternViT-300M: true) */
  qkvBias: boolean;
  /** RMSNorm of q and k over the whole width before the head split (InternViT-6B) */
  qkNorm: boolean;
  norm: 'layer_norm' | 'rms_norm';
  eps: number;
  act: VisionAct;
  /** false: a final LayerNorm `layernorm` (InternVL3 uses mean pooling = no final norm) */
  meanPooling: boolean;
}

/** transformers' InternVLVisionConfig defaults. */
const VISION_DEFAULTS: Json = {
  hidden_size: 1024,
  num_hidden_layers: 24,
  num_attention_heads: 16,
  attention_bias: false,
  use_qk_norm: false,
  intermediate_size: 4096,
  hidden_act: 'gelu',
  norm_type: 'layer_norm',
  layer_norm_eps: 1e-6,
  image_size: 448,
  patch_size: 14,
  num_channels: 3,
  use_mask_token: false,
  use_absolute_position_embeddings: true,
  use_mean_pooling: true,
};

function side(r: ConfigReader, key: string): number {
  const v = r.raw(key);
  if (Array.isArray(v)) {
    if (v.length !== 2 || v[0] !== v[1] || typeof v[0] !== 'number') r.fail(`'${key}' ${JSON.stringify(v)}: only square sizes are supported`);
    return v[0] as number;
  }
  return r.int(key);
}

function visionAct(name: string, r: ConfigReader): VisionAct {
  if (name === 'gelu') return 'gelu';
  if (name === 'gelu_pytorch_tanh' || name === 'gelu_new') return 'gelu_tanh';
  if (name === 'silu' || name === 'swish') return 'silu';
  return r.fail(`activation '${name}' is not supported (gelu, gelu_pytorch_tanh, gelu_new, silu)`);
}

function activate(x: Tensor, act: VisionAct): Tensor {
  return act === 'gelu' ? gelu(x) : act === 'gelu_tanh' ? gelu(x, 'tanh') : silu(x);
}

/** InternViTConfig from an InternVL config.json's `vision_config` (model_type internvl_vision). */
export function internViTConfigFromHF(json: Json): InternViTConfig {
  const r = new ConfigReader(json, 'internvl vision_config', VISION_DEFAULTS);
  if (!r.bool('use_absolute_position_embeddings')) r.fail('use_absolute_position_embeddings false is not supported');
  const norm = r.str('norm_type');
  if (norm !== 'layer_norm' && norm !== 'rms_norm') r.fail(`norm_type '${norm}' is not layer_norm or rms_norm`);
  const cfg: InternViTConfig = {
    hidden: r.int('hidden_size'),
    layers: r.int('num_hidden_layers'),
    heads: r.int('num_attention_heads'),
    intermediate: r.int('intermediate_size'),
    imageSize: side(r, 'image_size'),
    patch: side(r, 'patch_size'),
    channels: r.int('num_channels'),
    qkvBias: r.bool('attention_bias'),
    qkNorm: r.bool('use_qk_norm'),
    norm: norm as InternViTConfig['norm'],
    eps: r.num('layer_norm_eps'),
    act: visionAct(r.str('hidden_act'), r),
    meanPooling: r.bool('use_mean_pooling'),
  };
  if (cfg.hidden % cfg.heads !== 0) r.fail(`hidden_size ${cfg.hidden} is not divisible by num_attention_heads ${cfg.heads}`);
  if (cfg.imageSize % cfg.patch !== 0) r.fail(`image_size ${cfg.imageSize} is not a multiple of patch_size ${cfg.patch}`);
  return cfg;
}

function norm(cfg: InternViTConfig, dtype: DType): LayerNorm | HFRMSNorm {
  return cfg.norm === 'rms_norm' ? new HFRMSNorm(cfg.hidden, cfg.eps, 'llama', dtype) : new LayerNorm(cfg.hidden, cfg.eps, { dtype });
}

export class InternViTPatchEmbeddings extends Module {
  projection: Conv2d;
  constructor(cfg: InternViTConfig, dtype: DType) {
    super();
    this.projection = new Conv2d(cfg.channels, cfg.hidden, cfg.patch, { stride: cfg.patch, dtype });
  }
  /** [T, C, H, W] -> [T, (H/P)*(W/P), D], patches row-major */
  forward(x: Tensor): Tensor {
    const y = this.projection.forward(x);
    return y.reshape(y.dim(0), y.dim(1), -1).swap(1, 2);
  }
}

export class InternViTEmbeddings extends Module {
  cls_token: Param;
  patch_embeddings: InternViTPatchEmbeddings;
  position_embeddings: Param;
  constructor(readonly cfg: InternViTConfig, dtype: DType) {
    super();
    const n = (cfg.imageSize / cfg.patch) ** 2;
    this.cls_token = this.param([1, 1, cfg.hidden], { kind: 'normal', std: 0.02 }, dtype);
    this.patch_embeddings = new InternViTPatchEmbeddings(cfg, dtype);
    this.position_embeddings = this.param([1, n + 1, cfg.hidden], { kind: 'normal', std: 0.02 }, dtype);
  }
  /** [T, C, S, S] with S = image_size (no position interpolation: tiles always have the trained size) */
  forward(pixels: Tensor): Tensor {
    const S = this.cfg.imageSize;
    if (pixels.dim(2) !== S || pixels.dim(3) !== S) throw new EncoderConfigError(`InternViT takes ${S}x${S} tiles, got ${pixels}`);
    const x = this.patch_embeddings.forward(pixels);
    const cls = this.cls_token.t.expand(x.dim(0), 1, this.cfg.hidden);
    return concat([cls, x], 1).add(this.position_embeddings.t);
  }
}

export class InternViTAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  projection_layer: Linear;
  q_norm?: HFRMSNorm;
  k_norm?: HFRMSNorm;
  constructor(readonly cfg: InternViTConfig, dtype: DType) {
    super();
    const D = cfg.hidden;
    this.q_proj = new Linear(D, D, { bias: cfg.qkvBias, dtype });
    this.k_proj = new Linear(D, D, { bias: cfg.qkvBias, dtype });
    this.v_proj = new Linear(D, D, { bias: cfg.qkvBias, dtype });
    this.projection_layer = new Linear(D, D, { dtype });
    if (cfg.qkNorm) {
      // InternVLVisionRMSNorm(embed_dim): its own default eps 1e-6, not layer_norm_eps
      this.q_norm = new HFRMSNorm(D, 1e-6, 'llama', dtype);
      this.k_norm = new HFRMSNorm(D, 1e-6, 'llama', dtype);
    }
  }
  forward(x: Tensor): Tensor {
    const { heads, hidden } = this.cfg;
    let q = this.q_proj.forward(x);
    let k = this.k_proj.forward(x);
    if (this.q_norm && this.k_norm) (q = this.q_norm.forward(q)), (k = this.k_norm.forward(k));
    const hd = hidden / heads;
    const o = sdpa(headSplit(q, heads, hd), headSplit(k, heads, hd), headSplit(this.v_proj.forward(x), heads, hd));
    return this.projection_layer.forward(headMerge(o));
  }
}

export class InternViTMLP extends Module {
  fc1: Linear;
  fc2: Linear;
  constructor(readonly cfg: InternViTConfig, dtype: DType) {
    super();
    this.fc1 = new Linear(cfg.hidden, cfg.intermediate, { dtype });
    this.fc2 = new Linear(cfg.intermediate, cfg.hidden, { dtype });
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(activate(this.fc1.forward(x), this.cfg.act));
  }
}

/** x + λ1·attn(norm(x)); then + λ2·mlp(norm(·)) (layer scale, InternVLVisionLayer). */
export class InternViTLayer extends Module {
  attention: InternViTAttention;
  mlp: InternViTMLP;
  layernorm_before: LayerNorm | HFRMSNorm;
  layernorm_after: LayerNorm | HFRMSNorm;
  lambda_1: Param;
  lambda_2: Param;
  constructor(cfg: InternViTConfig, dtype: DType) {
    super();
    this.attention = new InternViTAttention(cfg, dtype);
    this.mlp = new InternViTMLP(cfg, dtype);
    this.layernorm_before = norm(cfg, dtype);
    this.layernorm_after = norm(cfg, dtype);
    this.lambda_1 = this.param([cfg.hidden], { kind: 'const', value: 0.1 }, dtype);
    this.lambda_2 = this.param([cfg.hidden], { kind: 'const', value: 0.1 }, dtype);
  }
  forward(x: Tensor): Tensor {
    const h = x.add(this.lambda_1.t.mul(this.attention.forward(this.layernorm_before.forward(x))));
    return h.add(this.lambda_2.t.mul(this.mlp.forward(this.layernorm_after.forward(h))));
  }
}

export class InternViTEncoder extends Module {
  layer: InternViTLayer[];
  constructor(cfg: InternViTConfig, n: number, dtype: DType) {
    super();
    this.layer = Array.from({ length: n }, () => new InternViTLayer(cfg, dtype));
  }
}

/**
 * InternVLVisionModel holding the layers one feature layer needs. `featureLayer` is
 * InternVL's vision_feature_layer: -1 = last_hidden_state (after `layernorm` when the
 * model has one); any other k = hidden_states[k] (0 = embeddings, i = output of layer
 * i-1; negative counts from the end, so -2 is the second-to-last layer's output).
 */
export class InternViT extends Module {
  embeddings: InternViTEmbeddings;
  encoder: InternViTEncoder;
  layernorm?: LayerNorm;
  readonly index: number;
  constructor(
    readonly cfg: InternViTConfig,
    readonly featureLayer = -1,
    dtype: DType = 'f32',
  ) {
    super();
    const L = cfg.layers;
    if (!Number.isInteger(featureLayer) || featureLayer < -(L + 1) || featureLayer > L)
      throw new EncoderConfigError(`vision_feature_layer ${featureLayer} is outside the vision tower's hidden states (${-(L + 1)}..${L})`);
    this.index = featureLayer < 0 ? featureLayer + L + 1 : featureLayer;
    this.embeddings = new InternViTEmbeddings(cfg, dtype);
    this.encoder = new InternViTEncoder(cfg, this.index, dtype);
    if (featureLayer === -1 && !cfg.meanPooling) this.layernorm = new LayerNorm(cfg.hidden, cfg.eps, { dtype });
  }
  /** hidden_states[0..featureLayer] as transformers returns them (no final norm) */
  hiddenStates(pixels: Tensor): Tensor[] {
    const out = [this.embeddings.forward(pixels)];
    for (const layer of this.encoder.layer) out.push(layer.forward(out[out.length - 1]!));
    return out;
  }
  /** pixel_values [T, C, S, S] -> the feature layer [T, 1 + patches, D] (CLS first) */
  forward(pixels: Tensor): Tensor {
    const h = this.hiddenStates(pixels).pop()!;
    return this.layernorm ? this.layernorm.forward(h) : h;
  }
}

/**
 * InternVL's pixel shuffle with scale 1/r (r = 2 for downsample_ratio 0.5), in
 * transformers' reshape/permute order: x [T, n*n, C] (patches row-major) ->
 * [T, (n/r)^2, C*r^2], where output token (a, b) holds, at channel
 * (m*r + k)*C + c, input token (r*a + m, r*b + k) channel c: the r x r block of
 * patches below and right of (r*a, r*b), rows outer, columns inner.
 */
export function pixelShuffle(x: Tensor, n: number, r: number): Tensor {
  const T: Dim = x.dim(0);
  const C = x.dim(2) as number;
  if (n % r !== 0) throw new EncoderConfigError(`pixel shuffle: a ${n}x${n} patch grid does not split into ${r}x${r} blocks`);
  // transformers: view(T, n, n/r, C*r) -> permute(0,2,1,3) -> view(T, n/r, n/r, C*r*r) -> permute(0,2,1,3)
  const a = x.reshape(T, n, n / r, C * r).transpose(0, 2, 1, 3);
  const b = a.reshape(T, n / r, n / r, C * r * r).transpose(0, 2, 1, 3);
  return b.reshape(T, (n / r) * (n / r), C * r * r);
}

/** multi_modal_projector: LayerNorm (torch default eps 1e-5) -> linear_1 -> act -> linear_2. */
export class InternVLProjector extends Module {
  layer_norm: LayerNorm;
  linear_1: Linear;
  linear_2: Linear;
  constructor(
    inDim: number,
    outDim: number,
    readonly act: VisionAct,
    dtype: DType,
  ) {
    super();
    this.layer_norm = new LayerNorm(inDim, 1e-5, { dtype });
    this.linear_1 = new Linear(inDim, outDim, { dtype });
    this.linear_2 = new Linear(outDim, outDim, { dtype });
  }
  forward(x: Tensor): Tensor {
    return this.linear_2.forward(activate(this.linear_1.forward(this.layer_norm.forward(x)), this.act));
  }
}
