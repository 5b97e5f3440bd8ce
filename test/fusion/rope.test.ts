// rope and rope-sections rules: the DSL's rope in both styles, 1D, partial, axial 2D and the DiT's
// 3-axis layout with an unrotated leading section, fuse to ONE rope per tensor -> RotaryEmbedding-23.
import { describe, expect, it } from 'vitest';
import { concat, gridPositions, range, rope } from '../../src/dsl/index.ts';
import { declines, expectFuses } from './helpers.ts';

const R = ['rope', 'rope-sections'];

describe('rope', () => {
  it('1D interleaved and rotate-half, whole head dim', async () => {
    await expectFuses(
      { inputs: { q: { shape: [2, 2, 5, 8] } }, build: (v) => ({ a: rope(v.q!, [range(5)], [8], { style: 'interleaved' }), b: rope(v.q!, [range(5)], [8]) }) },
      R,
      { rope: 2 },
      { gone: ['neg'], onnx: { RotaryEmbedding: 2, Neg: 0 } },
    );
  });
  it('a partial rotation (trailing pass-through) is one op with rotary_embedding_dim', async () => {
    await expectFuses({ inputs: { q: { shape: [1, 2, 4, 8] } }, build: (v) => ({ y: rope(v.q!, [range(4)], [4], { style: 'interleaved' }) }) }, R, { rope: 1, concat: 0 }, { onnx: { RotaryEmbedding: 1 } });
  });
  it('axial 2D and 3-axis (leading unrotated section) interleaved RoPE merge into one op', async () => {
    await expectFuses(
      {
        inputs: { q: { shape: [2, 2, 6, 16] } },
        build: (v) => {
          const pos = gridPositions(2, 3);
          const [still, moving] = v.q!.split(-1, [4, 12]);
          return { axial: rope(v.q!, pos, [8, 8], { style: 'interleaved' }), dit3: concat([still!, rope(moving!, pos, [6, 6], { style: 'interleaved' })], -1) };
        },
      },
      R,
      { rope: 2, split: 0, concat: 0 }, // (static positions: the tables fold to constants)
      { onnx: { RotaryEmbedding: 2 } },
    );
  });
  it('batched positions ([B, S]) give per-batch tables', async () => {
    await expectFuses({ inputs: { q: { shape: [2, 2, 5, 8] }, p: { shape: [2, 5], dtype: 'i64' } }, build: (v) => ({ y: rope(v.q!, [v.p!], [8], { style: 'interleaved' }) }) }, R, { rope: 1 }, { onnx: { RotaryEmbedding: 1 } });
  });
  it('declines: rotate-half sections cannot merge; a half-style table not known to be two equal halves', () => {
    const half2 = declines({ inputs: { q: { shape: [1, 2, 6, 16] } }, build: (v) => ({ y: rope(v.q!, gridPositions(2, 3), [8, 8]) }) }, R);
    expect(half2.fused).toBe(2); // each section is one rope; they stay two
    expect(half2.reasons).toEqual([expect.stringMatching(/rotate_half sections rotate within each section/)]);
    const table = declines(
      { inputs: { x: { shape: [1, 2, 5, 8] }, c: { shape: [5, 8] }, s: { shape: [5, 8] } }, build: (v) => { const [x1, x2] = v.x!.split(-1, [4, 4]); return { y: v.x!.mul(v.c!).add(concat([x2!.neg(), x1!], -1).mul(v.s!)) }; } },
      R,
    );
    expect(table.fused).toBe(0);
    expect(table.reasons).toEqual([expect.stringMatching(/the cos table input f32\[5, 8\] is not cos\(concat\(\[a, a\], -1\)\)/)]);
  });
});
