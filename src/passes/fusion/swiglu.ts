// swiglu: silu(a) * b = a * sigmoid(a) * b -> swiglu (QuickGelu * b on WebGPU, where ORT does not
// fuse Sigmoid*Mul itself; decomposed where ORT does).
import { defineRule } from './rule.ts';
import { broadcastShapes } from '../../ir/ops/common.ts';

type V = 'a' | 'b';

export const swigluRule = defineRule<V>({
  name: 'swiglu',
  doc: 'a * sigmoid(a) * b -> swiglu',
  vars: { a: ['B', 'S', 'F'], b: ['B', 'S', 'F'] },
  patterns: [{ name: 'silu*b', build: (v) => v.a.mul(v.a.sigmoid()).mul(v.b) }],
  check(m) {
    const a = m.v('a'), b = m.v('b');
    if (a.dtype !== b.dtype) return `a is ${a.dtype} but b is ${b.dtype}`;
    broadcastShapes([a.shape, b.shape]);
    return undefined;
  },
  rewrite: (m, cx) => cx.fuse('swiglu', {}, [cx.map(m.v('a')), cx.map(m.v('b'))]),
});
