// AutoencoderKL as diffusers builds it (autoencoder_kl.py, vae.py, resnet.py, the
// mid-block Attention), with diffusers' parameter names so that a checkpoint's
// diffusion_pytorch_model.safetensors loads by name. The FLUX.1 / SD3 VAE is this
// model with 16 latent channels, four levels (f8) and no quant convs.
//
// Encoder graph: image [B, in, h*f, w*f] -> mean, logvar (the latent_dist, raw) and
// latent = (z - shift) * scale, z the mode (mean) or, with `sample`, mean + std * noise.
// Decoder graph: latent [B, C, h, w] -> image [B, out, h*f, w*f] after z = latent / scale + shift.
// f = 2^(levels - 1). Image sides are declared as multiples of f so that every stride-2
// level divides exactly and h, w stay symbolic end to end (the attention runs over h*w).
import type { DType } from '../src/ir/dtype.ts';
import { dimMul, type Dim } from '../src/ir/dims.ts';
import { constant, conv2d, Conv2d, defineGraph, dim, DSLError, GroupNorm, input, Linear, Module, sdpa, silu, trace, type Tensor } from '../src/dsl/index.ts';
import type { Graph } from '../src/ir/graph.ts';

export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  /** channels per level; the encoder halves the resolution between levels */
  blockOutChannels: readonly number[];
  /** resnets per encoder level (the decoder has one more per level, as in diffusers) */
  layersPerBlock: number;
  normNumGroups: number;
  useQuantConv: boolean;
  usePostQuantConv: boolean;
  midBlockAddAttention: boolean;
  scalingFactor: number;
  /** FLUX / SD3; 0 when the config has none */
  shiftFactor: number;
  /** per-channel latent statistics (SDXL-style configs); replace shiftFactor when set */
  latentsMean?: readonly number[];
  latentsStd?: readonly number[];
  /** dtype of the parameters and of the graph inputs/outputs (default f32) */
  dtype?: DType;
}

export interface VaeGraphOptions {
  /** encoder: add a `noise` input [B, C, h, w] and return mean + std * noise instead of the mode */
  sample?: boolean;
  /** static latent size [h, w] (default: symbolic latent_h, latent_w) */
  latentSize?: readonly [number, number];
  /** graph name (default vae_encoder / vae_decoder) */
  name?: string;
}

const EPS = 1e-6; // diffusers' resnet_eps and the norms of the VAE

/** The downsampling factor between image and latent. */
export function vaeFactor(cfg: VaeConfig): number {
  return 2 ** (cfg.blockOutChannels.length - 1);
}

export function checkVaeConfig(cfg: VaeConfig): void {
  const fail = (m: string): never => {
    throw new DSLError(`VAE config: ${m}`);
  };
  const ints: [string, number][] = [['inChannels', cfg.inChannels], ['outChannels', cfg.outChannels], ['latentChannels', cfg.latentChannels], ['normNumGroups', cfg.normNumGroups], ['layersPerBlock', cfg.layersPerBlock]];
  for (const [k, v] of ints) if (!Number.isInteger(v) || v < 1) fail(`${k} must be a positive integer, got ${v}`);
  if (cfg.blockOutChannels.length === 0) fail('blockOutChannels is empty');
  for (const c of cfg.blockOutChannels) {
    if (!Number.isInteger(c) || c < 1) fail(`blockOutChannels [${cfg.blockOutChannels}] must be positive integers`);
    if (c % cfg.normNumGroups !== 0) fail(`${c} channels (blockOutChannels [${cfg.blockOutChannels}]) do not split into ${cfg.normNumGroups} groups (normNumGroups)`);
  }
  if (!Number.isFinite(cfg.scalingFactor) || cfg.scalingFactor === 0) fail(`scalingFactor must be finite and non-zero, got ${cfg.scalingFactor}`);
  if (!Number.isFinite(cfg.shiftFactor)) fail(`shiftFactor must be finite, got ${cfg.shiftFactor}`);
  if ((cfg.latentsMean === undefined) !== (cfg.latentsStd === undefined)) fail('latentsMean and latentsStd come together');
  if (cfg.latentsMean && cfg.latentsStd) {
    if (cfg.latentsMean.length !== cfg.latentChannels || cfg.latentsStd.length !== cfg.latentChannels)
      fail(`latentsMean/latentsStd need ${cfg.latentChannels} values (latentChannels), got ${cfg.latentsMean.length} and ${cfg.latentsStd.length}`);
    if (cfg.latentsStd.some((s) => !(s > 0) || !Number.isFinite(s))) fail('latentsStd must be positive');
    if (cfg.shiftFactor !== 0) fail('shiftFactor and latentsMean/latentsStd are exclusive');
  }
}

