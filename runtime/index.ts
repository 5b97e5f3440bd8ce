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
