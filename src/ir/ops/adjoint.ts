// Primitives that exist for reverse mode: the adjoints of gather and conv2d
// (scatter-add, transposed convolution, weight correlation) and dim_value,
// which turns a symbolic size into a runtime scalar (mean's 1/N, offsets).
import { DTYPE_INFO } from '../dtype.ts';
import { dimEq, dimProd, isStatic, shapeStr, type Dim } from '../dims.ts';
import { OpError, typeStr } from '../node.ts';
import type { OpGroup } from '../opdef.ts';
import { ref, strides } from '../ref.ts';
import { normAxis, requireFloat } from './common.ts';

function noSecondOrder(op: string): never {
  throw new OpError(`${op}: second-order gradients are not supported`);
}

/** The forward conv's output size: what the cotangent's spatial dims must be. */
function checkConvCotangent(what: string, p: { strides: [number, number]; pads: [number, number, number, number]; dilations: [number, number] }, inHW: number[], kHW: number[], gHW: number[]): void {
  const out = [0, 1].map((i) => Math.floor((inHW[i]! + p.pads[i]! + p.pads[i + 2]! - p.dilations[i]! * (kHW[i]! - 1) - 1) / p.strides[i]!) + 1);
  if (out[0] !== gHW[0] || out[1] !== gHW[1]) throw new OpError(`${what}: cotangent spatial size [${gHW}] is not the conv output size [${out}]`);
}

function staticConvDims(shape: readonly Dim[], what: string): number[] {
  if (!shape.every(isStatic)) throw new OpError(`${what}: conv2d gradients need static shapes, got ${shapeStr(shape)}`);
  return shape as number[];
}

