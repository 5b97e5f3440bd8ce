// The Qwen family as transformers computes it: Qwen2 / Qwen2.5 (InternVL3's LLM), the
// Qwen2.5-VL text model, Qwen3 and the Qwen3-VL text model (Krea 2's encoder). All are
// pre-norm blocks with GQA, SwiGLU and RMSNorm `weight * x̂`; they differ in:
//   qwen2, qwen2_5_vl   bias on q/k/v (none on o_proj); head_dim = hidden / heads
//                       (Qwen2Attention honours a head_dim key, Qwen2_5_VLAttention does not)
//   qwen3, qwen3_vl     `attention_bias` on q/k/v/o; head_dim from the config (class default
//                       128); q_norm / k_norm (RMSNorm over the head dim) before RoPE
//   *_vl                M-RoPE: three position streams (t, h, w) spread over the head_dim/2
//                       frequencies by `mrope_section` s: Qwen2.5-VL in sections (frequencies
//                       [0, s0) take t, [s0, s0+s1) h, the rest w), Qwen3-VL interleaved
//                       (frequency i takes h when i % 3 == 1 and i < 3*s1, w when i % 3 == 2 and
//                       i < 3*s2, else t). cos/sin repeat over both halves, as rotate_half pairs
//                       dim i with i + head_dim/2. For text the three streams are the 1D position,
//                       so a text-only run equals plain RoPE; image tokens get (t, h, w) positions
//                       from the caller through `position_ids` [3, B, S].
//   sliding windows     Qwen2/2.5(-VL)/3 configs may set use_sliding_window: layers from
//                       max_window_layers on attend to the last sliding_window keys (layer_types
//                       in transformers-5 configs). Qwen3-VL has none.
// Qwen3-VL's deepstack (vision features added to the first layers' outputs at image tokens) does
// not touch text tokens and is left to the VLM wrapper.
import {
  activationFromHF,
  ConfigReader,
  EncoderConfigError,
  layerTypesFromHF,
  ropeFromParams,
  ropeParamsFromHF,
  type DecoderConfig,
  type Json,
  type LayerKind,
} from './common.ts';

interface QwenVariant {
  /** the class defaults for keys a config.json leaves out */
  defaults: Json;
  defaultTheta: number;
  mrope?: { layout: 'sectioned' | 'interleaved'; defaultSection: number[] };
  /** qwen3: attention_bias on q/k/v/o and q_norm/k_norm; qwen2: bias on q/k/v only */
  qwen3: boolean;
  /** head_dim is hidden / heads whatever the config says (Qwen2.5-VL's attention) */
  headDimFromHidden: boolean;
  slidingWindow: boolean;
}

const COMMON: Json = { hidden_act: 'silu', rms_norm_eps: 1e-6, use_sliding_window: false, sliding_window: 4096, max_window_layers: 28 };

/** transformers' config class defaults, per model_type. */
const VARIANTS: Record<string, QwenVariant> = {
  qwen2: {
    defaults: { ...COMMON, vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, max_position_embeddings: 32768 },
    defaultTheta: 10000,
    qwen3: false,
    headDimFromHidden: false,
    slidingWindow: true,
  },
  qwen2_5_vl: {
    defaults: { ...COMMON, vocab_size: 152064, hidden_size: 8192, intermediate_size: 29568, num_hidden_layers: 80, num_attention_heads: 64, num_key_value_heads: 8, max_position_embeddings: 32768, rms_norm_eps: 1e-5, max_window_layers: 80 },
    defaultTheta: 1e6,
    mrope: { layout: 'sectioned', defaultSection: [16, 24, 24] },
    qwen3: false,
    headDimFromHidden: true,
    slidingWindow: true,
  },
  qwen3: {
    defaults: { ...COMMON, vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, head_dim: 128, max_position_embeddings: 32768, attention_bias: false },
    defaultTheta: 10000,
    qwen3: true,
    headDimFromHidden: false,
    slidingWindow: true,
  },
  qwen3_vl: {
    defaults: { vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, head_dim: 128, hidden_act: 'silu', max_position_embeddings: 128000, rms_norm_eps: 1e-6, attention_bias: false },
    defaultTheta: 500000,
    mrope: { layout: 'interleaved', defaultSection: [24, 20, 20] },
    qwen3: true,
    headDimFromHidden: false,
    slidingWindow: false,
  },
};

