// The DSL's public surface.
export { trace, input, dim, DSLError, currentTrace, type TraceOptions } from './trace.ts';
export { Tensor, constant, concat, range, conv2d, asTensor, type TensorLike } from './tensor.ts';
export { Module, Param } from './module.ts';
export * from './functional.ts';
export * from './nn/basic.ts';
export * from './nn/transformer.ts';
export { defineGraph, type GraphDefinition } from './define.ts';
export { fused } from './fused.ts';
