// `unifusion demo` (the README's main job): trains the tiny UniFusion step, compiles the forward
// with the trained weights, checks it against the float64 reference and samples. A short run here.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { demoCommand } from '../src/cli/demo.ts';
import { readSafetensors } from '../src/io/safetensors.ts';

describe('unifusion demo', () => {
  it('trains (loss falls), matches the reference, samples every prompt, and leaves its files', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-demo-'));
    try {
      const r = await demoCommand({ out, steps: 60, sampleSteps: 4, quiet: true });
      expect(r.lossLast).toBeLessThan(0.8 * r.lossFirst);
      expect(r.forwardRelErr).toBeLessThan(1e-4);
      expect(r.sampleOwn).toHaveLength(8);
      for (const f of ['unifusion_tiny.onnx', 'inputs.safetensors', 'samples.safetensors', 'train/params.safetensors', 'train/metrics.jsonl']) expect(fs.existsSync(path.join(out, f)), f).toBe(true);
      expect(fs.readdirSync(path.join(out, 'train', 'checkpoints')).length).toBeGreaterThan(0);
      const s = readSafetensors(path.join(out, 'samples.safetensors')).tensors;
      expect(s.get('samples')!.shape).toEqual([8, 4, 8, 8]);
      expect([...(s.get('samples')!.data as Float32Array)].every(Number.isFinite)).toBe(true);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it('rejects a bad --steps with a clear error', async () => {
    await expect(demoCommand({ out: path.join(os.tmpdir(), 'never'), steps: 3, quiet: true })).rejects.toThrow(/--steps must be an integer >= 20, got 3/);
  });
});
