// Graph -> ONNX ModelProto. Walks the IR in its deterministic order, asks each
// op's lowering for ONNX nodes, and decides where parameters live (embedded
// initializers, external data, or graph inputs). Same graph in, same bytes out.
import { DTYPE_INFO } from '../../src/ir/dtype.ts';
import { dimStr, parseDim, splitMono, splitOpaque, type Dim } from '../../src/ir/dims.ts';
import { OpError, typeStr, type Node } from '../../src/ir/node.ts';
import type { Graph } from '../../src/ir/graph.ts';
import type { ConstValue } from '../../src/ir/params.ts';
import type { Attr, LowerCtx } from '../../src/ir/opdef.ts';
import { opDef } from '../../src/ir/optable.ts';
import { initValues } from '../../src/ir/init.ts';
import { fromFloat64, numel, storageBytes, type HostTensor } from '../../src/io/host.ts';
import { attribute, IR_VERSION, OPSET, valueInfo, type FunctionProto, type ModelProto, type NodeProto, type TensorProto } from './proto.ts';
import type { Target } from '../../src/ir/target.ts';
import { buildFunction } from './functions.ts';

/**
 * embed: initializers inside the .onnx (limited to 2 GiB by protobuf);
 * external: tensors of at least `externalThreshold` bytes go to `externalFile`;
 * skeleton: like external, but no values are made (the data file is left to be filled:
 *           import-hf writes real weights into it; compile checks use it for size);
 * inputs: parameters become graph inputs (training steps feed them).
 */
export type WeightMode = 'embed' | 'external' | 'skeleton' | 'inputs';

export interface EmitOptions {
  weights?: WeightMode;
  /** relative file name of the external data, inside the output folder */
  externalFile?: string;
  externalThreshold?: number;
  /** values for params by name (checkpoint, import); others use their seeded init */
  paramValues?: ReadonlyMap<string, HostTensor>;
  /** params for which this returns true become graph inputs whatever the weight mode (trainable params of a step graph) */
  paramAsInput?: (p: Node<'param'>) => boolean;
  docString?: string;
  /** execution provider the fused ops are lowered for (default 'cpu', the runtime's EP) */
  target?: Target;
  /** the model's metadata_props (producer, preset, weights mode, ... : see compileGraph) */
  metadata?: Readonly<Record<string, string>>;
}

export interface ExternalChunk {
  name: string;
  offset: number;
  length: number;
  /** null in skeleton mode */
  bytes: Uint8Array | null;
}

export interface Emitted {
  model: ModelProto;
  external: ExternalChunk[];
  externalFile: string;
  externalBytes: number;
}

const EXTERNAL_ALIGN = 64;

export function paramTensor(p: Node<'param'>, values?: ReadonlyMap<string, HostTensor>): HostTensor {
  const given = values?.get(p.params.name);
  const { name, dtype, shape } = p.params;
  if (given) {
    if (given.dtype !== dtype) throw new OpError(`param '${name}': value has dtype ${given.dtype}, the graph declares ${typeStr(p.type)}`);
    if (given.shape.length !== shape.length || given.shape.some((d, i) => d !== shape[i]))
      throw new OpError(`param '${name}': value has shape [${given.shape}], the graph declares ${typeStr(p.type)}`);
    return given;
  }
  return fromFloat64(dtype, [...shape], initValues(p.params.init, numel(shape), p.params.seed, name));
}

function rawTensor(name: string, t: HostTensor): TensorProto {
  return { name, dims: t.shape, dataType: DTYPE_INFO[t.dtype].onnx, rawData: storageBytes(t.data) };
}

