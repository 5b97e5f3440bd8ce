// Fused ops (MLX's fast-op pattern): each is DEFINED by a reference
// decomposition into primitives, and that one function is
//   - its float64 reference (the interpreter evaluates the decomposition),
//   - its VJP (reverse mode through the decomposition),
//   - its fallback lowering (the decomposition's own ONNX, where a target has no fused form).
// The fusion pass (src/passes/fusion/) makes these nodes from primitive patterns late in
// the pipeline; each lowering below is one ONNX form, and the target table
// (src/passes/fusion/targets.ts) says which a target uses, with the measurement behind it.
import { dimAdd, dimEq, dimMul, dimStr, isStatic, shapeStr, type Dim } from '../dims.ts';
import { isFloat } from '../dtype.ts';
import { Builder, Graph } from '../graph.ts';
import { NB } from '../nb.ts';
import { OpError, typeStr, type Node, type TensorType } from '../node.ts';
import type { LowerCtx, OpDef, OpGroup } from '../opdef.ts';
import type { FusedKind, FusedParams } from '../params.ts';
import type { RefTensor } from '../ref.ts';
import { evaluate } from '../evaluate.ts';
import { opDef } from '../optable.ts';
import { grad } from '../../autodiff/grad.ts';
import { TARGET_TABLE, type Lowering } from '../../passes/fusion/targets.ts';
import { broadcastShapes, requireFloat } from './common.ts';

/** Lowest finite value of a float dtype (the masked-score value of sdpa; same as the DSL's). */
export function lowestOf(dtype: string): number {
  return dtype === 'f16' ? -65504 : dtype === 'bf16' ? -3.3895313892515355e38 : dtype === 'f64' ? -Number.MAX_VALUE : -3.4028234663852886e38;
}

// ---------------------------------------------------------------------------
// Reference decompositions (primitives only, except ada_rms_norm which reuses rms_norm)

type Decompose<K extends FusedKind> = (nb: NB, p: FusedParams[K], ins: readonly Node[]) => Node;

/** Low-precision floats compute norm statistics in f32 (as the DSL composites and Hugging Face do). */
function up(nb: NB, x: Node): Node {
  return x.dtype === 'f16' || x.dtype === 'bf16' ? nb.cast(x, 'f32') : x;
}

function rmsCore(nb: NB, x: Node, eps: number): Node {
  const ms = nb.op('reduce_mean', { axes: [x.rank - 1], keepdims: true }, [nb.mul(x, x)]);
  return nb.mul(x, nb.op('rsqrt', {}, [nb.add(ms, nb.scalar(eps, x.dtype))]));
}

function pieces(nb: NB, x: Node, axis: number, sizes: Dim[]): Node[] {
  return sizes.map((_, index) => nb.op('split', { axis, sizes, index }, [x]));
}

