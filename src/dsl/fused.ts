// DSL constructors of the fused ops (src/ir/ops/fused.ts), for code that wants a
// fused node directly (composites, user code, fusion-rule patterns). Each is
// differentiable (its VJP is its decomposition's) and evaluates through its
// decomposition in the reference interpreter.
import { applyOp, asTensor, type Tensor, type TensorLike } from './tensor.ts';

export const fused = {
  /** x * rsqrt(mean(x^2, -1) + eps) [* weight] */
  rmsNorm(x: Tensor, weight: TensorLike | undefined, eps = 1e-6): Tensor {
    return applyOp('rms_norm', { eps, weight: weight !== undefined }, weight === undefined ? [x] : [x, asTensor(weight, x)]);
  },
  /** LayerNorm over the last axis */
  layerNorm(x: Tensor, weight?: TensorLike, bias?: TensorLike, eps = 1e-5): Tensor {
    const ins = [x, ...(weight !== undefined ? [asTensor(weight, x)] : []), ...(bias !== undefined ? [asTensor(bias, x)] : [])];
    return applyOp('layer_norm', { eps, weight: weight !== undefined, bias: bias !== undefined }, ins);
  },
  gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
    return applyOp('gelu', { approximate }, [x]);
  },
  /** rotate the first 2 * cos.shape[-1] channels of x [..., S, D] by per-pair cos/sin tables [..., S, R/2] */
  rope(x: Tensor, cos: Tensor, sin: Tensor, opts: { interleaved?: boolean } = {}): Tensor {
    return applyOp('rope', { interleaved: opts.interleaved ?? false }, [x, cos, sin]);
  },
  /** attention of q [B, H, Sq, D] over k/v [B, KV, Sk, D]; mask bool broadcasting to [B, H, Sq, Sk], true = attend */
  sdpa(q: Tensor, k: Tensor, v: Tensor, opts: { scale?: number; mask?: Tensor } = {}): Tensor {
    const scale = opts.scale ?? 1 / Math.sqrt(q.dim(-1) as number);
    return applyOp('sdpa', { scale, mask: opts.mask !== undefined }, opts.mask ? [q, k, v, opts.mask] : [q, k, v]);
  },
  /** [sdpa(q, concat(pastK, k), concat(pastV, v), mask), concat(pastK, k), concat(pastV, v)] (attention over a KV cache + the grown cache) */
  kvSdpa: (q: Tensor, k: Tensor, v: Tensor, pastK: Tensor, pastV: Tensor, opts: { scale?: number; mask?: Tensor } = {}): [Tensor, Tensor, Tensor] => kvSdpa(q, k, v, pastK, pastV, opts),
  /** silu(a) * b */
  swiglu(a: Tensor, b: Tensor): Tensor {
    return applyOp('swiglu', {}, [a, b]);
  },
  /** ai.unifusion.AdaRMSNorm: rmsNorm(x, weight) * (1 + scale) + shift */
  adaRmsNorm(x: Tensor, weight: TensorLike | undefined, scale: Tensor, shift: Tensor, eps = 1e-6): Tensor {
    return applyOp('ada_rms_norm', { eps, weight: weight !== undefined }, weight === undefined ? [x, scale, shift] : [x, asTensor(weight, x), scale, shift]);
  },
  /** [rmsNorm(x + r, weight), x + r] (residual stream + pre-norm) */
  addRmsNorm: (x: Tensor, r: Tensor, weight: TensorLike | undefined, eps = 1e-6): [Tensor, Tensor] => addRmsNorm(x, r, weight, eps),
  /** [layerNorm(x + r, weight, bias), x + r] (residual stream + pre-LayerNorm) */
  addLayerNorm: (x: Tensor, r: Tensor, weight?: TensorLike, bias?: TensorLike, eps = 1e-5): [Tensor, Tensor] => addLayerNorm(x, r, weight, bias, eps),
  /** ai.unifusion.LayerPool: sum_i weight[0, i] * x[..., i, :] for x [..., n, C], weight [1, n] */
  layerPool(x: Tensor, weight: TensorLike): Tensor {
    return applyOp('layer_pool', {}, [x, asTensor(weight, x)]);
  },
};

/** Residual add + RMSNorm as one fused pair: [rmsNorm(x + r, weight), x + r]. */
export function addRmsNorm(x: Tensor, r: Tensor, weight: TensorLike | undefined, eps = 1e-6): [Tensor, Tensor] {
  const ins = weight === undefined ? [x, r] : [x, r, asTensor(weight, x)];
  const p = { eps, weight: weight !== undefined };
  return [applyOp('add_rms_norm', { ...p, index: 0 }, ins), applyOp('add_rms_norm', { ...p, index: 1 }, ins)];
}

/** Attention over a KV cache as one fused triple: [output, present key, present value]. */
export function kvSdpa(q: Tensor, k: Tensor, v: Tensor, pastK: Tensor, pastV: Tensor, opts: { scale?: number; mask?: Tensor } = {}): [Tensor, Tensor, Tensor] {
  const p = { scale: opts.scale ?? 1 / Math.sqrt(q.dim(-1) as number), mask: opts.mask !== undefined };
  const ins = [q, k, v, pastK, pastV, ...(opts.mask ? [opts.mask] : [])];
  return [0, 1, 2].map((index) => applyOp('kv_sdpa', { ...p, index: index as 0 | 1 | 2 }, ins)) as [Tensor, Tensor, Tensor];
}

/** Residual add + LayerNorm as one fused pair: [layerNorm(x + r, weight, bias), x + r]. */
export function addLayerNorm(x: Tensor, r: Tensor, weight?: TensorLike, bias?: TensorLike, eps = 1e-5): [Tensor, Tensor] {
  const ins = [x, r, ...(weight !== undefined ? [asTensor(weight, x)] : []), ...(bias !== undefined ? [asTensor(bias, x)] : [])];
  const p = { eps, weight: weight !== undefined, bias: bias !== undefined };
  return [applyOp('add_layer_norm', { ...p, index: 0 }, ins), applyOp('add_layer_norm', { ...p, index: 1 }, ins)];
}