export const ADJOINT_OPS = {
  barrier: {
    arity: 1,
    vjp: (_nb, _p, _ins, _o, g) => [g],
    infer: (_p, [x]) => x!,
    lower: (cx, _p, [x], node) => {
      // x + x*0: a value with a new name that onnxruntime's CSE cannot merge with x's other users
      // and its no-op elimination cannot see through (the 0 is not a constant operand of the Add).
      // (Random* / Multinomial, which CSE skips by design, have no opset-22 CPU kernel in ORT 1.30.)
      // Caveat: an infinite x becomes NaN, which only matters in a run that is already diverging.
      if (node.dtype === 'bool' || node.dtype === 'bf16') return cx.emit1('Identity', [x!]);
      return cx.emit1('Add', [x!, cx.emit1('Mul', [x!, cx.scalar(0, node.dtype)])]);
    },
    eval: (_p, [x]) => x!,
  },
  dim_value: {
    arity: 0,
    vjp: 'nondiff',
    infer: (p) => ({ dtype: p.dtype, shape: [] }),
    lower: (cx, p) => {
      const v = cx.emit1('Squeeze', [cx.dims([p.dim]), cx.i64([0])]);
      return p.dtype === 'i64' ? v : cx.emit1('Cast', [v], { to: { i: DTYPE_INFO[p.dtype].onnx } });
    },
    eval: (p, _ins, cx) => ref(p.dtype, [], Float64Array.of(cx.dim(p.dim))),
  },
  gather_grad: {
    arity: 2,
    // linear in g: its adjoint is gather again
    vjp: (nb, p, [, idx], _o, g) => [nb.op('gather', { axis: p.axis }, [g, idx!]), null],
    infer: (p, [g, idx]) => {
      requireFloat(g!, 'gather_grad cotangent');
      if (idx!.dtype !== 'i64' && idx!.dtype !== 'i32') throw new OpError(`gather_grad: indices must be i64 or i32, got ${typeStr(idx!)}`);
      const a = normAxis(p.axis, p.shape.length);
      const want = [...p.shape.slice(0, a), ...idx!.shape, ...p.shape.slice(a + 1)];
      if (want.length !== g!.shape.length || !want.every((d, i) => dimEq(d, g!.shape[i]!)))
        throw new OpError(`gather_grad: cotangent ${typeStr(g!)} does not match gather of ${shapeStr(p.shape)} by ${typeStr(idx!)}`);
      return { dtype: g!.dtype, shape: p.shape };
    },
    lower: (cx, p, [g, idx], node) => {
      // ScatterElements(axis 0, reduction=add) into zeros [N, P*Q]: indices axis first, everything
      // else flattened. Not ScatterND(add): onnxruntime's CPU kernel splits the updates over threads
      // and loses updates to repeated indices (onnxruntime issue #18048): measured on ORT 1.30, 2
      // threads, an embedding gradient [480, 96] from 2560 ids with repeats came out up to 35 % off
      // and different on every run (test/gather-grad-threads.test.ts). ScatterElements-add runs
      // sequentially there (issue #28584): exact, deterministic, ~2 ms for 2560 x 96 updates.
      const a = p.axis;
      const k = node.inputs[1]!.rank;
      const pre = p.shape.slice(0, a), post = p.shape.slice(a + 1), n = p.shape[a]!;
      const r = node.inputs[0]!.rank;
      const perm = [...Array(k).keys()].map((i) => a + i).concat([...Array(a).keys()], [...Array(r - a - k).keys()].map((i) => a + k + i));
      const pq = dimProd([...pre, ...post]);
      const idxShape = node.inputs[1]!.shape;
      let ind = node.inputs[1]!.dtype === 'i64' ? idx! : cx.emit1('Cast', [idx!], { to: { i: DTYPE_INFO.i64.onnx } });
      const nv = cx.dims([n]);
      ind = cx.emit1('Where', [cx.emit1('Less', [ind, cx.scalar(0, 'i64')]), cx.emit1('Add', [ind, nv]), ind]);
      const rows = cx.dims([dimProd(idxShape), pq]); // [ids, P*Q]: the updates' shape and the expanded indices'
      ind = cx.emit1('Reshape', [ind, cx.dims([dimProd(idxShape), 1])]);
      ind = cx.emit1('Expand', [ind, rows]);
      // ORT CPU has no f16/bf16 scatter-add, and summing many half-precision terms loses
      // bits anyway: accumulate in f32 and cast back
      const low = node.dtype === 'f16' || node.dtype === 'bf16';
      const acc = low ? 'f32' : node.dtype;
      let gin = g!;
      if (low) gin = cx.emit1('Cast', [gin], { to: { i: DTYPE_INFO.f32.onnx } });
      const upd = cx.emit1('Reshape', [cx.emit1('Transpose', [gin], { perm: { ints: perm } }), rows]);
      const zeros = cx.emit1('Expand', [cx.scalar(0, acc), cx.dims([n, pq])]);
      let sc = cx.emit1('ScatterElements', [zeros, ind, upd], { axis: { i: 0 }, reduction: { s: 'add' } });
      if (low) sc = cx.emit1('Cast', [sc], { to: { i: DTYPE_INFO[node.dtype].onnx } });
      const full = cx.emit1('Reshape', [sc, cx.dims([n, ...pre, ...post])]);
      const back = [...Array(pre.length).keys()].map((i) => i + 1).concat([0], [...Array(post.length).keys()].map((i) => pre.length + 1 + i));
      return cx.emit1('Transpose', [full], { perm: { ints: back } });
    },
    eval: (p, [g, idx], cx, node) => {
      const shape = p.shape.map((d) => cx.dim(d));
      const out = ref(node.dtype, shape);
      const a = p.axis, n = shape[a]!;
      const k = idx!.shape.length;
      const st = strides(shape);
      const gs = g!.shape;
      const gIdx = new Array<number>(gs.length).fill(0);
      for (let t = 0; t < g!.data.length; t++) {
        let io = 0, ist = 1;
        for (let j = k - 1; j >= 0; j--) (io += gIdx[a + j]! * ist), (ist *= idx!.shape[j]!);
        let v = idx!.data[io]!;
        if (v < 0) v += n;
        if (v < 0 || v >= n) throw new OpError(`gather_grad: index ${idx!.data[io]} out of range for axis of size ${n}`);
        let o = v * st[a]!;
        for (let i = 0; i < a; i++) o += gIdx[i]! * st[i]!;
        for (let i = a + 1; i < shape.length; i++) o += gIdx[i + k - 1]! * st[i]!;
        out.data[o] = out.data[o]! + g!.data[t]!;
        for (let ax = gs.length - 1; ax >= 0; ax--) {
          if (++gIdx[ax]! < gs[ax]!) break;
          gIdx[ax] = 0;
        }
      }
      return out;
    },
  },
  conv2d_grad_input: {
    arity: 2,
    vjp: () => noSecondOrder('conv2d_grad_input'),
    infer: (p, [g, w]) => {
      requireFloat(g!, 'conv2d_grad_input cotangent');
      const hw = staticConvDims(p.shape.slice(2), 'conv2d_grad_input');
      const ws = staticConvDims(w!.shape, 'conv2d_grad_input');
      checkConvCotangent('conv2d_grad_input', p, hw, ws.slice(2), staticConvDims(g!.shape.slice(2), 'conv2d_grad_input'));
      return { dtype: g!.dtype, shape: p.shape };
    },
    lower: (cx, p, [g, w], node) => {
      const [, , H, W] = p.shape as [Dim, Dim, number, number];
      const [, , OH, OW] = node.inputs[0]!.shape as [Dim, Dim, number, number];
      const [, , KH, KW] = node.inputs[1]!.shape as [number, number, number, number];
      const [sh, sw] = p.strides, [dh, dw] = p.dilations, [pt, pl, pb, pr] = p.pads;
      // ConvTranspose's natural size can fall short of the input by the rows the forward conv dropped
      const oph = H + pt + pb - ((OH - 1) * sh + dh * (KH - 1) + 1);
      const opw = W + pl + pr - ((OW - 1) * sw + dw * (KW - 1) + 1);
      return cx.emit1('ConvTranspose', [g!, w!], {
        strides: { ints: p.strides },
        pads: { ints: [...p.pads] },
        dilations: { ints: p.dilations },
        group: { i: p.group },
        output_padding: { ints: [oph, opw] },
      });
    },
    eval: (p, [g, w], cx, node) => {
      const [N, C, H, W] = p.shape.map((d) => cx.dim(d)) as [number, number, number, number];
      const [, O, OH, OW] = g!.shape as [number, number, number, number];
      const [, Cg, KH, KW] = w!.shape as [number, number, number, number];
      const [sh, sw] = p.strides, [dh, dw] = p.dilations, [pt, pl] = p.pads;
      const og = O / p.group;
      const out = ref(node.dtype, [N, C, H, W]);
      for (let n = 0; n < N; n++)
        for (let o = 0; o < O; o++) {
          const gi = Math.floor(o / og);
          for (let oh = 0; oh < OH; oh++)
            for (let ow = 0; ow < OW; ow++) {
              const gv = g!.data[((n * O + o) * OH + oh) * OW + ow]!;
              for (let ci = 0; ci < Cg; ci++)
                for (let kh = 0; kh < KH; kh++) {
                  const ih = oh * sh - pt + kh * dh;
                  if (ih < 0 || ih >= H) continue;
                  for (let kw = 0; kw < KW; kw++) {
                    const iw = ow * sw - pl + kw * dw;
                    if (iw < 0 || iw >= W) continue;
                    const xo = ((n * C + gi * Cg + ci) * H + ih) * W + iw;
                    out.data[xo] = out.data[xo]! + gv * w!.data[((o * Cg + ci) * KH + kh) * KW + kw]!;
                  }
                }
            }
        }
      return out;
    },
  },
  conv2d_grad_weight: {
    arity: 2,
    vjp: () => noSecondOrder('conv2d_grad_weight'),
    infer: (p, [x, g]) => {
      requireFloat(x!, 'conv2d_grad_weight input');
      const xs = staticConvDims(x!.shape.slice(1), 'conv2d_grad_weight');
      const gs = staticConvDims(g!.shape.slice(1), 'conv2d_grad_weight');
      checkConvCotangent('conv2d_grad_weight', p, xs.slice(1), p.shape.slice(2), gs.slice(1));
      return { dtype: x!.dtype, shape: p.shape };
    },
    lower: (cx, p, [x, g]) => {
      // dW[o,c] = correlation of x[:, c] with g[:, o] over the batch: a conv with the batch as
      // channels, strides and dilations swapped; then crop to the kernel size.
      const [O, Cg, KH, KW] = p.shape as [number, number, number, number];
      const og = O / p.group;
      const [pt, pl, pb, pr] = p.pads;
      const pieces: string[] = [];
      for (let gi = 0; gi < p.group; gi++) {
        const xs = p.group === 1 ? x! : cx.emit1('Slice', [x!, cx.i64([gi * Cg]), cx.i64([(gi + 1) * Cg]), cx.i64([1])]);
        const gs = p.group === 1 ? g! : cx.emit1('Slice', [g!, cx.i64([gi * og]), cx.i64([(gi + 1) * og]), cx.i64([1])]);
        const xt = cx.emit1('Transpose', [xs], { perm: { ints: [1, 0, 2, 3] } });
        const gt = cx.emit1('Transpose', [gs], { perm: { ints: [1, 0, 2, 3] } });
        const c = cx.emit1('Conv', [xt, gt], { strides: { ints: p.dilations }, dilations: { ints: p.strides }, pads: { ints: [pt, pl, pb, pr] } });
        const crop = cx.emit1('Slice', [c, cx.i64([0, 0]), cx.i64([KH, KW]), cx.i64([2, 3])]);
        pieces.push(cx.emit1('Transpose', [crop], { perm: { ints: [1, 0, 2, 3] } }));
      }
      return pieces.length === 1 ? pieces[0]! : cx.emit1('Concat', pieces, { axis: { i: 0 } });
    },
    eval: (p, [x, g], _cx, node) => {
      const [N, C, H, W] = x!.shape as [number, number, number, number];
      const [, O, OH, OW] = g!.shape as [number, number, number, number];
      const [, Cg, KH, KW] = p.shape as [number, number, number, number];
      const [sh, sw] = p.strides, [dh, dw] = p.dilations, [pt, pl] = p.pads;
      const og = O / p.group;
      const out = ref(node.dtype, [...p.shape]);
      for (let o = 0; o < O; o++) {
        const gi = Math.floor(o / og);
        for (let ci = 0; ci < Cg; ci++)
          for (let kh = 0; kh < KH; kh++)
            for (let kw = 0; kw < KW; kw++) {
              let s = 0;
              for (let n = 0; n < N; n++)
                for (let oh = 0; oh < OH; oh++) {
                  const ih = oh * sh - pt + kh * dh;
                  if (ih < 0 || ih >= H) continue;
                  for (let ow = 0; ow < OW; ow++) {
                    const iw = ow * sw - pl + kw * dw;
                    if (iw < 0 || iw >= W) continue;
                    s += x!.data[((n * C + gi * Cg + ci) * H + ih) * W + iw]! * g!.data[((n * O + o) * OH + oh) * OW + ow]!;
                  }
                }
              out.data[((o * Cg + ci) * KH + kh) * KW + kw] = s;
            }
      }
      return out;
    },
  },
} satisfies OpGroup<'barrier' | 'dim_value' | 'gather_grad' | 'conv2d_grad_input' | 'conv2d_grad_weight'>;