const DECOMPOSE: { [K in FusedKind]: Decompose<K> } = {
  rms_norm: (nb, p, [x, w]) => {
    const xf = up(nb, x!);
    let y = rmsCore(nb, xf, p.eps);
    if (p.weight) y = nb.mul(y, nb.cast(w!, xf.dtype));
    return nb.cast(y, x!.dtype);
  },
  layer_norm: (nb, p, ins) => {
    const x = ins[0]!;
    const xf = up(nb, x);
    const c = nb.sub(xf, nb.op('reduce_mean', { axes: [xf.rank - 1], keepdims: true }, [xf]));
    let y = rmsCore(nb, c, p.eps);
    let i = 1;
    if (p.weight) y = nb.mul(y, nb.cast(ins[i++]!, xf.dtype));
    if (p.bias) y = nb.add(y, nb.cast(ins[i++]!, xf.dtype));
    return nb.cast(y, x.dtype);
  },
  gelu: (nb, p, [x]) => {
    const s = (c: number) => nb.scalar(c, x!.dtype);
    if (p.approximate === 'tanh') {
      const inner = nb.mul(nb.add(x!, nb.mul(nb.mul(nb.mul(x!, x!), x!), s(0.044715))), s(Math.sqrt(2 / Math.PI)));
      return nb.mul(nb.mul(x!, s(0.5)), nb.add(nb.op('tanh', {}, [inner]), s(1)));
    }
    return nb.mul(nb.mul(x!, s(0.5)), nb.add(nb.op('erf', {}, [nb.mul(x!, s(Math.SQRT1_2))]), s(1)));
  },
  rope: (nb, p, [x, cos, sin]) => {
    const D = x!.shape[x!.rank - 1] as number;
    const half = cos!.shape[cos!.rank - 1] as number;
    const R = 2 * half, last = x!.rank - 1;
    const [xr, pass] = R < D ? pieces(nb, x!, last, [R, D - R]) : [x!, undefined];
    let out: Node;
    if (p.interleaved) {
      const pairs = nb.reshape(xr!, [...xr!.shape.slice(0, -1), half, 2]);
      const [a, b] = pieces(nb, pairs, pairs.rank - 1, [1, 1]) as [Node, Node];
      const c = nb.reshape(cos!, [...cos!.shape, 1]), s = nb.reshape(sin!, [...sin!.shape, 1]);
      const ra = nb.sub(nb.mul(a, c), nb.mul(b, s));
      const rb = nb.add(nb.mul(a, s), nb.mul(b, c));
      out = nb.reshape(nb.op('concat', { axis: pairs.rank - 1 }, [ra, rb]), xr!.shape);
    } else {
      const [x1, x2] = pieces(nb, xr!, last, [half, half]) as [Node, Node];
      out = nb.op('concat', { axis: last }, [nb.sub(nb.mul(x1, cos!), nb.mul(x2, sin!)), nb.add(nb.mul(x2, cos!), nb.mul(x1, sin!))]);
    }
    return pass ? nb.op('concat', { axis: last }, [out, pass]) : out;
  },
  sdpa: (nb, p, [q, k, v, mask]) => {
    const [B, H, Sq, D] = q!.shape as [Dim, number, Dim, Dim];
    const KV = k!.shape[1] as number, Sk = k!.shape[2]!;
    const G = H / KV;
    const qg = G > 1 ? nb.reshape(q!, [B, KV, G, Sq, D]) : q!;
    const kg = G > 1 ? nb.reshape(k!, [k!.shape[0]!, KV, 1, Sk, D]) : k!;
    const vg = G > 1 ? nb.reshape(v!, [v!.shape[0]!, KV, 1, Sk, v!.shape[3]!]) : v!;
    let s = nb.matmul(nb.mul(qg, nb.scalar(p.scale, q!.dtype)), nb.mT(kg));
    if (p.mask) {
      let m = mask!;
      while (m.rank < 4) m = nb.reshape(m, [1, ...m.shape]);
      if (G > 1) m = m.shape[1] === 1 ? nb.reshape(m, [m.shape[0]!, 1, 1, m.shape[2]!, m.shape[3]!]) : nb.reshape(m, [m.shape[0]!, KV, G, m.shape[2]!, m.shape[3]!]);
      s = nb.where(m, s, nb.scalar(lowestOf(s.dtype), s.dtype));
    }
    const o = nb.matmul(nb.op('softmax', { axis: s.rank - 1 }, [s]), vg);
    return G > 1 ? nb.reshape(o, [B, H, Sq, v!.shape[3]!]) : o;
  },
  add_rms_norm: (nb, p, [x, r, w]) => {
    const sum = nb.add(x!, r!);
    return p.index === 1 ? sum : nb.op('rms_norm', { eps: p.eps, weight: p.weight }, p.weight ? [sum, w!] : [sum]);
  },
  add_layer_norm: (nb, p, [x, r, ...affine]) => {
    const sum = nb.add(x!, r!);
    return p.index === 1 ? sum : nb.op('layer_norm', { eps: p.eps, weight: p.weight, bias: p.bias }, [sum, ...affine]);
  },
  kv_sdpa: (nb, p, [q, k, v, pk, pv, mask]) => {
    const key = nb.op('concat', { axis: 2 }, [pk!, k!]);
    if (p.index === 1) return key;
    const value = nb.op('concat', { axis: 2 }, [pv!, v!]);
    if (p.index === 2) return value;
    return nb.op('sdpa', { scale: p.scale, mask: p.mask }, p.mask ? [q!, key, value, mask!] : [q!, key, value]);
  },
  swiglu: (nb, _p, [a, b]) => nb.mul(nb.mul(a!, nb.op('sigmoid', {}, [a!])), b!),
  ada_rms_norm: (nb, p, ins) => {
    // all in f32 for low-precision inputs, one rounding at the end (as the function body and the CUDA kernel)
    const x = ins[0]!, xf = up(nb, x);
    const [scale, shift] = (p.weight ? ins.slice(2) : ins.slice(1)).map((t) => nb.cast(t, xf.dtype)) as [Node, Node];
    const n = nb.op('rms_norm', { eps: p.eps, weight: p.weight }, p.weight ? [xf, nb.cast(ins[1]!, xf.dtype)] : [xf]);
    return nb.cast(nb.add(nb.mul(n, nb.add(scale, nb.scalar(1, xf.dtype))), shift), x.dtype);
  },
  layer_pool: (nb, _p, [x, w]) => {
    const y = nb.matmul(w!, x!); // [1, n] @ [..., n, C] -> [..., 1, C]
    return nb.reshape(y, [...x!.shape.slice(0, -2), x!.shape[x!.rank - 1]!]);
  },
};

export function decompose<K extends FusedKind>(kind: K, nb: NB, p: FusedParams[K], ins: readonly Node[]): Node {
  return (DECOMPOSE[kind] as Decompose<K>)(nb, p, ins);
}

/** The decomposition as a graph over placeholder inputs of the given types (for the interpreter and the emitter). */
function decompositionGraph<K extends FusedKind>(kind: K, p: FusedParams[K], types: readonly TensorType[]): Graph {
  const b = new Builder();
  const ins = types.map((t, i) => b.apply('input', { name: `in${i}`, dtype: t.dtype, shape: [...t.shape] }, []));
  return new Graph(`${kind}.decomposition`, ins, [{ name: 'y', node: decompose(kind, new NB(b), p, ins) }]);
}

function evalByDecomposition<K extends FusedKind>(kind: K, p: FusedParams[K], ins: readonly RefTensor[]): RefTensor {
  const g = decompositionGraph(kind, p, ins.map((t) => ({ dtype: t.dtype, shape: t.shape })));
  return evaluate(g, Object.fromEntries(ins.map((t, i) => [`in${i}`, t]))).y!;
}

