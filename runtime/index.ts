// `unifusion/runtime`: running compiled graphs with onnxruntime-node (loads its native addon).
// One line per runtime module, so each new one is a one-line addition.
export * from './session.ts';
export * from './trainer.ts';
export * from './checkpoint.ts';
export * from './schedule.ts';
export * from './tiling.ts';
export type { HostTensor, Storage, StorageOf } from '../src/io/host.ts';
