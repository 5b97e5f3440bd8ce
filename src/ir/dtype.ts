// Tensor element types of the IR, and the facts every layer needs about them
// (byte size, ONNX enum, safetensors name, ORT JS name, reference tolerance).

export const DTYPES = ['f32', 'f16', 'bf16', 'f64', 'i64', 'i32', 'bool'] as const;
export type DType = (typeof DTYPES)[number];

export interface DTypeInfo {
  bytes: number;
  float: boolean;
  /** TensorProto.DataType value. */
  onnx: number;
  /** dtype string used in safetensors headers. */
  safetensors: string;
  /** onnxruntime-common Tensor type, or null where the JS binding has none (bf16). */
  ort: 'float32' | 'float16' | 'float64' | 'int64' | 'int32' | 'bool' | null;
}

export const DTYPE_INFO: { [D in DType]: DTypeInfo } = {
  f32: { bytes: 4, float: true, onnx: 1, safetensors: 'F32', ort: 'float32' },
  f16: { bytes: 2, float: true, onnx: 10, safetensors: 'F16', ort: 'float16' },
  bf16: { bytes: 2, float: true, onnx: 16, safetensors: 'BF16', ort: null },
  f64: { bytes: 8, float: true, onnx: 11, safetensors: 'F64', ort: 'float64' },
  i64: { bytes: 8, float: false, onnx: 7, safetensors: 'I64', ort: 'int64' },
  i32: { bytes: 4, float: false, onnx: 6, safetensors: 'I32', ort: 'int32' },
  bool: { bytes: 1, float: false, onnx: 9, safetensors: 'BOOL', ort: 'bool' },
};

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && (DTYPES as readonly string[]).includes(s);
}

export function isFloat(d: DType): boolean {
  return DTYPE_INFO[d].float;
}

export function dtypeFromOnnx(code: number): DType | undefined {
  return DTYPES.find((d) => DTYPE_INFO[d].onnx === code);
}

export function dtypeFromSafetensors(name: string): DType | undefined {
  return DTYPES.find((d) => DTYPE_INFO[d].safetensors === name);
}

export function dtypeFromOrt(name: string): DType | undefined {
  return DTYPES.find((d) => DTYPE_INFO[d].ort === name);
}

// ---- half-precision bit conversions (Node 20 has no Float16Array) ----

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** float -> IEEE binary16 bits, round to nearest even. */
export function f32ToF16Bits(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    // subnormal half (or zero)
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // may carry into exponent: still correct
  return sign | h;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float -> bfloat16 bits, round to nearest even. */
export function f32ToBf16Bits(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40; // keep NaN a NaN
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32buf[0] = (h & 0xffff) << 16;
  return f32buf[0]!;
}

/** Round a number the way storing it in `d` would (used by the reference for casts). */
export function roundTo(d: DType, v: number): number {
  switch (d) {
    case 'f64':
      return v;
    case 'f32':
      return Math.fround(v);
    case 'f16':
      return f16BitsToF32(f32ToF16Bits(v));
    case 'bf16':
      return bf16BitsToF32(f32ToBf16Bits(v));
    case 'bool':
      return v !== 0 ? 1 : 0;
    case 'i32':
      return Number.isNaN(v) ? 0 : Math.trunc(v) | 0;
    case 'i64':
      return Number.isNaN(v) ? 0 : Math.trunc(v);
  }
}
