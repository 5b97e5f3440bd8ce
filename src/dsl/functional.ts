// Composite ops written with primitives only, so they need no lowering,
// reference or gradient of their own. Fusion passes may later recognise them.
import { dimMul, dimStr, isStatic, type Dim } from '../ir/dims.ts';
import type { DType } from '../ir/dtype.ts';
import { asTensor, concat, constant, range, Tensor, type TensorLike } from './tensor.ts';
import { currentTrace, DSLError } from './trace.ts';
import { OpError } from '../ir/node.ts';
import { grad as gradImpl } from '../autodiff/grad.ts';
import { userSite } from './site.ts';
import { checkChoice, checkOptions } from './check.ts';

function fail(msg: string): never {
  throw new DSLError(msg, userSite());
}

export function linear(x: Tensor, weight: TensorLike, bias?: TensorLike): Tensor {
  // weight in the PyTorch layout [out, in]
  const y = x.matmul(asTensor(weight, x).T);
  return bias === undefined ? y : y.add(asTensor(bias, x));
}

/** Lowest finite value of a float dtype: masking with it cannot make NaN rows. */
export function lowest(dtype: DType): number {
  return dtype === 'f16' ? -65504 : dtype === 'bf16' ? -3.3895313892515355e38 : dtype === 'f64' ? -Number.MAX_VALUE : -3.4028234663852886e38;
}

export function silu(x: Tensor): Tensor {
  return x.mul(x.sigmoid());
}

export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  checkChoice('gelu approximate', approximate, ['none', 'tanh'] as const);
  if (approximate === 'tanh') {
    const inner = x.add(x.mul(x).mul(x).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
    return x.mul(0.5).mul(inner.tanh().add(1));
  }
  return x.mul(0.5).mul(x.mul(Math.SQRT1_2).erf().add(1));
}

/** RMSNorm over the last axis; statistics in f32 for low-precision inputs (as Hugging Face does). */
export function rmsNorm(x: Tensor, weight: TensorLike | undefined, eps = 1e-6, opts: { offset?: number } = {}): Tensor {
  checkOptions('rmsNorm', opts, ['offset']);
  const xf = x.upcast();
  const y = xf.mul(xf.square().mean(-1, true).add(eps).rsqrt());
  if (weight === undefined) return y.cast(x.dtype);
  let w = asTensor(weight, xf).cast(xf.dtype);
  if (opts.offset) w = w.add(opts.offset); // Gemma stores (scale - 1)
  return y.mul(w).cast(x.dtype);
}

export function layerNorm(x: Tensor, weight?: TensorLike, bias?: TensorLike, eps = 1e-5): Tensor {
  const xf = x.upcast();
  const c = xf.sub(xf.mean(-1, true));
  let y = c.mul(c.square().mean(-1, true).add(eps).rsqrt());
  if (weight !== undefined) y = y.mul(asTensor(weight, y).cast(y.dtype));
  if (bias !== undefined) y = y.add(asTensor(bias, y).cast(y.dtype));
  return y.cast(x.dtype);
}

/** GroupNorm over [N, C, *spatial]. */
export function groupNorm(x: Tensor, groups: number, weight?: TensorLike, bias?: TensorLike, eps = 1e-6): Tensor {
  if (x.rank < 2) fail(`groupNorm needs [N, C, ...], got ${x}`);
  const c = x.dim(1);
  if (isStatic(c) && c % groups !== 0) fail(`groupNorm: ${c} channels do not split into ${groups} groups`);
  const xf = x.upcast();
  const g = xf.reshape(x.dim(0), groups, -1);
  const cen = g.sub(g.mean(-1, true));
  let y = cen.mul(cen.square().mean(-1, true).add(eps).rsqrt()).reshape(x.shape);
  const bshape = [c, ...Array.from({ length: x.rank - 2 }, () => 1 as Dim)];
  if (weight !== undefined) y = y.mul(asTensor(weight, y).cast(y.dtype).reshape(bshape));
  if (bias !== undefined) y = y.add(asTensor(bias, y).cast(y.dtype).reshape(bshape));
  return y.cast(x.dtype);
}

/** SwiGLU feed-forward: down(silu(gate(x)) * up(x)), weights [out, in]. */
export function swiglu(x: Tensor, gate: TensorLike, up: TensorLike, down: TensorLike): Tensor {
  return linear(silu(linear(x, gate)).mul(linear(x, up)), down);
}

export type RopeStyle = 'half' | 'interleaved';

function invFreq(dim: number, theta: number): number[] {
  return Array.from({ length: dim / 2 }, (_, i) => 1 / theta ** ((2 * i) / dim));
}

