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

// ---------------------------------------------------------------------------------------------
// Recorded schedules: what a checkpoint stores so that a resumed run feeds the same lr values,
// and continues smoothly when the run is extended or shortened (--steps changed).
// ---------------------------------------------------------------------------------------------

/** One piece of a recorded schedule. A later piece takes over for iterations after its `from`. */
export type ScheduleSegment =
  | { kind: 'warmup-cosine'; lr: number; warmup: number; totalSteps: number; minLr: number }
  /** cosine from `lr` (the value at iteration `from`) down to `minLr` at iteration `to`, then `minLr` */
  | { kind: 'cosine-from'; from: number; lr: number; to: number; minLr: number };

export interface ScheduleRecord {
  segments: ScheduleSegment[];
}

const fromOf = (s: ScheduleSegment) => (s.kind === 'cosine-from' ? s.from : 0);

/** The lr function of a recorded schedule. */
export function scheduleFromRecord(rec: ScheduleRecord): LrSchedule {
  const fns = rec.segments.map((s): [number, LrSchedule] => [
    fromOf(s),
    s.kind === 'warmup-cosine'
      ? warmupCosine({ lr: s.lr, warmup: Math.min(s.warmup, s.totalSteps), totalSteps: s.totalSteps, minLr: s.minLr })
      : (step) => (step >= s.to ? s.minLr : s.minLr + 0.5 * (s.lr - s.minLr) * (1 + Math.cos((Math.PI * (step - s.from)) / (s.to - s.from)))),
  ]);
  return (step) => {
    let f = fns[0]![1];
    for (const [from, g] of fns) if (step > from) f = g;
    return f(step);
  };
}

/** The iteration at which the recorded schedule reaches its floor (the --steps it was made for). */
export function scheduleEnd(rec: ScheduleRecord): number {
  const last = rec.segments.at(-1)!;
  return last.kind === 'warmup-cosine' ? last.totalSteps : last.to;
}

export function parseScheduleRecord(json: string | undefined): ScheduleRecord | undefined {
  if (json === undefined) return undefined;
  try {
    const r = JSON.parse(json) as ScheduleRecord;
    const ok = Array.isArray(r.segments) && r.segments.length > 0 && r.segments.every((s) => (s.kind === 'warmup-cosine' || s.kind === 'cosine-from') && Object.values(s).every((v) => typeof v === 'string' || Number.isFinite(v)));
    return ok ? r : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Extend or shorten a recorded schedule at iteration `at` (the checkpoint's) to end at `total`,
 * keeping the lr continuous: iterations up to `at` keep their values; from there the lr decays by
 * cosine from its value at `at` to the floor at `total`. (Stretching the original cosine instead
 * would make the lr jump at the resume.) During warmup nothing has decayed yet, so the schedule's
 * end simply moves.
 */
export function continueSchedule(rec: ScheduleRecord, at: number, total: number): ScheduleRecord {
  if (total === scheduleEnd(rec) || total <= at) return rec;
  const first = rec.segments[0]!;
  if (rec.segments.length === 1 && first.kind === 'warmup-cosine' && at <= first.warmup) return { segments: [{ ...first, totalSteps: total }] };
  const lrAt = scheduleFromRecord(rec)(at);
  const floor = rec.segments.at(-1)!.minLr;
  // pieces that start at or after `at` are replaced (a second change at the same iteration)
  return { segments: [...rec.segments.filter((s) => fromOf(s) < at || s.kind === 'warmup-cosine'), { kind: 'cosine-from', from: at, lr: lrAt, to: total, minLr: floor }] };
}
