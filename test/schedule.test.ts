// Recorded lr schedules (runtime/schedule.ts) and what `unifusion train --resume` does with them:
// a resumed run feeds the lr values an uninterrupted one would, and a changed --steps continues the
// schedule from the lr at the checkpoint instead of re-stretching it (which makes the lr jump).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { continueSchedule, scheduleEnd, scheduleFromRecord, warmupCosine, type ScheduleRecord } from '../runtime/schedule.ts';
import { trainCommand } from '../src/cli/train.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-schedule-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const base: ScheduleRecord = { segments: [{ kind: 'warmup-cosine', lr: 3e-3, warmup: 10, totalSteps: 100, minLr: 1e-4 }] };

describe('recorded schedules', () => {
  it('a one-segment record is exactly warmupCosine', () => {
    const a = scheduleFromRecord(base);
    const b = warmupCosine({ lr: 3e-3, warmup: 10, totalSteps: 100, minLr: 1e-4 });
    for (let s = 1; s <= 120; s++) expect(a(s)).toBe(b(s));
    expect(scheduleEnd(base)).toBe(100);
  });

  it.each([
    [60, 200],
    [60, 80],
    [99, 400],
    [100, 300],
  ])('resumed at %i with --steps %i: unchanged up to the checkpoint, continuous after it, at the floor at the new end', (at, total) => {
    const old = scheduleFromRecord(base);
    const rec = continueSchedule(base, at, total);
    const lr = scheduleFromRecord(rec);
    for (let s = 1; s <= at; s++) expect(lr(s)).toBe(old(s));
    // the first step after the resume moves by no more than one step of a cosine over the remaining span
    const maxStep = (Math.PI / 2) * (old(at) - 1e-4) * (Math.PI / (total - at));
    expect(Math.abs(lr(at + 1) - lr(at))).toBeLessThanOrEqual(maxStep + 1e-15);
    for (let s = at + 1; s < total; s++) expect(lr(s + 1)).toBeLessThanOrEqual(lr(s) + 1e-18); // decays monotonically
    expect(lr(total)).toBeCloseTo(1e-4, 15);
    expect(lr(total + 10)).toBe(1e-4);
    expect(scheduleEnd(rec)).toBe(total);
    // re-stretching instead would jump (what the issue saw: 3e-4 -> 1.7e-3)
    if (total > 100 && at > 10) expect(warmupCosine({ lr: 3e-3, warmup: 10, totalSteps: total, minLr: 1e-4 })(at + 1) / old(at)).toBeGreaterThan(1.15);
  });

  it('during warmup the cosine simply ends later; a second change continues from the first', () => {
    const w = continueSchedule(base, 5, 200);
    expect(w.segments).toEqual([{ ...base.segments[0], totalSteps: 200 }]);
    const once = continueSchedule(base, 50, 200);
    const twice = continueSchedule(once, 120, 500);
    const a = scheduleFromRecord(once), b = scheduleFromRecord(twice);
    for (let s = 1; s <= 120; s++) expect(b(s)).toBe(a(s));
    expect(b(500)).toBeCloseTo(1e-4, 15);
    // the same --steps again: the record is kept as it is (a resumed run replays it bit for bit)
    expect(continueSchedule(twice, 300, 500)).toBe(twice);
  });
});

describe('unifusion train --resume and the lr schedule', () => {
  const metrics = (out: string) => fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; lr: number });
  const opts = { quiet: true, progress: false, typecheck: false, intraOpThreads: 1, checkpointEvery: 5, keep: 10, warmup: 2, lr: 0.01, minLr: 0.001 } as const;

  it('a longer --steps continues from the lr at the checkpoint (no jump), says so, and a further resume replays it', async () => {
    const out = path.join(root, 'longer');
    await trainCommand('examples/train-mlp.ts', { ...opts, steps: 10, out });
    const lines: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stdout.write;
    try {
      await trainCommand('examples/train-mlp.ts', { quiet: false, progress: false, typecheck: false, intraOpThreads: 1, checkpointEvery: 5, steps: 30, out, resume: true });
    } finally {
      process.stdout.write = write;
    }
    expect(lines.join('')).toMatch(/resuming at step 10 with --steps 30 instead of 10: the lr continues from 1\.00e-3 \(its value at step 10\) down a cosine to 1\.00e-3 at step 30/);
    const m = metrics(out);
    expect(m.map((r) => r.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    // step 10 ended the original schedule at its floor: it stays there instead of jumping back up
    for (const r of m.slice(10)) expect(r.lr).toBeCloseTo(0.001, 9);

    // resumed mid-decay with a longer run: continuous at the seam
    const mid = path.join(root, 'mid');
    await trainCommand('examples/train-mlp.ts', { ...opts, steps: 20, checkpointEvery: 5, out: mid });
    fs.rmSync(path.join(mid, 'checkpoints', 'step-000000020.safetensors'));
    fs.rmSync(path.join(mid, 'checkpoints', 'step-000000015.safetensors'));
    // (the folder's marker still lists them: removing our own files by hand is allowed)
    await trainCommand('examples/train-mlp.ts', { ...opts, lr: undefined, warmup: undefined, minLr: undefined, steps: 40, out: mid, resume: true });
    const mm = metrics(mid);
    const at10 = mm.find((r) => r.step === 10)!.lr, at11 = mm.find((r) => r.step === 11)!.lr;
    const stretched = warmupCosine({ lr: 0.01, warmup: 2, totalSteps: 40, minLr: 0.001 })(11);
    expect(Math.abs(at11 - at10)).toBeLessThan(0.05 * at10);
    expect(stretched / at10).toBeGreaterThan(1.2); // what re-stretching would have done
    expect(mm.find((r) => r.step === 40)!.lr).toBeCloseTo(0.001, 9);

    // a further resume with the same --steps replays the continued schedule exactly
    const before = mm.filter((r) => r.step > 30).map((r) => r.lr);
    fs.rmSync(path.join(mid, 'checkpoints', 'step-000000040.safetensors'));
    fs.rmSync(path.join(mid, 'checkpoints', 'step-000000035.safetensors'));
    await trainCommand('examples/train-mlp.ts', { quiet: true, progress: false, typecheck: false, intraOpThreads: 1, checkpointEvery: 5, keep: 10, steps: 40, out: mid, resume: true });
    expect(metrics(mid).filter((r) => r.step > 30).map((r) => r.lr)).toEqual(before);
  }, 240_000);

  it('resumed without --steps, a run goes on to the end of its recorded schedule (not the train file default)', async () => {
    const out = path.join(root, 'nosteps');
    await trainCommand('examples/train-mlp.ts', { ...opts, steps: 10, out });
    fs.rmSync(path.join(out, 'checkpoints', 'step-000000010.safetensors'));
    const r = await trainCommand('examples/train-mlp.ts', { quiet: true, progress: false, typecheck: false, intraOpThreads: 1, out, resume: true });
    expect(r.records.map((x) => x.step)).toEqual([6, 7, 8, 9, 10]);
  }, 120_000);
});
