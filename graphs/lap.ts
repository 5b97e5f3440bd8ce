// Layerwise Attention Pooling (LAP; UniFusion §2.1, §4.1, App. A.1) and the
// transformer block it shares with the refiner and the DiT.
//
// LAP takes n tapped VLM hidden states of one token, (bs, sl, n, hE), folds the
// token axes into the batch, (bs*sl, n, hE), runs 2 transformer blocks whose
// attention is across the n layers (no mask, no positions: a tap is known by its
// content and by its pooling weight), then pools the layer axis with one
// Linear(n -> 1, bias=False) into (bs, sl, hE). The pooling weights are the
// per-layer contributions plotted in the paper (Fig. 8, 11): `poolWeightName`.
//
// Semantics and parameter names follow the public twin, Krea 2's
// TextFusionTransformer / TextFusionBlock:
//   prenorm -> attn -> residual; postnorm -> mlp -> residual
// ("RMSNorm before and after attention" in the paper's words: the post-attention
// norm is the one in front of the FFN), RMSNorm storing (scale - 1) as `scale`
// (eps 1e-5), attention with wq/wk/wv/wo, per-head QK-RMSNorm (qknorm.qnorm,
// qknorm.knorm), an optional sigmoid output gate (`gate`, Krea 2 has it), and a
// SwiGLU FFN gate/up/down (or a plain SiLU MLP up/down).
import { concat, defineGraph, dim, headMerge, headSplit, input, Linear, Module, rmsNorm, sdpa, silu, type Param, type Tensor } from '../src/dsl/index.ts';
import { dimMul } from '../src/ir/dims.ts';
import { PRESETS } from './presets.ts';

/** RMSNorm with Krea 2's convention: the stored `scale` is (weight - 1), zero at init. */
export class ScaleRMSNorm extends Module {
  scale: Param;
  constructor(readonly dim: number, readonly eps = 1e-5) {
    super();
    this.scale = this.param([dim], { kind: 'zeros' });
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.scale, this.eps, { offset: 1 });
  }
}

export class QKNorm extends Module {
  qnorm: ScaleRMSNorm;
  knorm: ScaleRMSNorm;
  constructor(headDim: number, eps = 1e-5) {
    super();
    this.qnorm = new ScaleRMSNorm(headDim, eps);
    this.knorm = new ScaleRMSNorm(headDim, eps);
  }
}

/** The shape of one block; shared by LAP, refiner and DiT configs. */
export interface BlockShape {
  hidden: number;
  heads: number;
  /** grouped-query attention (default: heads) */
  kvHeads?: number;
  /** FFN inner width (see swigluWidth in presets.ts for Krea 2's rule) */
  ffn: number;
  /** 'swiglu' (Krea 2, default): down(silu(gate x) * up x); 'silu': down(silu(up x)) */
  act?: 'swiglu' | 'silu';
  /** sigmoid gate on the attention output before wo (Krea 2) */
  gate?: boolean;
  /** biases on the attention and FFN linears (Krea 2: none) */
  bias?: boolean;
  /** RMSNorm eps (Krea 2: 1e-5) */
  eps?: number;
}

export interface AttendCall {
  /** bool [B, Sk], true = attend (padding mask over the keys, prefix included) */
  keyMask?: Tensor;
  /** applied to q and k ([B, H, S, hd]) after QK-norm: RoPE */
  rotate?: (t: Tensor) => Tensor;
  /** keys/values [B, KV, Sp, hd] put in front of this layer's own (layerwise KV fusion); not rotated */
  prefix?: { key: Tensor; value: Tensor };
}

export class FusionAttention extends Module {
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  wq: Linear;
  wk: Linear;
  wv: Linear;
  gate?: Linear;
  qknorm: QKNorm;
  wo: Linear;
  constructor(cfg: BlockShape) {
    super();
    this.heads = cfg.heads;
    this.kvHeads = cfg.kvHeads ?? cfg.heads;
    this.headDim = cfg.hidden / cfg.heads;
    if (!Number.isInteger(this.headDim)) throw new Error(`attention: width ${cfg.hidden} is not divisible by ${cfg.heads} heads`);
    if (this.heads % this.kvHeads !== 0) throw new Error(`attention: ${this.heads} heads is not a multiple of ${this.kvHeads} kv heads`);
    const bias = cfg.bias ?? false;
    this.wq = new Linear(cfg.hidden, this.heads * this.headDim, { bias });
    this.wk = new Linear(cfg.hidden, this.kvHeads * this.headDim, { bias });
    this.wv = new Linear(cfg.hidden, this.kvHeads * this.headDim, { bias });
    if (cfg.gate) this.gate = new Linear(cfg.hidden, cfg.hidden, { bias });
    this.qknorm = new QKNorm(this.headDim, cfg.eps ?? 1e-5);
    this.wo = new Linear(cfg.hidden, cfg.hidden, { bias });
  }

