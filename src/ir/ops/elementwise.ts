// Broadcasting elementwise ops: unary math, binary arithmetic, comparisons,
// logic and select. ONNX broadcasts the same way, so lowering is one node.
import { isFloat } from '../dtype.ts';
import { OpError, typeStr, type TensorType } from '../node.ts';
import type { BinaryKind, UnaryKind } from '../params.ts';
import type { OpDef, OpGroup } from '../opdef.ts';
import type { Node } from '../node.ts';
import type { NB } from '../nb.ts';
import { erf, mapN } from '../ref.ts';
import { broadcastShapes, requireFloat, sameDtype } from './common.ts';

type Domain = 'float' | 'numeric' | 'bool';

function checkDomain(t: TensorType, domain: Domain, op: string): void {
  if (domain === 'float') requireFloat(t, `${op} operand`);
  else if (domain === 'bool' && t.dtype !== 'bool') throw new OpError(`${op} needs bool operands, got ${typeStr(t)}`);
  else if (domain === 'numeric' && t.dtype === 'bool') throw new OpError(`${op} needs numeric operands, got ${typeStr(t)}`);
}

/** max/min: the cotangent goes to the winner; ties split it evenly (as PyTorch does). */
function minmaxGrad(nb: NB, a: Node, b: Node, g: Node, cmp: 'gt' | 'lt'): [Node, Node] {
  const win = nb.op(cmp, {}, [a, b]);
  const tie = nb.op('eq', {}, [a, b]);
  const zero = nb.zeros(g.shape, g.dtype);
  const half = nb.scale(g, 0.5);
  return [nb.where(win, g, nb.where(tie, half, zero)), nb.where(win, zero, nb.where(tie, half, g))];
}

type UnaryGrad = ((nb: NB, x: Node, out: Node, g: Node) => Node) | 'nondiff';
type BinaryGrad = ((nb: NB, a: Node, b: Node, out: Node, g: Node) => [Node | null, Node | null]) | 'nondiff';

function unary<K extends UnaryKind>(k: K, domain: Domain, onnx: string | string[], f: (x: number) => number, grad: UnaryGrad): OpDef<K> {
  const chain = typeof onnx === 'string' ? [onnx] : onnx;
  return {
    vjp: grad === 'nondiff' ? grad : (nb, _p, [x], out, g) => [grad(nb, x!, out, g)],
    arity: 1,
    infer: (_p, [x]) => (checkDomain(x!, domain, k), x!),
    lower: (cx, _p, [x]) => chain.reduce((v, op) => cx.emit1(op, [v]), x!),
    eval: (_p, [x]) => mapN([x!], x!.dtype, isFloat(x!.dtype) || x!.dtype === 'bool' ? f : (v) => Math.trunc(f(v))),
  };
}

function binary<K extends BinaryKind>(k: K, domain: Domain, onnx: string, f: (a: number, b: number) => number, grad: BinaryGrad, result: 'same' | 'bool' = 'same'): OpDef<K> {
  return {
    // cotangents are summed back over broadcast axes
    vjp: grad === 'nondiff' ? grad : (nb, _p, [a, b], out, g) => grad(nb, a!, b!, out, g).map((d, i) => d && nb.sumTo(d, [a!, b!][i]!.shape)),
    arity: 2,
    infer: (_p, ins) => {
      const dtype = sameDtype(ins);
      checkDomain(ins[0]!, domain, k);
      return { dtype: result === 'bool' ? 'bool' : dtype, shape: broadcastShapes(ins.map((t) => t.shape)) };
    },
    lower: (cx, _p, ins) => cx.emit1(onnx, [...ins]),
    eval: (_p, [a, b], _cx, node) => {
      const intArith = result === 'same' && !isFloat(a!.dtype) && a!.dtype !== 'bool';
      return mapN([a!, b!], node.dtype, intArith ? (x, y) => Math.trunc(f(x, y)) : f);
    },
  };
}

