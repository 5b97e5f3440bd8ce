// Gemma-3 text (transformers' Gemma3TextModel; also the language model inside a "gemma3"
// VLM config): embeddings times sqrt(hidden) in the model dtype; sandwich norms
// (input_layernorm, post_attention_layernorm on the attention output, pre/post_feedforward_layernorm);
// RMSNorm as x̂ * (1 + weight) in f32; q_norm/k_norm over the head dim before RoPE; scores
// scaled by query_pre_attn_scalar^-0.5; gelu_pytorch_tanh gated MLP; sliding-window layers
// (q - k < sliding_window) with their own rope theta (rope_local_base_freq) and global layers
// (rope_theta, with the config's rope scaling: linear x8 on Gemma-3 4B/12B/27B); every 6th
// layer global unless layer_types says otherwise; use_bidirectional_attention (EmbeddingGemma).
// attn_logit_softcapping is read by transformers' Gemma3Attention but never passed to the
// attention function (5.18; Gemma-2 does pass it), so a config that sets it computes exactly as
// one that does not; we match (fixture gemma3_softcap_bidir sets it to 2.0).
import { activationFromHF, ConfigReader, EncoderConfigError, layerTypesFromHF, ropeFromParams, type DecoderConfig, type Json, type RopeParams } from './common.ts';

/** transformers' Gemma3TextConfig defaults (Hub configs of the VLMs leave most of these out). */
const GEMMA3_TEXT_DEFAULTS: Json = {
  vocab_size: 262208,
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  hidden_activation: 'gelu_pytorch_tanh',
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-6,
  query_pre_attn_scalar: 256,
  sliding_window: 4096,
  attention_bias: false,
  use_bidirectional_attention: false,
};

const GLOBAL_THETA = 1_000_000;
const LOCAL_THETA = 10_000;

/** Per-layer-type rope dicts as Gemma3TextConfig.convert_rope_params_to_dict builds them. */
function gemmaRope(r: ConfigReader): { full: RopeParams; sliding: RopeParams } {
  const rp = r.obj('rope_parameters');
  const nested = rp && ('full_attention' in rp || 'sliding_attention' in rp);
  if (rp && !nested) r.fail("rope_parameters must be nested by layer type (full_attention, sliding_attention)");
  const full = { ...((rp?.full_attention as Json | null | undefined) ?? { rope_type: 'default' }) };
  const sliding = { ...((rp?.sliding_attention as Json | null | undefined) ?? { rope_type: 'default' }) };
  const scaling = r.obj('rope_scaling');
  if (scaling) Object.assign(full, scaling); // legacy: rope_scaling applies to the global layers only
  full.rope_theta ??= r.json.rope_theta ?? GLOBAL_THETA;
  sliding.rope_theta ??= r.json.rope_local_base_freq ?? LOCAL_THETA;
  const norm = (p: Json, which: string): RopeParams => {
    const type = p.rope_type ?? p.type ?? 'default';
    if (typeof type !== 'string' || typeof p.rope_theta !== 'number') r.fail(`${which} rope parameters ${JSON.stringify(p)} are malformed`);
    return { ...(p as Partial<RopeParams>), rope_type: type, rope_theta: p.rope_theta };
  };
  return { full: norm(full, 'full_attention'), sliding: norm(sliding, 'sliding_attention') };
}

/** model_type "gemma3_text", or "gemma3" (its `text_config`). */
export function gemma3ConfigFromHF(json: Json): DecoderConfig {
  let text = json;
  if (json.model_type === 'gemma3') {
    const tc = json.text_config ?? {};
    if (typeof tc !== 'object' || Array.isArray(tc)) throw new EncoderConfigError("gemma3 config.json: 'text_config' is not an object");
    text = tc as Json;
  }
  const r = new ConfigReader(text, String(json.model_type ?? 'gemma3_text'), GEMMA3_TEXT_DEFAULTS);
  const hidden = r.int('hidden_size');
  const heads = r.int('num_attention_heads');
  const kvHeads = r.int('num_key_value_heads');
  const headDim = r.int('head_dim');
  if (heads % kvHeads !== 0) r.fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const L = r.int('num_hidden_layers');
  const pattern = r.has('sliding_window_pattern') ? r.int('sliding_window_pattern') : r.has('_sliding_window_pattern') ? r.int('_sliding_window_pattern') : 6;
  const types = layerTypesFromHF(r, L) ?? Array.from({ length: L }, (_, i) => ((i + 1) % pattern ? 'sliding' : 'full'));
  const bidirectional = r.bool('use_bidirectional_attention');
  // Gemma3TextConfig.__post_init__: bidirectional models use an exclusive half window
  const sw = r.int('sliding_window');
  const window = bidirectional ? Math.floor(sw / 2) + 1 : sw;
  const rp = gemmaRope(r);
  const full = ropeFromParams(rp.full, headDim, r);
  const sliding = ropeFromParams(rp.sliding, headDim, r);
  if (full.streams || sliding.streams) r.fail('mrope_section is not a Gemma-3 rope parameter');
  const act = r.has('hidden_activation') ? r.str('hidden_activation') : r.has('hidden_act') ? r.str('hidden_act') : r.str('hidden_activation');
  const bias = r.bool('attention_bias');
  r.optNum('attn_logit_softcapping'); // validated, not applied (see the file header)
  return {
    modelType: String(json.model_type ?? 'gemma3_text'),
    vocab: r.int('vocab_size'),
    hidden,
    layers: L,
    heads,
    kvHeads,
    headDim,
    intermediate: r.int('intermediate_size'),
    eps: r.num('rms_norm_eps'),
    act: activationFromHF(act, r),
    qkvBias: bias,
    oBias: bias,
    mlpBias: false,
    norm: 'gemma',
    sandwich: true,
    qkNorm: true,
    embedScale: Math.sqrt(hidden),
    attnScale: r.num('query_pre_attn_scalar') ** -0.5,
    layerTypes: types,
    slidingWindow: window,
    bidirectional,
    rope: { full, sliding },
  };
}
