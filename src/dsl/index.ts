// The DSL's public surface.
export { trace, input, dim, DSLError, currentTrace, type TraceOptions } from './trace.ts';
// symbolic size arithmetic for graph files: [batch, C, 2*h, 2*w] inputs, h = H / 2 inside
export { dimMul, dimDiv, dimAdd, type Dim } from '../ir/dims.ts';
export { Tensor, constant, concat, range, conv2d, asTensor, type TensorLike } from './tensor.ts';
export { Module, Param } from './module.ts';
export * from './functional.ts';
export * from './nn/basic.ts';
export * from './nn/transformer.ts';
export { defineGraph, type GraphDefinition } from './define.ts';
export { fused } from './fused.ts';
