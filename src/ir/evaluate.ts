// The float64 reference interpreter: runs a graph through each op's `eval`.
// It is the oracle for lowerings (tests compare onnxruntime against it), and the
// constant folder's engine.
import { evalDim, type SymDim } from './dims.ts';
import { OpError, typeStr, type Node } from './node.ts';
import type { Graph } from './graph.ts';
import { opDef } from './optable.ts';
import { initValues } from './init.ts';
import { ref, rounded, type RefTensor } from './ref.ts';
import type { EvalCtx } from './opdef.ts';

/** Solve symbolic dims from concrete input shapes (names the input on mismatch). */
export function bindDims(inputs: readonly Node<'input'>[], shapes: ReadonlyMap<string, readonly number[]>): Map<string, number> {
  const env = new Map<string, number>();
  const pending: [Node<"input">, number, SymDim, number][] = [];
  for (const inp of inputs) {
    const shape = shapes.get(inp.params.name);
    if (!shape) throw new OpError(`missing input '${inp.params.name}' (${typeStr(inp.type)})`);
    if (shape.length !== inp.rank) throw new OpError(`input '${inp.params.name}': rank ${shape.length} [${shape}] but the graph declares ${typeStr(inp.type)}`);
    inp.shape.forEach((d, i) => {
      const v = shape[i]!;
      if (typeof d === 'number') {
        if (d !== v) throw new OpError(`input '${inp.params.name}': dim ${i} is ${v} but the graph declares ${typeStr(inp.type)}`);
      } else if (d.terms.size === 1 && d.terms.get(d.key) === 1) {
        const prev = env.get(d.key);
        if (prev !== undefined && prev !== v) throw new OpError(`input '${inp.params.name}': dim ${i} sets '${d.key}' = ${v}, but another input set it to ${prev}`);
        env.set(d.key, v);
      } else pending.push([inp, i, d, v]);
    });
  }
  for (const [inp, i, d, v] of pending) {
    // c*atom: solvable when the atom is not yet bound
    if (d.terms.size === 1) {
      const [[mono, c]] = [...d.terms] as [[string, number]];
      if (!mono.includes('*') && !mono.startsWith('(') && !env.has(mono)) {
        if (v % c !== 0) throw new OpError(`input '${inp.params.name}': dim ${i} = ${v} is not a multiple of ${c} (declared ${typeStr(inp.type)})`);
        env.set(mono, v / c);
      }
    }
  }
  for (const [inp, i, d, v] of pending) {
    let got: number;
    try {
      got = evalDim(d, env);
    } catch {
      throw new OpError(`input '${inp.params.name}': cannot solve dim ${i} (${d.key}) from the given shapes`);
    }
    if (got !== v) throw new OpError(`input '${inp.params.name}': dim ${i} is ${v} but ${d.key} = ${got}`);
  }
  return env;
}

export function paramValue(p: Node<'param'>): RefTensor {
  const { shape, init, seed, name, dtype } = p.params;
  const n = shape.reduce((a, d) => a * d, 1);
  return rounded(ref(dtype, [...shape], initValues(init, n, seed, name)));
}

export interface EvaluateOptions {
  /** Override parameter values (by name); default is each param's seeded init. */
  params?: ReadonlyMap<string, RefTensor>;
}

export function evaluate(graph: Graph, feeds: Readonly<Record<string, RefTensor>>, opts: EvaluateOptions = {}): Record<string, RefTensor> {
  const env = bindDims(graph.inputs, new Map(Object.entries(feeds).map(([k, v]) => [k, v.shape])));
  const cx: EvalCtx = { dim: (d) => evalDim(d, env) };
  const values = new Map<Node, RefTensor>();
  for (const n of graph.nodes()) {
    let v: RefTensor;
    if (n.is('input')) {
      const f = feeds[n.params.name]!;
      if (f.dtype !== n.dtype) throw new OpError(`input '${n.params.name}': dtype ${f.dtype} but the graph declares ${typeStr(n.type)}`);
      v = f;
    } else if (n.is('param')) {
      v = opts.params?.get(n.params.name) ?? paramValue(n);
    } else {
      v = opDef(n.op).eval(n.params as never, n.inputs.map((i) => values.get(i)!), cx, n as never);
    }
    values.set(n, v);
  }
  const out: Record<string, RefTensor> = {};
  for (const o of graph.outputs) out[o.name] = values.get(o.node)!;
  return out;
}
