// Leaves of the graph (inputs, parameters, constants), range and cast.
import { DTYPE_INFO, isFloat } from '../dtype.ts';
import { isStatic } from '../dims.ts';
import { OpError } from '../node.ts';
import type { OpGroup } from '../opdef.ts';
import { ref, rounded, size } from '../ref.ts';

function noEval(what: string): never {
  throw new OpError(`${what} has no value in the reference evaluator: bind it before evaluating`);
}

export const SOURCE_OPS = {
  input: {
    arity: 0,
    vjp: 'nondiff',
    infer: (p) => ({ dtype: p.dtype, shape: p.shape }),
    lower: (cx, _p, _ins, node) => cx.leaf(node),
    eval: (p) => noEval(`input '${p.name}'`),
  },
  param: {
    arity: 0,
    vjp: 'nondiff',
    infer: (p) => {
      if (!p.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new OpError(`param '${p.name}': shape [${p.shape}] must be non-negative integers`);
      return { dtype: p.dtype, shape: p.shape };
    },
    lower: (cx, _p, _ins, node) => cx.leaf(node),
    eval: (p) => noEval(`param '${p.name}'`),
  },
  constant: {
    arity: 0,
    vjp: 'nondiff',
    infer: (p) => {
      if (p.value.data.length !== size(p.value.shape)) throw new OpError(`constant: ${p.value.data.length} values for shape [${p.value.shape}]`);
      return { dtype: p.value.dtype, shape: p.value.shape };
    },
    lower: (cx, p) => cx.constant(p.value),
    eval: (p) => ({ ...p.value, shape: [...p.value.shape] }),
  },
  range: {
    arity: 0,
    vjp: 'nondiff',
    infer: (p) => {
      if (p.dtype === 'bool') throw new OpError('range: dtype bool is not numeric');
      if (isStatic(p.size) && p.size < 0) throw new OpError(`range: negative size ${p.size}`);
      return { dtype: p.dtype, shape: [p.size] };
    },
    lower: (cx, p) => {
      // ONNX Range has no f16/bf16: count in f32 and cast the result.
      const dt = p.dtype === 'f16' || p.dtype === 'bf16' ? 'f32' : p.dtype;
      // Range makes ceil((limit - start) / delta) elements, computed in dt: for floats the limit
      // sits half a step short of start + size*delta, so rounding cannot add (or drop) one.
      const back = isFloat(dt) ? 0.5 : 0;
      const start = cx.scalar(p.start, dt);
      const delta = cx.scalar(p.delta, dt);
      let limit: string;
      if (isStatic(p.size)) limit = cx.scalar(p.start + (p.size - back) * p.delta, dt);
      else {
        let n = cx.emit1('Squeeze', [cx.dims([p.size]), cx.i64([0])]);
        if (dt !== 'i64') n = cx.emit1('Cast', [n], { to: { i: DTYPE_INFO[dt].onnx } });
        limit = cx.emit1('Add', [back ? cx.scalar(p.start - back * p.delta, dt) : start, cx.emit1('Mul', [n, delta])]);
      }
      const r = cx.emit1('Range', [start, limit, delta]);
      return dt === p.dtype ? r : cx.emit1('Cast', [r], { to: { i: DTYPE_INFO[p.dtype].onnx } });
    },
    eval: (p, _ins, cx) => {
      const n = cx.dim(p.size);
      const out = ref(p.dtype, [n]);
      for (let i = 0; i < n; i++) out.data[i] = p.start + i * p.delta;
      return rounded(out);
    },
  },
  cast: {
    arity: 1,
    // the cotangent goes back in the input's precision; casts from integers pass none
    vjp: (nb, _p, [x], _o, g) => [isFloat(x!.dtype) ? nb.cast(g, x!.dtype) : null],
    infer: (p, [x]) => ({ dtype: p.to, shape: x!.shape }),
    lower: (cx, p, [x], node) => (node.inputs[0]!.dtype === p.to ? x! : cx.emit1('Cast', [x!], { to: { i: DTYPE_INFO[p.to].onnx } })),
    // float -> int truncates toward zero (ORT's behaviour); anything -> bool is "!= 0"
    eval: (p, [x]) => rounded(x!, p.to),
  },
} satisfies OpGroup<'input' | 'param' | 'constant' | 'range' | 'cast'>;
