// The DSL's public surface.
export { trace, input, dim, DSLError, currentTrace, type TraceOptions } from './trace.ts';
export { Tensor, constant, concat, range, conv2d, asTensor, type TensorLike } from './tensor.ts';
export { Module, Param } from './module.ts';
export * from './functional.ts';
export * from './nn/basic.ts';
export * from './nn/transformer.ts';
export { defineGraph, type GraphDefinition, type DefinedGraph } from './define.ts';
// Symbolic size arithmetic for graph files ([batch, C, 2*h, 2*w] inputs, h = H / 2 inside):
// `dims.mul(h, 2)`, or the same functions by their IR names.
export * as dims from './dims.ts';
export { SymDim, dimAdd, dimSub, dimMul, dimDiv, dimProd, dimEq, dimStr, evalDim, type Dim, type Shape } from '../ir/dims.ts';
export type { DType } from '../ir/dtype.ts';
export type { Graph } from '../ir/graph.ts';
export { fused } from './fused.ts';
