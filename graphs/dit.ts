// The latent DiT (UniFusion §2.2, §4.1): 2x2 patchify, one sequence of
// [condition tokens; image tokens] under full self-attention, adaLN modulation
// from the timestep, 2D RoPE on image tokens, QK-norm, unpatchify. Its output is
// the rectified-flow velocity v = eps - x0 at x_t = (1 - t) x0 + t eps.
//
// Layout and names follow Krea 2's SingleStreamDiT (the public single-stream DiT
// that pairs with its TextFusionTransformer):
// - first:  Linear(C*p*p -> D) on patches flattened as (c, ph, pw);
// - tmlp:   sinusoidal(1000 t, tdim; cos | sin) -> Linear -> GELU(tanh) -> Linear = temb [B, D];
// - tproj:  GELU(tanh) -> Linear(D -> 6D) = tvec, shared by all blocks (adaLN-single);
// - blocks: mod.lin [6D] added to tvec -> (prescale, preshift, pregate, postscale,
//           postshift, postgate); x += pregate * attn((1 + prescale) prenorm(x) + preshift),
//           x += postgate * mlp((1 + postscale) postnorm(x) + postshift);
// - last:   (1 + temb + lin[0]) norm(x) + (temb + lin[1]) -> Linear(D -> C*p*p).
// adaLN-Zero: tproj.fc and every mod.lin start at zero, so every gate is 0 and each
// block is the identity at init; last.linear starts at zero (output 0 at init).
//
// Positions: image token (r, c) of the h x w patch grid rotates q/k with axial RoPE
// on interleaved pairs (FLUX / Krea 2 style): the head dim is split into
// ropeAxes; with two axes they take (row, col); with three (Krea 2's
// [hd - 12(hd/16), 6(hd/16), 6(hd/16)]) the first is a frame/reference axis that is
// 0 for every token here, i.e. left unrotated. Condition tokens get position 0 on
// every axis, i.e. no rotation (as Krea 2 does): their order is already in the
// VLM features and the refiner, and 1D text positions would collide with the
// image grid's row/col values.
//
// Latents are [B, C, 2h, 2w] with symbolic h, w (patch rows and columns), so one
// model serves every resolution and aspect ratio.
import { concat, constant, defineGraph, dim, gelu, gridPositions, input, Linear, Module, Param, rope, type Tensor } from '../src/dsl/index.ts';
import { dimDiv, dimMul, type Dim } from '../src/ir/dims.ts';
import { FeedForward, FusionAttention, ScaleRMSNorm, type AttendCall, type BlockShape } from './lap.ts';
import { PRESETS } from './presets.ts';

export interface DiTConfig extends BlockShape {
  /** number of blocks */
  depth: number;
  /** latent channels C (FLUX/SD3 VAE: 16) */
  channels: number;
  /** patch size p (2) */
  patch: number;
  /** width of the sinusoidal timestep features (Krea 2: 256) */
  tdim: number;
  /** RoPE base */
  theta: number;
  /** head-dim split: [row, col] or [frame, row, col]; sums to the head dim, even entries */
  ropeAxes: number[];
}

/** Krea 2's RoPE axes for a head dim: [hd - 12(hd/16), 6(hd/16), 6(hd/16)]. */
export function kreaRopeAxes(headDim: number): number[] {
  const u = Math.floor(headDim / 16);
  return [headDim - 12 * u, 6 * u, 6 * u];
}

/**
 * Exact parameter count of a DiT config, term by term (D width, L depth, F ffn,
 * hd head dim, KV kv heads, P = C*p*p, g = 1 with the attention gate, b = 1 with biases):
 *   first  P*D + D
 *   tmlp   tdim*D + D + D*D + D
 *   tproj  6*D*D + 6*D
 *   block  6D (mod) + 2D (norms) + attention 2*D*D + 2*D*KV*hd + g*D*D + 2*hd (qk norms)
 *          + FFN (2 or 3)*D*F, plus biases when b
 *   last   D (norm) + 2D (modulation) + D*P + P
 */
export function ditParamCount(c: DiTConfig): number {
  const D = c.hidden, F = c.ffn, hd = D / c.heads, KV = c.kvHeads ?? c.heads, P = c.channels * c.patch * c.patch;
  const g = c.gate ? 1 : 0, b = c.bias ? 1 : 0, mats = (c.act ?? 'swiglu') === 'swiglu' ? 2 : 1;
  const attn = 2 * D * D + 2 * D * KV * hd + g * D * D + 2 * hd + b * (D + 2 * KV * hd + g * D + D);
  const ffn = (mats + 1) * D * F + b * (mats * F + D);
  const block = 6 * D + 2 * D + attn + ffn;
  return P * D + D + (c.tdim * D + D + D * D + D) + (6 * D * D + 6 * D) + c.depth * block + (3 * D + D * P + P);
}

/** Linear whose weight and bias start at zero (adaLN-Zero). */
function zeroLinear(inF: number, outF: number): Linear {
  const l = new Linear(inF, outF);
  l.weight = new Param([outF, inF], { kind: 'zeros' });
  l.bias = new Param([outF], { kind: 'zeros' });
  return l;
}