  forward(x: Tensor, call: AttendCall = {}): Tensor {
    let q = this.qknorm.qnorm.forward(headSplit(this.wq.forward(x), this.heads, this.headDim));
    let k = this.qknorm.knorm.forward(headSplit(this.wk.forward(x), this.kvHeads, this.headDim));
    let v = headSplit(this.wv.forward(x), this.kvHeads, this.headDim);
    if (call.rotate) {
      q = call.rotate(q);
      k = call.rotate(k);
    }
    if (call.prefix) {
      k = concat([call.prefix.key, k], 2);
      v = concat([call.prefix.value, v], 2);
    }
    let o = headMerge(sdpa(q, k, v, { keyMask: call.keyMask }));
    if (this.gate) o = o.mul(this.gate.forward(x).sigmoid());
    return this.wo.forward(o);
  }
}

export class FeedForward extends Module {
  gate?: Linear;
  up: Linear;
  down: Linear;
  constructor(hidden: number, ffn: number, readonly act: 'swiglu' | 'silu' = 'swiglu', bias = false) {
    super();
    if (act === 'swiglu') this.gate = new Linear(hidden, ffn, { bias });
    this.up = new Linear(hidden, ffn, { bias });
    this.down = new Linear(ffn, hidden, { bias });
  }
  forward(x: Tensor): Tensor {
    const h = this.gate ? silu(this.gate.forward(x)).mul(this.up.forward(x)) : silu(this.up.forward(x));
    return this.down.forward(h);
  }
}

/** Krea 2's TextFusionBlock: x + attn(prenorm x); x + mlp(postnorm x). */
export class FusionBlock extends Module {
  prenorm: ScaleRMSNorm;
  postnorm: ScaleRMSNorm;
  attn: FusionAttention;
  mlp: FeedForward;
  constructor(cfg: BlockShape) {
    super();
    this.prenorm = new ScaleRMSNorm(cfg.hidden, cfg.eps ?? 1e-5);
    this.postnorm = new ScaleRMSNorm(cfg.hidden, cfg.eps ?? 1e-5);
    this.attn = new FusionAttention(cfg);
    this.mlp = new FeedForward(cfg.hidden, cfg.ffn, cfg.act, cfg.bias);
  }
  forward(x: Tensor, call: AttendCall = {}): Tensor {
    const h = x.add(this.attn.forward(this.prenorm.forward(x), call));
    return h.add(this.mlp.forward(this.postnorm.forward(h)));
  }
}

export interface LapConfig extends BlockShape {
  /** number of tapped layers n (the pooling input width) */
  layers: number;
  /** transformer blocks across the layer axis (paper and Krea 2: 2) */
  blocks?: number;
}

/** The pooling weight's name relative to a LAP module ([1, n]; plot it per tap). */
export const LAP_POOL_PARAM = 'projector.weight';

export class LAP extends Module {
  layerwise_blocks: FusionBlock[];
  projector: Linear;
  constructor(readonly cfg: LapConfig) {
    super();
    this.layerwise_blocks = Array.from({ length: cfg.blocks ?? 2 }, () => new FusionBlock(cfg));
    this.projector = new Linear(cfg.layers, 1, { bias: false });
    // start as the mean over the taps (Krea 2 leaves nn.Linear's default here)
    this.projector.weight = this.param([1, cfg.layers], { kind: 'const', value: 1 / cfg.layers });
  }

  /** Full name of the pooling weight [1, n] (after the module is placed in its parent). */
  get poolWeightName(): string {
    return this.projector.weight.path;
  }

  /** taps: n tensors [B, S, hE] (in the order of the pooling weights) -> [B, S, hE] */
  forward(taps: readonly Tensor[]): Tensor {
    if (taps.length !== this.cfg.layers) throw new Error(`LAP built for ${this.cfg.layers} taps got ${taps.length}`);
    return this.pool(concat(taps.map((t) => t.unsqueeze(2)), 2));
  }

  /** x: [B, S, n, hE] -> [B, S, hE] */
  pool(x: Tensor): Tensor {
    const [B, S, n, hE] = x.shape;
    let h = x.reshape(dimMul(B!, S!), n!, hE!);
    for (const block of this.layerwise_blocks) h = block.forward(h);
    // (B*S, n, hE) -> (B, S, hE, n) -> Linear(n -> 1) -> (B, S, hE)
    return this.projector.forward(h.reshape(B!, S!, n!, hE!).swap(-1, -2)).squeeze(-1);
  }
}

/** A preset's LAP alone: `unifusion compile graphs/lap.ts --preset unifusion-8b`. */
export interface LapGraphConfig {
  taps: number[];
  lap: LapConfig;
}

export default defineGraph<LapGraphConfig>({
  name: 'lap',
  description: 'Layerwise Attention Pooling: tapped VLM hidden states (bs, sl, hE) x n -> pooled (bs, sl, hE)',
  presets: Object.fromEntries(Object.entries(PRESETS).map(([k, c]) => [k, { taps: c.taps, lap: { ...c.lap, hidden: c.vlm.hidden, layers: c.taps.length } }])),
  defaultPreset: 'tiny',
  build(cfg) {
    const B = dim('batch'), S = dim('seq');
    const taps = cfg.taps.map((i) => input(`hidden_states.${i}`, 'f32', [B, S, cfg.lap.hidden]));
    return { pooled: new LAP(cfg.lap).forward(taps) };
  },
});
