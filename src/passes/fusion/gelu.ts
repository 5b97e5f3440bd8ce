// gelu: the erf and tanh GELU forms -> gelu (Gelu-20). Forms: the DSL's (x*0.5 * (1 + erf(x / sqrt 2))
// with Mul(1/sqrt 2)), ORT's canonical Div(sqrt 2), and tanh written with x*x*x or Pow(x, 3).
import type { Tensor } from '../../dsl/tensor.ts';
import { defineRule, type PatternDef } from './rule.ts';

type V = 'x';
const K = Math.sqrt(2 / Math.PI);

const erfArgs: [string, (x: Tensor) => Tensor][] = [['mul', (x) => x.mul(Math.SQRT1_2)], ['div', (x) => x.div(Math.SQRT2)]];
const cubes: [string, (x: Tensor) => Tensor][] = [['x*x*x', (x) => x.mul(x).mul(x)], ['pow3', (x) => x.pow(3)]];
const halves: [string, (x: Tensor, f: Tensor) => Tensor][] = [
  ['(x*0.5)*f', (x, f) => x.mul(0.5).mul(f)],
  ['(x*f)*0.5', (x, f) => x.mul(f).mul(0.5)],
];

const patterns: PatternDef<V>[] = [];
for (const [hn, half] of halves) {
  for (const [en, arg] of erfArgs) patterns.push({ name: `erf/${en}/${hn}`, build: (v) => half(v.x, arg(v.x).erf().add(1)) });
  for (const [cn, cube] of cubes) patterns.push({ name: `tanh/${cn}/${hn}`, build: (v) => half(v.x, v.x.add(cube(v.x).mul(0.044715)).mul(K).tanh().add(1)) });
}

export const geluRule = defineRule<V>({
  name: 'gelu',
  doc: '0.5 x (1 + erf(x / sqrt 2)) and 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) -> gelu',
  vars: { x: ['B', 'S', 'C'] },
  patterns,
  check: (m) => (['f32', 'f64', 'f16', 'bf16'].includes(m.v('x').dtype) ? undefined : `x is ${m.v('x').dtype}, not a float`),
  rewrite: (m, cx) => cx.fuse('gelu', { approximate: m.pattern.startsWith('tanh') ? 'tanh' : 'none' }, [cx.map(m.v('x'))]),
});
