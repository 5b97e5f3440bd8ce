// rms-norm rule: the DSL's rmsNorm (plain, weighted, Gemma/Krea (1 + scale), f16 with f32 statistics)
// and user-written forms (pow, div-sqrt) fuse to rms_norm -> RMSNormalization-23; near misses decline.
import { describe, expect, it } from 'vitest';
import { rmsNorm } from '../../src/dsl/index.ts';
import { declines, expectFuses } from './helpers.ts';

const R = ['rms-norm'];

describe('rms-norm', () => {
  it('the DSL composite, weighted and plain', async () => {
    await expectFuses({ inputs: { x: { shape: [2, 3, 8] }, w: { shape: [8] } }, build: (v) => ({ a: rmsNorm(v.x!, v.w!, 1e-5), b: rmsNorm(v.x!, undefined) }) }, R, { rms_norm: 2 }, { gone: ['rsqrt', 'reduce_mean'], onnx: { RMSNormalization: 2, ReduceMean: 0 } });
  });
  it('a (1 + scale) weight (Gemma, Krea 2) and f16 input with f32 statistics', async () => {
    await expectFuses({ inputs: { x: { shape: [2, 3, 8], dtype: 'f16' }, w: { shape: [8], dtype: 'f16' } }, build: (v) => ({ y: rmsNorm(v.x!, v.w!, 1e-6, { offset: 1 }) }) }, R, { rms_norm: 1 }, { gone: ['rsqrt'], tol: [3e-3, 3e-3] });
  });
  it("user forms: pow(x, 2), x / sqrt(ms + eps), ORT's canonical form", async () => {
    await expectFuses(
      { inputs: { x: { shape: [4, 16] }, w: { shape: [16] } }, build: (v) => ({ a: v.x!.div(v.x!.pow(2).mean(-1, true).add(1e-6).sqrt()).mul(v.w!), b: v.x!.mul(v.x!.square().mean(-1, true).add(1e-6).sqrt().reciprocal()) }) },
      R,
      { rms_norm: 2 },
      { gone: ['sqrt', 'pow'], onnx: { RMSNormalization: 2 } },
    );
  });
  it('declines: wrong axis, eps as an input, a weight the op cannot broadcast, intermediate reuse', () => {
    const wrongAxis = declines({ inputs: { x: { shape: [2, 3, 8] } }, build: (v) => ({ y: v.x!.mul(v.x!.square().mean(1, true).add(1e-6).rsqrt()) }) }, R);
    expect(wrongAxis.fused).toBe(0);
    expect(wrongAxis.reasons).toEqual([expect.stringMatching(/reduces axes \[1\] of a rank-3 tensor, not the last axis/)]);
    const epsIn = declines({ inputs: { x: { shape: [2, 8] }, eps: { shape: [] } }, build: (v) => ({ y: v.x!.mul(v.x!.square().mean(-1, true).add(v.eps!).rsqrt()) }) }, R);
    expect(epsIn.reasons).toEqual([expect.stringMatching(/eps is computed at run time \(input f32\[\]\), not a constant/)]);
    const wide = declines({ inputs: { x: { shape: [2, 3, 8] }, w: { shape: [3, 8] } }, build: (v) => ({ y: rmsNorm(v.x!, v.w!) }) }, R);
    expect(wide.reasons).toEqual([expect.stringMatching(/weight input f32\[3, 8\] is not \[8\]/)]);
    expect(wide.fused).toBe(1); // the unweighted core still fuses; the [3, 8] multiply stays outside
    const reuse = declines({ inputs: { x: { shape: [2, 8] } }, build: (v) => { const ms = v.x!.square().mean(-1, true); return { y: v.x!.mul(ms.add(1e-6).rsqrt()), ms }; } }, R);
    expect(reuse.fused).toBe(0);
    expect(reuse.reasons[0]).toMatch(/intermediate reduce_mean f32\[2, 1\] is also used outside the pattern/);
  });
});

describe('the fusion report (compile --debug)', () => {
  it('lists every fusion and every decline with its reason', async () => {
    const { fuse } = await import('./helpers.ts');
    const { formatReport } = await import('../../src/passes/fusion/fuse.ts');
    const { caseGraph } = await import('./helpers.ts');
    const g = caseGraph('report', { inputs: { x: { shape: [2, 8] }, y: { shape: [2, 8] }, w: { shape: [8] } }, build: (v) => ({ a: rmsNorm(v.x!, v.w!), b: v.y!.mul(v.y!.square().mean(0, true).add(1e-6).rsqrt()) }) });
    const text = formatReport(fuse(g, 'cpu', ['rms-norm']).report);
    expect(text).toContain("fusion for target 'cpu':");
    expect(text).toMatch(/rms-norm: 1 fused, 1 declined/);
    // each line names the node and where the user's code made it (its site, when traced from a file)
    expect(text).toMatch(/fused {4}mul f32\[2, 8\]( at \S+:\d+)? \(weighted\/x\*x\/rsqrt\)/);
    expect(text).toMatch(/declined mul f32\[2, 8\]( at \S+:\d+)? \(plain\/x\*x\/rsqrt\): the mean reduces axes \[0\] of a rank-2 tensor, not the last axis alone/);
  });
});
