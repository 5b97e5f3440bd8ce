// The runtime Trainer: lr schedule, seeded data order, metrics, checkpoints (atomic, pruned,
// validated), bit-identical resume (in-process and across a real SIGKILL of a child process),
// rejection of non-finite steps, and clear errors that leave the last good checkpoint intact.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { Rng } from '../src/ir/init.ts';
import { fromFloat64, type HostTensor } from '../src/io/host.ts';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { CheckpointError, latestCheckpoint, listCheckpoints } from '../runtime/checkpoint.ts';
import { warmupCosine } from '../runtime/schedule.ts';
import { shuffledBatches, Trainer, TrainerError, type Batch, type DataSource, type TrainerOptions } from '../runtime/trainer.ts';
import { BATCH, mlpData, mlpStep } from './fixtures/train/mlp.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-trainer-'));
let tmpCount = 0;
const tmpDir = () => fs.mkdtempSync(path.join(tmpRoot, `t${tmpCount++}-`));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

const step = mlpStep();
const base = (extra: Partial<TrainerOptions> = {}): TrainerOptions => ({ data: mlpData, lr: 1e-2, seed: 42, intraOpThreads: 1, progress: false, ...extra });
const fileHash = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const dirHashes = (d: string) => Object.fromEntries(fs.readdirSync(d).sort().map((n) => [n, fileHash(path.join(d, n))]));
const copyState = (m: Map<string, HostTensor>) => new Map([...m].map(([k, v]) => [k, { ...v, data: v.data.slice() } as HostTensor]));
const bitsEqual = (a: HostTensor, b: HostTensor) => Buffer.compare(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength), Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength)) === 0;
function expectSameState(a: Map<string, HostTensor>, b: Map<string, HostTensor>): void {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [k, v] of a) expect(bitsEqual(v, b.get(k)!), k).toBe(true);
}
const readMetrics = (f: string) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
const withoutTimes = (rs: Record<string, unknown>[]) => rs.map(({ time: _t, dt: _d, ...r }) => r);

describe('lr schedule', () => {
  it('warms up linearly, decays by cosine to the floor, then holds it', () => {
    const s = warmupCosine({ lr: 1, warmup: 10, totalSteps: 110, minLr: 0.1 });
    expect(s(1)).toBeCloseTo(0.1);
    expect(s(5)).toBeCloseTo(0.5);
    expect(s(10)).toBe(1);
    expect(s(60)).toBeCloseTo(0.55); // halfway through the decay
    expect(s(110)).toBeCloseTo(0.1);
    expect(s(500)).toBe(0.1);
    for (let i = 11; i < 110; i++) expect(s(i + 1)).toBeLessThanOrEqual(s(i));
    expect(() => warmupCosine({ lr: 1, totalSteps: 10, minLr: 2 })).toThrow(/minLr/);
  });
});

describe('data order', () => {
  it('shuffledBatches: each epoch is a permutation that depends only on the seed and the step', () => {
    const items = Array.from({ length: 10 }, (_, i) => i);
    const collate = (xs: number[]): Batch => ({ x: fromFloat64('f32', [xs.length], xs) });
    const src = shuffledBatches(items, 3, collate); // 3 batches an epoch, 1 example dropped
    const take = (seed: number, steps: number[]) => steps.map((s) => Array.from((src(s, new Rng(0), { seed }) as Batch).x!.data as Float32Array));
    const a = take(1, [0, 1, 2, 3, 4, 5]);
    expect(new Set(a.slice(0, 3).flat()).size).toBe(9);
    expect(take(1, [4, 0, 5])).toEqual([a[4], a[0], a[5]]); // random access = sequential
    expect(a.slice(3)).not.toEqual(a.slice(0, 3)); // reshuffled per epoch
    expect(take(2, [0])).not.toEqual([a[0]]);
  });
});

