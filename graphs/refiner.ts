// The bidirectional refiner (UniFusion §3.2, App. A.3) and the projection of the
// condition into the DiT's width.
//
// The VLM is causal, so a token only sees the tokens before it and a subject named
// late in the prompt is under-represented (position bias). The refiner is 2 plain
// transformer blocks (the same block as LAP's) with full self-attention over the
// sequence, masked only at padding. By default it has no positional encoding of its own:
// the VLM's hidden states already carry order (Krea 2's refiner_blocks do the same). `rope`
// gives it 1D RoPE over the condition's token order (the packed sequence index): a small VLM's
// hidden state at a word need not carry its neighbours (measured on the shapes world: without
// positions the DiT placed objects in the right cells but bound the wrong colour / shape to them
// in 60 % of the cells), and a bag-of-tokens refiner cannot tell which "red" precedes which "circle".
//
// The projection is Krea 2's txtmlp: RMSNorm (this is the "RMSNorm adapter" of the
// last-layer variant) -> Linear(hE -> D) -> GELU(tanh) -> Linear(D -> D).
import { gelu, Linear, Module, range, rope, type Tensor } from '../src/dsl/index.ts';
import { FusionBlock, ScaleRMSNorm, type BlockShape } from './lap.ts';

export interface RefinerConfig extends Omit<BlockShape, 'hidden'> {
  /** bidirectional blocks (paper and Krea 2: 2; 0 = projection only) */
  blocks: number;
  /** 1D RoPE (base theta) over the sequence index in the refiner's attention; default none */
  rope?: { theta: number };
}

/** Krea 2's txtmlp, named norm / fc1 / fc2 (Krea's nn.Sequential indices 0 / 1 / 3). */
export class ConditionProjection extends Module {
  norm: ScaleRMSNorm;
  fc1: Linear;
  fc2: Linear;
  constructor(inWidth: number, outWidth: number, eps = 1e-5) {
    super();
    this.norm = new ScaleRMSNorm(inWidth, eps);
    this.fc1 = new Linear(inWidth, outWidth);
    this.fc2 = new Linear(outWidth, outWidth);
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(gelu(this.fc1.forward(this.norm.forward(x)), 'tanh'));
  }
}

export class Refiner extends Module {
  blocks: FusionBlock[];
  proj: ConditionProjection;
  readonly rope?: { theta: number };
  readonly headDim: number;
  /** hidden: the condition's width (the VLM's hE); width: the DiT's */
  constructor(readonly hidden: number, readonly width: number, cfg: RefinerConfig) {
    super();
    this.headDim = hidden / cfg.heads;
    if (cfg.rope) {
      if (!(cfg.rope.theta > 0)) throw new Error(`refiner: rope.theta must be > 0, got ${cfg.rope.theta}`);
      if (!Number.isInteger(this.headDim) || this.headDim % 2 !== 0) throw new Error(`refiner: rope needs an even head dim, got ${hidden} / ${cfg.heads} heads`);
      this.rope = { theta: cfg.rope.theta };
    }
    this.blocks = Array.from({ length: cfg.blocks }, () => new FusionBlock({ ...cfg, hidden }));
    this.proj = new ConditionProjection(hidden, width, cfg.eps ?? 1e-5);
  }
  /** x [B, S, hE], mask bool [B, S] (true = token) -> [B, S, D] */
  forward(x: Tensor, mask: Tensor): Tensor {
    let h = x;
    const theta = this.rope?.theta;
    const pos = theta === undefined ? undefined : range(x.dim(1));
    const rotate = pos && ((t: Tensor) => rope(t, [pos], [this.headDim], { theta, style: 'half' }));
    for (const block of this.blocks) h = block.forward(h, { keyMask: mask, rotate });
    return this.proj.forward(h);
  }
}