/** Lower the decomposition node by node into the current ONNX context. */
export function lowerDecomposed<K extends FusedKind>(cx: LowerCtx, kind: K, p: FusedParams[K], ins: readonly string[], node: Node<K>): string {
  const g = decompositionGraph(kind, p, node.inputs.map((i) => i.type));
  const names = new Map<Node, string>();
  g.inputs.forEach((n, i) => names.set(n, ins[i]!));
  for (const n of g.nodes()) {
    if (names.has(n)) continue;
    names.set(n, opDef(n.op).lower(cx, n.params as never, n.inputs.map((i) => names.get(i)!), n as never));
  }
  return names.get(g.outputs[0]!.node)!;
}

function vjpByDecomposition<K extends FusedKind>(kind: K) {
  return (nb: NB, p: FusedParams[K], ins: readonly Node[], _out: Node, g: Node): (Node | null)[] => {
    const out = decompose(kind, nb, p, ins);
    // each distinct float input once: a node given twice gets its whole cotangent at its first slot
    const wrt = [...new Set(ins.filter((i) => isFloat(i.dtype)))];
    const cots = grad(nb.b, out, wrt, { seed: g });
    return ins.map((i, k) => (isFloat(i.dtype) && ins.indexOf(i) === k ? cots[wrt.indexOf(i)]! : null));
  };
}

// ---------------------------------------------------------------------------
// Dedicated backwards: where the decomposition's VJP would recompute the forward's
// intermediates and differentiate them one primitive at a time, a closed-form rule that reads only
// the fused node's inputs (and recomputes one statistic). They let a training graph fuse its
// forward before autodiff (src/train/step.ts) at no extra backward cost. Each is checked against
// finite differences and against the decomposition's VJP (test/grad.test.ts, test/fusion/).
// Cotangents of rarely differentiated inputs (rope's tables) still come from the decomposition:
// nodes nobody reads are not part of the graph.

type Vjp<K extends FusedKind> = (nb: NB, p: FusedParams[K], ins: readonly Node[], out: Node, g: Node) => (Node | null)[];

const mean1 = (nb: NB, t: Node) => nb.op('reduce_mean', { axes: [t.rank - 1], keepdims: true }, [t]);

const DEDICATED_VJP: { [K in FusedKind]?: Vjp<K> } = {
  // y = x r w, r = rsqrt(mean(x^2) + eps): dx = r (g w - x^ mean(g w x^)), dw = sum(g x^), x^ = x r
  rms_norm: (nb, p, [x, w], _out, g) => {
    const xf = up(nb, x!), gf = up(nb, g);
    const r = nb.op('rsqrt', {}, [nb.add(mean1(nb, nb.mul(xf, xf)), nb.scalar(p.eps, xf.dtype))]);
    const xhat = nb.mul(xf, r);
    const gw = p.weight ? nb.mul(gf, nb.cast(w!, xf.dtype)) : gf;
    const dx = nb.mul(r, nb.sub(gw, nb.mul(xhat, mean1(nb, nb.mul(gw, xhat)))));
    return [nb.cast(dx, x!.dtype), p.weight ? nb.cast(nb.sumTo(nb.mul(gf, xhat), w!.shape), w!.dtype) : null];
  },
  // y = a s b, s = sigmoid(a): da = g b s (1 + a (1 - s)), db = g a s
  swiglu: (nb, _p, [a, b], _out, g) => {
    const s = nb.op('sigmoid', {}, [a!]);
    const as = nb.mul(a!, s);
    const one = nb.scalar(1, a!.dtype);
    const da = nb.mul(nb.mul(g, b!), nb.mul(s, nb.add(one, nb.sub(a!, as))));
    return [nb.sumTo(da, a!.shape), nb.sumTo(nb.mul(g, as), b!.shape)];
  },
  // a rotation's transpose is the rotation by the opposite angle: dx = rope(g, cos, -sin)
  // (the pass-through channels of a partial rotation pass g through the same way)
  rope: (nb, p, ins, out, g) => {
    // (x is never a table: its last axis is at least twice theirs)
    const [, cos, sin] = ins as [Node, Node, Node];
    const tables = vjpByDecomposition('rope')(nb, p, ins, out, g);
    return [nb.op('rope', p, [g, cos, nb.neg(sin)]), tables[1] ?? null, tables[2] ?? null];
  },
};

// ---------------------------------------------------------------------------
// ONNX lowerings (each returns undefined where it does not apply to the node)

type LowerImpl<K extends FusedKind> = (cx: LowerCtx, p: FusedParams[K], ins: readonly string[], node: Node<K>) => string | undefined;
type LowerSet<K extends FusedKind> = Partial<Record<Lowering, LowerImpl<K>>>;

const f32 = (...ns: Node[]) => ns.every((n) => n.dtype === 'f32');
const lastDim = (n: Node): Dim => n.shape[n.rank - 1]!;
const ones = (cx: LowerCtx, d: Dim) => (isStatic(d) ? cx.constant({ dtype: 'f32', shape: [d], data: new Float64Array(d).fill(1) }) : undefined);

/** [..] padded with leading 1s to rank r */
function padRank(s: readonly Dim[], r: number): Dim[] {
  return [...Array.from({ length: r - s.length }, () => 1), ...s];
}

