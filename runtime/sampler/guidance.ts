// Classifier-free guidance on flow velocities.
//
//   CFG        v = u + g (c - u), u = the velocity under the unconditional branch: the dropped
//              condition training used (the empty prompt's condition), or, for true CFG, a
//              negative prompt's condition. g = 1 is the conditional model alone (u is not run).
//   norm       v <- v * |c| / |v| per token (Qwen-Image's true-CFG and Lumina-2's
//              cfg_normalization): guidance changes the direction, the conditional model keeps the
//              magnitude, so large g no longer over-saturates. A token is one DiT patch: the
//              p x p pixels of the latent over all channels (the packed [B, seq, C p p] rows those
//              pipelines take the norm over).
//   truncation guidance only while 1 - sigma < ratio (Lumina-2's cfg_trunc_ratio: the early,
//              high-noise part, where layout is decided); afterwards the conditional branch alone
//              runs, at half the batch.
// Both branches go through the DiT in ONE batched call (cond rows first, then uncond).

export interface LatentLayout {
  /** images in the batch (not counting the uncond copies) */
  batch: number;
  channels: number;
  height: number;
  width: number;
  /** DiT patch size: the token over which norms are taken */
  patch: number;
}

export interface GuidanceOptions {
  /** g; 1 disables guidance (the unconditional branch is never run) */
  scale: number;
  /** rescale the guided velocity to the conditional one's norm, per token */
  normalize?: boolean;
  /** guidance while 1 - sigma < truncation (default 1: every step) */
  truncation?: number;
}

/** One DiT call: the conditional rows only ('cond'), or cond rows then uncond rows in one batch ('both'). */
export type BranchModel = (x: Float64Array, sigma: number, branches: 'cond' | 'both') => Promise<Float64Array>;

/** A velocity field over the whole batch at one sigma. */
export type Velocity = (x: Float64Array, sigma: number, info: StepInfo) => Promise<Float64Array>;

export interface StepInfo {
  /** 0-based step */
  step: number;
  steps: number;
  sigma: number;
  sigmaNext: number;
  /** 0: the step's first evaluation; 1: Heun's corrector */
  stage: 0 | 1;
}

export class GuidanceError extends Error {
  override name = 'GuidanceError';
}

export function checkGuidance(g: GuidanceOptions): void {
  if (!(Number.isFinite(g.scale) && g.scale >= 0)) throw new GuidanceError(`guidance scale must be a non-negative number, got ${g.scale}`);
  const t = g.truncation ?? 1;
  if (!(Number.isFinite(t) && t >= 0 && t <= 1)) throw new GuidanceError(`CFG truncation must lie in [0, 1], got ${t}`);
}

/** Whether guidance runs at this sigma. */
export function guidanceActive(g: GuidanceOptions, sigma: number): boolean {
  if (g.scale === 1) return false;
  return 1 - sigma < (g.truncation ?? 1);
}

/** u + g (c - u), elementwise. */
export function cfgCombine(c: ArrayLike<number>, u: ArrayLike<number>, scale: number): Float64Array {
  if (c.length !== u.length) throw new GuidanceError(`conditional and unconditional velocities differ in size (${c.length} vs ${u.length})`);
  const out = new Float64Array(c.length);
  for (let i = 0; i < out.length; i++) out[i] = u[i]! + scale * (c[i]! - u[i]!);
  return out;
}

/** v <- v * |c| / |v| for every token (p x p patch over all channels) of [B, C, H, W]; in place. */
export function cfgRenormalize(v: Float64Array, c: ArrayLike<number>, l: LatentLayout): Float64Array {
  const { batch: B, channels: C, height: H, width: W, patch: p } = l;
  if (v.length !== B * C * H * W || c.length !== v.length) throw new GuidanceError(`velocity of ${v.length} values is not [${B}, ${C}, ${H}, ${W}]`);
  if (H % p || W % p) throw new GuidanceError(`latent ${H}x${W} does not split into ${p}x${p} tokens`);
  for (let b = 0; b < B; b++)
    for (let r = 0; r < H; r += p)
      for (let q = 0; q < W; q += p) {
        let nc = 0, nv = 0;
        for (let ch = 0; ch < C; ch++)
          for (let y = r; y < r + p; y++) {
            const row = ((b * C + ch) * H + y) * W;
            for (let x = q; x < q + p; x++) (nc += c[row + x]! ** 2), (nv += v[row + x]! ** 2);
          }
        // a zero guided velocity has no direction to rescale; leave it
        if (nv === 0) continue;
        const k = Math.sqrt(nc / nv);
        for (let ch = 0; ch < C; ch++)
          for (let y = r; y < r + p; y++) {
            const row = ((b * C + ch) * H + y) * W;
            for (let x = q; x < q + p; x++) v[row + x]! *= k;
          }
      }
  return v;
}

/**
 * The guided velocity field over a BranchModel: one batched DiT call of cond + uncond while
 * guidance is active, the conditional rows alone otherwise.
 */
export function guided(model: BranchModel, g: GuidanceOptions, layout: LatentLayout): Velocity {
  checkGuidance(g);
  const n = layout.batch * layout.channels * layout.height * layout.width;
  return async (x, sigma) => {
    if (!guidanceActive(g, sigma)) {
      const c = await model(x, sigma, 'cond');
      if (c.length !== n) throw new GuidanceError(`the model returned ${c.length} values for a batch of ${n}`);
      return c;
    }
    const both = await model(x, sigma, 'both');
    if (both.length !== 2 * n) throw new GuidanceError(`the model returned ${both.length} values for cond + uncond batches of ${n} each`);
    const c = both.subarray(0, n), u = both.subarray(n);
    const v = cfgCombine(c, u, g.scale);
    return g.normalize ? cfgRenormalize(v, c, layout) : v;
  };
}
