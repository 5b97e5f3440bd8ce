// End to end: compiled AdamW step graphs trained by the runtime Trainer in onnxruntime CPU fit
// synthetic tasks. The thresholds are in the test names.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Embedding, Linear, Module, RMSNorm, TransformerBlock, range, type Tensor } from '../src/dsl/index.ts';
import { compileTrainStep } from '../src/train/step.ts';
import { fromFloat64 } from '../src/io/host.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { Trainer, type Batch, type DataSource } from '../runtime/trainer.ts';
import { warmupCosine } from '../runtime/schedule.ts';
import { listCheckpoints } from '../runtime/checkpoint.ts';
import { trainCommand } from '../src/cli/train.ts';
import { main } from '../src/cli/main.ts';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-train-e2e-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
const readMetrics = (f: string) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number; rejected: boolean });
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('training end to end (onnxruntime CPU)', () => {
  it('MLP regression (examples/train-mlp.ts through `unifusion train`): mean loss of the last 20 steps < 0.03 after 400 steps (≈1 at the start)', async () => {
    const out = path.join(tmpRoot, 'mlp');
    await trainCommand('examples/train-mlp.ts', { steps: 250, out, quiet: true, progress: false, intraOpThreads: 2 });
    expect(listCheckpoints(path.join(out, 'checkpoints')).map((c) => c.step)).toEqual([200, 250]); // every 100 (example default), keep 2, + the final
    await trainCommand('examples/train-mlp.ts', { steps: 400, out, resume: true, quiet: true, progress: false, intraOpThreads: 2 });
    const m = readMetrics(path.join(out, 'metrics.jsonl'));
    expect(m.map((r) => r.step)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    expect(m.every((r) => !r.rejected)).toBe(true);
    expect(mean(m.slice(0, 5).map((r) => r.loss))).toBeGreaterThan(0.5);
    expect(mean(m.slice(-20).map((r) => r.loss))).toBeLessThan(0.03);
    const params = readSafetensors(path.join(out, 'params.safetensors'));
    expect([...params.tensors.keys()].sort()).toEqual(['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight', 'out.bias', 'out.weight']);
    expect(params.metadata.step).toBe('400');
    for (const f of ['train-step.onnx', 'train-spec.json']) expect(fs.existsSync(path.join(out, f))).toBe(true);
  });

  it('a 2-layer transformer learns to reverse 6-token sequences: cross-entropy < 0.1 after 200 steps (ln 8 ≈ 2.08 at chance)', async () => {
    const V = 8, S = 6, B = 32, H = 32;
    class Reverser extends Module {
      tok = new Embedding(V, H, { std: 0.5 });
      pos = new Embedding(S, H, { std: 0.5 });
      layers = [0, 1].map(() => new TransformerBlock({ hidden: H, heads: 4, intermediate: 2 * H, rope: null }));
      norm = new RMSNorm(H);
      head = new Linear(H, V);
      forward(ids: Tensor): Tensor {
        let h = this.tok.forward(ids).add(this.pos.forward(range(S)));
        for (const l of this.layers) h = l.forward(h, { causal: false });
        return this.head.forward(this.norm.forward(h));
      }
    }
    const model = new Reverser();
    const step = compileTrainStep(
      {
        name: 'reverse',
        batch: { ids: { dtype: 'i64', shape: [B, S] }, target: { dtype: 'f32', shape: [B, S, V] } },
        // cross-entropy against one-hot targets, log-sum-exp stabilised by the row max
        loss: (b) => {
          const logits = model.forward(b.ids!);
          const mx = logits.max(-1, true);
          const lse = logits.sub(mx).exp().sum(-1, true).log().add(mx);
          return lse.sub(logits).mul(b.target!).sum(-1).mean();
        },
        seed: 1,
      },
      { clipNorm: 1, weightDecay: 0.01 },
    );
    const data: DataSource = (_i, rng): Batch => {
      const ids = new Float64Array(B * S), tgt = new Float64Array(B * S * V);
      for (let i = 0; i < B * S; i++) ids[i] = rng.nextU32() % V;
      for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) tgt[(b * S + s) * V + ids[b * S + (S - 1 - s)]!] = 1;
      return { ids: fromFloat64('i64', [B, S], ids), target: fromFloat64('f32', [B, S, V], tgt) };
    };
    const tr = await Trainer.create(step, { data, lr: warmupCosine({ lr: 3e-3, warmup: 20, totalSteps: 200 }), seed: 5, progress: false, intraOpThreads: 2 });
    const recs = await tr.train(200);
    await tr.close();
    expect(recs[0]!.loss).toBeGreaterThan(1.5);
    expect(recs.every((r) => !r.rejected)).toBe(true);
    expect(mean(recs.slice(-10).map((r) => r.loss))).toBeLessThan(0.1);
  });

  it('`unifusion train` reports a file that is not a train definition, and a fresh run into used checkpoints', async () => {
    const errs: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
    const code = process.exitCode;
    try {
      await main(['node', 'unifusion', 'train', 'examples/transformer.ts', '--steps', '1', '--out', path.join(tmpRoot, 'x')]);
      await main(['node', 'unifusion', 'train', 'examples/train-mlp.ts', '--steps', '1', '--out', path.join(tmpRoot, 'mlp'), '--no-progress']);
    } finally {
      process.stderr.write = write;
      process.exitCode = code;
    }
    expect(errs[0]).toBe("error: train file 'examples/transformer.ts' must default-export defineTrainStep({...})\n");
    expect(errs[1]).toMatch(/^error: --out '.*mlp' holds an earlier run \('checkpoints\/step-000000300\.safetensors', .*\); pass --resume to continue it, or choose a new folder\n$/);
  });
});