const LOWER: { [K in FusedKind]: LowerSet<K> } = {
  rms_norm: {
    'RMSNormalization-23': (cx, p, ins, node) => {
      const x = node.inputs[0]!;
      if (!f32(...node.inputs)) return undefined;
      const scale = p.weight ? ins[1]! : ones(cx, lastDim(x));
      if (!scale) return undefined;
      return cx.emit1('RMSNormalization', [ins[0]!, scale], { axis: { i: -1 }, epsilon: { f: p.eps }, stash_type: { i: 1 } });
    },
  },
  layer_norm: {
    'LayerNormalization-17': (cx, p, ins, node) => {
      if (!f32(...node.inputs)) return undefined;
      const scale = p.weight ? ins[1]! : ones(cx, lastDim(node.inputs[0]!));
      if (!scale) return undefined;
      const bias = p.bias ? [ins[p.weight ? 2 : 1]!] : [];
      return cx.emit1('LayerNormalization', [ins[0]!, scale, ...bias], { axis: { i: -1 }, epsilon: { f: p.eps }, stash_type: { i: 1 } });
    },
  },
  gelu: {
    'Gelu-20': (cx, p, ins, node) => (f32(node.inputs[0]!) ? cx.emit1('Gelu', [ins[0]!], { approximate: { s: p.approximate } }) : undefined),
  },
  rope: {
    'RotaryEmbedding-23': (cx, p, ins, node) => {
      const [x, cos] = node.inputs as [Node, Node, Node];
      if (!f32(...node.inputs) || x.rank !== 4) return undefined;
      // RotaryEmbedding-23 without position_ids wants cos/sin as [B, S, R/2]
      const [B, , S, D] = x.shape as [Dim, Dim, Dim, Dim];
      const half = lastDim(cos);
      const cs = padRank(cos.shape, 4);
      if (cs[1] !== 1 || !dimEq(cs[2]!, S) || !(cs[0] === 1 || dimEq(cs[0]!, B)) || !isStatic(half) || !isStatic(D)) return undefined;
      const table = (t: string) => {
        const r = cx.emit1('Reshape', [t, cx.dims([cs[0]!, S, half])]);
        return cs[0] === 1 && B !== 1 ? cx.emit1('Expand', [r, cx.dims([B, S, half])]) : r;
      };
      const attrs = { interleaved: { i: p.interleaved ? 1 : 0 }, ...(2 * half < D ? { rotary_embedding_dim: { i: 2 * half } } : {}) };
      return cx.emit1('RotaryEmbedding', [ins[0]!, table(ins[1]!), table(ins[2]!)], attrs);
    },
  },
  sdpa: {
    MultiHeadAttention: (cx, p, ins, node) => {
      const [q, k, v, mask] = node.inputs as [Node, Node, Node, Node | undefined];
      const [B, H, Sq, D] = q.shape as [Dim, Dim, Dim, Dim];
      if (!f32(q, k, v) || !isStatic(H) || !isStatic(D) || !dimEq(k.shape[1]!, H) || !dimEq(v.shape[3]!, D)) return undefined;
      let kpm: string[] = [];
      if (mask) {
        const m = padRank(mask.shape, 4);
        if (m[1] !== 1 || m[2] !== 1) return undefined; // only key-padding masks [B|1, 1, 1, Sk]
        const Sk = k.shape[2]!;
        let mk = cx.emit1('Reshape', [ins[3]!, cx.dims([m[0]!, Sk])]);
        if (m[0] === 1 && B !== 1) mk = cx.emit1('Expand', [mk, cx.dims([B, Sk])]);
        kpm = ['', cx.emit1('Cast', [mk], { to: { i: 6 } })]; // int32 key_padding_mask
      }
      const q3 = cx.emit1('Reshape', [cx.emit1('Transpose', [ins[0]!], { perm: { ints: [0, 2, 1, 3] } }), cx.dims([B, Sq, dimMul(H, D)])]);
      // mask_filter_value = the lowest f32: a fully masked row then averages uniformly, as the reference does
      const o3 = cx.emitDomain('com.microsoft', 1, 'MultiHeadAttention', [q3, ins[1]!, ins[2]!, ...kpm], { num_heads: { i: H }, scale: { f: p.scale }, mask_filter_value: { f: lowestOf('f32') } })[0]!;
      return cx.emit1('Transpose', [cx.emit1('Reshape', [o3, cx.dims([B, Sq, H, D])])], { perm: { ints: [0, 2, 1, 3] } });
    },
    'Attention-23-masked': (cx, p, ins, node) => (p.mask ? attention23(cx, p, ins, node) : undefined),
    'Attention-23': (cx, p, ins, node) => attention23(cx, p, ins, node),
  },
  add_rms_norm: {
    SkipSimplifiedLayerNormalization: (cx, p, ins, node) => {
      const [x, r] = node.inputs as [Node, Node];
      if (!f32(...node.inputs) || x.rank < 2 || !dimEq(x.rank, r.rank) || !x.shape.every((d, i) => dimEq(d, r.shape[i]!))) return undefined;
      if (!p.weight && !isStatic(lastDim(x))) return undefined; // (a ones gamma needs the static width)
      // both siblings (normed, sum) come from ONE node: outputs 0 and 3 (input_skip_bias_sum); the
      // key is the inputs, so a made-up ones gamma is made once too (keyed on it, the unweighted
      // pair emitted two nodes)
      const outs = cx.memo(`skipsln|${ins.join('|')}|${p.weight}|${p.eps}`, () => {
        const gamma = p.weight ? ins[2]! : ones(cx, lastDim(x))!;
        return cx.emitDomain('com.microsoft', 1, 'SkipSimplifiedLayerNormalization', [ins[0]!, ins[1]!, gamma], { epsilon: { f: p.eps } }, 4);
      });
      return p.index === 1 ? outs[3]! : outs[0]!;
    },
  },
  add_layer_norm: {
    SkipLayerNormalization: (cx, p, ins, node) => {
      const [x, r] = node.inputs as [Node, Node];
      if (!f32(...node.inputs) || x.rank < 2 || !x.shape.every((d, i) => dimEq(d, r.shape[i]!))) return undefined;
      if (!p.weight && !isStatic(lastDim(x))) return undefined; // (a ones gamma needs the static width)
      const beta = p.bias ? [ins[p.weight ? 3 : 2]!] : [];
      // both siblings (normed, sum) come from ONE node: outputs 0 and 3 (input_skip_bias_sum); the
      // key is the inputs, so a made-up ones gamma is made once too
      const outs = cx.memo(`skipln|${ins.join('|')}|${p.weight}|${p.bias}|${p.eps}`, () => {
        const gamma = p.weight ? ins[2]! : ones(cx, lastDim(x))!;
        return cx.emitDomain('com.microsoft', 1, 'SkipLayerNormalization', [ins[0]!, ins[1]!, gamma, ...beta], { epsilon: { f: p.eps } }, 4);
      });
      return p.index === 1 ? outs[3]! : outs[0]!;
    },
  },
  kv_sdpa: {
    'Attention-23-past': (cx, p, ins, node) => {
      const [q, k, v, pk, pv] = node.inputs as [Node, Node, Node, Node, Node];
      if (!f32(q, k, v, pk, pv)) return undefined;
      // the three siblings (output, present_key, present_value) come from ONE node
      const outs = cx.memo(`attn23past|${ins.join('|')}|${p.scale}`, () => {
        const bias = p.mask ? additiveMask(cx, ins[5]!, node.inputs[5]!, q.shape[2]!) : '';
        return cx.emit('Attention', [ins[0]!, ins[1]!, ins[2]!, bias, ins[3]!, ins[4]!], { scale: { f: p.scale } }, 3);
      });
      return outs[p.index]!;
    },
    'MultiHeadAttention-past': (cx, p, ins, node) => {
      const [q, k, v, pk, pv] = node.inputs as [Node, Node, Node, Node, Node];
      const [B, H, Sq, D] = q.shape as [Dim, Dim, Dim, Dim];
      // no grouped-query form: kv heads must equal query heads (else GroupQueryAttention, see targets.ts)
      if (!f32(q, k, v, pk, pv) || !isStatic(H) || !isStatic(D) || !dimEq(k.shape[1]!, H) || !dimEq(v.shape[3]!, D)) return undefined;
      const outs = cx.memo(`mhapast|${ins.join('|')}|${p.scale}`, () => {
        const to3 = (t: string) => cx.emit1('Reshape', [cx.emit1('Transpose', [t], { perm: { ints: [0, 2, 1, 3] } }), cx.dims([B, Sq, dimMul(H, D)])]);
        const bias = p.mask ? additiveMask(cx, ins[5]!, node.inputs[5]!, Sq) : '';
        const [o3, pk1, pv1] = cx.emitDomain('com.microsoft', 1, 'MultiHeadAttention', [to3(ins[0]!), to3(ins[1]!), to3(ins[2]!), '', '', bias, ins[3]!, ins[4]!], { num_heads: { i: H }, scale: { f: p.scale } }, 3) as [string, string, string];
        return [cx.emit1('Transpose', [cx.emit1('Reshape', [o3, cx.dims([B, Sq, H, D])])], { perm: { ints: [0, 2, 1, 3] } }), pk1, pv1];
      });
      return outs[p.index]!;
    },
  },
  swiglu: {
    QuickGelu: (cx, _p, ins, node) => (f32(...node.inputs) ? cx.emit1('Mul', [cx.emitDomain('com.microsoft', 1, 'QuickGelu', [ins[0]!], { alpha: { f: 1 } })[0]!, ins[1]!]) : undefined),
  },
  ada_rms_norm: {
    function: (cx, p, ins, node) => {
      const x = node.inputs[0]!;
      const w = p.weight ? ins[1]! : x.dtype === 'f32' ? ones(cx, lastDim(x)) : undefined;
      if (!w) return undefined;
      const [scale, shift] = p.weight ? ins.slice(2) : ins.slice(1);
      defineAdaRmsNorm(cx);
      return cx.emitDomain(UNIFUSION_DOMAIN, UNIFUSION_VERSION, 'AdaRMSNorm', [ins[0]!, w, scale!, shift!], { epsilon: { f: p.eps } })[0]!;
    },
  },
  layer_pool: {
    function: (cx, _p, ins) => {
      defineLayerPool(cx);
      return cx.emitDomain(UNIFUSION_DOMAIN, UNIFUSION_VERSION, 'LayerPool', [ins[0]!, ins[1]!])[0]!;
    },
  },
};