// ------------------------------------------------------------------------------ blocks

/** diffusers ResnetBlock2D without a time embedding: norm1, silu, conv1, norm2, silu, conv2, + shortcut. */
export class ResnetBlock2D extends Module {
  norm1: GroupNorm;
  conv1: Conv2d;
  norm2: GroupNorm;
  conv2: Conv2d;
  conv_shortcut?: Conv2d;
  constructor(inCh: number, outCh: number, groups: number, dtype?: DType) {
    super();
    this.norm1 = new GroupNorm(groups, inCh, EPS, { dtype });
    this.conv1 = new Conv2d(inCh, outCh, 3, { padding: 1, dtype });
    this.norm2 = new GroupNorm(groups, outCh, EPS, { dtype });
    this.conv2 = new Conv2d(outCh, outCh, 3, { padding: 1, dtype });
    if (inCh !== outCh) this.conv_shortcut = new Conv2d(inCh, outCh, 1, { dtype });
  }
  forward(x: Tensor): Tensor {
    let h = this.conv1.forward(silu(this.norm1.forward(x)));
    h = this.conv2.forward(silu(this.norm2.forward(h))); // dropout is identity at inference
    return (this.conv_shortcut ? this.conv_shortcut.forward(x) : x).add(h);
  }
}

/** Downsample2D(padding=0): pad right and bottom by one (F.pad (0,1,0,1)), then a stride-2 3x3 conv. */
export class Downsample2D extends Module {
  conv: Conv2d;
  constructor(ch: number, dtype?: DType) {
    super();
    this.conv = new Conv2d(ch, ch, 3, { stride: 2, dtype });
  }
  forward(x: Tensor): Tensor {
    // conv pads are [top, left, bottom, right]
    return conv2d(x, this.conv.weight, this.conv.bias, { stride: 2, padding: [0, 0, 1, 1] });
  }
}

/** Upsample2D(use_conv): nearest x2, then a 3x3 conv. */
export class Upsample2D extends Module {
  conv: Conv2d;
  constructor(ch: number, dtype?: DType) {
    super();
    this.conv = new Conv2d(ch, ch, 3, { padding: 1, dtype });
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(x.upsampleNearest(2));
  }
}

/**
 * The mid-block Attention (diffusers' converted attention block): GroupNorm, one head
 * over all h*w positions with head dim = channels, to_out.0, residual. Linear weights
 * [C, C] as diffusers stores them.
 */
export class VaeAttention extends Module {
  group_norm: GroupNorm;
  to_q: Linear;
  to_k: Linear;
  to_v: Linear;
  to_out: Linear[];
  constructor(readonly channels: number, groups: number, dtype?: DType) {
    super();
    this.group_norm = new GroupNorm(groups, channels, EPS, { dtype });
    this.to_q = new Linear(channels, channels, { dtype });
    this.to_k = new Linear(channels, channels, { dtype });
    this.to_v = new Linear(channels, channels, { dtype });
    this.to_out = [new Linear(channels, channels, { dtype })];
  }
  forward(x: Tensor): Tensor {
    const [B, C, H, W] = x.shape as [Dim, Dim, Dim, Dim];
    const tokens = this.group_norm.forward(x).reshape(B, C, dimMul(H, W)).swap(1, 2); // [B, HW, C]
    // one head; scores and softmax in f32 for low-precision graphs (diffusers: upcast_softmax)
    const head = (l: Linear) => l.forward(tokens).upcast().unsqueeze(1);
    const o = sdpa(head(this.to_q), head(this.to_k), head(this.to_v)).squeeze(1).cast(x.dtype);
    const y = this.to_out[0]!.forward(o).swap(1, 2).reshape(B, C, H, W);
    return y.add(x);
  }
}

