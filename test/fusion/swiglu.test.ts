// swiglu rule: silu(gate) * up fuses to swiglu; decomposed on cpu (ORT makes QuickGelu itself),
// QuickGelu * up on webgpu (ORT's level-2 fusions do not run there).
import { describe, it } from 'vitest';
import { swiglu } from '../../src/dsl/index.ts';
import { expectFuses } from './helpers.ts';

describe('swiglu', () => {
  const c = { inputs: { x: { shape: [2, 3, 4] }, g: { shape: [6, 4] }, u: { shape: [6, 4] }, d: { shape: [4, 6] } }, build: (v: Record<string, import('../../src/dsl/tensor.ts').Tensor>) => ({ y: swiglu(v.x!, v.g!, v.u!, v.d!) }) };
  it('the DSL FFN on cpu: fused in the IR, emitted as Sigmoid * Mul for ORT to fuse', async () => {
    await expectFuses(c, ['swiglu'], { swiglu: 1, sigmoid: 0 }, { onnx: { Sigmoid: 1, 'com.microsoft.QuickGelu': 0 } });
  });
  it('on webgpu: QuickGelu in the graph', async () => {
    await expectFuses(c, ['swiglu'], { swiglu: 1 }, { target: 'webgpu', onnx: { 'com.microsoft.QuickGelu': 1, Sigmoid: 0 } });
  });
});
