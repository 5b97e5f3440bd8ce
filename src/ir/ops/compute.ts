// Contractions and reductions: matmul, reduce_{sum,mean,max}, softmax, conv2d,
// nearest upsampling.
import { dimAdd, dimDiv, dimEq, dimMul, dimProd, dimStr, type Dim } from '../dims.ts';
import { isFloat } from '../dtype.ts';
import { OpError, typeStr } from '../node.ts';
import type { OpDef, OpGroup } from '../opdef.ts';
import type { Node } from '../node.ts';
import type { NB } from '../nb.ts';
import { broadcastOffsets, broadcastShape, buildRef, reduceRef, ref, size, strides } from '../ref.ts';
import { broadcastShapes, normAxis, requireFloat, sameDtype } from './common.ts';

type ReduceKind = 'reduce_sum' | 'reduce_mean' | 'reduce_max';

/** The reduced cotangent brought back to the input's shape (keepdims form, then expanded). */
function unreduce(nb: NB, g: Node, x: Node, axes: number[], keepdims: boolean): Node {
  const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  return nb.expand(keepdims ? g : nb.reshape(g, kept), x.shape);
}

/** Number of elements reduced over, as a scalar of `dtype` (runtime value for symbolic dims). */
function reducedCount(nb: NB, x: Node, axes: number[]): Node {
  const dims = axes.map((a) => x.shape[a]!);
  if (dims.every((d) => typeof d === 'number')) return nb.scalar((dims as number[]).reduce((a, b) => a * b, 1), x.dtype);
  return dims.map((d) => nb.op('dim_value', { dim: d, dtype: x.dtype }, [])).reduce((a, b) => nb.mul(a, b));
}

const REDUCE_GRAD: { [K in ReduceKind]: (nb: NB, x: Node, out: Node, g: Node, axes: number[], keepdims: boolean) => Node } = {
  reduce_sum: (nb, x, _o, g, axes, keep) => unreduce(nb, g, x, axes, keep),
  reduce_mean: (nb, x, _o, g, axes, keep) => nb.div(unreduce(nb, g, x, axes, keep), reducedCount(nb, x, axes)),
  // ties share the cotangent evenly
  reduce_max: (nb, x, out, g, axes, keep) => {
    const hit = nb.op('eq', {}, [x, unreduce(nb, out, x, axes, keep)]);
    const cnt = nb.sum(nb.cast(hit, x.dtype), axes, true);
    return nb.where(hit, nb.div(unreduce(nb, g, x, axes, keep), nb.expand(cnt, x.shape)), nb.zeros(x.shape, x.dtype));
  },
};

function reduction<K extends ReduceKind>(kind: K, onnx: string, init: number, combine: (a: number, x: number) => number, finish?: (a: number, n: number) => number): OpDef<K> {
  return {
    vjp: (nb, p, [x], out, g) => [REDUCE_GRAD[kind](nb, x!, out, g, p.axes.map((a) => normAxis(a, x!.rank)), p.keepdims)],
    arity: 1,
    infer: (p, [x]) => {
      if (x!.dtype === 'bool') throw new OpError(`${onnx}: bool operand ${typeStr(x!)}`);
      const r = x!.shape.length;
      const axes = p.axes.map((a) => normAxis(a, r, `${onnx} axis`));
      if (new Set(axes).size !== axes.length) throw new OpError(`${onnx}: repeated axes [${p.axes}]`);
      if (axes.length === 0) throw new OpError(`${onnx}: no axes given (an empty list would mean "all" in ONNX; say so explicitly)`);
      const shape = p.keepdims ? x!.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x!.shape.filter((_, i) => !axes.includes(i));
      return { dtype: x!.dtype, shape };
    },
    lower: (cx, p, [x], node) =>
      cx.emit1(onnx, [x!, cx.i64(p.axes.map((a) => normAxis(a, node.inputs[0]!.rank)))], { keepdims: { i: p.keepdims ? 1 : 0 } }),
    eval: (p, [x]) => {
      const out = reduceRef(x!, p.axes, p.keepdims, init, combine, finish);
      if (!isFloat(x!.dtype)) for (let i = 0; i < out.data.length; i++) out.data[i] = Math.trunc(out.data[i]!);
      return out;
    },
  };
}