export const ELEMENTWISE = {
  neg: unary('neg', 'numeric', 'Neg', (x) => -x, (nb, _x, _o, g) => nb.neg(g)),
  exp: unary('exp', 'float', 'Exp', Math.exp, (nb, _x, o, g) => nb.mul(g, o)),
  log: unary('log', 'float', 'Log', Math.log, (nb, x, _o, g) => nb.div(g, x)),
  sqrt: unary('sqrt', 'float', 'Sqrt', Math.sqrt, (nb, _x, o, g) => nb.div(nb.scale(g, 0.5), o)),
  // ONNX has no Rsqrt; fusion passes may recover it on targets that do.
  rsqrt: unary('rsqrt', 'float', ['Sqrt', 'Reciprocal'], (x) => 1 / Math.sqrt(x), (nb, x, o, g) => nb.mul(nb.scale(g, -0.5), nb.div(o, x))),
  reciprocal: unary('reciprocal', 'float', 'Reciprocal', (x) => 1 / x, (nb, _x, o, g) => nb.neg(nb.mul(g, nb.mul(o, o)))),
  tanh: unary('tanh', 'float', 'Tanh', Math.tanh, (nb, _x, o, g) => nb.mul(g, nb.sub(nb.scalar(1, o.dtype), nb.mul(o, o)))),
  sigmoid: unary('sigmoid', 'float', 'Sigmoid', (x) => 1 / (1 + Math.exp(-x)), (nb, _x, o, g) => nb.mul(g, nb.mul(o, nb.sub(nb.scalar(1, o.dtype), o)))),
  erf: unary('erf', 'float', 'Erf', erf, (nb, x, _o, g) => nb.mul(nb.scale(g, 2 / Math.sqrt(Math.PI)), nb.op('exp', {}, [nb.neg(nb.mul(x, x))]))),
  sin: unary('sin', 'float', 'Sin', Math.sin, (nb, x, _o, g) => nb.mul(g, nb.op('cos', {}, [x]))),
  cos: unary('cos', 'float', 'Cos', Math.cos, (nb, x, _o, g) => nb.neg(nb.mul(g, nb.op('sin', {}, [x])))),
  abs: unary('abs', 'numeric', 'Abs', Math.abs, (nb, x, _o, g) => nb.where(nb.op('gt', {}, [x, nb.scalar(0, x.dtype)]), g, nb.where(nb.op('lt', {}, [x, nb.scalar(0, x.dtype)]), nb.neg(g), nb.zeros(g.shape, g.dtype)))),
  not: unary('not', 'bool', 'Not', (x) => (x ? 0 : 1), 'nondiff'),

  add: binary('add', 'numeric', 'Add', (a, b) => a + b, (_nb, _a, _b, _o, g) => [g, g]),
  sub: binary('sub', 'numeric', 'Sub', (a, b) => a - b, (nb, _a, _b, _o, g) => [g, nb.neg(g)]),
  mul: binary('mul', 'numeric', 'Mul', (a, b) => a * b, (nb, a, b, _o, g) => [nb.mul(g, b), nb.mul(g, a)]),
  div: binary('div', 'numeric', 'Div', (a, b) => a / b, (nb, _a, b, o, g) => [nb.div(g, b), nb.neg(nb.div(nb.mul(g, o), b))]),
  pow: binary('pow', 'float', 'Pow', Math.pow, (nb, a, b, o, g) => [nb.mul(g, nb.mul(b, nb.op('pow', {}, [a, nb.sub(b, nb.scalar(1, b.dtype))]))), nb.mul(g, nb.mul(o, nb.op('log', {}, [a])))]),
  max: binary('max', 'numeric', 'Max', Math.max, (nb, a, b, _o, g) => minmaxGrad(nb, a, b, g, 'gt')),
  min: binary('min', 'numeric', 'Min', Math.min, (nb, a, b, _o, g) => minmaxGrad(nb, a, b, g, 'lt')),
  eq: binary('eq', 'numeric', 'Equal', (a, b) => +(a === b), 'nondiff', 'bool'),
  lt: binary('lt', 'numeric', 'Less', (a, b) => +(a < b), 'nondiff', 'bool'),
  le: binary('le', 'numeric', 'LessOrEqual', (a, b) => +(a <= b), 'nondiff', 'bool'),
  gt: binary('gt', 'numeric', 'Greater', (a, b) => +(a > b), 'nondiff', 'bool'),
  ge: binary('ge', 'numeric', 'GreaterOrEqual', (a, b) => +(a >= b), 'nondiff', 'bool'),
  and: binary('and', 'bool', 'And', (a, b) => +(a && b), 'nondiff'),
  or: binary('or', 'bool', 'Or', (a, b) => +(a || b), 'nondiff'),

  where: {
    arity: 3,
    vjp: (nb, _p, [c, a, b], _o, g) => {
      const zero = nb.zeros(g.shape, g.dtype);
      return [null, nb.sumTo(nb.where(c!, g, zero), a!.shape), nb.sumTo(nb.where(c!, zero, g), b!.shape)];
    },
    infer: (_p, [c, a, b]) => {
      if (c!.dtype !== 'bool') throw new OpError(`where: condition must be bool, got ${typeStr(c!)}`);
      return { dtype: sameDtype([a!, b!]), shape: broadcastShapes([c!.shape, a!.shape, b!.shape]) };
    },
    lower: (cx, _p, [c, a, b], node) =>
      node.dtype === 'bool'
        ? // onnxruntime's CPU Where has no bool kernel: (c and a) or (not c and b), same broadcasting
          cx.emit1('Or', [cx.emit1('And', [c!, a!]), cx.emit1('And', [cx.emit1('Not', [c!]), b!])])
        : cx.emit1('Where', [c!, a!, b!]),
    eval: (_p, ins, _cx, node) => mapN([...ins], node.dtype, (c, a, b) => (c ? a : b)),
  },
} satisfies OpGroup<UnaryKind | BinaryKind | 'where'>;