/** UNetMidBlock2D: resnet, (attention, resnet). */
export class MidBlock2D extends Module {
  resnets: ResnetBlock2D[];
  attentions: VaeAttention[];
  constructor(ch: number, groups: number, attention: boolean, dtype?: DType) {
    super();
    this.resnets = [new ResnetBlock2D(ch, ch, groups, dtype), new ResnetBlock2D(ch, ch, groups, dtype)];
    this.attentions = attention ? [new VaeAttention(ch, groups, dtype)] : [];
  }
  forward(x: Tensor): Tensor {
    let h = this.resnets[0]!.forward(x);
    if (this.attentions[0]) h = this.attentions[0].forward(h);
    return this.resnets[1]!.forward(h);
  }
}

export class DownEncoderBlock2D extends Module {
  resnets: ResnetBlock2D[];
  downsamplers: Downsample2D[];
  constructor(inCh: number, outCh: number, layers: number, groups: number, downsample: boolean, dtype?: DType) {
    super();
    this.resnets = Array.from({ length: layers }, (_, i) => new ResnetBlock2D(i === 0 ? inCh : outCh, outCh, groups, dtype));
    this.downsamplers = downsample ? [new Downsample2D(outCh, dtype)] : [];
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const r of this.resnets) h = r.forward(h);
    for (const d of this.downsamplers) h = d.forward(h);
    return h;
  }
}

export class UpDecoderBlock2D extends Module {
  resnets: ResnetBlock2D[];
  upsamplers: Upsample2D[];
  constructor(inCh: number, outCh: number, layers: number, groups: number, upsample: boolean, dtype?: DType) {
    super();
    this.resnets = Array.from({ length: layers }, (_, i) => new ResnetBlock2D(i === 0 ? inCh : outCh, outCh, groups, dtype));
    this.upsamplers = upsample ? [new Upsample2D(outCh, dtype)] : [];
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const r of this.resnets) h = r.forward(h);
    for (const u of this.upsamplers) h = u.forward(h);
    return h;
  }
}

/** vae.Encoder with double_z: image -> moments [B, 2C, h, w]. */
export class VaeEncoder extends Module {
  conv_in: Conv2d;
  down_blocks: DownEncoderBlock2D[];
  mid_block: MidBlock2D;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  constructor(cfg: VaeConfig) {
    super();
    const ch = cfg.blockOutChannels, g = cfg.normNumGroups, dt = cfg.dtype;
    const last = ch[ch.length - 1]!;
    this.conv_in = new Conv2d(cfg.inChannels, ch[0]!, 3, { padding: 1, dtype: dt });
    this.down_blocks = ch.map((out, i) => new DownEncoderBlock2D(i === 0 ? ch[0]! : ch[i - 1]!, out, cfg.layersPerBlock, g, i < ch.length - 1, dt));
    this.mid_block = new MidBlock2D(last, g, cfg.midBlockAddAttention, dt);
    this.conv_norm_out = new GroupNorm(g, last, EPS, { dtype: dt });
    this.conv_out = new Conv2d(last, 2 * cfg.latentChannels, 3, { padding: 1, dtype: dt });
  }
  forward(x: Tensor): Tensor {
    let h = this.conv_in.forward(x);
    for (const b of this.down_blocks) h = b.forward(h);
    h = this.mid_block.forward(h);
    return this.conv_out.forward(silu(this.conv_norm_out.forward(h)));
  }
}

