// ada-rms-norm rule: a DiT block's adaLN modulation rms_norm(x, w) * (1 + scale) + shift fuses to
// ai.unifusion.AdaRMSNorm (a node with a model-local function body); scale/shift broadcasting the
// kernel cannot index declines.
import { describe, expect, it } from 'vitest';
import { rmsNorm } from '../../src/dsl/index.ts';
import { declines, expectFuses } from './helpers.ts';

const R = ['rms-norm', 'ada-rms-norm'];

describe('ada-rms-norm', () => {
  it("the DiT's modulation (Krea 2 (1 + scale) norm weight) -> AdaRMSNorm with a function body", async () => {
    const { graph } = await expectFuses(
      { inputs: { x: { shape: [2, 5, 8] }, w: { shape: [8] }, t: { shape: [2, 16] } }, build: (v) => { const [sc, sh] = v.t!.unsqueeze(1).chunk(2, -1); return { y: rmsNorm(v.x!, v.w!, 1e-5, { offset: 1 }).mul(sc!.add(1)).add(sh!) }; } },
      R,
      { ada_rms_norm: 1, rms_norm: 0 },
      { onnx: { 'ai.unifusion.AdaRMSNorm': 1 } },
    );
    expect(graph.nodes().some((n) => n.is('ada_rms_norm'))).toBe(true);
  });
  it('portable keeps standard ops (no custom domain): the rule is not in its list', async () => {
    await expectFuses({ inputs: { x: { shape: [2, 5, 8] }, a: { shape: [2, 1, 8] }, b: { shape: [2, 1, 8] } }, build: (v) => ({ y: rmsNorm(v.x!, undefined).mul(v.a!.add(1)).add(v.b!) }) }, ['rms-norm'], { rms_norm: 1, ada_rms_norm: 0 }, { target: 'portable', onnx: { RMSNormalization: 1 } });
  });
  it('declines a scale that broadcasts over the batch but not the sequence', () => {
    const d = declines({ inputs: { x: { shape: [2, 5, 8] }, a: { shape: [1, 5, 8] }, b: { shape: [2, 1, 8] } }, build: (v) => ({ y: rmsNorm(v.x!, undefined).mul(v.a!.add(1)).add(v.b!) }) }, R);
    // (rms-norm also reports the (1 + scale) multiply as a weight it cannot take)
    expect(d.reasons).toContainEqual(expect.stringMatching(/scale input f32\[1, 5, 8\] broadcasts over x .* in a way AdaRMSNorm cannot express/));
  });
});
