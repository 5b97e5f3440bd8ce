// Data-movement ops: reshape, transpose, expand, concat, split, slice, gather, pad.
// Shapes may be symbolic; lowerings read runtime sizes through cx.dims().
import { dimAdd, dimEq, dimProd, dimStr, dimSub, isStatic, shapeStr, type Dim } from '../dims.ts';
import { OpError, typeStr } from '../node.ts';
import type { OpGroup } from '../opdef.ts';
import type { Node } from '../node.ts';
import type { NB } from '../nb.ts';
import { broadcastShape, buildRef, strides, transposeRef, type RefTensor } from '../ref.ts';
import { broadcastShapes, normAxis, sameDtype } from './common.ts';

/** Python-slice length and clamped start for a static dim. */
export function sliceRange(dim: number, start: number, end: number, step: number): { begin: number; len: number } {
  if (step === 0) throw new OpError('slice: step must not be 0');
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  let b: number, e: number;
  if (step > 0) {
    b = clamp(start < 0 ? start + dim : start, 0, dim);
    e = clamp(end < 0 ? end + dim : end, 0, dim);
    return { begin: b, len: Math.max(0, Math.ceil((e - b) / step)) };
  }
  b = clamp(start < 0 ? start + dim : start, -1, dim - 1);
  e = clamp(end < 0 ? end + dim : end, -1, dim - 1);
  return { begin: b, len: Math.max(0, Math.ceil((e - b) / step)) };
}

const TO_END = 2 ** 31;

function slicedDim(d: Dim, start: number, end: number, step: number): Dim {
  if (isStatic(d)) return sliceRange(d, start, end, step).len;
  if (step !== 1) throw new OpError(`slice: step ${step} on symbolic dim ${dimStr(d)} is not supported`);
  if (end >= TO_END) return start >= 0 ? dimSub(d, start) : -start;
  if (start >= 0 && end >= start) return end - start; // assumes the dim is at least `end` long
  if (start < 0 && end < 0 && end >= start) return end - start;
  if (start >= 0 && end < 0) return dimSub(dimSub(d, start), -end);
  throw new OpError(`slice [${start}:${end}] of symbolic dim ${dimStr(d)} has no symbolic length`);
}

