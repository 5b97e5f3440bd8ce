// One rectified-flow training batch per step from an encoded dataset, as the Trainer's DataSource:
//   bucket    one per batch (weighted by its examples), so latents share a size
//   task      per example, by the mixing ratio (the paper: t2i / reconstruction / editing 85 / 5 / 10),
//             renormalised over the tasks the bucket has
//   dropout   with probability p the condition is replaced by the dropped condition (the empty
//             prompt's), which is what CFG's unconditional branch feeds at sampling
//   t         logit-normal sigmoid(mean + std z) (SD3 / the paper) or uniform on (0, 1)
//   noise     standard normal
// Everything is drawn from the trainer's seeded, checkpointed rng, so a resumed run sees the same
// batches.
import { Rng } from '../../src/ir/init.ts';
import { fromFloat64 } from '../../src/io/host.ts';
import type { Batch, DataSource } from '../trainer.ts';
import { concatConditions, type Condition, type SeqAxes } from '../pipeline/condition.ts';
import { TASKS, type EncodedDataset, type Example, type Task } from './cache.ts';

export type TimestepDistribution = { kind: 'logit-normal'; mean: number; std: number } | { kind: 'uniform' };

export interface LoaderOptions {
  batch: number;
  /** condition dropout probability (0.1 is common) */
  dropout: number;
  /** task weights (any scale); tasks missing from the data get none */
  taskMix: Record<Task, number>;
  t: TimestepDistribution;
  seqAxes: SeqAxes;
}

export interface BatchInfo {
  step: number;
  bucket: number;
  tasks: Task[];
  dropped: boolean[];
  timesteps: number[];
}

export class LoaderError extends Error {
  override name = 'LoaderError';
}

/** '85,5,10' / 't2i=85,recon=5,edit=10' -> weights. */
export function parseTaskMix(s: string): Record<Task, number> {
  const parts = s.split(',').map((x) => x.trim());
  const out: Record<Task, number> = { t2i: 0, recon: 0, edit: 0 };
  if (parts.every((x) => /^[\d.]+$/.test(x))) {
    if (parts.length !== 3) throw new LoaderError(`--task-mix '${s}': give three weights t2i,recon,edit (e.g. 85,5,10)`);
    parts.forEach((x, i) => (out[TASKS[i]!] = Number(x)));
  } else
    for (const p of parts) {
      const m = /^(t2i|recon|edit)=([\d.]+)$/.exec(p);
      if (!m) throw new LoaderError(`--task-mix '${s}': '${p}' is not task=weight (tasks: t2i, recon, edit)`);
      out[m[1] as Task] = Number(m[2]);
    }
  if (Object.values(out).some((v) => !Number.isFinite(v) || v < 0) || Object.values(out).every((v) => v === 0)) throw new LoaderError(`--task-mix '${s}': weights must be non-negative and not all zero`);
  return out;
}

/** 'logit-normal', 'logit-normal:0,1', 'uniform'. */
export function parseTimestepDistribution(s: string): TimestepDistribution {
  if (s === 'uniform') return { kind: 'uniform' };
  const m = /^logit-normal(?::(-?[\d.]+),([\d.]+))?$/.exec(s);
  if (!m) throw new LoaderError(`--t-dist '${s}': use logit-normal[:MEAN,STD] or uniform`);
  const std = m[2] === undefined ? 1 : Number(m[2]);
  if (!(std > 0)) throw new LoaderError(`--t-dist '${s}': the std must be positive`);
  return { kind: 'logit-normal', mean: m[1] === undefined ? 0 : Number(m[1]), std };
}

export function sampleTimestep(rng: Rng, d: TimestepDistribution): number {
  if (d.kind === 'uniform') {
    let u = 0;
    while (u === 0) u = rng.uniform();
    return u;
  }
  return 1 / (1 + Math.exp(-(d.mean + d.std * rng.normal())));
}

/**
 * The DataSource, plus `info`: what the last batch drew (tasks, which rows were dropped), for
 * logs and tests.
 */
export function imageBatches(data: EncodedDataset, o: LoaderOptions): { source: DataSource; last(): BatchInfo | undefined } {
  if (!(Number.isInteger(o.batch) && o.batch >= 1)) throw new LoaderError(`--batch must be a positive integer, got ${o.batch}`);
  if (!(o.dropout >= 0 && o.dropout <= 1)) throw new LoaderError(`--cond-dropout must lie in [0, 1], got ${o.dropout}`);
  const byBucket = data.buckets.map((_, b) => {
    const ex: Record<Task, Example[]> = { t2i: [], recon: [], edit: [] };
    for (const e of data.examples) if (e.bucket === b) ex[e.task].push(e);
    return ex;
  });
  const weightOf = (b: number) => TASKS.reduce((a, t) => a + (o.taskMix[t] > 0 ? byBucket[b]![t].length : 0), 0);
  const bucketWeights = data.buckets.map((_, b) => weightOf(b));
  const total = bucketWeights.reduce((a, b) => a + b, 0);
  if (total === 0) throw new LoaderError(`no example of the tasks the mix asks for (${TASKS.filter((t) => o.taskMix[t] > 0).join(', ')})`);
  let info: BatchInfo | undefined;
  const pick = <T>(rng: Rng, xs: readonly T[]) => xs[rng.nextU32() % xs.length]!;
  const categorical = (rng: Rng, w: readonly number[]) => {
    const s = w.reduce((a, b) => a + b, 0);
    let u = rng.uniform() * s;
    for (let i = 0; i < w.length; i++) if ((u -= w[i]!) < 0 && w[i]! > 0) return i;
    for (let i = w.length - 1; i >= 0; i--) if (w[i]! > 0) return i;
    return 0;
  };
  const source: DataSource = (step, rng) => {
    const b = categorical(rng, bucketWeights);
    const ex = byBucket[b]!;
    const taskW = TASKS.map((t) => (ex[t].length ? o.taskMix[t] : 0));
    const chosen: Example[] = [], tasks: Task[] = [], dropped: boolean[] = [], ts: number[] = [];
    const conds: Condition[] = [];
    for (let i = 0; i < o.batch; i++) {
      const task = TASKS[categorical(rng, taskW)]!;
      const e = pick(rng, ex[task]);
      const drop = rng.uniform() < o.dropout;
      chosen.push(e);
      tasks.push(task);
      dropped.push(drop);
      conds.push(drop ? data.nullCondition : data.conditions[e.condition]!);
      ts.push(sampleTimestep(rng, o.t));
    }
    const first = data.latents[chosen[0]!.latent]!;
    const per = first.data.length;
    const lat = new Float64Array(o.batch * per), noise = new Float64Array(o.batch * per);
    chosen.forEach((e, i) => lat.set(data.latents[e.latent]!.data, i * per));
    for (let k = 0; k < noise.length; k++) noise[k] = rng.normal();
    const shape = [o.batch, ...first.shape];
    info = { step, bucket: b, tasks, dropped, timesteps: ts };
    const batch: Batch = {
      ...concatConditions(conds, o.seqAxes),
      latents: fromFloat64('f32', shape, lat),
      noise: fromFloat64('f32', shape, noise),
      timestep: fromFloat64('f32', [o.batch], ts),
    };
    return batch;
  };
  return { source, last: () => info };
}

export function conditionRows(c: Condition): number {
  return Object.values(c)[0]?.shape[0] ?? 0;
}
