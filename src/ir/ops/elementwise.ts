// Broadcasting elementwise ops: unary math, binary arithmetic, comparisons,
// logic and select. ONNX broadcasts the same way, so lowering is one node.
import { isFloat } from '../dtype.ts';
import { OpError, typeStr, type TensorType } from '../node.ts';
import type { BinaryKind, UnaryKind } from '../params.ts';
import type { OpDef, OpGroup } from '../opdef.ts';
import { erf, mapN } from '../ref.ts';
import { broadcastShapes, requireFloat, sameDtype } from './common.ts';

type Domain = 'float' | 'numeric' | 'bool';

function checkDomain(t: TensorType, domain: Domain, op: string): void {
  if (domain === 'float') requireFloat(t, `${op} operand`);
  else if (domain === 'bool' && t.dtype !== 'bool') throw new OpError(`${op} needs bool operands, got ${typeStr(t)}`);
  else if (domain === 'numeric' && t.dtype === 'bool') throw new OpError(`${op} needs numeric operands, got ${typeStr(t)}`);
}

function unary<K extends UnaryKind>(k: K, domain: Domain, onnx: string | string[], f: (x: number) => number): OpDef<K> {
  const chain = typeof onnx === 'string' ? [onnx] : onnx;
  return {
    arity: 1,
    infer: (_p, [x]) => (checkDomain(x!, domain, k), x!),
    lower: (cx, _p, [x]) => chain.reduce((v, op) => cx.emit1(op, [v]), x!),
    eval: (_p, [x]) => mapN([x!], x!.dtype, isFloat(x!.dtype) || x!.dtype === 'bool' ? f : (v) => Math.trunc(f(v))),
  };
}

function binary<K extends BinaryKind>(k: K, domain: Domain, onnx: string, f: (a: number, b: number) => number, result: 'same' | 'bool' = 'same'): OpDef<K> {
  return {
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
  neg: unary('neg', 'numeric', 'Neg', (x) => -x),
  exp: unary('exp', 'float', 'Exp', Math.exp),
  log: unary('log', 'float', 'Log', Math.log),
  sqrt: unary('sqrt', 'float', 'Sqrt', Math.sqrt),
  // ONNX has no Rsqrt; fusion passes may recover it on targets that do.
  rsqrt: unary('rsqrt', 'float', ['Sqrt', 'Reciprocal'], (x) => 1 / Math.sqrt(x)),
  reciprocal: unary('reciprocal', 'float', 'Reciprocal', (x) => 1 / x),
  tanh: unary('tanh', 'float', 'Tanh', Math.tanh),
  sigmoid: unary('sigmoid', 'float', 'Sigmoid', (x) => 1 / (1 + Math.exp(-x))),
  erf: unary('erf', 'float', 'Erf', erf),
  sin: unary('sin', 'float', 'Sin', Math.sin),
  cos: unary('cos', 'float', 'Cos', Math.cos),
  abs: unary('abs', 'numeric', 'Abs', Math.abs),
  not: unary('not', 'bool', 'Not', (x) => (x ? 0 : 1)),

  add: binary('add', 'numeric', 'Add', (a, b) => a + b),
  sub: binary('sub', 'numeric', 'Sub', (a, b) => a - b),
  mul: binary('mul', 'numeric', 'Mul', (a, b) => a * b),
  div: binary('div', 'numeric', 'Div', (a, b) => a / b),
  pow: binary('pow', 'float', 'Pow', Math.pow),
  max: binary('max', 'numeric', 'Max', Math.max),
  min: binary('min', 'numeric', 'Min', Math.min),
  eq: binary('eq', 'numeric', 'Equal', (a, b) => +(a === b), 'bool'),
  lt: binary('lt', 'numeric', 'Less', (a, b) => +(a < b), 'bool'),
  le: binary('le', 'numeric', 'LessOrEqual', (a, b) => +(a <= b), 'bool'),
  gt: binary('gt', 'numeric', 'Greater', (a, b) => +(a > b), 'bool'),
  ge: binary('ge', 'numeric', 'GreaterOrEqual', (a, b) => +(a >= b), 'bool'),
  and: binary('and', 'bool', 'And', (a, b) => +(a && b)),
  or: binary('or', 'bool', 'Or', (a, b) => +(a || b)),

  where: {
    arity: 3,
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