export const SHAPE_OPS = {
  reshape: {
    arity: 1,
    vjp: (nb, _p, [x], _o, g) => [nb.reshape(g, x!.shape)],
    infer: (p, [x]) => {
      if (!dimEq(dimProd(x!.shape), dimProd(p.shape)))
        throw new OpError(`reshape ${shapeStr(x!.shape)} -> ${shapeStr(p.shape)}: element counts ${dimStr(dimProd(x!.shape))} and ${dimStr(dimProd(p.shape))} differ`);
      return { dtype: x!.dtype, shape: p.shape };
    },
    lower: (cx, p, [x]) => cx.emit1('Reshape', [x!, cx.dims(p.shape)], p.shape.includes(0) ? { allowzero: { i: 1 } } : {}),
    eval: (p, [x], cx) => ({ ...x!, shape: p.shape.map((d) => cx.dim(d)) }),
  },
  transpose: {
    arity: 1,
    vjp: (nb, p, _ins, _o, g) => [nb.transpose(g, p.perm.map((_, i) => p.perm.indexOf(i)))],
    infer: (p, [x]) => {
      const r = x!.shape.length;
      if (p.perm.length !== r || [...p.perm].sort((a, b) => a - b).some((v, i) => v !== i))
        throw new OpError(`transpose: perm [${p.perm}] is not a permutation of ${r} axes of ${typeStr(x!)}`);
      return { dtype: x!.dtype, shape: p.perm.map((i) => x!.shape[i]!) };
    },
    lower: (cx, p, [x]) => cx.emit1('Transpose', [x!], { perm: { ints: p.perm } }),
    eval: (p, [x]) => transposeRef(x!, p.perm),
  },
  expand: {
    arity: 1,
    vjp: (nb, _p, [x], _o, g) => [nb.sumTo(g, x!.shape)],
    infer: (p, [x]) => {
      if (p.shape.length < x!.shape.length) throw new OpError(`expand ${typeStr(x!)} to lower rank ${shapeStr(p.shape)}`);
      const out = broadcastShapes([x!.shape, p.shape]);
      if (!out.every((d, i) => dimEq(d, p.shape[i]!))) throw new OpError(`expand: ${typeStr(x!)} does not expand to ${shapeStr(p.shape)}`);
      return { dtype: x!.dtype, shape: p.shape };
    },
    lower: (cx, p, [x]) => cx.emit1('Expand', [x!, cx.dims(p.shape)]),
    eval: (p, [x], cx) => {
      const shape = broadcastShape(x!.shape, p.shape.map((d) => cx.dim(d)));
      return buildRef(x!.dtype, shape, offsetFromBroadcast(x!, shape));
    },
  },
  concat: {
    arity: [1, Infinity],
    vjp: (nb, p, ins, out, g) => {
      const axis = normAxis(p.axis, out.rank);
      const sizes = ins.map((t) => t.shape[axis]!);
      return ins.map((_, index) => (ins.length === 1 ? g : nb.op('split', { axis, sizes, index }, [g])));
    },
    infer: (p, ins) => {
      const dtype = sameDtype(ins);
      const r = ins[0]!.shape.length;
      const axis = normAxis(p.axis, r, 'concat axis');
      let total: Dim = 0;
      for (const t of ins) {
        if (t.shape.length !== r) throw new OpError(`concat: ranks differ: ${ins.map(typeStr).join(', ')}`);
        t.shape.forEach((d, i) => {
          if (i !== axis && !dimEq(d, ins[0]!.shape[i]!)) throw new OpError(`concat on axis ${p.axis}: dim ${i} differs: ${ins.map(typeStr).join(', ')}`);
        });
        total = dimAdd(total, t.shape[axis]!);
      }
      const shape = [...ins[0]!.shape];
      shape[axis] = total;
      return { dtype, shape };
    },
    lower: (cx, p, ins, node) => (ins.length === 1 ? ins[0]! : cx.emit1('Concat', [...ins], { axis: { i: normAxis(p.axis, node.rank) } })),
    eval: (p, ins, _cx, node) => {
      const axis = normAxis(p.axis, node.rank);
      const shape = [...ins[0]!.shape];
      shape[axis] = ins.reduce((a, t) => a + t.shape[axis]!, 0);
      const bounds: number[] = [];
      ins.reduce((a, t) => (bounds.push(a), a + t.shape[axis]!), 0);
      return buildRef(node.dtype, shape, (idx) => {
        let j = ins.length - 1;
        while (bounds[j]! > idx[axis]!) j--;
        const t = ins[j]!;
        const st = strides(t.shape);
        let o = 0;
        idx.forEach((v, i) => (o += (i === axis ? v - bounds[j]! : v) * st[i]!));
        return t.data[o]!;
      });
    },
  },
  split: {
    arity: 1,
    vjp: (nb, p, _ins, out, g) => {
      const axis = normAxis(p.axis, out.rank);
      const before = p.sizes.slice(0, p.index).reduce<Dim>((a, d) => dimAdd(a, d), 0);
      const after = p.sizes.slice(p.index + 1).reduce<Dim>((a, d) => dimAdd(a, d), 0);
      return [padAxis(nb, g, axis, before, after)];
    },
    infer: (p, [x]) => {
      const axis = normAxis(p.axis, x!.shape.length, 'split axis');
      const total = p.sizes.reduce<Dim>((a, d) => dimAdd(a, d), 0);
      if (!dimEq(total, x!.shape[axis]!)) throw new OpError(`split sizes [${p.sizes.map(dimStr)}] sum to ${dimStr(total)}, not ${dimStr(x!.shape[axis]!)} of ${typeStr(x!)}`);
      if (p.index < 0 || p.index >= p.sizes.length) throw new OpError(`split piece ${p.index} of ${p.sizes.length}`);
      const shape = [...x!.shape];
      shape[axis] = p.sizes[p.index]!;
      return { dtype: x!.dtype, shape };
    },
    lower: (cx, p, [x], node) => {
      const axis = normAxis(p.axis, node.rank);
      const key = `split|${x}|${axis}|${p.sizes.map(dimStr).join(',')}`;
      return cx.memo(key, () => cx.emit('Split', [x!, cx.dims(p.sizes)], { axis: { i: axis } }, p.sizes.length))[p.index]!;
    },
    eval: (p, [x], cx, node) => {
      const axis = normAxis(p.axis, node.rank);
      const begin = p.sizes.slice(0, p.index).reduce<number>((a, d) => a + cx.dim(d), 0);
      const shape = [...x!.shape];
      shape[axis] = cx.dim(p.sizes[p.index]!);
      const st = strides(x!.shape);
      return buildRef(x!.dtype, shape, (idx) => x!.data[idx.reduce((o, v, i) => o + (i === axis ? v + begin : v) * st[i]!, 0)]!);
    },
  },
  slice: {
    arity: 1,
    vjp: (nb, p, [x], _o, g) => {
      let dx = g;
      p.axes.forEach((a0, j) => {
        const a = normAxis(a0, x!.rank);
        const d = x!.shape[a]!;
        if (p.steps[j] !== 1) throw new OpError(`slice: no gradient for step ${p.steps[j]} (only step 1)`);
        const start = p.starts[j]!, end = p.ends[j]!;
        const begin: Dim = isStatic(d) ? sliceRange(d, start, end, 1).begin : start >= 0 ? start : dimAdd(d, start);
        const after = dimSub(dimSub(d, begin), dx.shape[a]!);
        dx = padAxis(nb, dx, a, begin, after);
      });
      return [dx];
    },
    infer: (p, [x]) => {
      const n = p.axes.length;
      if (p.starts.length !== n || p.ends.length !== n || p.steps.length !== n) throw new OpError('slice: axes, starts, ends and steps must have equal lengths');
      const shape = [...x!.shape];
      for (let j = 0; j < n; j++) {
        const a = normAxis(p.axes[j]!, shape.length, 'slice axis');
        shape[a] = slicedDim(shape[a]!, p.starts[j]!, p.ends[j]!, p.steps[j]!);
      }
      return { dtype: x!.dtype, shape };
    },
    lower: (cx, p, [x], node) =>
      cx.emit1('Slice', [x!, cx.i64(p.starts), cx.i64(p.ends.map((e) => Math.min(e, Number.MAX_SAFE_INTEGER))), cx.i64(p.axes.map((a) => normAxis(a, node.rank))), cx.i64(p.steps)]),
    eval: (p, [x]) => {
      const begin = x!.shape.map(() => 0);
      const step = x!.shape.map(() => 1);
      const shape = [...x!.shape];
      p.axes.forEach((a0, j) => {
        const a = normAxis(a0, shape.length);
        const r = sliceRange(x!.shape[a]!, p.starts[j]!, p.ends[j]!, p.steps[j]!);
        begin[a] = r.begin;
        step[a] = p.steps[j]!;
        shape[a] = r.len;
      });
      const st = strides(x!.shape);
      return buildRef(x!.dtype, shape, (idx) => x!.data[idx.reduce((o, v, i) => o + (begin[i]! + v * step[i]!) * st[i]!, 0)]!);
    },
  },
  gather: {
    arity: 2,
    vjp: (nb, p, [x, idx], _o, g) => [nb.op('gather_grad', { axis: normAxis(p.axis, x!.rank), shape: [...x!.shape] }, [g, idx!]), null],
    infer: (p, [x, idx]) => {
      if (idx!.dtype !== 'i64' && idx!.dtype !== 'i32') throw new OpError(`gather: indices must be i64 or i32, got ${typeStr(idx!)}`);
      const a = normAxis(p.axis, x!.shape.length, 'gather axis');
      return { dtype: x!.dtype, shape: [...x!.shape.slice(0, a), ...idx!.shape, ...x!.shape.slice(a + 1)] };
    },
    lower: (cx, p, ins, node) => cx.emit1('Gather', [...ins], { axis: { i: normAxis(p.axis, node.inputs[0]!.rank) } }),
    eval: (p, [x, ind]) => {
      const a = normAxis(p.axis, x!.shape.length);
      const shape = [...x!.shape.slice(0, a), ...ind!.shape, ...x!.shape.slice(a + 1)];
      const st = strides(x!.shape);
      const ist = strides(ind!.shape);
      const k = ind!.shape.length;
      const n = x!.shape[a]!;
      return buildRef(x!.dtype, shape, (idx) => {
        let io = 0;
        for (let j = 0; j < k; j++) io += idx[a + j]! * ist[j]!;
        let g = ind!.data[io]!;
        if (g < 0) g += n;
        if (g < 0 || g >= n) throw new OpError(`gather: index ${ind!.data[io]} out of range for axis of size ${n}`);
        let o = g * st[a]!;
        for (let i = 0; i < a; i++) o += idx[i]! * st[i]!;
        for (let i = a + 1; i < x!.shape.length; i++) o += idx[i + k - 1]! * st[i]!;
        return x!.data[o]!;
      });
    },
  },
  pad: {
    arity: 1,
    vjp: (nb, p, [x], _o, g) => {
      if (p.mode !== 'constant') throw new OpError(`pad: no gradient for mode '${p.mode}' (only constant)`);
      const r = x!.rank;
      const axes = [...Array(r).keys()].filter((i) => p.pads[i] || p.pads[i + r]);
      if (!axes.length) return [g];
      return [nb.op('slice', { axes, starts: axes.map((i) => p.pads[i]!), ends: axes.map((i) => (p.pads[i + r] ? -p.pads[i + r]! : Number.MAX_SAFE_INTEGER)), steps: axes.map(() => 1) }, [g])];
    },
    infer: (p, [x]) => {
      const r = x!.shape.length;
      if (p.pads.length !== 2 * r) throw new OpError(`pad: ${p.pads.length} pads for rank ${r} (need begins then ends)`);
      if (p.pads.some((v) => !Number.isInteger(v) || v < 0)) throw new OpError(`pad: pads [${p.pads}] must be non-negative integers`);
      if (p.mode === 'reflect')
        x!.shape.forEach((d, i) => {
          if (isStatic(d) && (p.pads[i]! >= d || p.pads[i + r]! >= d)) throw new OpError(`pad reflect: pad exceeds dim ${i} of ${typeStr(x!)}`);
        });
      return { dtype: x!.dtype, shape: x!.shape.map((d, i) => dimAdd(d, p.pads[i]! + p.pads[i + r]!)) };
    },
    lower: (cx, p, [x], node) => {
      const ins = [x!, cx.i64(p.pads)];
      if (p.mode === 'constant') ins.push(cx.scalar(p.value, node.dtype));
      return cx.emit1('Pad', ins, { mode: { s: p.mode } });
    },
    eval: (p, [x]) => {
      const r = x!.shape.length;
      const shape = x!.shape.map((d, i) => d + p.pads[i]! + p.pads[i + r]!);
      const st = strides(x!.shape);
      return buildRef(x!.dtype, shape, (idx) => {
        let o = 0;
        for (let i = 0; i < r; i++) {
          const d = x!.shape[i]!;
          let v = idx[i]! - p.pads[i]!;
          if (v < 0 || v >= d) {
            if (p.mode === 'constant') return p.value;
            if (p.mode === 'edge') v = v < 0 ? 0 : d - 1;
            else v = v < 0 ? -v : 2 * (d - 1) - v;
          }
          o += v * st[i]!;
        }
        return x!.data[o]!;
      });
    },
  },
} satisfies OpGroup<'reshape' | 'transpose' | 'expand' | 'concat' | 'split' | 'slice' | 'gather' | 'pad'>;

/** Place g inside zeros along `axis`: `before` zeros, g, `after` zeros (sizes may be symbolic). */
function padAxis(nb: NB, g: Node, axis: number, before: Dim, after: Dim): Node {
  const parts: Node[] = [];
  const zeros = (n: Dim) => nb.zeros([...g.shape.slice(0, axis), n, ...g.shape.slice(axis + 1)], g.dtype);
  if (before !== 0) parts.push(zeros(before));
  parts.push(g);
  if (after !== 0) parts.push(zeros(after));
  return parts.length === 1 ? g : nb.op('concat', { axis }, parts);
}

function offsetFromBroadcast(x: RefTensor, out: number[]): (idx: number[]) => number {
  const st = strides(x.shape);
  const off = out.length - x.shape.length;
  return (idx) => {
    let o = 0;
    for (let i = 0; i < x.shape.length; i++) if (x.shape[i] !== 1) o += idx[i + off]! * st[i]!;
    return x.data[o]!;
  };
}
