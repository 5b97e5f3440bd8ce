// `unifusion/runtime`: running compiled graphs with onnxruntime-node (loads its native addon).
// One line per runtime module, so each new one is a one-line addition.
export * from './session.ts';
export * from './trainer.ts';
export * from './checkpoint.ts';
export * from './schedule.ts';
export * from './tiling.ts';
export type { HostTensor, Storage, StorageOf } from '../src/io/host.ts';
export * from './sampler/index.ts';
export * from './pipeline/index.ts';
export * from './data/index.ts';
// RgbImage is the same interface as tiling's (exported above)
export { PngError, encodePng, readPngText, imageGrid } from './images/png.ts';
// the VLM: tokenizer + chat template, generation, the VERIFI condition, the feature cache; image decoding
export { VlmPackage, VlmError, DEFAULT_SYSTEM_PROMPT, type LoadOptions as VlmLoadOptions, type Request as VlmRequest, type GenerationSettings, type ConditionOptions as VlmConditionOptions, type ConditionResult as VlmConditionResult } from './vlm/index.ts';
export { VlmTokenizer, StreamDecoder, TokenizerError } from './vlm/tokenizer.ts';
export { ChatTemplate, ChatTemplateError, type ChatMessage, type ContentPart } from './vlm/chat.ts';
export { generate, GenerationError, type GenerateOptions, type GenerateResult, type RowResult } from './vlm/generate.ts';
export { samplingSettings, SamplingError, TokenSampler, type SamplingSettings } from './vlm/sampling.ts';
export { assembleCondition } from './vlm/condition.ts';
export { encodeDataset, readDataset, readFeatureCache, DatasetError, type CacheIndex } from './vlm/feature-cache.ts';
export { decodeImage, ImageError, DEFAULT_MAX_PIXELS, type DecodedImage, type DecodeOptions } from './images/decode.ts';
