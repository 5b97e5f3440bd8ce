// `unifusion inspect <model.onnx> [--json]`: what a model file contains, from its proto alone.
// Only the .onnx file is read: external data files are stat()ed for their size, never opened,
// and onnxruntime is not loaded (so this works wherever the proto decodes).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { dtypeFromOnnx } from '../ir/dtype.ts';
import { decodeModel, type ValueInfoProto } from '../../codegen/onnx/proto.ts';
import type onnxProto from 'onnx-proto';

type GraphProto = onnxProto.onnx.IGraphProto;
type TensorProto = onnxProto.onnx.ITensorProto;

/** A size, a dim_param name, or null where the model leaves the dim unnamed. */
export type InspectDim = number | string | null;

export interface InspectValue {
  name: string;
  /** IR dtype name where there is one, else a short ONNX type name ('u8', 'f8e4m3fn', ...). */
  dtype: string;
  /** null when the model declares no shape (rank unknown). */
  shape: InspectDim[] | null;
}

export interface ExternalDataFile {
  /** As written in the model (relative to the model's folder). */
  location: string;
  tensors: number;
  /** Bytes the model's initializers reference in it. */
  bytes: number;
  /** Size on disk, or null if the file is missing. */
  fileBytes: number | null;
}

export interface ModelInfo {
  file: string;
  fileBytes: number;
  graphName: string;
  irVersion: number;
  producer: string;
  /** '' is the default ai.onnx domain. */
  opsets: { domain: string; version: number }[];
  inputs: InspectValue[];
  outputs: InspectValue[];
  /** Nodes in the main graph and every subgraph (If/Loop/Scan bodies). */
  nodes: number;
  /** op type (prefixed with its domain outside ai.onnx) -> count, by count descending then name. */
  ops: { op: string; count: number }[];
  initializers: number;
  /** Sum of initializer element counts (from dims, so external and skeleton weights count too). */
  parameters: number;
  /** parameters by the first dotted segment of the initializer name ('dit', 'lap', 'layers', ...); '(other)': names without a dot (constants) */
  parametersByPrefix: { prefix: string; parameters: number; tensors: number }[];
  externalData: ExternalDataFile[];
  externalBytes: number;
  /** the model's metadata_props (unifusion writes producer, graph, preset, weights, param counts, graph_file, config_hash) */
  metadata: Record<string, string>;
}

// ONNX TensorProto.DataType -> short name and bits per element, for types outside the IR.
const ONNX_TYPES: Record<number, [name: string, bits: number]> = {
  2: ['u8', 8], 3: ['i8', 8], 4: ['u16', 16], 5: ['i16', 16], 8: ['string', 0], 12: ['u32', 32], 13: ['u64', 64],
  14: ['c64', 64], 15: ['c128', 128], 17: ['f8e4m3fn', 8], 18: ['f8e4m3fnuz', 8], 19: ['f8e5m2', 8], 20: ['f8e5m2fnuz', 8],
  21: ['u4', 4], 22: ['i4', 4], 23: ['f4e2m1', 4],
};
const IR_BITS: Record<string, number> = { f32: 32, f16: 16, bf16: 16, f64: 64, i64: 64, i32: 32, bool: 8 };

function typeName(code: number | null | undefined): string {
  if (code === null || code === undefined || code === 0) return 'undefined';
  return dtypeFromOnnx(code) ?? ONNX_TYPES[code]?.[0] ?? `onnx_type_${code}`;
}

function typeBits(code: number): number | undefined {
  const d = dtypeFromOnnx(code);
  return d !== undefined ? IR_BITS[d] : ONNX_TYPES[code]?.[1];
}

