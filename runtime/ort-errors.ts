// onnxruntime's errors in the user's terms. ORT reports a failing kernel as
//   "Non-zero status code returned while running Gather node. Name:'vlm/embed_tokens/Gather_0'
//    Status Message: indices element out of data bounds, idx=1672 must be within ... [-256,255]"
// often with C++ source positions and assertion text in the middle. The compiler names ONNX
// nodes after the module that made them and puts the user's file:line in each node's
// doc_string (codegen/onnx/emit.ts), so the failing node leads back to the user's code; walking
// the graph from the node to the graph inputs names the input that caused it.
import type { HostTensor } from '../src/io/host.ts';
import type { ModelProto, NodeProto, TensorProto } from '../codegen/onnx/proto.ts';

export interface ModelIndex {
  nodes: Map<string, NodeProto>;
  /** value name -> the node producing it */
  producers: Map<string, NodeProto>;
  inputs: Set<string>;
  initializers: Map<string, TensorProto>;
}

export function indexModel(model: ModelProto): ModelIndex {
  const g = model.graph ?? {};
  const nodes = new Map<string, NodeProto>();
  const producers = new Map<string, NodeProto>();
  for (const n of g.node ?? []) {
    if (n.name) nodes.set(n.name, n);
    for (const o of n.output ?? []) producers.set(o, n);
  }
  return {
    nodes,
    producers,
    inputs: new Set((g.input ?? []).map((i) => i.name ?? '')),
    initializers: new Map((g.initializer ?? []).map((t) => [t.name ?? '', t])),
  };
}

/** ORT's message without C++ file positions, function signatures and assertion text. */
export function cleanOrtMessage(msg: string): string {
  return msg
    .replace(/\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*[A-Z_]+\s*:\s*/g, '')
    .replace(/\/?[\w./-]*onnxruntime[\w./-]*\.(?:h|cc|cpp|hpp):\d+\s+[^\n]*?\bwas false\.\s*/g, '')
    .replace(/\/?[\w./-]*onnxruntime[\w./-]*\.(?:h|cc|cpp|hpp):\d+\s+\S*onnxruntime::[^\s(]*\([^)]*\)(?:\s*const)?\s*/g, '')
    .replace(/\{([\d,\s-]*)\}/g, (_m, dims: string) => `[${dims.split(',').map((d) => d.trim()).join(', ')}]`)
    .replace(/\s+/g, ' ')
    .trim();
}

// Ops that pass an integer tensor's values through (so an index can be traced back to a graph input).
const VALUE_PRESERVING = new Set(['Cast', 'Reshape', 'Identity', 'Unsqueeze', 'Squeeze', 'Flatten', 'Transpose', 'Expand', 'Slice', 'Concat']);

/** The graph input (or initializer) a value comes from through value-preserving ops, if any. */
function sourceOf(idx: ModelIndex, value: string, want: 'input' | 'initializer'): string | undefined {
  let v: string | undefined = value;
  for (let hops = 0; v !== undefined && hops < 32; hops++) {
    if (want === 'input' && idx.inputs.has(v)) return v;
    if (want === 'initializer' && idx.initializers.has(v)) return v;
    const p = idx.producers.get(v);
    if (!p || !VALUE_PRESERVING.has(p.opType ?? '')) return undefined;
    v = p.input?.[0];
  }
  return undefined;
}

/** Graph inputs the node depends on (breadth-first from the node, through its producers). */
function inputsOf(idx: ModelIndex, node: NodeProto): string[] {
  const out = new Set<string>();
  const seen = new Set<string>();
  const todo = [...(node.input ?? [])];
  while (todo.length) {
    const v = todo.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    if (idx.inputs.has(v) && !idx.initializers.has(v)) out.add(v);
    const p = idx.producers.get(v);
    if (p) todo.push(...(p.input ?? []));
  }
  return [...out].sort();
}

const fmt = (t: HostTensor | undefined) => (t ? `${t.dtype}[${t.shape.join(', ')}]` : '');

/** Position of the first element equal to `value` in a tensor, as '[i, j, ...]'. */
function positionOf(t: HostTensor | undefined, value: number): string | undefined {
  if (!t) return undefined;
  const data = t.data as ArrayLike<number | bigint>;
  for (let i = 0; i < data.length; i++) {
    if (Number(data[i]) !== value) continue;
    const pos: number[] = [];
    let r = i;
    for (let a = t.shape.length - 1; a >= 0; a--) {
      pos.unshift(r % t.shape[a]!);
      r = Math.floor(r / t.shape[a]!);
    }
    return `[${pos.join(', ')}]`;
  }
  return undefined;
}

