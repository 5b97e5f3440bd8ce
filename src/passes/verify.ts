// verify: the invariants every later step relies on. Types agree with a fresh
// run of each op's shape rule, arities hold, names are unique and consistent.
import { shapeEq } from '../ir/dims.ts';
import { typeStr } from '../ir/node.ts';
import { opDef } from '../ir/optable.ts';
import { PassError, type Pass } from './pass.ts';

export const verify: Pass = {
  name: 'verify',
  run(g) {
    const fail = (m: string): never => {
      throw new PassError('verify', `graph '${g.name}': ${m}`);
    };
    if (g.outputs.length === 0) fail('no outputs');
    const inputNames = new Set<string>();
    for (const i of g.inputs) {
      if (inputNames.has(i.params.name)) fail(`input '${i.params.name}' declared twice`);
      inputNames.add(i.params.name);
    }
    const params = new Map<string, string>();
    for (const n of g.nodes()) {
      const def = opDef(n.op);
      const [lo, hi] = typeof def.arity === 'number' ? [def.arity, def.arity] : def.arity;
      if (n.inputs.length < lo || n.inputs.length > hi) fail(`${n.op} node has ${n.inputs.length} inputs`);
      if (n.is('input') && !inputNames.has(n.params.name)) fail(`input '${n.params.name}' is used but not declared`);
      if (n.is('param')) {
        const t = typeStr(n.type) + (n.params.frozen ? ' frozen' : '');
        const prev = params.get(n.params.name);
        if (prev !== undefined && prev !== t) fail(`param '${n.params.name}' appears as ${prev} and as ${t}`);
        if (inputNames.has(n.params.name)) fail(`param '${n.params.name}' has the name of a graph input`);
        params.set(n.params.name, t);
      }
      const t = def.infer(n.params as never, n.inputs.map((i) => i.type));
      if (t.dtype !== n.dtype || !shapeEq(t.shape, n.shape)) fail(`${n.op} node is typed ${typeStr(n.type)} but its shape rule gives ${typeStr(t)}`);
    }
    return { graph: g, changed: false };
  },
};
