// sdpa rule: the DSL's sdpa (plain, key-padding mask, causal + GQA, cross-attention) and a user's
// q @ k^T / sqrt(d) form fuse to sdpa -> MultiHeadAttention (cpu, no GQA) / Attention-23 (cuda,
// cpu with a mask and GQA); masked values other than the lowest decline.
import { describe, expect, it } from 'vitest';
import { range, sdpa } from '../../src/dsl/index.ts';
import { declines, expectFuses } from './helpers.ts';

const R = ['sdpa'];

describe('sdpa', () => {
  it('plain and key-padding-masked attention -> MultiHeadAttention on cpu', async () => {
    await expectFuses(
      { inputs: { q: { shape: [2, 3, 5, 8] }, k: { shape: [2, 3, 5, 8] }, v: { shape: [2, 3, 5, 8] }, m: { shape: [2, 5], dtype: 'bool' } }, build: (x) => ({ a: sdpa(x.q!, x.k!, x.v!), b: sdpa(x.q!, x.k!, x.v!, { keyMask: x.m! }) }) },
      R,
      { sdpa: 2, softmax: 0, where: 0 },
      { onnx: { 'com.microsoft.MultiHeadAttention': 2, Softmax: 0 } },
    );
  });
  it('causal + padding + GQA (grouped 5D views) -> Attention-23 with a float mask on cpu and cuda', async () => {
    const c = { inputs: { q: { shape: [2, 4, 5, 4] }, k: { shape: [2, 2, 5, 4] }, v: { shape: [2, 2, 5, 4] }, m: { shape: [2, 5], dtype: 'bool' as const } }, build: (x: Record<string, import('../../src/dsl/tensor.ts').Tensor>) => ({ y: sdpa(x.q!, x.k!, x.v!, { causal: true, keyMask: x.m!.or(range(5).lt(2)) }) }) };
    await expectFuses(c, R, { sdpa: 1, softmax: 0 }, { onnx: { Attention: 1, Softmax: 0 } });
    await expectFuses(c, R, { sdpa: 1 }, { target: 'cuda', onnx: { Attention: 1 } });
  });
  it('cross-attention (Sq != Sk) and the webgpu lowering (MultiHeadAttention)', async () => {
    await expectFuses(
      { inputs: { q: { shape: [2, 2, 3, 8] }, k: { shape: [2, 2, 6, 8] }, v: { shape: [2, 2, 6, 8] }, m: { shape: [2, 6], dtype: 'bool' } }, build: (x) => ({ y: sdpa(x.q!, x.k!, x.v!, { keyMask: x.m! }) }) },
      R,
      { sdpa: 1 },
      { target: 'webgpu', onnx: { 'com.microsoft.MultiHeadAttention': 1 } },
    );
  });
  it('a user form: softmax(q @ k^T / sqrt(d)) @ v', async () => {
    await expectFuses({ inputs: { q: { shape: [1, 2, 4, 8] }, k: { shape: [1, 2, 4, 8] }, v: { shape: [1, 2, 4, 8] } }, build: (x) => ({ y: x.q!.matmul(x.k!.T).div(Math.sqrt(8)).softmax(-1).matmul(x.v!) }) }, R, { sdpa: 1 }, { onnx: { 'com.microsoft.MultiHeadAttention': 1 } });
  });
  it('declines: -1e9 as the masked score, a softmax over the query axis', () => {
    const lo = declines({ inputs: { q: { shape: [1, 2, 4, 8] }, k: { shape: [1, 2, 4, 8] }, v: { shape: [1, 2, 4, 8] }, m: { shape: [1, 1, 1, 4], dtype: 'bool' } }, build: (x) => ({ y: x.m!.where(x.q!.mul(0.3).matmul(x.k!.T), -1e9).softmax(-1).matmul(x.v!) }) }, R);
    expect(lo.fused).toBe(0);
    expect(lo.reasons).toEqual([expect.stringMatching(/masked scores are set to -1000000000, not f32's lowest value/)]);
    const axis = declines({ inputs: { q: { shape: [1, 2, 4, 8] }, k: { shape: [1, 2, 4, 8] }, v: { shape: [1, 2, 4, 8] } }, build: (x) => ({ y: x.q!.mul(0.3).matmul(x.k!.T).softmax(-2).matmul(x.v!) }) }, R);
    expect(axis.reasons).toEqual([expect.stringMatching(/the softmax is over axis 2, not the key axis/)]);
  });
});
