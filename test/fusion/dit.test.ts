// The DiT end to end: every target fuses the tiny preset's graph, and onnxruntime on the fused
// model agrees with the float64 reference of the unfused graph (random weights, padded condition).
import { describe, expect, it } from 'vitest';
import dit from '../../graphs/dit.ts';
import { Rng } from '../../src/ir/init.ts';
import type { RefTensor } from '../../src/ir/ref.ts';
import { TARGETS } from '../../src/ir/target.ts';
import { optimize } from '../../src/passes/pipeline.ts';
import { evaluate } from '../../src/ir/evaluate.ts';
import { randomRef } from '../helpers/harness.ts';
import { countOps, fuse, onnxOps, randomParams, reference, runOrt, worst } from './helpers.ts';

describe('fused DiT (tiny preset)', () => {
  const g = optimize(dit.trace('tiny'));
  const params = randomParams(g, 3, 0.3);
  const rng = new Rng(5, 'dit');
  const B = 2, h = 3, w = 2, S = 5;
  const feeds: Record<string, RefTensor> = {
    latents: randomRef('f32', [B, 4, 2 * h, 2 * w], rng),
    timestep: { dtype: 'f32', shape: [B], data: Float64Array.of(0.3, 0.8) },
    condition: randomRef('f32', [B, S, 32], rng),
    condition_mask: { dtype: 'bool', shape: [B, S], data: Float64Array.of(1, 1, 1, 0, 0, 1, 1, 1, 1, 1) },
  };
  const want = reference(g, feeds, params);

  it.each(TARGETS.map((t) => [t]))('target %s: fused ops as the table says, ORT == reference', async (target) => {
    const { graph, report } = fuse(g, target);
    const ops = countOps(graph);
    expect(report.rules.reduce((a, r) => a + r.declined.length, 0), JSON.stringify(report.rules.flatMap((r) => r.declined))).toBe(0);
    if (target === 'portable') {
      expect(ops.ada_rms_norm ?? 0).toBe(0);
      expect(ops.sdpa ?? 0).toBe(0);
      expect(ops.rms_norm).toBe(17);
      const onnx = onnxOps(graph, target);
      expect(Object.keys(onnx).filter((k) => k.includes('.'))).toEqual([]);
    } else {
      expect(ops.ada_rms_norm).toBe(9); // 4 blocks x (pre, post) + the last layer
      expect(ops.rms_norm).toBe(8); // q and k norms
      expect(ops.sdpa).toBe(4);
    }
    expect(ops.rope).toBe(8); // q and k of 4 blocks, one op for the 3 axes
    expect(ops.gelu).toBe(2);
    // the fused graph's reference is the unfused one's, exactly (same arithmetic)
    expect(worst(evaluate(graph, feeds, { params }).velocity!, want.velocity!, 0, 1e-12)).toBeLessThan(1);
    const got = await runOrt(graph, feeds, params, target);
    expect(worst(got.velocity!, want.velocity!, 2e-5, 2e-4)).toBeLessThan(1);
  });
});