/** ai.onnx Attention-23 (4D q/k/v; GQA from the kv head count); the mask goes in as additive float. */
function attention23(cx: LowerCtx, p: FusedParams['sdpa'], ins: readonly string[], node: Node<'sdpa'>): string | undefined {
  const [q, k, v, mask] = node.inputs as [Node, Node, Node, Node | undefined];
  if (!f32(q, k, v)) return undefined;
  const extra = mask ? [additiveMask(cx, ins[3]!, mask, q.shape[2]!)] : [];
  return cx.emit1('Attention', [ins[0]!, ins[1]!, ins[2]!, ...extra], { scale: { f: p.scale } });
}

/** A bool attention mask as the additive float mask Attention-23 / MultiHeadAttention take, rank 4, [.., Sq, Sk]. */
function additiveMask(cx: LowerCtx, name: string, mask: Node, Sq: Dim): string {
  const m = padRank(mask.shape, 4);
  // ORT 1.30 CPU rejects masks that broadcast over the query axis ([B,1,1,L], survey part 1) and
  // treats exactly the lowest f32 as -inf (a fully masked row would give 0, not the reference's
  // uniform average): a value just above it keeps the reference semantics.
  let fm = cx.emit1('Where', [name, cx.scalar(0, 'f32'), cx.scalar(-3e38, 'f32')]);
  if (m.length !== mask.rank) fm = cx.emit1('Reshape', [fm, cx.dims(m)]);
  if (m[2] === 1 && Sq !== 1) fm = cx.emit1('Expand', [fm, cx.dims([m[0]!, m[1]!, Sq, m[3]!])]);
  return fm;
}

