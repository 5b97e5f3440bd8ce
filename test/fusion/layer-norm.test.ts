// layer-norm rule: the DSL's layerNorm (affine-free, weight, weight + bias) and ORT's canonical
// Pow/Div form fuse to layer_norm -> LayerNormalization-17; a wrong axis declines.
import { describe, expect, it } from 'vitest';
import { layerNorm } from '../../src/dsl/index.ts';
import { declines, expectFuses } from './helpers.ts';

const R = ['layer-norm', 'rms-norm'];

describe('layer-norm', () => {
  it('the DSL composite in its three affine forms, before rms-norm sees its inner half', async () => {
    await expectFuses(
      { inputs: { x: { shape: [2, 3, 8] }, w: { shape: [8] }, b: { shape: [8] } }, build: (v) => ({ wb: layerNorm(v.x!, v.w!, v.b!), plain: layerNorm(v.x!), w_only: layerNorm(v.x!, v.w!) }) },
      R,
      { layer_norm: 3, rms_norm: 0 },
      { gone: ['rsqrt', 'reduce_mean'], onnx: { LayerNormalization: 3 } },
    );
  });
  it("ORT's canonical Pow/Div form", async () => {
    await expectFuses(
      { inputs: { x: { shape: [4, 16] }, w: { shape: [16] }, b: { shape: [16] } }, build: (v) => { const c = v.x!.sub(v.x!.mean(-1, true)); return { y: c.div(c.pow(2).mean(-1, true).add(1e-5).sqrt()).mul(v.w!).add(v.b!) }; } },
      R,
      { layer_norm: 1 },
      { gone: ['sqrt', 'pow'] },
    );
  });
  it('declines a centring over another axis', () => {
    const d = declines({ inputs: { x: { shape: [2, 3, 8] } }, build: (v) => { const c = v.x!.sub(v.x!.mean(0, true)); return { y: c.mul(c.square().mean(-1, true).add(1e-5).rsqrt()) }; } }, ['layer-norm']);
    expect(d.fused).toBe(0);
    expect(d.reasons).toEqual([expect.stringMatching(/reduces axes \[0\] of a rank-3 tensor/)]);
  });
});
