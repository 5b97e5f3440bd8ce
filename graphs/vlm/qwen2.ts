// Qwen2 / Qwen2.5 (InternVL3's LLM) and the Qwen2.5-VL text model, as transformers'
// Qwen2Model and Qwen2_5_VLTextModel compute them: pre-norm blocks, q/k/v bias (o_proj
// none), GQA, SwiGLU, RMSNorm `weight * x̂`, rope_theta from the config. Qwen2.5-VL uses
// M-RoPE: three position streams (t, h, w) over the frequency sections `mrope_section`
// (each section j of the head_dim/2 frequencies takes stream j, and cos/sin repeat over both
// halves, as rotate_half pairs dim i with i + head_dim/2). For text all three streams are the
// 1D position, so a text-only run equals plain RoPE; image tokens get 2D (h, w) positions from
// the caller through `position_ids` [3, B, S].
import { activationFromHF, ConfigReader, EncoderConfigError, layerTypesFromHF, ropeFromParams, ropeParamsFromHF, type DecoderConfig, type Json, type LayerKind } from './common.ts';

/** transformers' Qwen2Config defaults (used for keys a config.json leaves out). */
const QWEN2_DEFAULTS: Json = {
  vocab_size: 151936,
  hidden_size: 4096,
  intermediate_size: 22016,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  hidden_act: 'silu',
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  use_sliding_window: false,
  sliding_window: 4096,
  max_window_layers: 28,
};

/** transformers' Qwen2_5_VLTextConfig defaults. */
const QWEN2_5_VL_TEXT_DEFAULTS: Json = {
  vocab_size: 152064,
  hidden_size: 8192,
  intermediate_size: 29568,
  num_hidden_layers: 80,
  num_attention_heads: 64,
  num_key_value_heads: 8,
  hidden_act: 'silu',
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-5,
  use_sliding_window: false,
  sliding_window: 4096,
  max_window_layers: 80,
};

function qwenLayerTypes(r: ConfigReader, L: number): { types: LayerKind[]; window?: number } {
  // Qwen2Config: sliding_window only when use_sliding_window; then layers >= max_window_layers slide
  const window = r.bool('use_sliding_window') ? r.int('sliding_window') : undefined;
  const types = layerTypesFromHF(r, L) ?? Array.from({ length: L }, (_, i) => (window !== undefined && i >= r.int('max_window_layers', 0) ? 'sliding' : 'full'));
  if (types.includes('sliding') && window === undefined) r.fail('layer_types has sliding_attention layers but use_sliding_window is off');
  return { types, window };
}

function qwenConfig(r: ConfigReader, modelType: string, vl: boolean): DecoderConfig {
  const hidden = r.int('hidden_size');
  const heads = r.int('num_attention_heads');
  // an explicit null means "as many as query heads"; a missing key takes the class default
  const kvHeads = r.json.num_key_value_heads === null ? heads : r.int('num_key_value_heads');
  // Qwen2Attention honours a head_dim key; Qwen2_5_VLAttention always uses hidden / heads
  const headDim = !vl && r.has('head_dim') ? r.int('head_dim') : hidden / heads;
  if (!Number.isInteger(headDim)) r.fail(`hidden_size ${hidden} is not divisible by num_attention_heads ${heads}`);
  if (vl && r.has('head_dim') && r.int('head_dim') !== headDim) r.fail(`head_dim ${r.int('head_dim')} differs from hidden_size / num_attention_heads = ${headDim}, which Qwen2.5-VL uses`);
  if (heads % kvHeads !== 0) r.fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const L = r.int('num_hidden_layers');
  const { types, window } = qwenLayerTypes(r, L);
  const rp = ropeParamsFromHF(r, vl ? 1e6 : 10000);
  if (vl && !rp.mrope_section) r.fail('Qwen2.5-VL needs rope mrope_section');
  if (!vl && rp.mrope_section) r.fail('mrope_section in a qwen2 config (use model_type qwen2_5_vl)');
  const rope = ropeFromParams(rp, headDim, r);
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
    qkvBias: true,
    oBias: false,
    mlpBias: false,
    norm: 'llama',
    sandwich: false,
    qkNorm: false,
    attnScale: headDim ** -0.5,
    layerTypes: types,
    slidingWindow: window,
    bidirectional: false,
    rope: { full: rope, sliding: rope },
  };
}

/** model_type "qwen2" (Qwen2, Qwen2.5, InternVL3's llm_config). */
export function qwen2ConfigFromHF(json: Json): DecoderConfig {
  return qwenConfig(new ConfigReader(json, 'qwen2', QWEN2_DEFAULTS), 'qwen2', false);
}

/**
 * model_type "qwen2_5_vl" (the text model inside it: `text_config` in transformers-5 configs,
 * the top level in the Hub's flat ones) or "qwen2_5_vl_text".
 */
export function qwen2_5VLConfigFromHF(json: Json): DecoderConfig {
  const mt = json.model_type;
  let text = json;
  if (mt === 'qwen2_5_vl' && json.text_config !== undefined && json.text_config !== null) {
    if (typeof json.text_config !== 'object' || Array.isArray(json.text_config)) throw new EncoderConfigError("qwen2_5_vl config.json: 'text_config' is not an object");
    text = json.text_config as Json;
  }
  return qwenConfig(new ConfigReader(text, String(mt ?? 'qwen2_5_vl'), QWEN2_5_VL_TEXT_DEFAULTS), String(mt ?? 'qwen2_5_vl'), true);
}