// ---------------------------------------------------------------------------
// ai.unifusion custom ops: node + model-local function body (runs on any ONNX runtime)

export const UNIFUSION_DOMAIN = 'ai.unifusion';
export const UNIFUSION_VERSION = 1;

function defineAdaRmsNorm(cx: LowerCtx): void {
  cx.defineFunction(
    {
      domain: UNIFUSION_DOMAIN,
      version: UNIFUSION_VERSION,
      name: 'AdaRMSNorm',
      inputs: ['X', 'weight', 'scale', 'shift'],
      outputs: ['Y'],
      attributes: ['epsilon'],
      doc: 'adaLN-modulated RMSNorm over the last axis: RMSNorm(X, weight, epsilon) * (1 + scale) + shift, statistics in float32',
    },
    (fx, [x, w, scale, shift]) => {
      const F = { to: { i: 1 } };
      const x32 = fx.emit1('Cast', [x!], F);
      const n = fx.emit1('RMSNormalization', [x32, fx.emit1('Cast', [w!], F)], { axis: { i: -1 }, epsilon: { ref: 'epsilon', kind: 'f' }, stash_type: { i: 1 } });
      const s1 = fx.emit1('Add', [fx.emit1('Cast', [scale!], F), fx.scalar(1, 'f32')]);
      const y = fx.emit1('Add', [fx.emit1('Mul', [n, s1]), fx.emit1('Cast', [shift!], F)]);
      return [fx.emit1('CastLike', [y, x!])];
    },
  );
}

function defineLayerPool(cx: LowerCtx): void {
  cx.defineFunction(
    {
      domain: UNIFUSION_DOMAIN,
      version: UNIFUSION_VERSION,
      name: 'LayerPool',
      inputs: ['X', 'weight'],
      outputs: ['Y'],
      attributes: [],
      doc: "LAP's pooling over the layer axis: Y[..., c] = sum_i weight[0, i] * X[..., i, c] (X [..., n, C], weight [1, n])",
    },
    (fx, [x, w]) => [fx.emit1('Squeeze', [fx.emit1('MatMul', [w!, x!]), fx.i64([-2])])],
  );
}

// ---------------------------------------------------------------------------
// Shape rules

function sameAs(t: TensorType, want: readonly Dim[], what: string, op: string): void {
  if (t.shape.length !== want.length || !t.shape.every((d, i) => dimEq(d, want[i]!))) throw new OpError(`${op}: ${what} ${typeStr(t)} must have shape ${shapeStr(want)}`);
}

/** `t` broadcasts against `x` without growing it. */
function broadcastsInto(t: TensorType, x: TensorType, what: string, op: string): void {
  const out = broadcastShapes([x.shape, t.shape]);
  if (out.length !== x.shape.length || !out.every((d, i) => dimEq(d, x.shape[i]!))) throw new OpError(`${op}: ${what} ${typeStr(t)} does not broadcast into ${typeStr(x)}`);
}

function floatIns(ins: readonly TensorType[], op: string): void {
  ins.forEach((t, i) => requireFloat(t, `${op} input ${i}`));
}

function normInfer(op: string, nParams: number) {
  return (ins: readonly TensorType[]): TensorType => {
    const x = ins[0]!;
    floatIns(ins, op);
    if (x.shape.length < 1) throw new OpError(`${op}: input ${typeStr(x)} needs a last axis`);
    if (ins.length !== 1 + nParams) throw new OpError(`${op}: expected ${1 + nParams} inputs, got ${ins.length}`);
    for (const t of ins.slice(1)) sameAs(t, [x.shape[x.shape.length - 1]!], 'weight/bias', op);
    return x;
  };
}

