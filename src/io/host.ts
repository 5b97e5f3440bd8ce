// Host-side tensors: the one currency between safetensors files, the runtime and tests.
import type { RefTensor } from '../ir/ref.ts';
import { DTYPE_INFO, type DType, f16BitsToF32, bf16BitsToF32, f32ToF16Bits, f32ToBf16Bits } from '../ir/dtype.ts';

/** Storage per dtype. f16/bf16 hold raw bits; bool holds 0/1 bytes. */
export interface StorageOf {
  f32: Float32Array;
  f64: Float64Array;
  f16: Uint16Array;
  bf16: Uint16Array;
  i64: BigInt64Array;
  i32: Int32Array;
  bool: Uint8Array;
}
export type Storage = StorageOf[DType];

export interface HostTensor<D extends DType = DType> {
  dtype: D;
  shape: number[];
  data: StorageOf[D];
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function allocStorage<D extends DType>(dtype: D, n: number): StorageOf[D] {
  const ctor = {
    f32: Float32Array,
    f64: Float64Array,
    f16: Uint16Array,
    bf16: Uint16Array,
    i64: BigInt64Array,
    i32: Int32Array,
    bool: Uint8Array,
  }[dtype];
  return new ctor(n) as StorageOf[D];
}

/** View raw little-endian bytes as storage of `dtype` (copies when unaligned). */
export function storageFromBytes<D extends DType>(dtype: D, bytes: Uint8Array): StorageOf[D] {
  const size = DTYPE_INFO[dtype].bytes;
  if (bytes.byteLength % size !== 0) throw new Error(`byte length ${bytes.byteLength} is not a multiple of ${size} for ${dtype}`);
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  const n = aligned.byteLength / size;
  const b = aligned.buffer, o = aligned.byteOffset;
  switch (dtype) {
    case 'f32': return new Float32Array(b, o, n) as StorageOf[D];
    case 'f64': return new Float64Array(b, o, n) as StorageOf[D];
    case 'f16': case 'bf16': return new Uint16Array(b, o, n) as StorageOf[D];
    case 'i64': return new BigInt64Array(b, o, n) as StorageOf[D];
    case 'i32': return new Int32Array(b, o, n) as StorageOf[D];
    case 'bool': return new Uint8Array(b, o, n) as StorageOf[D];
  }
  throw new Error(`unknown dtype ${String(dtype)}`);
}

export function storageBytes(data: Storage): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Element values as doubles (bits decoded for f16/bf16, bigint converted). */
export function toFloat64(t: HostTensor): Float64Array {
  const n = t.data.length;
  const out = new Float64Array(n);
  const d = t.data;
  switch (t.dtype) {
    case 'f16': for (let i = 0; i < n; i++) out[i] = f16BitsToF32((d as Uint16Array)[i]!); break;
    case 'bf16': for (let i = 0; i < n; i++) out[i] = bf16BitsToF32((d as Uint16Array)[i]!); break;
    case 'i64': for (let i = 0; i < n; i++) out[i] = Number((d as BigInt64Array)[i]!); break;
    default: for (let i = 0; i < n; i++) out[i] = (d as Float32Array)[i]!;
  }
  return out;
}

/** Build a host tensor of `dtype` from doubles (rounding/encoding as storing would). */
/** The float64 reference interpreter's view of a host tensor (values widened to float64). */
export function toRefTensor(t: HostTensor): RefTensor {
  return { dtype: t.dtype, shape: [...t.shape], data: toFloat64(t) };
}

export function fromFloat64<D extends DType>(dtype: D, shape: number[], values: ArrayLike<number>): HostTensor<D> {
  const n = numel(shape);
  if (values.length !== n) throw new Error(`fromFloat64: ${values.length} values for shape [${shape}]`);
  const data = allocStorage(dtype, n);
  switch (dtype) {
    case 'f16': for (let i = 0; i < n; i++) (data as Uint16Array)[i] = f32ToF16Bits(values[i]!); break;
    case 'bf16': for (let i = 0; i < n; i++) (data as Uint16Array)[i] = f32ToBf16Bits(values[i]!); break;
    case 'i64': for (let i = 0; i < n; i++) (data as BigInt64Array)[i] = BigInt(Math.trunc(values[i]!)); break;
    case 'bool': for (let i = 0; i < n; i++) (data as Uint8Array)[i] = values[i] ? 1 : 0; break;
    case 'i32': for (let i = 0; i < n; i++) (data as Int32Array)[i] = Math.trunc(values[i]!); break;
    default: for (let i = 0; i < n; i++) (data as Float32Array)[i] = values[i]!;
  }
  return { dtype, shape: [...shape], data };
}
