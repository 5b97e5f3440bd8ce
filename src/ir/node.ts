// One node type for the whole IR. Nodes are immutable and interned per Graph
// builder: building the same op on the same inputs twice returns the same node,
// so common subexpressions are shared at construction.
import type { DType } from './dtype.ts';
import { shapeStr, type Shape } from './dims.ts';
import type { OpKind, OpParams } from './params.ts';

export interface TensorType {
  dtype: DType;
  shape: Shape;
}

export function typeStr(t: TensorType): string {
  return `${t.dtype}${shapeStr(t.shape)}`;
}

let nextId = 1;

export class Node<K extends OpKind = OpKind> {
  readonly id = nextId++;
  constructor(
    readonly op: K,
    readonly params: OpParams[K],
    readonly inputs: readonly Node[],
    readonly type: TensorType,
    /** file:line of the user code that built it, for error messages and the ONNX node's doc_string */
    readonly site?: string,
    /**
     * Module path of the code that built it, '/'-separated ('dit/blocks.3/attn'): ONNX node names
     * are made from it. Passes that replace nodes (fusion included) carry it over.
     */
    readonly scope?: string,
  ) {}
  get dtype(): DType {
    return this.type.dtype;
  }
  get shape(): Shape {
    return this.type.shape;
  }
  get rank(): number {
    return this.type.shape.length;
  }
  is<K2 extends OpKind>(op: K2): this is Node<K2> {
    return (this.op as OpKind) === op;
  }
}

/** Deterministic key of an op's params (dims render canonically). */
export function paramsKey(params: unknown): string {
  return JSON.stringify(params, (_k, v: unknown) => {
    if (v instanceof Float64Array) return v.length <= 64 ? Array.from(v) : `#${constIdentity(v)}`;
    if (v && typeof v === 'object' && 'key' in v && 'terms' in v) return `$${(v as { key: string }).key}`;
    return v;
  });
}

// Large constants are keyed by identity: hashing megabytes on every build is not worth it.
const constIds = new WeakMap<Float64Array, number>();
let nextConst = 1;
function constIdentity(a: Float64Array): number {
  let id = constIds.get(a);
  if (id === undefined) constIds.set(a, (id = nextConst++));
  return id;
}

export class OpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OpError';
  }
}
