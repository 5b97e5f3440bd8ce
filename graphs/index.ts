// `unifusion/graphs`: the model library as public API. UniFusion's modules (LAP, refiner, DiT, the
// six conditioning variants, the rectified-flow train step), the presets, the VAE and the VLM
// encoder families; each graph file's defineGraph export under a name of its own.
export * from './lap.ts';
export * from './refiner.ts';
export * from './dit.ts';
export * from './unifusion.ts';
export * from './presets.ts';
export * from './vae.ts';
export * from './vlm/index.ts';
export { internvlEncoderFromHF, internvlConfigFromHF, INTERNVL3_8B, type InternVLConfig, type InternVLEncoder, type InternVLEncoderOptions } from './vlm/internvl.ts';
export { internViTConfigFromHF, type InternViTConfig } from './vlm/internvit.ts';
export { buildGenerationGraph, causalLMConfigFromHF, internvlVisionGraph, PAST_KEY, PAST_VALUE, PRESENT_KEY, PRESENT_VALUE, type CausalLMConfig, type GenerationGraph, type GenerationOptions, type VisionGraph } from './vlm/generation.ts';
export { t5EncoderFromHF, t5ConfigFromHF, buildT5Encoder, T5_TINY, T5_V1_1_XXL, type T5Config, type T5Encoder, type T5EncoderOptions } from './vlm/t5.ts';
export { default as lapGraph } from './lap.ts';
export { default as ditGraph } from './dit.ts';
export { default as uniFusionGraph } from './unifusion.ts';
export { default as vaeGraph } from './vae.ts';
export { default as t5Graph } from './vlm/t5.ts';