/** int64 proto fields decode as Long. */
function int(v: number | { toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

export async function inspectModel(file: string): Promise<ModelInfo> {
  let st;
  try {
    st = await fs.stat(file);
  } catch {
    throw new Error(`model file '${file}' does not exist`);
  }
  if (!st.isFile()) throw new Error(`model path '${file}' is not a file`);
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    throw new Error(`cannot read model file '${file}': ${e instanceof Error ? e.message : String(e)}`);
  }
  let model: onnxProto.onnx.ModelProto;
  try {
    model = decodeModel(bytes);
  } catch (e) {
    throw new Error(`'${file}' is not an ONNX model (protobuf decode failed: ${e instanceof Error ? e.message : String(e)})`);
  }
  // Arbitrary bytes sometimes decode "successfully"; a model without a graph or IR version is not one.
  const g = model.graph;
  if (g === null || g === undefined || int(model.irVersion) <= 0) {
    throw new Error(`'${file}' is not an ONNX model (no ${g ? 'IR version' : 'graph'} in the decoded proto)`);
  }

  const counts = new Map<string, number>();
  const initializers: TensorProto[] = [];
  let nodes = 0;
  let sparse = 0;
  let parameters = 0;
  const walk = (graph: GraphProto) => {
    for (const n of graph.node ?? []) {
      nodes++;
      const op = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType ?? ''}` : (n.opType ?? '');
      counts.set(op, (counts.get(op) ?? 0) + 1);
      for (const a of n.attribute ?? []) {
        if (a.g) walk(a.g);
        for (const sub of a.graphs ?? []) walk(sub);
      }
    }
    for (const t of graph.initializer ?? []) {
      initializers.push(t);
      parameters += numel(t.dims);
    }
    for (const s of graph.sparseInitializer ?? []) {
      sparse++;
      parameters += numel(s.dims);
    }
  };
  walk(g);

  const initNames = new Set((g.initializer ?? []).map((t) => t.name));
  const groups = new Map<string, { parameters: number; tensors: number }>();
  for (const t of initializers) {
    const name = t.name ?? '';
    const prefix = name.includes('.') ? name.slice(0, name.indexOf('.')) : '(other)';
    const e = groups.get(prefix) ?? { parameters: 0, tensors: 0 };
    e.parameters += numel(t.dims);
    e.tensors++;
    groups.set(prefix, e);
  }
  const externalData = await externalFiles(path.dirname(file), initializers);
  return {
    file,
    fileBytes: bytes.byteLength,
    graphName: g.name ?? '',
    irVersion: int(model.irVersion),
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    opsets: (model.opsetImport ?? []).map((o) => ({ domain: o.domain ?? '', version: int(o.version) })),
    // Graph inputs that are also initializers (pre-IR-4 style) are weights, not things to feed.
    inputs: (g.input ?? []).filter((v) => !initNames.has(v.name)).map(describeValue),
    outputs: (g.output ?? []).map(describeValue),
    nodes,
    ops: [...counts].map(([op, count]) => ({ op, count })).sort((a, b) => b.count - a.count || (a.op < b.op ? -1 : a.op > b.op ? 1 : 0)),
    initializers: initializers.length + sparse,
    parameters,
    parametersByPrefix: [...groups].map(([prefix, e]) => ({ prefix, ...e })).sort((a, b) => b.parameters - a.parameters),
    externalData,
    externalBytes: externalData.reduce((s, f) => s + f.bytes, 0),
    metadata: Object.fromEntries((model.metadataProps ?? []).map((e) => [e.key ?? '', e.value ?? ''])),
  };
}

function numel(dims: (number | { toNumber(): number })[] | null | undefined): number {
  let n = 1;
  for (const d of dims ?? []) n *= int(d);
  return n;
}

function describeValue(v: ValueInfoProto): InspectValue {
  const tt = v.type?.tensorType;
  if (!tt) return { name: v.name ?? '', dtype: v.type ? 'non-tensor' : 'undefined', shape: null };
  const shape = tt.shape ? (tt.shape.dim ?? []).map((d): InspectDim => (d.dimParam ? d.dimParam : 'value' in d && d.value === 'dimValue' ? int(d.dimValue) : null)) : null;
  return { name: v.name ?? '', dtype: typeName(tt.elemType), shape };
}

async function externalFiles(dir: string, initializers: TensorProto[]): Promise<ExternalDataFile[]> {
  const files = new Map<string, { tensors: number; bytes: number }>();
  for (const t of initializers) {
    if (t.dataLocation !== 1) continue; // EXTERNAL
    const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = kv.get('location') ?? '';
    // 'length' is optional in the spec; without it the tensor spans its element count.
    const length = kv.has('length') ? Number(kv.get('length')) : Math.ceil((numel(t.dims) * (typeBits(t.dataType ?? 0) ?? 0)) / 8);
    const f = files.get(location) ?? { tensors: 0, bytes: 0 };
    f.tensors++;
    f.bytes += Number.isFinite(length) ? length : 0;
    files.set(location, f);
  }
  const out: ExternalDataFile[] = [];
  for (const [location, f] of files) {
    let fileBytes: number | null = null;
    try {
      fileBytes = location ? (await fs.stat(path.resolve(dir, location))).size : null;
    } catch {
      /* missing: reported as null */
    }
    out.push({ location, ...f, fileBytes });
  }
  return out;
}

const fmt = (n: number) => n.toLocaleString('en-US');
const shapeStr = (s: InspectDim[] | null) => (s === null ? '[rank unknown]' : `[${s.map((d) => (d === null ? '?' : String(d))).join(', ')}]`);

export function formatModelInfo(m: ModelInfo): string {
  const lines: string[] = [];
  const pad = (s: string, w: number) => s.padEnd(w);
  const values = (label: string, vs: InspectValue[]) => {
    if (vs.length === 0) lines.push(`${label} none`);
    vs.forEach((v, i) => lines.push(`${i === 0 ? label : ' '.repeat(label.length)} ${v.name} ${v.dtype}${shapeStr(v.shape)}`));
  };
  lines.push(`${m.file} (${fmt(m.fileBytes)} bytes)`);
  lines.push(`  graph:        ${m.graphName || '(unnamed)'}`);
  lines.push(`  IR version:   ${m.irVersion}${m.producer ? `  (producer: ${m.producer})` : ''}`);
  lines.push(`  opsets:       ${m.opsets.map((o) => `${o.domain || 'ai.onnx'} ${o.version}`).join(', ') || 'none'}`);
  values('  inputs:      ', m.inputs);
  values('  outputs:     ', m.outputs);
  lines.push(`  ops:          ${fmt(m.nodes)} nodes, ${m.ops.length} op types`);
  const w = Math.max(0, ...m.ops.map((o) => o.op.length));
  for (const o of m.ops) lines.push(`    ${pad(o.op, w)}  ${fmt(o.count)}`);
  lines.push(`  initializers: ${fmt(m.initializers)}`);
  lines.push(`  parameters:   ${fmt(m.parameters)}`);
  if (m.parametersByPrefix.length > 1) {
    const pw = Math.max(...m.parametersByPrefix.map((p) => p.prefix.length));
    for (const p of m.parametersByPrefix) lines.push(`    ${pad(p.prefix, pw)}  ${fmt(p.parameters)} in ${fmt(p.tensors)} tensor${p.tensors === 1 ? '' : 's'}`);
  }
  if (m.externalData.length === 0) lines.push('  external data: none');
  else {
    lines.push(`  external data: ${fmt(m.externalBytes)} bytes referenced in ${m.externalData.length} file${m.externalData.length > 1 ? 's' : ''}`);
    for (const f of m.externalData) {
      const disk = f.fileBytes === null ? 'MISSING' : `${fmt(f.fileBytes)} bytes on disk`;
      lines.push(`    ${f.location || '(no location)'}: ${f.tensors} tensors, ${fmt(f.bytes)} bytes (${disk})`);
    }
  }
  const meta = Object.entries(m.metadata);
  if (meta.length) {
    lines.push('  metadata:');
    const mw = Math.max(...meta.map(([k]) => k.length));
    for (const [k, v] of meta) lines.push(`    ${pad(k, mw)}  ${v}`);
  }
  return lines.join('\n') + '\n';
}

export async function inspectCommand(file: string, opts: { json?: boolean } = {}): Promise<ModelInfo> {
  const info = await inspectModel(file);
  process.stdout.write(opts.json ? JSON.stringify(info, null, 2) + '\n' : formatModelInfo(info));
  return info;
}
