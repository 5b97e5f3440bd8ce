// add-layer-norm rule: a post-/pre-LayerNorm block's layer_norm(x + r) whose sum is also the
// residual stream fuses to the add_layer_norm pair -> ONE com.microsoft SkipLayerNormalization on
// cuda / webgpu (both outputs used; run here on ORT CPU, which has the kernel, against the float64
// reference of the unfused graph); cpu does not run the rule (its Skip kernel is slower).
import { describe, expect, it } from 'vitest';
import { layerNorm, type Tensor } from '../../src/dsl/index.ts';
import { declines, expectFuses, fuse, caseGraph } from './helpers.ts';

const R = ['layer-norm', 'add-layer-norm'];
type X = Record<string, Tensor>;

const block = (affine: 'wb' | 'w' | 'plain') => ({
  inputs: { x: { shape: [2, 3, 8] }, y: { shape: [2, 3, 8] }, w: { shape: [8] }, b: { shape: [8] } },
  build: (v: X) => {
    const h = v.x!.add(v.y!.tanh());
    const n = affine === 'wb' ? layerNorm(h, v.w!, v.b!) : affine === 'w' ? layerNorm(h, v.w!) : layerNorm(h);
    return { out: h.add(n.sigmoid().mul(v.w!)) };
  },
});

describe('add-layer-norm', () => {
  it('cuda: one SkipLayerNormalization gives the normed value and the residual sum (weight + bias, weight, none)', async () => {
    for (const a of ['wb', 'w', 'plain'] as const)
      await expectFuses(block(a), R, { add_layer_norm: 2, layer_norm: 0 }, { target: 'cuda', gone: ['reduce_mean', 'rsqrt'], onnx: { 'com.microsoft.SkipLayerNormalization': 1, LayerNormalization: 0 } });
  });
  it('webgpu: the same; cpu: the rule is not in its list (Add + LayerNormalization-17)', async () => {
    await expectFuses(block('wb'), R, { add_layer_norm: 2 }, { target: 'webgpu', onnx: { 'com.microsoft.SkipLayerNormalization': 1 } });
    await expectFuses(block('wb'), ['layer-norm'], { add_layer_norm: 0, layer_norm: 1 }, { target: 'cpu', onnx: { LayerNormalization: 1, 'com.microsoft.SkipLayerNormalization': 0 } });
    expect(fuse(caseGraph('c', block('wb')), 'cpu').report.rules.map((r) => r.rule)).not.toContain('add-layer-norm');
  });
  it('a norm whose sum feeds nothing else fuses too (the sum output is simply unused)', async () => {
    await expectFuses({ inputs: { x: { shape: [2, 3, 8] }, r: { shape: [2, 3, 8] } }, build: (v) => ({ y: layerNorm(v.x!.add(v.r!)) }) }, R, { add_layer_norm: 1 }, { target: 'cuda', onnx: { 'com.microsoft.SkipLayerNormalization': 1 } });
  });
  it('declines a broadcast residual', () => {
    const d = declines({ inputs: { x: { shape: [2, 3, 8] }, r: { shape: [3, 8] } }, build: (v) => ({ y: layerNorm(v.x!.add(v.r!)) }) }, R, 'cuda');
    expect(d.reasons).toEqual([expect.stringMatching(/the residual input f32\[3, 8\] is broadcast onto x/)]);
  });
});