/** vae.Decoder (group norm): z [B, C, h, w] -> image. */
export class VaeDecoder extends Module {
  conv_in: Conv2d;
  mid_block: MidBlock2D;
  up_blocks: UpDecoderBlock2D[];
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  constructor(cfg: VaeConfig) {
    super();
    const rev = [...cfg.blockOutChannels].reverse(), g = cfg.normNumGroups, dt = cfg.dtype;
    this.conv_in = new Conv2d(cfg.latentChannels, rev[0]!, 3, { padding: 1, dtype: dt });
    this.mid_block = new MidBlock2D(rev[0]!, g, cfg.midBlockAddAttention, dt);
    this.up_blocks = rev.map((out, i) => new UpDecoderBlock2D(i === 0 ? rev[0]! : rev[i - 1]!, out, cfg.layersPerBlock + 1, g, i < rev.length - 1, dt));
    this.conv_norm_out = new GroupNorm(g, rev[rev.length - 1]!, EPS, { dtype: dt });
    this.conv_out = new Conv2d(rev[rev.length - 1]!, cfg.outChannels, 3, { padding: 1, dtype: dt });
  }
  forward(z: Tensor): Tensor {
    let h = this.mid_block.forward(this.conv_in.forward(z));
    for (const b of this.up_blocks) h = b.forward(h);
    return this.conv_out.forward(silu(this.conv_norm_out.forward(h)));
  }
}

/** AutoencoderKL: encoder, decoder, quant_conv / post_quant_conv (1x1) when the config has them. */
export class AutoencoderKL extends Module {
  encoder: VaeEncoder;
  decoder: VaeDecoder;
  quant_conv?: Conv2d;
  post_quant_conv?: Conv2d;
  constructor(readonly cfg: VaeConfig) {
    super();
    checkVaeConfig(cfg);
    const c = cfg.latentChannels, dt = cfg.dtype;
    this.encoder = new VaeEncoder(cfg);
    this.decoder = new VaeDecoder(cfg);
    if (cfg.useQuantConv) this.quant_conv = new Conv2d(2 * c, 2 * c, 1, { dtype: dt });
    if (cfg.usePostQuantConv) this.post_quant_conv = new Conv2d(c, c, 1, { dtype: dt });
  }

  /** latent_dist: mean and logvar (clamped to [-30, 20] as DiagonalGaussianDistribution does). */
  latentDist(image: Tensor): { mean: Tensor; logvar: Tensor } {
    let moments = this.encoder.forward(image);
    if (this.quant_conv) moments = this.quant_conv.forward(moments);
    const c = this.cfg.latentChannels;
    const [mean, logvar] = moments.split(1, [c, c]) as [Tensor, Tensor];
    return { mean, logvar: logvar.maximum(-30).minimum(20) };
  }

  /** Raw latent -> the DiT's latent space: (z - shift) * scale, per channel when the config has latent statistics. */
  normalizeLatent(z: Tensor): Tensor {
    const { shift, scale } = this.latentAffine(z.dtype);
    return z.sub(shift).mul(scale);
  }

  /** Inverse of normalizeLatent: z / scale + shift. */
  denormalizeLatent(z: Tensor): Tensor {
    const { shift, scale } = this.latentAffine(z.dtype);
    return z.div(scale).add(shift);
  }

  private latentAffine(dtype: DType): { shift: Tensor | number; scale: Tensor | number } {
    const { latentsMean: m, latentsStd: s, scalingFactor: k, latentChannels: c } = this.cfg;
    if (!m || !s) return { shift: this.cfg.shiftFactor, scale: k };
    return { shift: constant(m, dtype, [c, 1, 1]), scale: constant(s.map((v) => k / v), dtype, [c, 1, 1]) };
  }

  decode(latent: Tensor): Tensor {
    let z = this.denormalizeLatent(latent);
    if (this.post_quant_conv) z = this.post_quant_conv.forward(z);
    return this.decoder.forward(z);
  }
}

// ------------------------------------------------------------------------------ graphs

function latentDims(opts: VaeGraphOptions): [Dim, Dim] {
  return opts.latentSize ? [opts.latentSize[0], opts.latentSize[1]] : [dim('latent_h'), dim('latent_w')];
}

