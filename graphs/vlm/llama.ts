// Llama (3.x, the paper's Llama-3.1-8B ablation encoder) as transformers' LlamaModel computes
// it: pre-norm blocks, GQA, SwiGLU, `attention_bias` on q/k/v/o, `mlp_bias`, head_dim from the
// config. Llama 3.1 scales the rope frequencies (rope_type 'llama3': factor, low_freq_factor,
// high_freq_factor, original_max_position_embeddings; see common.ts llama3InvFreq); 'linear'
// and 'default' are supported too.
import { activationFromHF, ConfigReader, layerTypesFromHF, ropeFromParams, ropeParamsFromHF, type DecoderConfig, type Json } from './common.ts';

/** transformers' LlamaConfig defaults. */
const LLAMA_DEFAULTS: Json = {
  vocab_size: 32000,
  hidden_size: 4096,
  intermediate_size: 11008,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  hidden_act: 'silu',
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-6,
  attention_bias: false,
  mlp_bias: false,
};

/** model_type "llama". */
export function llamaConfigFromHF(json: Json): DecoderConfig {
  const r = new ConfigReader(json, 'llama', LLAMA_DEFAULTS);
  const hidden = r.int('hidden_size');
  const heads = r.int('num_attention_heads');
  const kvHeads = r.has('num_key_value_heads') ? r.int('num_key_value_heads') : heads;
  const headDim = r.has('head_dim') ? r.int('head_dim') : Math.floor(hidden / heads);
  if (heads % kvHeads !== 0) r.fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  if (r.has('pretraining_tp') && r.int('pretraining_tp') !== 1) r.fail(`pretraining_tp ${r.int('pretraining_tp')} is not supported (only 1)`);
  const L = r.int('num_hidden_layers');
  const types = layerTypesFromHF(r, L) ?? Array.from({ length: L }, () => 'full' as const);
  if (types.includes('sliding')) r.fail('Llama has no sliding-window layers');
  const rope = ropeFromParams(ropeParamsFromHF(r, 10000), headDim, r);
  if (rope.streams) r.fail('mrope_section is not a Llama rope parameter');
  const bias = r.bool('attention_bias');
  return {
    modelType: 'llama',
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
    oBias: bias,
    mlpBias: r.bool('mlp_bias'),
    norm: 'llama',
    sandwich: false,
    qkNorm: false,
    attnScale: headDim ** -0.5,
    layerTypes: types,
    bidirectional: false,
    rope: { full: rope, sliding: rope },
  };
}
