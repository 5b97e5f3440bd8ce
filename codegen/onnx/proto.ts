// The ONNX protobuf classes (onnx-proto's generated protobufjs code) and small
// constructors for the messages the emitter writes.
import onnxProto from 'onnx-proto';
import { DTYPE_INFO, type DType } from '../../src/ir/dtype.ts';
import { dimStr, type Shape } from '../../src/ir/dims.ts';
import type { Attr } from '../../src/ir/opdef.ts';

export const onnx = onnxProto.onnx;
export type ModelProto = onnxProto.onnx.IModelProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

export const OPSET = 23;
/** IR version 11 is what ONNX 1.18+ pairs with opset 23. */
export const IR_VERSION = 11;

export function valueInfo(name: string, dtype: DType, shape: Shape): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: DTYPE_INFO[dtype].onnx,
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: dimStr(d) })) },
      },
    },
  };
}

export type FunctionProto = onnxProto.onnx.IFunctionProto;

export function attribute(name: string, a: Attr): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if ('ref' in a) return { name, refAttrName: a.ref, type: a.kind === 'f' ? T.FLOAT : a.kind === 'i' ? T.INT : T.STRING };
  if ('i' in a) return { name, type: T.INT, i: a.i };
  if ('f' in a) return { name, type: T.FLOAT, f: a.f };
  if ('s' in a) return { name, type: T.STRING, s: new TextEncoder().encode(a.s) };
  if ('ints' in a) return { name, type: T.INTS, ints: a.ints };
  return { name, type: T.FLOATS, floats: a.floats };
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

export function decodeModel(bytes: Uint8Array): onnxProto.onnx.ModelProto {
  return onnx.ModelProto.decode(bytes);
}