/**
 * Rotary embedding of `x` [..., S, D] over sections of the last axis: section j
 * (width dims[j]) is rotated by positions[j] ([S] or [B, S], broadcast over heads).
 * One section of width D is ordinary 1D RoPE; two halves with row/col positions
 * is axial 2D RoPE; Qwen2.5-VL's M-RoPE is three sections.
 * 'half' rotates (x[:d/2], x[d/2:]) as Hugging Face's rotate_half does; 'interleaved'
 * rotates pairs (x[2i], x[2i+1]) as GPT-J / FLUX do.
 */
export function rope(x: Tensor, positions: readonly Tensor[], dims: readonly number[], opts: { theta?: number; style?: RopeStyle; headsAxis?: boolean } = {}): Tensor {
  checkOptions('rope', opts, ['theta', 'style', 'headsAxis']);
  const theta = opts.theta ?? 10000;
  const style = checkChoice('rope style', opts.style ?? 'half', ['half', 'interleaved'] as const);
  const D = x.dim(-1);
  if (!isStatic(D)) fail(`rope: head dim of ${x} must be static`);
  if (positions.length !== dims.length) fail(`rope: ${positions.length} position tensors for ${dims.length} sections`);
  const total = dims.reduce((a, b) => a + b, 0);
  if (total > D || dims.some((d) => d % 2 !== 0)) fail(`rope: sections [${dims}] must be even and fit head dim ${D}`);
  const pieces = total < D ? x.split(-1, [...dims, D - total]) : dims.length === 1 ? [x] : x.split(-1, dims);
  const out = dims.map((d, j) => rotate(pieces[j]!, positions[j]!, d, theta, style, x.rank));
  if (total < D) out.push(pieces[dims.length]!);
  return out.length === 1 ? out[0]! : concat(out, -1);
}

function rotate(x: Tensor, pos: Tensor, d: number, theta: number, style: RopeStyle, rank: number): Tensor {
  const cdt: DType = x.dtype === 'f64' ? 'f64' : 'f32';
  // angles [.., S, d/2] from positions [S] or [B, S]
  const p = pos.cast(cdt).unsqueeze(-1);
  const ang = p.mul(constant(invFreq(d, theta), cdt));
  // align to x [B, H, S, *] by inserting the heads axis when positions are batched
  const align = (t: Tensor) => {
    let r = t;
    if (r.rank === 3 && rank === 4) r = r.unsqueeze(1);
    return r;
  };
  const xf = x.cast(cdt);
  if (style === 'half') {
    const emb = concat([ang, ang], -1);
    const cos = align(emb.cos());
    const sin = align(emb.sin());
    const [x1, x2] = xf.split(-1, [d / 2, d / 2]) as [Tensor, Tensor];
    const rot = concat([x2.neg(), x1], -1);
    return xf.mul(cos).add(rot.mul(sin)).cast(x.dtype);
  }
  const cos = align(ang.cos()).unsqueeze(-1);
  const sin = align(ang.sin()).unsqueeze(-1);
  const pairs = xf.reshape([...xf.shape.slice(0, -1), d / 2, 2]);
  const [a, b] = pairs.split(-1, [1, 1]) as [Tensor, Tensor];
  const ra = a.mul(cos).sub(b.mul(sin));
  const rb = a.mul(sin).add(b.mul(cos));
  return concat([ra, rb], -1).reshape(xf.shape).cast(x.dtype);
}

/** Row and column indices (i64, [h*w]) of a row-major h x w grid. */
export function gridPositions(h: Dim, w: Dim): [Tensor, Tensor] {
  const idx = range(dimMul(h, w));
  const wt = isStatic(w) ? constant(w, 'i64') : range(w).max(0).add(1); // runtime w for symbolic grids
  const row = idx.div(wt);
  const col = idx.sub(row.mul(wt));
  return [row, col];
}

export interface AttentionMaskOptions {
  causal?: boolean;
  /** bool [B, Sk]: true = attend (padding mask) */
  keyMask?: Tensor;
  /** bool, broadcastable to [B, H, Sq, Sk]: true = attend */
  mask?: Tensor;
  scale?: number;
}

/**
 * Scaled dot-product attention. q [B, H, Sq, D], k/v [B, KV, Sk, D] with H a
 * multiple of KV (grouped-query: query heads share kv head h / (H/KV), done by
 * broadcasting instead of repeating K and V). Masked scores are set to the
 * dtype's lowest finite value, so a fully masked row gives a uniform average
 * rather than NaN that would leak through later layers.
 */
