// layer-pool rule: LAP's Linear(n -> 1, no bias) over the layer axis fuses to
// ai.unifusion.LayerPool (function body: one MatMul + Squeeze).
import { describe, expect, it } from 'vitest';
import { LAP } from '../../graphs/lap.ts';
import { linear } from '../../src/dsl/index.ts';
import { declines, expectFuses } from './helpers.ts';

describe('layer-pool', () => {
  it("LAP's pooling (after its two blocks)", async () => {
    const lap = new LAP({ hidden: 16, heads: 2, ffn: 32, layers: 3 }).named('lap');
    await expectFuses({ inputs: { a: { shape: [2, 4, 16] }, b: { shape: [2, 4, 16] }, c: { shape: [2, 4, 16] } }, build: (v) => ({ y: lap.forward([v.a!, v.b!, v.c!]) }) }, ['layer-pool'], { layer_pool: 1 }, { onnx: { 'ai.unifusion.LayerPool': 1 } });
  });
  it('declines a projection to two outputs', () => {
    const d = declines({ inputs: { x: { shape: [2, 4, 3, 8] }, w: { shape: [2, 3] } }, build: (v) => ({ y: linear(v.x!.swap(-1, -2), v.w!).reshape(2, 4, 16) }) }, ['layer-pool']);
    expect(d.fused).toBe(0);
  });
});