function dimsOf(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => Number(d));
}

/** Where a node came from: its module (the name's path) and the user's file:line (doc_string). */
function origin(node: NodeProto): string {
  const name = node.name ?? '';
  const scope = name.includes('/') ? name.slice(0, name.lastIndexOf('/')) : '';
  const bits = [`${node.opType} node '${name}'`];
  if (scope) bits.push(`in module '${scope}'`);
  if (node.docString) bits.push(`made at ${node.docString}`);
  return bits.join(', ');
}

/**
 * A run failure in the user's terms: the module and file:line of the failing node, the input it
 * depends on, and for the common cases what is wrong with it. `idx` may be undefined (model
 * given as bytes that could not be decoded): the cleaned ORT message is all there is then.
 */
export function explainRunError(raw: string, idx: ModelIndex | undefined, feeds: Readonly<Record<string, HostTensor>>): string {
  const m = /running (\S+) node\. Name:'([^']*)' Status Message: ([\s\S]*)$/.exec(raw);
  if (!m) return cleanOrtMessage(raw);
  const [, opType, name, status] = m as unknown as [string, string, string, string];
  const node = idx?.nodes.get(name);
  const clean = cleanOrtMessage(status);
  if (!node || !idx) return `${opType} node '${name}' failed: ${clean}`;

  if (opType === 'Gather') {
    const oob = /idx=(-?\d+) must be within the inclusive range \[(-?\d+),\s*(-?\d+)\]/.exec(status);
    const ids = node.input?.[1] !== undefined ? sourceOf(idx, node.input[1], 'input') : undefined;
    const table = node.input?.[0] !== undefined ? sourceOf(idx, node.input[0], 'initializer') : undefined;
    if (oob && ids) {
      const value = Number(oob[1]);
      const rows = Number(oob[3]) + 1;
      const at = positionOf(feeds[ids], value);
      const t = table ? idx.initializers.get(table) : undefined;
      const scope = name.includes('/') ? name.slice(0, name.lastIndexOf('/')) : table?.replace(/\.weight$/, '') ?? name;
      const what = /embed|tok|vocab|wte/i.test(`${scope} ${table ?? ''}`) ? 'vocabulary' : 'table';
      return (
        `input '${ids}' holds ${value}${at ? ` at ${at}` : ''}, but the ${what} of '${scope}' has ${rows} entries` +
        `${t ? ` ('${table}' is [${dimsOf(t).join(', ')}])` : ''}, so its values must lie in 0..${rows - 1} (${origin(node)})`
      );
    }
  }
  const deps = inputsOf(idx, node);
  const dep = deps.length ? `; it depends on input${deps.length > 1 ? 's' : ''} ${deps.map((d) => `'${d}'${feeds[d] ? ` ${fmt(feeds[d])}` : ''}`).join(', ')}` : '';
  return `${origin(node)} failed: ${clean}${dep}`;
}

/** Why a session could not be created on `device`, in the user's terms (and how to fix it). */
export function explainLoadError(raw: string, device: string): string {
  const clean = cleanOrtMessage(raw);
  if (device === 'cuda' && /Failed to load (shared )?library|providers_(shared|cuda)|libcu|cudnn/i.test(raw))
    return (
      `the CUDA execution provider is not available (${clean}). onnxruntime-node installs only its CPU binaries here; ` +
      `to add CUDA on a Linux x64 machine with CUDA 12 and cuDNN 9, run \`npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12\` ` +
      `(README, 'onnxruntime and CUDA'), or use --device cpu`
    );
  if (device === 'tensorrt' && /Failed to load (shared )?library/i.test(raw))
    return `the TensorRT execution provider is not installed with onnxruntime-node here (${clean}); use --device cuda or cpu`;
  if (device === 'webgpu' && /adapter/i.test(raw))
    return `no WebGPU adapter was found: the WebGPU execution provider needs a GPU with a Vulkan (Linux) driver, and this machine has none; use --device cpu`;
  if (/backend not found|no available backend/i.test(raw)) return `unknown device '${device}'; onnxruntime-node here offers: ${knownDevices().join(', ')}`;
  return clean;
}

let devices: string[] | undefined;
/** Filled by the session module once onnxruntime is loaded (no import of it here). */
export function setKnownDevices(names: string[]): void {
  devices = names;
}
function knownDevices(): string[] {
  return devices ?? ['cpu', 'webgpu', 'cuda', 'tensorrt'];
}
