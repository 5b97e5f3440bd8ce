// Learning-rate schedules: a pure function of the 1-based iteration number, so that a resumed run
// feeds exactly the lr values an uninterrupted one would.

/** lr for iteration `step` (1-based). Must be pure: resume relies on it. */
export type LrSchedule = (step: number) => number;

export interface WarmupCosineOptions {
  /** peak learning rate, reached at the end of warmup */
  lr: number;
  /** linear warmup iterations: lr * step / warmup for step <= warmup (default 0) */
  warmup?: number;
  /** iteration at which the cosine reaches the floor; the floor holds after it */
  totalSteps: number;
  /** the floor the cosine decays to, as an absolute lr (default 0.1 * lr) */
  minLr?: number;
}

/** Linear warmup from lr/warmup to lr, then cosine decay from lr to minLr at totalSteps, then minLr. */
export function warmupCosine(opts: WarmupCosineOptions): LrSchedule {
  const { lr, totalSteps } = opts;
  const warmup = opts.warmup ?? 0;
  const floor = opts.minLr ?? 0.1 * lr;
  if (!(Number.isFinite(lr) && lr >= 0)) throw new RangeError(`lr schedule: lr must be a finite non-negative number, got ${lr}`);
  if (!(Number.isFinite(floor) && floor >= 0 && floor <= lr)) throw new RangeError(`lr schedule: minLr must be in [0, lr=${lr}], got ${floor}`);
  if (!(Number.isInteger(warmup) && warmup >= 0)) throw new RangeError(`lr schedule: warmup must be a non-negative integer, got ${warmup}`);
  if (!(Number.isInteger(totalSteps) && totalSteps >= 1)) throw new RangeError(`lr schedule: totalSteps must be a positive integer, got ${totalSteps}`);
  return (step: number) => {
    if (step <= warmup) return (lr * step) / warmup;
    if (step >= totalSteps) return floor;
    const progress = (step - warmup) / (totalSteps - warmup);
    return floor + 0.5 * (lr - floor) * (1 + Math.cos(Math.PI * progress));
  };
}

export function constantLr(lr: number): LrSchedule {
  if (!(Number.isFinite(lr) && lr >= 0)) throw new RangeError(`lr must be a finite non-negative number, got ${lr}`);
  return () => lr;
}