function convOut(d: Dim, k: number, stride: number, padSum: number, dil: number): Dim {
  return dimAdd(dimDiv(dimAdd(d, padSum - dil * (k - 1) - 1), stride), 1);
}

/**
 * d(a @ b)/db. A rank-2 b shared by every batch entry of a (a linear layer's weight, a: [..., M, K])
 * gets ONE GEMM over all rows, flatten(a)^T @ flatten(g): [K, P] @ [P, N] with P = prod(a's leading
 * dims) * M, instead of a batched [.., K, N] product summed over the batch afterwards: the same
 * FLOPs, no [batch, K, N] intermediate and its ReduceSum, and a larger inner dimension for the GEMM.
 */
function matmulWeightGrad(nb: NB, a: Node, b: Node, g: Node): Node {
  if (b.rank === 2 && a.rank > 2) {
    const rows = dimProd(a.shape.slice(0, -1));
    // a's contraction axis moved to the front BEFORE flattening ([..., M, K] -> [K, ..., M] ->
    // [K, rows]) rather than mT(flatten(a)): onnxruntime fuses a 2-D Transpose feeding a MatMul
    // into FusedMatMul(transA=1), which MLAS runs 1.5-2x slower than a plain MatMul on a
    // materialised transpose ([2048, 512]^T @ [2048, 1536], 2 threads, the copy included; BENCHMARKS.md
    // section 5); through the Reshape it stays a plain MatMul.
    const at = nb.reshape(nb.transpose(a, [a.rank - 1, ...a.shape.slice(0, -1).map((_, i) => i)]), [a.shape[a.rank - 1]!, rows]);
    const gf = nb.reshape(g, [rows, g.shape[g.rank - 1]!]);
    return nb.matmul(at, gf);
  }
  return nb.sumTo(nb.matmul(nb.mT(a), g), b.shape);
}

