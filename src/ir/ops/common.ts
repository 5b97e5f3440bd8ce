// Shape helpers shared by the op groups.
import { dimEq, dimStr, shapeStr, type Dim, type Shape } from '../dims.ts';
import { isFloat, type DType } from '../dtype.ts';
import { OpError, typeStr, type TensorType } from '../node.ts';

/** numpy broadcasting over symbolic shapes: equal dims, or a static 1. */
export function broadcastShapes(shapes: readonly Shape[]): Dim[] {
  const r = Math.max(...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < r; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const x = s[s.length - r + i] ?? 1;
      if (x === 1) continue;
      if (d === 1) d = x;
      else if (!dimEq(d, x))
        throw new OpError(`shapes ${shapes.map(shapeStr).join(' and ')} do not broadcast (axis ${i - r}: ${dimStr(d)} vs ${dimStr(x)})`);
    }
    out.push(d);
  }
  return out;
}

export function sameDtype(ins: readonly TensorType[]): DType {
  const d = ins[0]!.dtype;
  for (const t of ins)
    if (t.dtype !== d) throw new OpError(`operand dtypes differ: ${ins.map(typeStr).join(', ')} (insert an explicit cast)`);
  return d;
}

export function requireFloat(t: TensorType, what = 'operand'): void {
  if (!isFloat(t.dtype)) throw new OpError(`${what} must be floating point, got ${typeStr(t)}`);
}

export function normAxis(axis: number, rank: number, what = 'axis'): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new OpError(`${what} ${axis} out of range for rank ${rank}`);
  return a;
}

export function staticDims(shape: Shape, what: string): number[] {
  return shape.map((d) => {
    if (typeof d !== 'number') throw new OpError(`${what} needs static dims, got ${shapeStr(shape)}`);
    return d;
  });
}
