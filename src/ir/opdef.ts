// The shape of one op-table entry: everything the compiler knows about an op,
// side by side — how many inputs, its shape/dtype rule, its ONNX lowering and
// its float64 reference, and its vector-Jacobian product.
import type { ConstValue, OpKind, OpParams } from './params.ts';
import type { DType } from './dtype.ts';
import type { Dim } from './dims.ts';
import type { Node, TensorType } from './node.ts';
import type { RefTensor } from './ref.ts';
import type { NB } from './nb.ts';
import type { Target } from './target.ts';

/** ONNX attribute values, tagged so that int and float never get confused. */
export type Attr =
  | { i: number }
  | { f: number }
  | { s: string }
  | { ints: number[] }
  | { floats: number[] }
  /** inside a model-local function body: the value of the function's attribute `ref` */
  | { ref: string; kind: 'f' | 'i' | 's' };

/** What a lowering may ask of the ONNX emitter. Every method returns value names. */
export interface LowerCtx {
  /** Emit one ONNX node; returns its output names. */
  emit(opType: string, inputs: string[], attrs?: Record<string, Attr>, outputs?: number): string[];
  /** Emit one ONNX node with a single output. */
  emit1(opType: string, inputs: string[], attrs?: Record<string, Attr>): string;
  /** 1-D int64 constant (shared when repeated). */
  i64(values: readonly number[]): string;
  /** 0-d constant of dtype. */
  scalar(value: number, dtype: DType): string;
  /** 1-D int64 tensor holding the runtime values of `dims` (symbolic dims read from input shapes). */
  dims(dims: readonly Dim[]): string;
  constant(value: ConstValue): string;
  /** Graph inputs, parameters: declared by the emitter (input, initializer or external data). */
  leaf(node: Node): string;
  /** Compute once per key (e.g. sibling split pieces sharing one Split node). */
  memo(key: string, make: () => string[]): string[];
  /** The execution provider this model is lowered for (fused ops pick their ONNX form by it). */
  readonly target: Target;
  /** Emit one node of a non-default operator domain (com.microsoft, ai.unifusion); the domain's opset is imported. */
  emitDomain(domain: string, version: number, opType: string, inputs: string[], attrs?: Record<string, Attr>, outputs?: number): string[];
  /**
   * Declare a model-local function (ONNX FunctionProto) once per domain + name. `body` lowers into
   * a function-local context whose values start from the formal `inputs`; it returns the values
   * bound to the formal `outputs`. Inside it, constants become Constant nodes and no graph inputs,
   * parameters or symbolic sizes are reachable.
   */
  defineFunction(spec: FunctionSpec, body: (fx: LowerCtx, inputs: string[]) => string[]): void;
}

export interface FunctionSpec {
  domain: string;
  version: number;
  name: string;
  inputs: string[];
  outputs: string[];
  attributes: string[];
  doc?: string;
}

/** What the reference evaluator offers: symbolic dims resolved against concrete inputs. */
export interface EvalCtx {
  dim(d: Dim): number;
}

export interface OpDef<K extends OpKind> {
  /** exact input count, or [min, max] */
  arity: number | readonly [number, number];
  /** Output type from input types; throws OpError naming what is wrong. */
  infer(p: OpParams[K], ins: readonly TensorType[]): TensorType;
  lower(cx: LowerCtx, p: OpParams[K], ins: readonly string[], node: Node<K>): string;
  /** float64 reference; `node` gives access to the inferred output type. */
  eval(p: OpParams[K], ins: readonly RefTensor[], cx: EvalCtx, node: Node<K>): RefTensor;
  /**
   * Reverse-mode rule: given the output's cotangent `g`, the cotangent of each
   * input (null where none flows, e.g. integer indices, masks). Or the explicit
   * marker 'nondiff' (leaves, comparisons, integer ops): no gradient passes.
   */
  vjp: VjpRule<K> | 'nondiff';
}

export type VjpRule<K extends OpKind> = (nb: NB, p: OpParams[K], ins: readonly Node[], out: Node<K>, g: Node) => readonly (Node | null)[];

export type OpGroup<Ks extends OpKind> = { [K in Ks]: OpDef<K> };