describe('Trainer', () => {
  it('trains, writes one metrics line per step and keeps the last N checkpoints', async () => {
    const dir = tmpDir();
    const tr = await Trainer.create(step, base({ checkpointDir: path.join(dir, 'ckpt'), checkpointEvery: 2, keepLast: 2, metricsPath: path.join(dir, 'm.jsonl') }));
    const recs = await tr.train(7);
    await tr.close();
    expect(recs.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(recs.map((r) => r.t)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(recs.at(-1)!.loss).toBeLessThan(recs[0]!.loss);
    expect(listCheckpoints(path.join(dir, 'ckpt')).map((c) => c.step)).toEqual([6, 7]); // every 2 + the final one, 2 kept
    const m = readMetrics(path.join(dir, 'm.jsonl'));
    expect(m).toHaveLength(7);
    expect(Object.keys(m[0]!).sort()).toEqual(['dt', 'grad_norm', 'loss', 'lr', 'rejected', 'step', 't', 'time']);
    expect(m[6]).toMatchObject({ step: 7, rejected: false, lr: expect.closeTo(1e-2, 8) });
    const ck = readSafetensors(latestCheckpoint(path.join(dir, 'ckpt'))!.path);
    expect(ck.metadata).toMatchObject({ step: '7', updates: '7', seed: '42', config_hash: tr.configHash, name: 'mlp' });
    expect(JSON.parse(ck.metadata.rng!)).toHaveLength(4);
    expect([...ck.tensors.keys()].sort()).toEqual(step.spec.carry.map((c) => c.input).sort());
  });

  it('carries the next.* outputs into the next step by reference (no copies on the host)', async () => {
    const tr = await Trainer.create(step, base());
    let seen: Map<string, HostTensor> | undefined;
    await tr.train(1);
    seen = await tr.snapshot();
    const a1 = seen.get('a.weight')!.data;
    expect((await tr.snapshot()).get('a.weight')!.data).toBe(a1); // the state is the output array itself
    await tr.train(2);
    expect((await tr.snapshot()).get('a.weight')!.data).not.toBe(a1);
    await tr.close();
  });

  it('onnxruntime-node 1.30 fills pre-allocated outputs but still returns fresh copies (so the trainer swaps references)', async () => {
    const s = await ort.InferenceSession.create(encodeModel(step.emitted.model));
    const st = step.initialState();
    const feeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of st) feeds[k] = new ort.Tensor('float32', v.data as Float32Array, v.shape);
    const b = mlpData(0, new Rng(1), { seed: 1 }) as Batch;
    for (const [k, v] of Object.entries(b)) feeds[k] = new ort.Tensor('float32', v.data as Float32Array, v.shape);
    feeds.lr = new ort.Tensor('float32', Float32Array.of(1e-3), []);
    feeds.step = new ort.Tensor('float32', Float32Array.of(1), []);
    const pre = new ort.Tensor('float32', new Float32Array(32 * 4), [32, 4]);
    const out = await s.run(feeds, { 'next.a.weight': pre, loss: null } as unknown as ort.InferenceSession.FetchesType);
    await s.release();
    expect((pre.data as Float32Array).some((x) => x !== 0)).toBe(true); // written into
    expect(out['next.a.weight']!.data).not.toBe(pre.data); // but what comes back is a copy
    expect(Array.from(out['next.a.weight']!.data as Float32Array)).toEqual(Array.from(pre.data as Float32Array));
  });

  it('resume continues bit-identically (in process): 2K steps straight = K steps, new trainer, K steps', async () => {
    const K = 6;
    const a = await Trainer.create(step, base({ lr: warmupCosine({ lr: 1e-2, warmup: 3, totalSteps: 2 * K }) }));
    await a.train(2 * K);
    const straight = copyState(await a.snapshot());
    await a.close();
    const dir = tmpDir();
    const metricsPath = path.join(dir, 'm.jsonl');
    const opts = base({ lr: warmupCosine({ lr: 1e-2, warmup: 3, totalSteps: 2 * K }), checkpointDir: dir, checkpointEvery: 1, resume: true, metricsPath });
    const b1 = await Trainer.create(step, opts);
    await b1.train(K);
    await b1.close();
    // what a killed run leaves: a line past the checkpoint and a torn one; both go on resume
    fs.appendFileSync(metricsPath, JSON.stringify({ step: K + 1, loss: 1 }) + '\n{"step": ');
    const b2 = await Trainer.create(step, opts);
    expect(b2.stepsDone).toBe(K);
    expect(b2.resumedFrom).toBe(latestCheckpoint(dir)!.path);
    await b2.train(2 * K);
    expectSameState(straight, await b2.snapshot());
    await b2.close();
    expect(readMetrics(metricsPath).map((r) => r.step)).toEqual(Array.from({ length: 2 * K }, (_, i) => i + 1));
  });

  it('resume after kill -9 of a child process is bit-identical to an uninterrupted run', async () => {
    const K = 20;
    const child = (dir: string, slowMs = 0) => {
      const p = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/fixtures/train/child.ts'), dir, String(2 * K), String(slowMs)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '', err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>((res) => p.on('exit', (code, signal) => res({ code, signal, out, err })));
      return { p, done };
    };
    const straightDir = tmpDir(), killedDir = tmpDir();
    const straight = child(straightDir);
    // the interrupted run: slowed down, and it stalls before the end, so it is surely mid-run when killed
    const victim = child(killedDir, 25);
    const ckDir = path.join(killedDir, 'ckpt');
    const t0 = Date.now();
    while ((latestCheckpoint(ckDir)?.step ?? 0) < K) {
      if (Date.now() - t0 > 30_000) throw new Error(`no checkpoint ${K} after 30 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
    victim.p.kill('SIGKILL');
    const killed = await victim.done;
    expect(killed.signal).toBe('SIGKILL');
    const atKill = latestCheckpoint(ckDir)!.step;
    expect(atKill).toBeGreaterThanOrEqual(K);
    expect(atKill).toBeLessThan(2 * K);
    expect(fs.existsSync(path.join(killedDir, 'final.safetensors'))).toBe(false);

    const resumed = await child(killedDir).done;
    expect(resumed.code, resumed.err).toBe(0);
    const info = JSON.parse(resumed.out) as { resumedFrom: string; resumedAt: number; steps: number };
    expect(info.resumedAt).toBeGreaterThanOrEqual(atKill); // from the latest checkpoint written before the kill
    expect(info.steps).toBe(2 * K);
    const s = await straight.done;
    expect(s.code, s.err).toBe(0);

    const A = readSafetensors(path.join(straightDir, 'final.safetensors')).tensors;
    const B = readSafetensors(path.join(killedDir, 'final.safetensors')).tensors;
    expectSameState(A, B);
    // the metrics of the resumed run replay the same steps: one line per step, same losses
    const ma = readMetrics(path.join(straightDir, 'metrics.jsonl')), mb = readMetrics(path.join(killedDir, 'metrics.jsonl'));
    expect(mb.map((r) => r.step)).toEqual(Array.from({ length: 2 * K }, (_, i) => i + 1));
    expect(withoutTimes(mb)).toEqual(withoutTimes(ma));
    expect(fs.readdirSync(ckDir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  }, 60_000);

  it('rejects a step whose loss is NaN: params and state unchanged, reported, t not advanced', async () => {
    const dir = tmpDir();
    const logs: string[] = [];
    const nanAt = new Set([2]);
    const data: DataSource = (i, rng, ctx) => {
      const b = mlpData(i, rng, ctx) as Batch;
      if (nanAt.has(i)) (b.y!.data as Float32Array)[3] = NaN;
      return b;
    };
    const tr = await Trainer.create(step, base({ data, metricsPath: path.join(dir, 'm.jsonl'), log: (l) => logs.push(l), maxRejections: 3 }));
    await tr.train(2);
    const before = copyState(await tr.snapshot());
    const r = await tr.runStep();
    expect(r).toMatchObject({ step: 3, t: 3, rejected: true });
    expect(Number.isNaN(r.loss)).toBe(true);
    expectSameState(before, await tr.snapshot());
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/step 3 rejected: loss NaN.*1\/3 consecutive/);
    const next = await tr.runStep();
    expect(next).toMatchObject({ step: 4, t: 3, rejected: false }); // the update count did not move
    expect(tr.updatesDone).toBe(3);
    const m = readMetrics(path.join(dir, 'm.jsonl'));
    expect(m[2]).toMatchObject({ step: 3, rejected: true, loss: 'NaN' });
    expect(m[3]).toMatchObject({ step: 4, rejected: false });

    // M consecutive rejections stop the run with a clear error
    for (let i = 4; i < 10; i++) nanAt.add(i);
    const kept = copyState(await tr.snapshot());
    await expect(tr.train(20)).rejects.toThrow(/training stopped at step 7: 3 consecutive steps had a non-finite loss or gradient norm/);
    expectSameState(kept, await tr.snapshot());
    await tr.close();
  });

  it('a batch that does not fit the graph is a clear error, and the last good checkpoint stays intact', async () => {
    const dir = tmpDir();
    const ck = path.join(dir, 'ckpt');
    let bad: ((b: Batch) => Batch) | undefined;
    const data: DataSource = (i, rng, ctx) => {
      const b = mlpData(i, rng, ctx) as Batch;
      return i === 3 && bad ? bad(b) : b;
    };
    const run = async () => {
      fs.rmSync(dir, { recursive: true, force: true });
      const tr = await Trainer.create(step, base({ data, checkpointDir: ck, checkpointEvery: 1, keepLast: 2, metricsPath: path.join(dir, 'm.jsonl') }));
      await tr.train(3);
      const hashes = dirHashes(ck);
      const err = await tr.train(6).then(() => undefined, (e: unknown) => e);
      await tr.close();
      expect(err).toBeInstanceOf(TrainerError);
      expect(dirHashes(ck)).toEqual(hashes);
      expect(readMetrics(path.join(dir, 'm.jsonl'))).toHaveLength(3);
      return (err as Error).message;
    };
    bad = (b) => ({ ...b, x: fromFloat64('f32', [BATCH, 5], new Float64Array(BATCH * 5)) });
    expect(await run()).toBe(`step 4: batch input 'x': dim 1 mismatch: expected f32[${BATCH}, 4], given f32[${BATCH}, 5]`);
    bad = (b) => ({ ...b, y: fromFloat64('f64', [BATCH, 1], new Float64Array(BATCH)) });
    expect(await run()).toBe(`step 4: batch input 'y': dtype mismatch: expected f32[${BATCH}, 1], given f64[${BATCH}, 1]`);
    bad = (b) => ({ x: b.x! });
    expect(await run()).toBe(`step 4: batch input 'y' is missing (expected f32[${BATCH}, 1])`);
    bad = (b) => ({ ...b, z: b.x! });
    expect(await run()).toMatch(/^step 4: batch input 'z': not an input of the step graph \(its batch inputs are 'x', 'y'\)$/);
    // and the intact checkpoint resumes
    const tr = await Trainer.create(step, base({ checkpointDir: ck, resume: true }));
    expect(tr.stepsDone).toBe(3);
    await tr.close();
  });

  it('a failed iteration (data source throws) leaves no trace: retrying continues as if it never happened', async () => {
    const a = await Trainer.create(step, base());
    await a.train(4);
    let fail = true;
    const data: DataSource = (i, rng, ctx) => {
      const b = mlpData(i, rng, ctx); // draws from rng before failing
      if (i === 2 && fail) throw new Error('disk hiccup');
      return b;
    };
    const b = await Trainer.create(step, base({ data }));
    await b.train(2);
    await expect(b.runStep()).rejects.toThrow(/^step 3: the data source failed: disk hiccup$/);
    expect(b.stepsDone).toBe(2);
    fail = false;
    await b.train(4);
    expectSameState(await a.snapshot(), await b.snapshot());
    await a.close();
    await b.close();
  });

  it('a checkpoint from another config (hash differs) is refused, naming the difference; it stays intact', async () => {
    const dir = tmpDir();
    const a = await Trainer.create(step, base({ checkpointDir: dir }));
    await a.train(2);
    await a.close();
    const before = dirHashes(dir);
    const other = mlpStep({ clipNorm: 1, weightDecay: 0.1 }); // same tensors, different optimizer graph
    const err = await Trainer.create(other, base({ checkpointDir: dir, resume: true })).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toMatch(/does not fit this training config:\n {2}- config hash differs: checkpoint has [0-9a-f]{16}… \(step graph 'mlp'\), this trainer's step graph has [0-9a-f]{16}…/);
    expect(dirHashes(dir)).toEqual(before);
    // opting in accepts it, since every tensor fits
    const ok = await Trainer.create(other, base({ checkpointDir: path.join(dir, 'elsewhere'), resume: latestCheckpoint(dir)!.path, allowConfigMismatch: true }));
    expect(ok.stepsDone).toBe(2);
    await ok.close();
    // and a fresh run into a dir that holds checkpoints is refused rather than clobbering them
    await expect(Trainer.create(step, base({ checkpointDir: dir }))).rejects.toThrow(/already holds checkpoints \(latest: step 2\); resume from them or use another dir/);
    expect(dirHashes(dir)).toEqual(before);
  });

  it('a checkpoint whose tensor shapes differ is refused, naming each tensor and both shapes', async () => {
    const dir = tmpDir();
    const a = await Trainer.create(mlpStep(undefined, 16), base({ checkpointDir: dir }));
    await a.train(1);
    await a.close();
    const before = dirHashes(dir);
    const err = await Trainer.create(step, base({ checkpointDir: dir, resume: true })).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    const msg = (err as Error).message;
    expect(msg).toContain("tensor 'a.weight' is f32[16, 4] in the checkpoint, expected f32[32, 4]");
    expect(msg).toContain("tensor 'b.weight' is f32[1, 16] in the checkpoint, expected f32[1, 32]");
    expect(msg).toMatch(/… and \d+ more$/);
    expect(msg).toContain('config hash differs');
    // same hash but a tampered shape: the shape check alone catches it
    const ck = latestCheckpoint(dir)!.path;
    const good = await Trainer.create(mlpStep(undefined, 16), base({ checkpointDir: path.join(dir, 'x'), resume: ck }));
    const hash = good.configHash;
    await good.close();
    const c = readSafetensors(ck);
    c.tensors.set('b.bias', fromFloat64('f32', [2], [0, 0]));
    const tampered = path.join(tmpDir(), 'step-000000001.safetensors');
    writeSafetensors(tampered, c.tensors, c.metadata);
    expect(c.metadata.config_hash).toBe(hash);
    await expect(Trainer.create(mlpStep(undefined, 16), base({ resume: tampered }))).rejects.toThrow(/does not fit this training config:\n {2}- tensor 'b\.bias' is f32\[2\] in the checkpoint, expected f32\[1\]$/);
    expect(dirHashes(dir)).toEqual(before);
  });

  it('a truncated checkpoint is a clear error; the older good one stays intact and resumes', async () => {
    const dir = tmpDir();
    const a = await Trainer.create(step, base({ checkpointDir: dir, checkpointEvery: 1, keepLast: 3 }));
    await a.train(3);
    await a.close();
    const [c1, c2, c3] = listCheckpoints(dir);
    const size = fs.statSync(c3!.path).size;
    fs.truncateSync(c3!.path, size - 100);
    const before = { c1: fileHash(c1!.path), c2: fileHash(c2!.path) };
    const err = await Trainer.create(step, base({ checkpointDir: dir, resume: true })).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    const msg = (err as Error).message;
    expect(msg).toContain(`checkpoint '${c3!.path}' is unreadable (truncated or corrupt)`);
    expect(msg).toMatch(/file truncated\?/);
    expect(msg).toContain(`the newest of them is '${c2!.path}'`);
    expect({ c1: fileHash(c1!.path), c2: fileHash(c2!.path) }).toEqual(before);
    // header cut too: still named as truncated
    fs.truncateSync(c3!.path, 20);
    await expect(Trainer.create(step, base({ checkpointDir: dir, resume: true }))).rejects.toThrow(/is unreadable \(truncated or corrupt\).*header length \d+ runs past the end of the file/);
    // once the bad file is moved away, the run resumes from the good one and carries on
    fs.renameSync(c3!.path, path.join(tmpDir(), 'bad.safetensors'));
    const b = await Trainer.create(step, base({ checkpointDir: dir, resume: true }));
    expect(b.stepsDone).toBe(2);
    await b.train(4);
    await b.close();
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([1, 2, 4]);
  });

  it('runs from a saved model + spec JSON + init params, with the same config hash as the compiled step', async () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'step.onnx'), encodeModel(step.emitted.model));
    fs.writeFileSync(path.join(dir, 'spec.json'), JSON.stringify(step.spec));
    const init = step.initialState();
    writeSafetensors(path.join(dir, 'init.safetensors'), new Map(step.spec.params.map((p) => [p.name, init.get(p.name)!])));
    const a = await Trainer.create(step, base());
    await a.train(4);
    const b = await Trainer.create({ model: path.join(dir, 'step.onnx'), spec: path.join(dir, 'spec.json'), init: path.join(dir, 'init.safetensors') }, base());
    await b.train(4);
    expect(b.configHash).toBe(a.configHash);
    expectSameState(await a.snapshot(), await b.snapshot());
    await a.close();
    await b.close();
    await expect(Trainer.create({ model: path.join(dir, 'step.onnx'), spec: path.join(dir, 'spec.json') }, base())).rejects.toThrow(/needs 'init'/);
  });
});
