// runtime/data: image datasets for training: JSONL rows, decoding and sizing, encoded latents and conditions, dropout, task mixing, t sampling, the image-training loop.
export * from './dataset.ts';
export * from './decode.ts';
export * from './buckets.ts';
export * from './cache.ts';
export * from './loader.ts';
export * from './plot.ts';
export * from './train.ts';