/** [B] timesteps in [0, 1] -> [B, dim]: cos | sin of 1000 t * 10000^(-i / (dim/2)) (FLUX / Krea 2). */
export function timestepEmbedding(t: Tensor, width: number, opts: { factor?: number; period?: number } = {}): Tensor {
  const half = width / 2;
  const freqs = Array.from({ length: half }, (_, i) => Math.exp((-Math.log(opts.period ?? 10000) * i) / half));
  const args = t.mul(opts.factor ?? 1000).unsqueeze(-1).mul(constant(freqs));
  return concat([args.cos(), args.sin()], -1);
}

/** [B, C, p*h, p*w] -> [B, h*w, C*p*p], patch features ordered (c, ph, pw). */
export function patchify(x: Tensor, p: number): Tensor {
  const [B, C, H, W] = x.shape as [Dim, Dim, Dim, Dim];
  const h = dimDiv(H, p), w = dimDiv(W, p);
  return x.reshape(B, C, h, p, w, p).transpose(0, 2, 4, 1, 3, 5).reshape(B, dimMul(h, w), dimMul(C, p * p));
}

/** Inverse of patchify: [B, h*w, C*p*p] -> [B, C, p*h, p*w]. */
export function unpatchify(x: Tensor, p: number, C: number, h: Dim, w: Dim): Tensor {
  const B = x.dim(0);
  return x.reshape(B, h, w, C, p, p).transpose(0, 3, 1, 4, 2, 5).reshape(B, C, dimMul(h, p), dimMul(w, p));
}

class Modulation extends Module {
  lin: Param;
  constructor(rows: number, width: number) {
    super();
    this.lin = this.param(rows === 1 ? [width] : [rows, width], { kind: 'zeros' });
  }
}

export class DiTBlock extends Module {
  mod: Modulation;
  prenorm: ScaleRMSNorm;
  postnorm: ScaleRMSNorm;
  attn: FusionAttention;
  mlp: FeedForward;
  constructor(readonly cfg: DiTConfig) {
    super();
    this.mod = new Modulation(1, 6 * cfg.hidden);
    this.prenorm = new ScaleRMSNorm(cfg.hidden, cfg.eps ?? 1e-5);
    this.postnorm = new ScaleRMSNorm(cfg.hidden, cfg.eps ?? 1e-5);
    this.attn = new FusionAttention(cfg);
    this.mlp = new FeedForward(cfg.hidden, cfg.ffn, cfg.act, cfg.bias);
  }
  /** x [B, S, D], tvec [B, 6D] */
  forward(x: Tensor, tvec: Tensor, call: AttendCall): Tensor {
    const [prescale, preshift, pregate, postscale, postshift, postgate] = tvec.unsqueeze(1).add(this.mod.lin.t).chunk(6, -1) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
    const h = x.add(pregate.mul(this.attn.forward(this.prenorm.forward(x).mul(prescale.add(1)).add(preshift), call)));
    return h.add(postgate.mul(this.mlp.forward(this.postnorm.forward(h).mul(postscale.add(1)).add(postshift))));
  }
}

class TimestepMLP extends Module {
  fc1: Linear;
  fc2: Linear;
  constructor(tdim: number, width: number) {
    super();
    this.fc1 = new Linear(tdim, width);
    this.fc2 = new Linear(width, width);
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(gelu(this.fc1.forward(x), 'tanh'));
  }
}

class TimestepProjection extends Module {
  fc: Linear;
  constructor(width: number) {
    super();
    this.fc = zeroLinear(width, 6 * width);
  }
  forward(temb: Tensor): Tensor {
    return this.fc.forward(gelu(temb, 'tanh'));
  }
}

class LastLayer extends Module {
  norm: ScaleRMSNorm;
  linear: Linear;
  modulation: Modulation;
  constructor(cfg: DiTConfig) {
    super();
    this.norm = new ScaleRMSNorm(cfg.hidden, cfg.eps ?? 1e-5);
    this.linear = zeroLinear(cfg.hidden, cfg.channels * cfg.patch * cfg.patch);
    this.modulation = new Modulation(2, cfg.hidden);
  }
  forward(x: Tensor, temb: Tensor): Tensor {
    const [scale, shift] = temb.unsqueeze(1).add(this.modulation.lin.t).chunk(2, 1) as [Tensor, Tensor];
    return this.linear.forward(this.norm.forward(x).mul(scale.add(1)).add(shift));
  }
}

/** How the condition enters (one of the first three, or kv). */
export interface DiTCondition {
  /** bool [B, Sc], true = a token of the condition (padding false) */
  mask: Tensor;
  /** [B, Sc, D]: prepended to the image tokens (last-layer, penultimate, LAP) */
  tokens?: Tensor;
  /** [B, Sc, D] added to the condition tokens before block i (hidden-state injection); the first starts them */
  inject?: (layer: number) => Tensor;
  /** [B, KV, Sc, hd] keys and values put in front of block i's own (layerwise KV fusion); no condition tokens */
  kv?: (layer: number) => { key: Tensor; value: Tensor };
}