/**
 * Encoder graph body (call inside a trace): inputs `image` (and `noise` with opts.sample),
 * outputs `mean`, `logvar` (latent_dist, unscaled) and `latent` (scaled and shifted).
 */
export function buildVaeEncoder(cfg: VaeConfig, opts: VaeGraphOptions = {}): Record<string, Tensor> {
  const vae = new AutoencoderKL(cfg);
  const dt = cfg.dtype ?? 'f32', f = vaeFactor(cfg), [h, w] = latentDims(opts);
  const B = dim('batch');
  const image = input('image', dt, [B, cfg.inChannels, dimMul(h, f), dimMul(w, f)]);
  const noise = opts.sample ? input('noise', dt, [B, cfg.latentChannels, h, w]) : undefined;
  const { mean, logvar } = vae.latentDist(image);
  const z = noise ? mean.add(logvar.mul(0.5).exp().mul(noise)) : mean;
  return { latent: vae.normalizeLatent(z), mean, logvar };
}

/** Decoder graph body: input `latent` (the DiT's latent space), output `image`. */
export function buildVaeDecoder(cfg: VaeConfig, opts: VaeGraphOptions = {}): Record<string, Tensor> {
  const vae = new AutoencoderKL(cfg);
  const dt = cfg.dtype ?? 'f32', [h, w] = latentDims(opts);
  const latent = input('latent', dt, [dim('batch'), cfg.latentChannels, h, w]);
  return { image: vae.decode(latent) };
}

export function traceVaeEncoder(cfg: VaeConfig, opts: VaeGraphOptions = {}): Graph {
  return trace(opts.name ?? 'vae_encoder', () => buildVaeEncoder(cfg, opts));
}

export function traceVaeDecoder(cfg: VaeConfig, opts: VaeGraphOptions = {}): Graph {
  return trace(opts.name ?? 'vae_decoder', () => buildVaeDecoder(cfg, opts));
}

// ------------------------------------------------------------------------------ presets

const F8_16CH = {
  inChannels: 3,
  outChannels: 3,
  latentChannels: 16,
  blockOutChannels: [128, 256, 512, 512],
  layersPerBlock: 2,
  normNumGroups: 32,
  useQuantConv: false,
  usePostQuantConv: false,
  midBlockAddAttention: true,
} as const;

export const VAE_CONFIGS = {
  /** black-forest-labs/FLUX.1-dev vae/config.json */
  flux: { ...F8_16CH, scalingFactor: 0.3611, shiftFactor: 0.1159 },
  /** stabilityai/stable-diffusion-3-medium-diffusers vae/config.json */
  sd3: { ...F8_16CH, scalingFactor: 1.5305, shiftFactor: 0.0609 },
  /** the Stable Diffusion 1.x/2.x VAE layout: 4 latent channels with quant convs (83,653,863 params) */
  sd: { ...F8_16CH, latentChannels: 4, useQuantConv: true, usePostQuantConv: true, scalingFactor: 0.18215, shiftFactor: 0 },
  /** CPU-sized FLUX layout for tests and demos */
  tiny: { ...F8_16CH, blockOutChannels: [16, 16, 32, 32], layersPerBlock: 1, normNumGroups: 8, scalingFactor: 0.3611, shiftFactor: 0.1159 },
} satisfies Record<string, VaeConfig>;

export interface VaePreset {
  vae: VaeConfig;
  part: 'encoder' | 'decoder';
  sample?: boolean;
}

const presets: Record<string, VaePreset> = {};
for (const [k, vae] of Object.entries(VAE_CONFIGS)) {
  presets[`${k}-decoder`] = { vae, part: 'decoder' };
  presets[`${k}-encoder`] = { vae, part: 'encoder' };
}

export default defineGraph<VaePreset>({
  name: 'vae',
  description: 'AutoencoderKL encoder or decoder with diffusers parameter names (FLUX.1 / SD3 / SD layouts)',
  presets,
  defaultPreset: 'tiny-decoder',
  build: (p) => (p.part === 'encoder' ? buildVaeEncoder(p.vae, { sample: p.sample }) : buildVaeDecoder(p.vae)),
});
