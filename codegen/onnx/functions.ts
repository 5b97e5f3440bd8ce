// Model-local ONNX functions (FunctionProto): the bodies of custom ai.unifusion ops.
// A body is lowered through a LowerCtx of its own, so it is written with the same
// emit calls as any lowering; constants become Constant nodes (functions have no
// initializers) and nothing outside the function (graph inputs, weights, runtime
// sizes of graph inputs) is reachable from it.
import { DTYPE_INFO } from '../../src/ir/dtype.ts';
import { OpError } from '../../src/ir/node.ts';
import type { ConstValue } from '../../src/ir/params.ts';
import type { Attr, FunctionSpec, LowerCtx } from '../../src/ir/opdef.ts';
import type { Target } from '../../src/ir/target.ts';
import { fromFloat64, storageBytes } from '../../src/io/host.ts';
import { attribute, OPSET, type FunctionProto, type NodeProto } from './proto.ts';

export interface FunctionHost {
  target: Target;
  defineFunction: LowerCtx['defineFunction'];
  /** the model must import `domain` too (a function's nodes' domains are imported by the model as well) */
  importDomain(domain: string, version: number): void;
}

export function buildFunction(spec: FunctionSpec, body: (fx: LowerCtx, inputs: string[]) => string[], host: FunctionHost): FunctionProto {
  const nodes: NodeProto[] = [];
  const opsets = new Map<string, number>([['', OPSET]]);
  const memo = new Map<string, string[]>();
  let counter = 0;
  const fresh = (hint: string) => `${hint}_${counter++}`;
  const fx: LowerCtx = {
    target: host.target,
    emit(opType, ins, attrs = {}, outputs = 1) {
      return fx.emitDomain('', OPSET, opType, ins, attrs, outputs);
    },
    emit1(opType, ins, attrs) {
      return fx.emit(opType, ins, attrs, 1)[0]!;
    },
    emitDomain(domain, version, opType, ins, attrs: Record<string, Attr> = {}, outputs = 1) {
      if (domain !== '') {
        opsets.set(domain, version);
        host.importDomain(domain, version);
      }
      const outs = Array.from({ length: outputs }, () => fresh(opType.toLowerCase()));
      const attribute_ = Object.keys(attrs).sort().map((k) => attribute(k, attrs[k]!));
      nodes.push({ opType, domain: domain || undefined, input: [...ins], output: outs, name: `${opType}_${nodes.length}`, attribute: attribute_ });
      return outs;
    },
    memo(key, make) {
      let v = memo.get(key);
      if (!v) memo.set(key, (v = make()));
      return v;
    },
    i64(values) {
      return fx.memo(`i64|${values.join(',')}`, () => [fx.constant({ dtype: 'i64', shape: [values.length], data: Float64Array.from(values) })])[0]!;
    },
    scalar(value, dtype) {
      return fx.memo(`scalar|${dtype}|${value}`, () => [fx.constant({ dtype, shape: [], data: Float64Array.of(value) })])[0]!;
    },
    constant(v: ConstValue) {
      const out = fresh('const');
      const t = fromFloat64(v.dtype, v.shape, v.data);
      nodes.push({
        opType: 'Constant',
        input: [],
        output: [out],
        name: `Constant_${nodes.length}`,
        attribute: [{ name: 'value', type: 4 /* TENSOR */, t: { dims: v.shape, dataType: DTYPE_INFO[v.dtype].onnx, rawData: storageBytes(t.data) } }],
      });
      return out;
    },
    dims(ds) {
      if (ds.every((d) => typeof d === 'number')) return fx.i64(ds as number[]);
      throw new OpError(`function ${spec.domain}.${spec.name}: symbolic sizes are not reachable inside a function body`);
    },
    leaf() {
      throw new OpError(`function ${spec.domain}.${spec.name}: graph inputs and parameters are not reachable inside a function body`);
    },
    defineFunction: host.defineFunction,
  };
  const outs = body(fx, spec.inputs);
  if (outs.length !== spec.outputs.length) throw new OpError(`function ${spec.domain}.${spec.name}: body returned ${outs.length} values for ${spec.outputs.length} outputs`);
  // bind the formal outputs: rename the producing node's output (or add an Identity for a pass-through)
  outs.forEach((v, i) => {
    const formal = spec.outputs[i]!;
    const producer = nodes.find((n) => n.output!.includes(v));
    if (producer && !spec.inputs.includes(v)) {
      for (const n of nodes) {
        n.input = n.input!.map((x) => (x === v ? formal : x));
        n.output = n.output!.map((x) => (x === v ? formal : x));
      }
    } else nodes.push({ opType: 'Identity', input: [v], output: [formal], name: `Identity_${nodes.length}` });
  });
  return {
    name: spec.name,
    domain: spec.domain,
    input: spec.inputs,
    output: spec.outputs,
    attribute: spec.attributes,
    node: nodes,
    docString: spec.doc ?? '',
    opsetImport: [...opsets].map(([domain, version]) => ({ domain, version })),
  };
}