function layerTypes(r: ConfigReader, L: number, v: QwenVariant): { types: LayerKind[]; window?: number } {
  // Qwen2Config / Qwen3Config: sliding_window only with use_sliding_window; then layers >= max_window_layers slide
  const window = v.slidingWindow && r.bool('use_sliding_window') ? r.int('sliding_window') : undefined;
  const types = layerTypesFromHF(r, L) ?? Array.from({ length: L }, (_, i) => (window !== undefined && i >= r.int('max_window_layers', 0) ? 'sliding' : 'full'));
  if (types.includes('sliding') && window === undefined) r.fail('layer_types has sliding_attention layers but no sliding window (use_sliding_window is off)');
  return { types, window };
}

function qwenConfig(r: ConfigReader, modelType: string, v: QwenVariant): DecoderConfig {
  const hidden = r.int('hidden_size');
  const heads = r.int('num_attention_heads');
  // an explicit null means "as many as query heads"; a missing key takes the class default
  const kvHeads = r.json.num_key_value_heads === null ? heads : r.int('num_key_value_heads');
  let headDim: number;
  if (v.headDimFromHidden) {
    headDim = hidden / heads;
    if (r.has('head_dim') && r.int('head_dim') !== headDim) r.fail(`head_dim ${r.int('head_dim')} differs from hidden_size / num_attention_heads = ${headDim}, which this model's attention uses`);
  } else headDim = r.has('head_dim') || r.defaults.head_dim !== undefined ? r.int('head_dim') : hidden / heads;
  if (!Number.isInteger(headDim)) r.fail(`hidden_size ${hidden} is not divisible by num_attention_heads ${heads}`);
  if (heads % kvHeads !== 0) r.fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const L = r.int('num_hidden_layers');
  const { types, window } = layerTypes(r, L, v);
  const rp = ropeParamsFromHF(r, v.defaultTheta);
  if (v.mrope) {
    // the rotary classes read mrope_section with a default and fix the layout themselves
    rp.mrope_section ??= v.mrope.defaultSection;
    rp.mrope_interleaved = v.mrope.layout === 'interleaved';
  } else if (rp.mrope_section) r.fail(`mrope_section in a ${modelType} config (M-RoPE models are qwen2_5_vl / qwen3_vl)`);
  const rope = ropeFromParams(rp, headDim, r);
  const bias = v.qwen3 ? r.bool('attention_bias') : true;
  return {
    modelType,
    vocab: r.int('vocab_size'),
    hidden,
    layers: L,
    heads,
    kvHeads,
    headDim,
    intermediate: r.int('intermediate_size'),
    eps: r.num('rms_norm_eps'),
    act: activationFromHF(r.str('hidden_act'), r),
    qkvBias: bias,
    oBias: v.qwen3 && bias,
    mlpBias: false,
    norm: 'llama',
    sandwich: false,
    qkNorm: v.qwen3,
    attnScale: headDim ** -0.5,
    layerTypes: types,
    slidingWindow: window,
    bidirectional: false,
    rope: { full: rope, sliding: rope },
  };
}

/** The text part of a VLM config: `text_config` when present (transformers-5, Qwen3-VL), else the top level (the Hub's flat Qwen2.5-VL). */
function textPart(json: Json, vlmType: string): Json {
  if (json.model_type !== vlmType || json.text_config === undefined || json.text_config === null) return json;
  if (typeof json.text_config !== 'object' || Array.isArray(json.text_config)) throw new EncoderConfigError(`${vlmType} config.json: 'text_config' is not an object`);
  return json.text_config as Json;
}

function reader(json: Json, variant: string, vlmType?: string): DecoderConfig {
  const text = vlmType ? textPart(json, vlmType) : json;
  const mt = String(json.model_type ?? variant);
  return qwenConfig(new ConfigReader(text, mt, VARIANTS[variant]!.defaults), mt, VARIANTS[variant]!);
}

/** model_type "qwen2" (Qwen2, Qwen2.5, InternVL3's llm_config). */
export const qwen2ConfigFromHF = (json: Json): DecoderConfig => reader(json, 'qwen2');
/** model_type "qwen2_5_vl" (its text model) or "qwen2_5_vl_text". */
export const qwen2_5VLConfigFromHF = (json: Json): DecoderConfig => reader(json, 'qwen2_5_vl', 'qwen2_5_vl');
/** model_type "qwen3". */
export const qwen3ConfigFromHF = (json: Json): DecoderConfig => reader(json, 'qwen3');
/** model_type "qwen3_vl" (its text_config) or "qwen3_vl_text". */
export const qwen3VLConfigFromHF = (json: Json): DecoderConfig => reader(json, 'qwen3_vl', 'qwen3_vl');
