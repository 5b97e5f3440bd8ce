// Decoder-only LLM encoders by Hugging Face `model_type`, for `import-hf` and the UniFusion
// presets: qwen2 (Qwen2/2.5, InternVL3's LLM), qwen2_5_vl(_text), qwen3, qwen3_vl(_text), llama
// (3.x with llama3 rope scaling), gemma3_text and gemma3 (its text model). VLM wrappers (vision
// tokens placed in the sequence, KV fusion) use DecoderLM from common.ts directly: embed(), then
// forward(embeds, { attentionMask, positions, taps, kv }).
//
//   const enc = buildEncoder(JSON.parse(configJson), 'every:3', { positions: 'arange' });
//   enc.expectedWeights()   // [{ name: 'embed_tokens.weight', shape: [V, H], dtype: 'f32' }, ...]
//   const graph = enc.trace();              // or enc.definition (a defineGraph default export)
//   compileGraph(graph, { weights: 'external', paramValues });
//
// Graph inputs:  input_ids       i64 [batch, seq]
//                attention_mask  i64 [batch, seq]   1 = token, 0 = padding (left or right)
//                position_ids    i64 [batch, seq], or [3, batch, seq] for M-RoPE (Qwen2.5-VL,
//                                Qwen3-VL), only with `positions: 'input'`
// Graph outputs: hidden_states.<i>  f32 [batch, seq, hidden] for each tap i, where i is exactly
//                                   transformers' output_hidden_states[i] (0 = embeddings, Gemma
//                                   after scaling; i = output of decoder layer i-1; L = after the
//                                   final norm). See common.ts for the tap spec forms and indices.
//                text_mask   bool [batch, seq]  true = a text token (not padding)
//                pad_mask    bool [batch, seq]  true = padding (attention_mask == 0)
//                A VLM wrapper adds image_mask (true = image token) and clears those tokens in
//                text_mask, so text | image | pad partitions the sequence.
// Only the layers up to the highest tap are in the graph (and the final norm only when L is
// tapped); expectedWeights() lists exactly the graph's parameters.
//
// Parameter names are the HF base model's (`embed_tokens.weight`, `layers.N.self_attn.q_proj.weight`,
// `layers.N.mlp.gate_proj.weight`, `norm.weight`); `prefix` prepends e.g. 'model'. Checkpoints keep
// them under a head-specific prefix (`hubPrefixes`: 'model.' for *ForCausalLM, 'language_model.model.'
// for Hub Gemma-3 VLMs, 'model.language_model.' for transformers-5 saves), which the importer maps.
//
// Positions (HF default semantics):
//   'arange' (default)  0..S-1 for every row, whatever the mask: what transformers' forward does
//                       without position_ids (Qwen2/3, Llama, Gemma-3, and the Qwen2.5-VL / Qwen3-VL
//                       text models for text-only input). Right padding leaves the real tokens exactly
//                       as an unpadded run; with left padding they sit at shifted positions (as in HF),
//                       and the left pads themselves see no key, so their states (i >= 1) are
//                       meaningless, in HF as here (as are pads whose sliding window holds only pads).
//   'mask'              cumsum(attention_mask) - 1 (1 at padding), as generate() builds them: a
//                       left-padded row then equals its unpadded run on the real tokens.
//   'input'             a position_ids graph input ([3, B, S] for M-RoPE, so image tokens can get
//                       (t, h, w) positions).
// Masks are causal + key padding (+ sliding window; Gemma-3 use_bidirectional_attention drops the causal
// part), as transformers builds them from a 2D mask.
import { defineGraph, dim, input, range, trace, type Tensor } from '../../src/dsl/index.ts';
import type { DType } from '../../src/ir/dtype.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { DecoderLM, EncoderConfigError, parseTaps, positionsFromMask, tokenMasks, type DecoderConfig, type EncoderGraph, type Json, type TapSpec } from './common.ts';
import { gemma3ConfigFromHF } from './gemma3.ts';
import { llamaConfigFromHF } from './llama.ts';
import { qwen2_5VLConfigFromHF, qwen2ConfigFromHF, qwen3ConfigFromHF, qwen3VLConfigFromHF } from './qwen2.ts';

export { DecoderLM, EncoderConfigError, parseTaps, positionsFromMask, tokenMasks, type DecoderCall, type DecoderConfig, type EncoderGraph, type LayerKV, type RenamingEncoderGraph, type TapSpec } from './common.ts';

export interface EncoderFamily {
  /** normalised config from a config.json object */
  config(json: Json): DecoderConfig;
  /** where Hub / transformers checkpoints of this model_type keep the base-model names */
  hubPrefixes: string[];
}

