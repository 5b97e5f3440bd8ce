import { describe, expect, it } from 'vitest';
import { dimAdd, dimDiv, dimEq, dimMul, dimProd, dimStr, dimSub, evalDim, parseDim, sym } from '../src/ir/dims.ts';

const b = sym('batch'), s = sym('seq'), h = sym('hidden');

describe('symbolic dims', () => {
  it.each([
    ['seq*2/2 = seq', dimDiv(dimMul(s, 2), 2), s],
    ['batch*seq = seq*batch', dimMul(b, s), dimMul(s, b)],
    ['(batch*seq)/batch = seq', dimDiv(dimMul(b, s), b), s],
    ['hidden*4/8 = hidden/2 is opaque but stable', dimDiv(dimMul(h, 4), 8), dimDiv(h, 2)],
    ['seq+seq = seq*2', dimAdd(s, s), dimMul(s, 2)],
    ['seq-seq = 0', dimSub(s, s), 0],
    ['(seq+1)*2 = seq*2+2', dimMul(dimAdd(s, 1), 2), dimAdd(dimMul(s, 2), 2)],
    ['prod [batch, seq, 4] / (batch*2) = seq*2', dimDiv(dimProd([b, s, 4]), dimMul(b, 2)), dimMul(s, 2)],
  ])('%s', (_name, a, want) => {
    expect(dimEq(a, want)).toBe(true);
  });

  it('distinguishes different sizes', () => {
    expect(dimEq(dimMul(s, 2), s)).toBe(false);
    expect(dimEq(b, s)).toBe(false);
    expect(dimEq(dimDiv(s, 2), dimDiv(s, 3))).toBe(false);
  });

  it('evaluates, including floor-division atoms', () => {
    expect(evalDim(dimMul(dimDiv(s, 2), dimDiv(s, 2)), { seq: 9 })).toBe(16);
    expect(evalDim(dimAdd(dimMul(b, s), 3), new Map([['batch', 2], ['seq', 5]]))).toBe(13);
    expect(() => evalDim(s, {})).toThrow(/seq/);
  });

  it('round-trips through its rendering', () => {
    for (const d of [dimMul(b, s), dimAdd(dimMul(s, 2), 1), dimDiv(h, 3), dimMul(dimDiv(s, 2), b), dimSub(s, 4)]) {
      expect(dimEq(parseDim(dimStr(d)), d)).toBe(true);
    }
  });

  it('rejects bad symbol names', () => {
    expect(() => sym('a b')).toThrow(/identifier/);
    expect(() => dimDiv(s, 0)).toThrow(/zero/);
  });
});
