// add-rms-norm rule: a pre-norm block's rms_norm(x + attn) whose sum is also the residual stream
// fuses to the add_rms_norm pair -> ONE SkipSimplifiedLayerNormalization on cuda / webgpu (both
// outputs used); cpu does not run the rule (no measured gain).
import { describe, expect, it } from 'vitest';
import { RMSNorm, rmsNorm } from '../../src/dsl/index.ts';
import { declines, expectFuses } from './helpers.ts';

const R = ['rms-norm', 'ada-rms-norm', 'add-rms-norm'];

describe('add-rms-norm', () => {
  const norm = new RMSNorm(8).named('norm');
  const c = { inputs: { x: { shape: [2, 3, 8] }, y: { shape: [2, 3, 8] } }, build: (v: Record<string, import('../../src/dsl/tensor.ts').Tensor>) => { const h = v.x!.add(v.y!.tanh()); return { out: h.add(norm.forward(h).sigmoid()) }; } };
  it('cuda: one SkipSimplifiedLayerNormalization gives the normed value and the residual sum', async () => {
    await expectFuses(c, R, { add_rms_norm: 2, rms_norm: 0 }, { target: 'cuda', gone: ['add', 'rsqrt'].slice(1), onnx: { 'com.microsoft.SkipSimplifiedLayerNormalization': 1, RMSNormalization: 0 } });
  });
  it('webgpu: the same; cpu: the rule is not in its list (Add + RMSNormalization-23)', async () => {
    await expectFuses(c, R, { add_rms_norm: 2 }, { target: 'webgpu', onnx: { 'com.microsoft.SkipSimplifiedLayerNormalization': 1 } });
    await expectFuses(c, ['rms-norm'], { add_rms_norm: 0, rms_norm: 1 }, { target: 'cpu', onnx: { RMSNormalization: 1 } });
  });
  it('unweighted: still ONE SkipSimplifiedLayerNormalization for both outputs', async () => {
    const u = { inputs: c.inputs, build: (v: Record<string, import('../../src/dsl/tensor.ts').Tensor>) => { const h = v.x!.add(v.y!.tanh()); return { out: h.add(rmsNorm(h, undefined).sigmoid()) }; } };
    await expectFuses(u, R, { add_rms_norm: 2 }, { target: 'cuda', onnx: { 'com.microsoft.SkipSimplifiedLayerNormalization': 1 } });
  });
  it('declines a broadcast residual', () => {
    const d = declines({ inputs: { x: { shape: [2, 3, 8] }, r: { shape: [3, 8] } }, build: (v) => ({ y: rmsNorm(v.x!.add(v.r!), undefined) }) }, R, 'cuda');
    expect(d.reasons).toEqual([expect.stringMatching(/the residual input f32\[3, 8\] is broadcast onto x/)]);
  });
});