/** Supported config.json `model_type`s. */
export const ENCODER_FAMILIES: Record<string, EncoderFamily> = {
  qwen2: { config: qwen2ConfigFromHF, hubPrefixes: ['model.'] },
  qwen2_5_vl: { config: qwen2_5VLConfigFromHF, hubPrefixes: ['model.', 'model.language_model.'] },
  qwen2_5_vl_text: { config: qwen2_5VLConfigFromHF, hubPrefixes: ['model.', ''] },
  qwen3: { config: qwen3ConfigFromHF, hubPrefixes: ['model.'] },
  qwen3_vl: { config: qwen3VLConfigFromHF, hubPrefixes: ['model.language_model.'] },
  qwen3_vl_text: { config: qwen3VLConfigFromHF, hubPrefixes: ['model.language_model.', ''] },
  llama: { config: llamaConfigFromHF, hubPrefixes: ['model.'] },
  gemma3_text: { config: gemma3ConfigFromHF, hubPrefixes: ['model.'] },
  gemma3: { config: gemma3ConfigFromHF, hubPrefixes: ['language_model.model.', 'model.language_model.'] },
};

export type PositionMode = 'arange' | 'mask' | 'input';

export interface EncoderOptions {
  /** parameter and compute dtype (outputs are f32 whatever it is); default f32 */
  dtype?: DType;
  positions?: PositionMode;
  /** parameter name prefix ('model' -> 'model.embed_tokens.weight'); default none */
  prefix?: string;
  /** graph name; default `<model_type>-encoder` */
  name?: string;
}

export interface Encoder extends EncoderGraph {
  config: DecoderConfig;
  /** decoder layers in the graph (= the highest tap, or L) */
  layersBuilt: number;
  options: Required<Omit<EncoderOptions, 'name'>>;
  hubPrefixes: string[];
}

export function supportedModelTypes(): string[] {
  return Object.keys(ENCODER_FAMILIES);
}

/** The family's DecoderConfig for a config.json object (errors name the model_type and key). */
export function decoderConfigFromHF(config: object): DecoderConfig {
  const json = config as Json;
  const mt = json.model_type;
  if (typeof mt !== 'string') throw new EncoderConfigError(`config.json has no model_type string (supported: ${supportedModelTypes().join(', ')})`);
  const fam = ENCODER_FAMILIES[mt];
  if (!fam) throw new EncoderConfigError(`unknown architecture: model_type '${mt}' is not a supported decoder encoder (supported: ${supportedModelTypes().join(', ')})`);
  return fam.config(json);
}

export function buildEncoder(config: object, taps: TapSpec, opts: EncoderOptions = {}): Encoder {
  const cfg = decoderConfigFromHF(config);
  const modelType = cfg.modelType;
  const L = cfg.layers;
  const tapList = parseTaps(taps, L);
  const options = { dtype: opts.dtype ?? 'f32', positions: opts.positions ?? 'arange', prefix: (opts.prefix ?? '').replace(/\.$/, '') } as const;
  if (!['f32', 'f16', 'bf16', 'f64'].includes(options.dtype)) throw new EncoderConfigError(`encoder dtype must be a float type, got ${options.dtype}`);
  if (!['arange', 'mask', 'input'].includes(options.positions)) throw new EncoderConfigError(`positions must be arange | mask | input, got ${options.positions}`);
  const name = opts.name ?? `${modelType}-encoder`;
  const mrope = cfg.rope.full.streams !== undefined;
  const makeModel = () => {
    const m = new DecoderLM(cfg, tapList, options.dtype);
    return options.prefix ? m.named(options.prefix) : m;
  };
  const build = (): Record<string, Tensor> => {
    const B = dim('batch');
    const S = dim('seq');
    const ids = input('input_ids', 'i64', [B, S]);
    const mask = input('attention_mask', 'i64', [B, S]);
    const positions =
      options.positions === 'input' ? input('position_ids', 'i64', mrope ? [3, B, S] : [B, S]) : options.positions === 'mask' ? positionsFromMask(mask) : range(S);
    const model = makeModel();
    const hs = model.forward(model.embed(ids), { attentionMask: mask, positions, taps: tapList });
    return { ...hs, ...tokenMasks(mask) };
  };
  const definition = defineGraph<null>({ name, description: `${modelType} encoder, hidden_states taps [${tapList.join(', ')}]`, presets: { default: null }, build: () => build() });
  return {
    modelType,
    config: cfg,
    numLayers: L,
    taps: tapList,
    layersBuilt: Math.max(...tapList),
    name,
    options,
    hubPrefixes: ENCODER_FAMILIES[modelType]?.hubPrefixes ?? [],
    outputs: [...tapList.map((i) => `hidden_states.${i}`), 'text_mask', 'pad_mask'],
    build,
    trace: () => trace(name, build),
    definition,
    expectedWeights: () => makeModel().namedParameters().map(([n, p]) => ({ name: n, shape: [...p.shape], dtype: p.dtype })),
  };
}
