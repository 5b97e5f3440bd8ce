// gelu rule: erf and tanh GELU, as the DSL writes them and as Hugging Face / ORT's canonical form
// do, fuse to gelu -> Gelu-20 (approximate none / tanh).
import { describe, expect, it } from 'vitest';
import { gelu } from '../../src/dsl/index.ts';
import { declines, expectFuses } from './helpers.ts';

describe('gelu', () => {
  it('the DSL composite, erf and tanh', async () => {
    const { graph } = await expectFuses({ inputs: { x: { shape: [3, 7] } }, build: (v) => ({ a: gelu(v.x!), b: gelu(v.x!, 'tanh') }) }, ['gelu'], { gelu: 2 }, { gone: ['erf', 'tanh'], onnx: { Gelu: 2, Erf: 0, Tanh: 0 } });
    expect(graph.nodes().filter((n) => n.is('gelu')).map((n) => (n as import('../../src/ir/node.ts').Node<'gelu'>).params.approximate).sort()).toEqual(['none', 'tanh']);
  });
  it('Hugging Face forms: x * 0.5 * (1 + erf(x / sqrt 2)), NewGELU with pow(x, 3)', async () => {
    await expectFuses(
      { inputs: { x: { shape: [2, 9] } }, build: (v) => ({ a: v.x!.mul(v.x!.div(Math.SQRT2).erf().add(1)).mul(0.5), b: v.x!.mul(0.5).mul(v.x!.add(v.x!.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI)).tanh().add(1)) }) },
      ['gelu'],
      { gelu: 2 },
      { gone: ['erf', 'tanh', 'pow'] },
    );
  });
  it('declines when the erf value is also an output', () => {
    const d = declines({ inputs: { x: { shape: [4] } }, build: (v) => { const e = v.x!.mul(Math.SQRT1_2).erf(); return { y: v.x!.mul(0.5).mul(e.add(1)), e }; } }, ['gelu']);
    expect(d.fused).toBe(0);
    expect(d.reasons[0]).toMatch(/intermediate erf f32\[4\] is also used outside the pattern/);
  });
});
