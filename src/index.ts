// `unifusion`: author a model in the DSL, compile it to ONNX, define and compile train steps, and
// move tensors in and out (safetensors, host tensors). The model library is `unifusion/graphs`;
// running compiled graphs (onnxruntime-node's native addon) is `unifusion/runtime`, kept apart so
// that compiling never loads it.
export * from './dsl/index.ts';
export { compileGraph, writeCompiled, type CompileOptions, type Compiled, type Manifest, type TensorDesc } from './compiler.ts';
export { optimize, DEFAULT_PIPELINE } from './passes/pipeline.ts';
export { evaluate, type EvaluateOptions } from './ir/evaluate.ts';
export type { RefTensor } from './ir/ref.ts';
export { Rng } from './ir/init.ts';
export { DTYPES, DTYPE_INFO, isDType } from './ir/dtype.ts';
export { compileTrainStep, buildTrainStep, STEP_INPUTS, STEP_OUTPUTS, type AdamWOptions, type BatchTensorSpec, type CompiledTrainStep, type TrainStepDefinition, type TrainStepSpec, type TrainParamSpec } from './train/step.ts';
export { defineTrainStep, type TrainDefinition, type DefinedTrainStep, type TrainDefaults } from './cli/train.ts';
export { allocStorage, fromFloat64, numel, toFloat64, toRefTensor, type HostTensor, type Storage, type StorageOf } from './io/host.ts';
export { readSafetensors, parseSafetensors, serializeSafetensors, writeSafetensors, SafetensorsError, type SafetensorsContents, type TensorSet } from './io/safetensors.ts';
export { emitModel, type WeightMode, type Emitted } from '../codegen/onnx/emit.ts';
export { encodeModel, decodeModel, OPSET } from '../codegen/onnx/proto.ts';
// the output-folder discipline every writing command shares
export { writeOutputDir, writeOutputFile, RunDir, OutputError } from './io/outdir.ts';