export function emitModel(graph: Graph, opts: EmitOptions = {}): Emitted {
  const mode = opts.weights ?? 'embed';
  const externalFile = opts.externalFile ?? `${graph.name.replace(/[^A-Za-z0-9_.-]/g, '_')}.onnx.data`;
  if (/[\\/]|^\.\.?$/.test(externalFile) || externalFile === '') throw new OpError(`external data file '${externalFile}' must be a plain file name inside the output folder`);
  const threshold = opts.externalThreshold ?? 1024;

  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const inputs = [] as ReturnType<typeof valueInfo>[];
  const external: ExternalChunk[] = [];
  let externalBytes = 0;
  let counter = 0;
  // internal names start with '/', so they cannot collide with user input/output names
  const fresh = (hint: string) => `/${hint}_${counter++}`;
  const memo = new Map<string, string[]>();
  const names = new Map<Node, string>();
  const usedNames = new Set<string>();
  // non-default operator domains (com.microsoft, ai.unifusion) and model-local functions
  const domains = new Map<string, number>();
  const functions = new Map<string, FunctionProto>();
  const target: Target = opts.target ?? 'cpu';

  // Where each symbol's runtime value can be read: the first input dim that is the bare symbol
  // (or c*symbol).
  const symSource = new Map<string, { input: string; axis: number; coeff: number }>();
  for (const inp of graph.inputs)
    inp.shape.forEach((d, axis) => {
      if (typeof d === 'number' || d.terms.size !== 1) return;
      const [[mono, c]] = [...d.terms] as [[string, number]];
      if (mono.includes('*') || mono.startsWith('(') || mono === '') return;
      const prev = symSource.get(mono);
      if (!prev || (prev.coeff !== 1 && c === 1)) symSource.set(mono, { input: inp.params.name, axis, coeff: c });
    });

  // ONNX node names carry the module path of the IR node being lowered ('dit/blocks.3/attn/MatMul_2',
  // numbered per module and op type, as torch.onnx does), and the doc_string its file:line, so
  // that an onnxruntime error naming a node can be traced back to the user's code.
  let lowering: Node | undefined;
  const perScope = new Map<string, number>();
  const nodeName = (opType: string): string => {
    const scope = lowering?.scope ?? '';
    const key = `${scope}\0${opType}`;
    const k = perScope.get(key) ?? 0;
    perScope.set(key, k + 1);
    return `${scope ? `${scope}/` : ''}${opType}_${k}`;
  };

  const cx: LowerCtx = {
    target,
    emit(opType, ins, attrs = {}, outputs = 1) {
      return cx.emitDomain('', OPSET, opType, ins, attrs, outputs);
    },
    emitDomain(domain, version, opType, ins, attrs = {}, outputs = 1) {
      if (domain !== '') importDomain(domain, version);
      const outs = Array.from({ length: outputs }, () => fresh(opType.toLowerCase()));
      const attribute_ = Object.keys(attrs)
        .sort()
        .map((k) => attribute(k, attrs[k] as Attr));
      const site = lowering?.site;
      nodes.push({ opType, ...(domain ? { domain } : {}), input: [...ins], output: outs, name: nodeName(opType), attribute: attribute_, ...(site ? { docString: site } : {}) });
      return outs;
    },
    defineFunction(spec, body) {
      const key = `${spec.domain}|${spec.name}`;
      if (functions.has(key)) return;
      importDomain(spec.domain, spec.version);
      functions.set(key, buildFunction(spec, body, { target, defineFunction: cx.defineFunction, importDomain }));
    },
    emit1(opType, ins, attrs) {
      return cx.emit(opType, ins, attrs, 1)[0]!;
    },
    memo(key, make) {
      let v = memo.get(key);
      if (!v) memo.set(key, (v = make()));
      return v;
    },
    i64(values) {
      return cx.memo(`i64|${values.join(',')}`, () => [cx.constant({ dtype: 'i64', shape: [values.length], data: Float64Array.from(values) })])[0]!;
    },
    scalar(value, dtype) {
      return cx.memo(`scalar|${dtype}|${value}`, () => [cx.constant({ dtype, shape: [], data: Float64Array.of(value) })])[0]!;
    },
    constant(v: ConstValue) {
      const name = fresh('const');
      initializers.push(rawTensor(name, fromFloat64(v.dtype, v.shape, v.data)));
      return name;
    },
    dims(ds) {
      return cx.memo(`dims|${ds.map(dimStr).join(',')}`, () => {
        if (ds.every((d) => typeof d === 'number')) return [cx.i64(ds as number[])];
        const pieces: string[] = [];
        let run: number[] = [];
        for (const d of ds) {
          if (typeof d === 'number') run.push(d);
          else {
            if (run.length) pieces.push(cx.i64(run)), (run = []);
            pieces.push(lowerDim(d));
          }
        }
        if (run.length) pieces.push(cx.i64(run));
        return [pieces.length === 1 ? pieces[0]! : cx.emit1('Concat', pieces, { axis: { i: 0 } })];
      })[0]!;
    },
    leaf(node) {
      if (node.is('input')) return node.params.name;
      const p = node as Node<'param'>;
      const name = p.params.name;
      if (mode === 'inputs' || opts.paramAsInput?.(p)) {
        inputs.push(valueInfo(name, p.dtype, p.shape));
        return name;
      }
      const bytes = numel(p.params.shape) * DTYPE_INFO[p.dtype].bytes;
      if (mode === 'embed' || bytes < threshold) {
        initializers.push(rawTensor(name, paramTensor(p, opts.paramValues)));
        return name;
      }
      const offset = Math.ceil(externalBytes / EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
      externalBytes = offset + bytes;
      external.push({ name, offset, length: bytes, bytes: mode === 'skeleton' ? null : storageBytes(paramTensor(p, opts.paramValues).data) });
      initializers.push({
        name,
        dims: p.params.shape,
        dataType: DTYPE_INFO[p.dtype].onnx,
        dataLocation: 1, // EXTERNAL
        externalData: [
          { key: 'location', value: externalFile },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(bytes) },
        ],
      });
      return name;
    },
  };

  function importDomain(domain: string, version: number): void {
    const prev = domains.get(domain);
    if (prev !== undefined && prev !== version) throw new OpError(`graph '${graph.name}': operator domain '${domain}' used at versions ${prev} and ${version}`);
    domains.set(domain, version);
  }

  function lowerAtom(atom: string): string {
    return cx.memo(`atom|${atom}`, () => {
      if (atom.startsWith('(')) {
        const [a, b] = splitOpaque(atom);
        return [cx.emit1('Div', [cx.dims([parseDim(a)]), cx.dims([parseDim(b)])])];
      }
      const src = symSource.get(atom);
      if (!src) throw new OpError(`graph '${graph.name}': symbolic dim '${atom}' is not the size of any input axis, so its runtime value is unknown`);
      let v = cx.emit1('Shape', [src.input], { start: { i: src.axis }, end: { i: src.axis + 1 } });
      if (src.coeff !== 1) v = cx.emit1('Div', [v, cx.i64([src.coeff])]);
      return [v];
    })[0]!;
  }

  function lowerDim(d: Dim): string {
    if (typeof d === 'number') return cx.i64([d]);
    let sum: string | undefined;
    for (const [mono, c] of d.terms) {
      let term: string | undefined;
      if (mono !== '') {
        const atoms = splitMono(mono);
        for (const a of atoms) term = term ? cx.emit1('Mul', [term, lowerAtom(a)]) : lowerAtom(a);
        if (c !== 1) term = cx.emit1('Mul', [term!, cx.i64([c])]);
      } else term = cx.i64([c]);
      sum = sum ? cx.emit1('Add', [sum, term!]) : term;
    }
    return sum!;
  }

  for (const inp of graph.inputs) {
    if (usedNames.has(inp.params.name)) throw new OpError(`graph '${graph.name}': input name '${inp.params.name}' declared twice`);
    usedNames.add(inp.params.name);
    inputs.push(valueInfo(inp.params.name, inp.dtype, inp.shape));
  }
  for (const n of graph.nodes()) {
    if (n.is('param') && usedNames.has(n.params.name)) throw new OpError(`graph '${graph.name}': parameter name '${n.params.name}' clashes with another input or parameter`);
    if (n.is('param')) usedNames.add(n.params.name);
    lowering = n;
    names.set(n, opDef(n.op).lower(cx, n.params as never, n.inputs.map((i) => names.get(i)!), n as never));
  }
  lowering = undefined;

  // Name graph outputs: rename the producing node's output where that is safe, else Identity.
  const produced = new Map<string, NodeProto>();
  for (const nd of nodes) for (const o of nd.output!) produced.set(o, nd);
  const renamed = new Map<string, string>();
  const outputs = graph.outputs.map((o) => {
    const v = names.get(o.node)!;
    const producer = produced.get(v);
    if (producer && !renamed.has(v) && !usedNames.has(o.name)) {
      renamed.set(v, o.name);
    } else if (v !== o.name) {
      nodes.push({ opType: 'Identity', input: [renamed.get(v) ?? v], output: [o.name], name: nodeName('Identity') });
    }
    usedNames.add(o.name);
    return valueInfo(o.name, o.node.dtype, o.node.shape);
  });
  if (renamed.size)
    for (const nd of nodes) {
      nd.input = nd.input!.map((x) => renamed.get(x) ?? x);
      nd.output = nd.output!.map((x) => renamed.get(x) ?? x);
    }

  const model: ModelProto = {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }, ...[...domains].map(([domain, version]) => ({ domain, version }))],
    producerName: 'unifusion',
    producerVersion: '0.1.0',
    docString: opts.docString ?? '',
    graph: { name: graph.name, node: nodes, input: inputs, output: outputs, initializer: initializers },
    ...(functions.size ? { functions: [...functions.values()] } : {}),
    ...(opts.metadata ? { metadataProps: Object.entries(opts.metadata).map(([key, value]) => ({ key, value })) } : {}),
  };
  return { model, external, externalFile, externalBytes };
}

/** The model's metadata_props as a record. */
export function modelMetadata(model: ModelProto): Record<string, string> {
  return Object.fromEntries((model.metadataProps ?? []).map((e) => [e.key ?? '', e.value ?? '']));
}

/** Set (or add) one metadata_props entry: e.g. import-hf marks a skeleton-emitted model whose data it filled. */
export function setModelMetadata(model: ModelProto, key: string, value: string): void {
  const props = (model.metadataProps ??= []);
  const e = props.find((p) => p.key === key);
  if (e) e.value = value;
  else props.push({ key, value });
}