export const COMPUTE_OPS = {
  matmul: {
    arity: 2,
    vjp: (nb, _p, [a, b], _o, g) => [nb.sumTo(nb.matmul(g, nb.mT(b!)), a!.shape), matmulWeightGrad(nb, a!, b!, g)],
    infer: (_p, [a, b]) => {
      const dtype = sameDtype([a!, b!]);
      if (dtype === 'bool') throw new OpError('matmul of bool tensors');
      if (a!.shape.length < 2 || b!.shape.length < 2) throw new OpError(`matmul needs rank >= 2 operands, got ${typeStr(a!)} @ ${typeStr(b!)}`);
      const [m, k1] = a!.shape.slice(-2) as [Dim, Dim];
      const [k2, n] = b!.shape.slice(-2) as [Dim, Dim];
      if (!dimEq(k1, k2)) throw new OpError(`matmul inner dims differ: ${typeStr(a!)} @ ${typeStr(b!)} (${dimStr(k1)} vs ${dimStr(k2)})`);
      const batch = broadcastShapes([a!.shape.slice(0, -2), b!.shape.slice(0, -2)]);
      return { dtype, shape: [...batch, m, n] };
    },
    lower: (cx, _p, ins) => cx.emit1('MatMul', [...ins]),
    eval: (_p, [a, b], _cx, node) => {
      const [m, k] = a!.shape.slice(-2) as [number, number];
      const n = b!.shape[b!.shape.length - 1]!;
      const batch = broadcastShape(a!.shape.slice(0, -2), b!.shape.slice(0, -2));
      const ao = broadcastOffsets(a!.shape.slice(0, -2), batch);
      const bo = broadcastOffsets(b!.shape.slice(0, -2), batch);
      const out = ref(node.dtype, [...batch, m, n]);
      const nb = size(batch);
      for (let bi = 0; bi < nb; bi++) {
        const A = ao[bi]! * m * k, B = bo[bi]! * k * n, O = bi * m * n;
        for (let i = 0; i < m; i++)
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let t = 0; t < k; t++) s += a!.data[A + i * k + t]! * b!.data[B + t * n + j]!;
            out.data[O + i * n + j] = s;
          }
      }
      return out;
    },
  },
  reduce_sum: reduction('reduce_sum', 'ReduceSum', 0, (a, x) => a + x),
  reduce_mean: reduction('reduce_mean', 'ReduceMean', 0, (a, x) => a + x, (a, n) => a / n),
  reduce_max: reduction('reduce_max', 'ReduceMax', -Infinity, (a, x) => Math.max(a, x)),
  softmax: {
    arity: 1,
    vjp: (nb, p, _ins, out, g) => [nb.mul(out, nb.sub(g, nb.sum(nb.mul(g, out), [normAxis(p.axis, out.rank)], true)))],
    infer: (p, [x]) => (requireFloat(x!, 'softmax operand'), normAxis(p.axis, x!.shape.length, 'softmax axis'), x!),
    lower: (cx, p, [x], node) => cx.emit1('Softmax', [x!], { axis: { i: normAxis(p.axis, node.rank) } }),
    eval: (p, [x]) => {
      const axis = normAxis(p.axis, x!.shape.length);
      const mx = reduceRef(x!, [axis], true, -Infinity, Math.max);
      const st = strides(x!.shape);
      const mst = strides(mx.shape);
      const e = buildRef(x!.dtype, [...x!.shape], (idx) => {
        let o = 0, mo = 0;
        idx.forEach((v, i) => ((o += v * st[i]!), (mo += (i === axis ? 0 : v) * mst[i]!)));
        return Math.exp(x!.data[o]! - mx.data[mo]!);
      });
      const sum = reduceRef(e, [axis], true, 0, (a, v) => a + v);
      return buildRef(x!.dtype, [...x!.shape], (idx) => {
        let o = 0, mo = 0;
        idx.forEach((v, i) => ((o += v * st[i]!), (mo += (i === axis ? 0 : v) * mst[i]!)));
        return e.data[o]! / sum.data[mo]!;
      });
    },
  },
  conv2d: {
    arity: [2, 3],
    vjp: (nb, p, [x, w, b], _o, g) => {
      const conv = { strides: p.strides, pads: p.pads, dilations: p.dilations, group: p.group };
      return [
        nb.op('conv2d_grad_input', { ...conv, shape: [...x!.shape] }, [g, w!]),
        nb.op('conv2d_grad_weight', { ...conv, shape: [...(w!.shape as number[])] }, [x!, g]),
        ...(b ? [nb.sum(g, [0, 2, 3], false)] : []),
      ];
    },
    infer: (p, ins) => {
      const [x, w, b] = ins;
      const dtype = sameDtype(ins);
      requireFloat(x!, 'conv2d input');
      if (x!.shape.length !== 4 || w!.shape.length !== 4) throw new OpError(`conv2d needs x [N,C,H,W] and w [O,C/g,kh,kw], got ${typeStr(x!)} and ${typeStr(w!)}`);
      const [, c, h, wd] = x!.shape as [Dim, Dim, Dim, Dim];
      const [o, ci, kh, kw] = w!.shape as [Dim, Dim, Dim, Dim];
      if (typeof kh !== 'number' || typeof kw !== 'number') throw new OpError(`conv2d kernel dims must be static, got ${typeStr(w!)}`);
      if (!dimEq(dimMul(ci, p.group), c)) throw new OpError(`conv2d: input has ${dimStr(c)} channels but weight ${typeStr(w!)} with group ${p.group} expects ${dimStr(dimMul(ci, p.group))}`);
      if (b && (b.shape.length !== 1 || !dimEq(b.shape[0]!, o))) throw new OpError(`conv2d bias ${typeStr(b)} does not match ${dimStr(o)} output channels`);
      const [sh, sw] = p.strides, [dh, dw] = p.dilations, [pt, pl, pb, pr] = p.pads;
      return { dtype, shape: [x!.shape[0]!, o, convOut(h, kh, sh, pt + pb, dh), convOut(wd, kw, sw, pl + pr, dw)] };
    },
    lower: (cx, p, ins) =>
      cx.emit1('Conv', [...ins], {
        strides: { ints: p.strides },
        pads: { ints: [p.pads[0], p.pads[1], p.pads[2], p.pads[3]] },
        dilations: { ints: p.dilations },
        group: { i: p.group },
      }),
    eval: (p, [x, w, b], _cx, node) => {
      const [N, C, H, W] = x!.shape as [number, number, number, number];
      const [O, Cg, KH, KW] = w!.shape as [number, number, number, number];
      const [sh, sw] = p.strides, [dh, dw] = p.dilations, [pt, pl] = p.pads;
      const OH = Math.floor((H + p.pads[0] + p.pads[2] - dh * (KH - 1) - 1) / sh) + 1;
      const OW = Math.floor((W + p.pads[1] + p.pads[3] - dw * (KW - 1) - 1) / sw) + 1;
      const og = O / p.group;
      const out = ref(node.dtype, [N, O, OH, OW]);
      let k = 0;
      for (let n = 0; n < N; n++)
        for (let o = 0; o < O; o++) {
          const g = Math.floor(o / og);
          for (let oh = 0; oh < OH; oh++)
            for (let ow = 0; ow < OW; ow++) {
              let s = b ? b.data[o]! : 0;
              for (let ci = 0; ci < Cg; ci++) {
                const c = g * Cg + ci;
                for (let kh = 0; kh < KH; kh++) {
                  const ih = oh * sh - pt + kh * dh;
                  if (ih < 0 || ih >= H) continue;
                  for (let kw = 0; kw < KW; kw++) {
                    const iw = ow * sw - pl + kw * dw;
                    if (iw < 0 || iw >= W) continue;
                    s += x!.data[((n * C + c) * H + ih) * W + iw]! * w!.data[((o * Cg + ci) * KH + kh) * KW + kw]!;
                  }
                }
              }
              out.data[k++] = s;
            }
        }
      return out;
    },
  },
  upsample_nearest: {
    arity: 1,
    vjp: (nb, p, [x], _o, g) => {
      const [n, c, h, w] = x!.shape as [Dim, Dim, Dim, Dim];
      return [nb.sum(nb.reshape(g, [n, c, h, p.scale, w, p.scale]), [3, 5], false)];
    },
    infer: (p, [x]) => {
      if (x!.shape.length !== 4) throw new OpError(`upsample_nearest needs [N,C,H,W], got ${typeStr(x!)}`);
      if (!Number.isInteger(p.scale) || p.scale < 1) throw new OpError(`upsample_nearest: scale ${p.scale} must be a positive integer`);
      const [n, c, h, w] = x!.shape as [Dim, Dim, Dim, Dim];
      return { dtype: x!.dtype, shape: [n, c, dimMul(h, p.scale), dimMul(w, p.scale)] };
    },
    lower: (cx, p, [x]) => {
      const scales = cx.constant({ dtype: 'f32', shape: [4], data: new Float64Array([1, 1, p.scale, p.scale]) });
      return cx.emit1('Resize', [x!, '', scales], {
        mode: { s: 'nearest' },
        coordinate_transformation_mode: { s: 'asymmetric' },
        nearest_mode: { s: 'floor' },
      });
    },
    eval: (p, [x]) => {
      const [N, C, H, W] = x!.shape as [number, number, number, number];
      const s = p.scale;
      return buildRef(x!.dtype, [N, C, H * s, W * s], ([n, c, h, w]) => x!.data[((n! * C + c!) * H + Math.floor(h! / s)) * W + Math.floor(w! / s)]!);
    },
  },
} satisfies OpGroup<'matmul' | ReduceKind | 'softmax' | 'conv2d' | 'upsample_nearest'>;