export function sdpa(q: Tensor, k: Tensor, v: Tensor, opts: AttentionMaskOptions = {}): Tensor {
  checkOptions('sdpa', opts, ['causal', 'keyMask', 'mask', 'scale']);
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) fail(`sdpa needs [B, H, S, D] tensors, got ${q}, ${k}, ${v}`);
  const [B, H, Sq, D] = q.shape as [Dim, Dim, Dim, Dim];
  const KV = k.dim(1), Sk = k.dim(2);
  if (!isStatic(H) || !isStatic(KV) || H % KV !== 0) fail(`sdpa: ${dimStr(H)} query heads is not a multiple of ${dimStr(KV)} kv heads`);
  const G = H / KV;
  const scale = opts.scale ?? 1 / Math.sqrt(isStatic(D) ? D : fail('sdpa: head dim must be static'));
  const grouped = G > 1;
  const qg = grouped ? q.reshape(B, KV, G, Sq, D) : q;
  const kg = grouped ? k.unsqueeze(2) : k;
  const vg = grouped ? v.unsqueeze(2) : v;
  let s = qg.mul(scale).matmul(kg.T); // [B, (KV, G | H), Sq, Sk]
  let keep: Tensor | undefined;
  const and = (m: Tensor) => (keep = keep ? keep.and(m) : m);
  if (opts.causal) {
    const qi = range(Sq).unsqueeze(-1);
    const kj = range(Sk).unsqueeze(0);
    // queries are the last Sq positions of the Sk keys (KV cache alignment)
    const off = isStatic(Sq) && isStatic(Sk) ? Sk - Sq : 0;
    if (!isStatic(Sq) || !isStatic(Sk)) if (dimStr(Sq) !== dimStr(Sk)) fail(`sdpa causal with symbolic Sq ${dimStr(Sq)} != Sk ${dimStr(Sk)}: pass an explicit mask`);
    and(qi.add(off).ge(kj));
  }
  if (opts.keyMask) {
    if (opts.keyMask.dtype !== 'bool' || opts.keyMask.rank !== 2) fail(`sdpa keyMask must be bool [B, Sk], got ${opts.keyMask}`);
    and(opts.keyMask.reshape(opts.keyMask.dim(0), 1, 1, opts.keyMask.dim(1)));
  }
  if (opts.mask) {
    if (opts.mask.dtype !== 'bool') fail(`sdpa mask must be bool (true = attend), got ${opts.mask}`);
    and(opts.mask);
  }
  if (keep) {
    let m: Tensor = keep;
    if (grouped) {
      // [.., Sq, Sk] masks broadcast over [B, KV, G, Sq, Sk]: insert the group axis after heads
      while (m.rank < 4) m = m.unsqueeze(0);
      m = m.dim(1) === 1 ? m.unsqueeze(2) : m.reshape(m.dim(0), KV, G, m.dim(2), m.dim(3));
    }
    s = m.where(s, lowest(s.dtype));
  }
  const o = s.softmax(-1).matmul(vg);
  return grouped ? o.reshape(B, H, Sq, D) : o;
}

export function headSplit(x: Tensor, heads: number, headDim: number): Tensor {
  // [B, S, heads*headDim] -> [B, heads, S, headDim]
  return x.reshape(x.dim(0), x.dim(1), heads, headDim).transpose(0, 2, 1, 3);
}

export function headMerge(x: Tensor): Tensor {
  // [B, H, S, D] -> [B, S, H*D]
  const [B, H, S, D] = x.shape as [Dim, Dim, Dim, Dim];
  return x.transpose(0, 2, 1, 3).reshape(B, S, dimMul(H, D));
}


/** Gradients of a scalar `loss` with respect to tensors or parameters of the active trace. */
export function gradients(loss: Tensor, wrt: readonly (Tensor | { readonly t: Tensor })[]): Tensor[] {
  const nodes = wrt.map((w) => (w instanceof Tensor ? w : w.t).node);
  try {
    const tr = currentTrace();
    return gradImpl(tr.builder, loss.node, nodes, { regions: tr.regions }).map((n) => new Tensor(n));
  } catch (e) {
    if (e instanceof OpError) throw new DSLError(e.message, userSite());
    throw e;
  }
}

/**
 * Activation recomputation (gradient checkpointing): `fn(...xs)` runs as usual in
 * the forward; gradients replay it instead of keeping its intermediate values.
 */
export function recompute(fn: (...xs: Tensor[]) => Tensor, ...xs: Tensor[]): Tensor {
  const y = fn(...xs);
  currentTrace().regions.push({ inputs: xs.map((x) => x.node), output: y.node, replay: (ins) => fn(...ins.map((n) => new Tensor(n))).node });
  return y;
}
