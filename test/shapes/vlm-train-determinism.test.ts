// Reproducibility of `--train`: the shapes VLM's training with 2 onnxruntime threads gives the same
// parameters bit for bit on every run. Before gather_grad stopped using ScatterND(add) (whose
// multi-threaded CPU kernel loses updates to repeated indices), two runs differed from step 2 on
// and drifted into different VLMs (examples/shapes/NOTES.md, phase 5).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { trainCommand } from '../../src/cli/train.ts';

describe('shapes VLM training is deterministic with 2 threads', () => {
  it('two runs of 6 steps give identical params and losses', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-vlm-det-'));
    process.env.SHAPES_VLM_ROWS = '200';
    try {
      const outs: string[] = [];
      for (const run of ['a', 'b']) {
        const out = path.join(tmp, run);
        await trainCommand('examples/shapes/train-vlm.ts', { out, steps: 6, quiet: true, progress: false, typecheck: false, intraOpThreads: 2 });
        outs.push(out);
      }
      const losses = outs.map((o) => fs.readFileSync(path.join(o, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number));
      expect(losses[0]).toHaveLength(6);
      expect(losses[0]![5]).toBeLessThan(losses[0]![0]!); // it trains
      expect(losses[1]).toEqual(losses[0]);
      const [pa, pb] = outs.map((o) => fs.readFileSync(path.join(o, 'params.safetensors')));
      expect(pa!.equals(pb!)).toBe(true);
    } finally {
      delete process.env.SHAPES_VLM_ROWS;
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, 240_000);
});