function fused<K extends FusedKind>(kind: K, arity: number | readonly [number, number], infer: (p: FusedParams[K], ins: readonly TensorType[]) => TensorType): OpDef<K> {
  return {
    arity,
    infer,
    eval: (p, ins) => evalByDecomposition(kind, p, ins),
    vjp: (DEDICATED_VJP[kind] as Vjp<K> | undefined) ?? vjpByDecomposition(kind),
    lower: (cx, p, ins, node) => {
      const impls = LOWER[kind] as LowerSet<K>;
      for (const l of TARGET_TABLE[cx.target].lower[kind].use) {
        if (l === 'decompose') break;
        const r = impls[l]?.(cx, p, ins, node);
        if (r !== undefined) return r;
      }
      return lowerDecomposed(cx, kind, p, ins, node);
    },
  };
}

export const FUSED_OPS = {
  rms_norm: fused('rms_norm', [1, 2], (p, ins) => normInfer('rms_norm', p.weight ? 1 : 0)(ins)),
  layer_norm: fused('layer_norm', [1, 3], (p, ins) => normInfer('layer_norm', (p.weight ? 1 : 0) + (p.bias ? 1 : 0))(ins)),
  gelu: fused('gelu', 1, (_p, [x]) => (requireFloat(x!, 'gelu input'), x!)),
  rope: fused('rope', 3, (_p, ins) => {
    const [x, cos, sin] = ins as [TensorType, TensorType, TensorType];
    floatIns(ins, 'rope');
    if (x.dtype !== cos.dtype || x.dtype !== sin.dtype) throw new OpError(`rope: dtypes differ: ${ins.map(typeStr).join(', ')}`);
    if (x.shape.length < 2 || cos.shape.length < 2) throw new OpError(`rope: x ${typeStr(x)} and cos ${typeStr(cos)} need [..., S, D] / [..., S, R/2]`);
    sameAs(sin, cos.shape, 'sin', 'rope');
    const D = x.shape[x.shape.length - 1]!, half = cos.shape[cos.shape.length - 1]!;
    if (!isStatic(D) || !isStatic(half) || 2 * half > D) throw new OpError(`rope: the table width ${dimStr(half)} (R/2) must be static with R <= head dim ${dimStr(D)}`);
    broadcastsInto({ dtype: x.dtype, shape: [...cos.shape.slice(0, -1), 1] }, { dtype: x.dtype, shape: [...x.shape.slice(0, -1), 1] }, 'cos/sin', 'rope');
    return x;
  }),
  sdpa: fused('sdpa', [3, 4], (p, ins) => {
    const [q, k, v, mask] = ins as [TensorType, TensorType, TensorType, TensorType | undefined];
    floatIns([q, k, v], 'sdpa');
    if (q.shape.length !== 4 || k.shape.length !== 4 || v.shape.length !== 4) throw new OpError(`sdpa needs [B, H, S, D] q, k, v: got ${typeStr(q)}, ${typeStr(k)}, ${typeStr(v)}`);
    if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw new OpError(`sdpa: dtypes differ: ${typeStr(q)}, ${typeStr(k)}, ${typeStr(v)}`);
    const [B, H, Sq, D] = q.shape as [Dim, Dim, Dim, Dim];
    const [, KV, Sk] = k.shape as [Dim, Dim, Dim];
    if (!isStatic(H) || !isStatic(KV) || H % KV !== 0) throw new OpError(`sdpa: ${dimStr(H)} query heads is not a multiple of ${dimStr(KV)} kv heads`);
    sameAs(k, [B, KV, Sk, D], 'k', 'sdpa');
    if (!dimEq(v.shape[0]!, B) || !dimEq(v.shape[1]!, KV) || !dimEq(v.shape[2]!, Sk)) throw new OpError(`sdpa: v ${typeStr(v)} does not match k ${typeStr(k)}`);
    if (p.mask !== (mask !== undefined)) throw new OpError(`sdpa: params say mask=${p.mask} but ${ins.length} inputs were given`);
    if (mask) {
      if (mask.dtype !== 'bool' || mask.shape.length > 4) throw new OpError(`sdpa: mask must be bool of rank <= 4, got ${typeStr(mask)}`);
      broadcastsInto(mask, { dtype: 'bool', shape: [B, H, Sq, Sk] }, 'mask', 'sdpa');
    }
    return { dtype: q.dtype, shape: [B, H, Sq, v.shape[3]!] };
  }),
  add_rms_norm: fused('add_rms_norm', [2, 3], (p, ins) => {
    floatIns(ins, 'add_rms_norm');
    const [x, r] = ins as [TensorType, TensorType];
    sameAs(r, x.shape, 'residual', 'add_rms_norm');
    if (r.dtype !== x.dtype) throw new OpError(`add_rms_norm: dtypes differ: ${ins.map(typeStr).join(', ')}`);
    if (ins.length !== (p.weight ? 3 : 2)) throw new OpError(`add_rms_norm: expected ${p.weight ? 3 : 2} inputs, got ${ins.length}`);
    if (p.weight) sameAs(ins[2]!, [x.shape[x.shape.length - 1]!], 'weight', 'add_rms_norm');
    if (p.index !== 0 && p.index !== 1) throw new OpError(`add_rms_norm: index ${p.index} is not 0 (normed) or 1 (sum)`);
    return x;
  }),
  add_layer_norm: fused('add_layer_norm', [2, 4], (p, ins) => {
    floatIns(ins, 'add_layer_norm');
    const [x, r] = ins as [TensorType, TensorType];
    sameAs(r, x.shape, 'residual', 'add_layer_norm');
    if (r.dtype !== x.dtype) throw new OpError(`add_layer_norm: dtypes differ: ${ins.map(typeStr).join(', ')}`);
    const n = 2 + (p.weight ? 1 : 0) + (p.bias ? 1 : 0);
    if (ins.length !== n) throw new OpError(`add_layer_norm: expected ${n} inputs, got ${ins.length}`);
    for (const t of ins.slice(2)) sameAs(t, [x.shape[x.shape.length - 1]!], 'weight/bias', 'add_layer_norm');
    if (p.index !== 0 && p.index !== 1) throw new OpError(`add_layer_norm: index ${p.index} is not 0 (normed) or 1 (sum)`);
    return x;
  }),
  kv_sdpa: fused('kv_sdpa', [5, 6], (p, ins) => {
    const [q, k, v, pk, pv, mask] = ins as [TensorType, TensorType, TensorType, TensorType, TensorType, TensorType | undefined];
    floatIns([q, k, v, pk, pv], 'kv_sdpa');
    for (const t of [q, k, v, pk, pv]) if (t.shape.length !== 4) throw new OpError(`kv_sdpa needs [B, H, S, D] q, k, v, past_k, past_v: got ${typeStr(t)}`);
    if (![k, v, pk, pv].every((t) => t.dtype === q.dtype)) throw new OpError(`kv_sdpa: dtypes differ: ${ins.map(typeStr).join(', ')}`);
    const [B, H, S, D] = q.shape as [Dim, Dim, Dim, Dim];
    const [, KV, , Dv] = v.shape as [Dim, Dim, Dim, Dim];
    const P = pk.shape[2]!;
    if (!isStatic(H) || !isStatic(KV) || H % KV !== 0) throw new OpError(`kv_sdpa: ${dimStr(H)} query heads is not a multiple of ${dimStr(KV)} kv heads`);
    sameAs(k, [B, KV, S, D], 'k', 'kv_sdpa');
    sameAs(v, [B, KV, S, Dv], 'v', 'kv_sdpa');
    sameAs(pk, [B, KV, P, D], 'past_k', 'kv_sdpa');
    sameAs(pv, [B, KV, P, Dv], 'past_v', 'kv_sdpa');
    const T = dimAdd(P, S);
    if (p.mask !== (mask !== undefined)) throw new OpError(`kv_sdpa: params say mask=${p.mask} but ${ins.length} inputs were given`);
    if (mask) {
      if (mask.dtype !== 'bool' || mask.shape.length > 4) throw new OpError(`kv_sdpa: mask must be bool of rank <= 4, got ${typeStr(mask)}`);
      broadcastsInto(mask, { dtype: 'bool', shape: [B, H, S, T] }, 'mask', 'kv_sdpa');
    }
    if (p.index === 1) return { dtype: q.dtype, shape: [B, KV, T, D] };
    if (p.index === 2) return { dtype: q.dtype, shape: [B, KV, T, Dv] };
    if (p.index !== 0) throw new OpError(`kv_sdpa: index ${p.index} is not 0 (output), 1 (present key) or 2 (present value)`);
    return { dtype: q.dtype, shape: [B, H, S, Dv] };
  }),
  swiglu: fused('swiglu', 2, (_p, ins) => {
    floatIns(ins, 'swiglu');
    if (ins[0]!.dtype !== ins[1]!.dtype) throw new OpError(`swiglu: dtypes differ: ${ins.map(typeStr).join(', ')}`);
    return { dtype: ins[0]!.dtype, shape: broadcastShapes(ins.map((t) => t.shape)) };
  }),
  ada_rms_norm: fused('ada_rms_norm', [3, 4], (p, ins) => {
    floatIns(ins, 'ada_rms_norm');
    const x = ins[0]!;
    if (ins.length !== (p.weight ? 4 : 3)) throw new OpError(`ada_rms_norm: expected ${p.weight ? 4 : 3} inputs, got ${ins.length}`);
    if (p.weight) sameAs(ins[1]!, [x.shape[x.shape.length - 1]!], 'weight', 'ada_rms_norm');
    for (const t of ins.slice(p.weight ? 2 : 1)) {
      if (t.dtype !== x.dtype) throw new OpError(`ada_rms_norm: scale/shift ${typeStr(t)} must have x's dtype ${x.dtype}`);
      broadcastsInto(t, x, 'scale/shift', 'ada_rms_norm');
    }
    return x;
  }),
  layer_pool: fused('layer_pool', 2, (_p, [x, w]) => {
    floatIns([x!, w!], 'layer_pool');
    if (x!.shape.length < 2) throw new OpError(`layer_pool: x ${typeStr(x!)} needs [..., n, C]`);
    if (x!.dtype !== w!.dtype) throw new OpError(`layer_pool: dtypes differ: ${typeStr(x!)}, ${typeStr(w!)}`);
    sameAs(w!, [1, x!.shape[x!.shape.length - 2]!], 'weight', 'layer_pool');
    return { dtype: x!.dtype, shape: [...x!.shape.slice(0, -2), x!.shape[x!.shape.length - 1]!] };
  }),
} satisfies OpGroup<FusedKind>;