export class DiT extends Module {
  readonly headDim: number;
  first: Linear;
  tmlp: TimestepMLP;
  tproj: TimestepProjection;
  blocks: DiTBlock[];
  last: LastLayer;
  constructor(readonly cfg: DiTConfig) {
    super();
    this.headDim = cfg.hidden / cfg.heads;
    const axes = cfg.ropeAxes;
    if ((axes.length !== 2 && axes.length !== 3) || axes.some((a) => a % 2 !== 0) || axes.reduce((a, b) => a + b, 0) !== this.headDim)
      throw new Error(`DiT: ropeAxes [${axes}] must be 2 or 3 even widths summing to the head dim ${this.headDim}`);
    const P = cfg.channels * cfg.patch * cfg.patch;
    this.first = new Linear(P, cfg.hidden);
    this.tmlp = new TimestepMLP(cfg.tdim, cfg.hidden);
    this.tproj = new TimestepProjection(cfg.hidden);
    this.blocks = Array.from({ length: cfg.depth }, () => new DiTBlock(cfg));
    this.last = new LastLayer(cfg);
  }

  /** latents [B, C, p*h, p*w] (x_t), timestep [B] in [0, 1] -> velocity [B, C, p*h, p*w] */
  forward(latents: Tensor, timestep: Tensor, cond: DiTCondition): Tensor {
    const p = this.cfg.patch;
    const h = dimDiv(latents.dim(2), p), w = dimDiv(latents.dim(3), p);
    const HW = dimMul(h, w);
    const img = this.first.forward(patchify(latents, p));
    const temb = this.tmlp.forward(timestepEmbedding(timestep, this.cfg.tdim));
    const tvec = this.tproj.forward(temb);
    const B = img.dim(0), Sc = cond.mask.dim(1);
    const inSequence = cond.tokens !== undefined || cond.inject !== undefined;
    if (inSequence && cond.kv) throw new Error('DiT: KV fusion and condition tokens are exclusive');

    const [row, col] = gridPositions(h, w);
    const zeros = (n: Dim) => constant(0, 'i64', [1]).expand(n);
    const pos = inSequence ? [concat([zeros(Sc), row], 0), concat([zeros(Sc), col], 0)] : [row, col];
    const axes = this.cfg.ropeAxes;
    const rotate = (t: Tensor): Tensor => {
      if (axes.length === 2) return rope(t, pos, axes, { theta: this.cfg.theta, style: 'interleaved' });
      const [still, moving] = t.split(-1, [axes[0]!, axes[1]! + axes[2]!]) as [Tensor, Tensor];
      return concat([still, rope(moving, pos, axes.slice(1), { theta: this.cfg.theta, style: 'interleaved' })], -1);
    };
    const keyMask = cond.tokens || cond.inject || cond.kv ? concat([cond.mask, constant(1, 'bool').expand(B, HW)], 1) : undefined;
    const call = (i: number): AttendCall => ({ rotate, keyMask, prefix: cond.kv?.(i) });

    let x: Tensor;
    if (cond.inject) {
      // hidden-state injection: the condition segment is split off, added to and re-joined at every block
      let c = cond.tokens;
      x = img;
      for (const [i, block] of this.blocks.entries()) {
        const j = cond.inject(i);
        c = c ? c.add(j) : j;
        [c, x] = block.forward(concat([c, x], 1), tvec, call(i)).split(1, [Sc, HW]) as [Tensor, Tensor];
      }
    } else {
      let s = cond.tokens ? concat([cond.tokens, img], 1) : img;
      for (const [i, block] of this.blocks.entries()) s = block.forward(s, tvec, call(i));
      x = cond.tokens ? s.split(1, [Sc, HW])[1]! : s;
    }
    return unpatchify(this.last.forward(x, temb), p, this.cfg.channels, h, w);
  }
}

/** A preset's DiT alone, condition tokens given in its width: `unifusion compile graphs/dit.ts --preset ablation-5b --weights skeleton`. */
export default defineGraph<DiTConfig>({
  name: 'dit',
  description: 'latent DiT: x_t [B, C, 2h, 2w], t [B], condition tokens [B, seq, D] + mask -> velocity',
  presets: Object.fromEntries(Object.entries(PRESETS).map(([k, c]) => [k, c.dit])),
  defaultPreset: 'tiny',
  build(cfg) {
    const B = dim('batch'), S = dim('seq'), h = dim('h'), w = dim('w');
    const latents = input('latents', 'f32', [B, cfg.channels, dimMul(h, cfg.patch), dimMul(w, cfg.patch)]);
    const timestep = input('timestep', 'f32', [B]);
    const tokens = input('condition', 'f32', [B, S, cfg.hidden]);
    const mask = input('condition_mask', 'bool', [B, S]);
    return { velocity: new DiT(cfg).forward(latents, timestep, { tokens, mask }) };
  },
});
