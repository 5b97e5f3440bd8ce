// Fusion rules as data: { name, patterns, check -> reason, rewrite }.
//
// A pattern is written in the DSL's own op language: a function of pattern
// variables (DSL tensors) traced once into a small IR graph. Its `input` nodes are
// wildcards (a variable used twice must bind the same node), its constants match
// graph constants of the same value, every other node matches a graph node of the
// same op kind (operands of commutative ops in either order) and, unless the kind
// is listed as `loose`, the same params. A structural match is then judged by
// `check`, which returns why the rule declines (shown by `compile --debug`), and
// `rewrite` builds the fused node from the rebuilt operands.
import { isStatic, type Dim } from '../../ir/dims.ts';
import type { DType } from '../../ir/dtype.ts';
import type { Builder, Graph } from '../../ir/graph.ts';
import type { NB } from '../../ir/nb.ts';
import { paramsKey, type Node } from '../../ir/node.ts';
import type { OpKind, OpParams } from '../../ir/params.ts';
import { dim, input, trace } from '../../dsl/trace.ts';
import type { Tensor } from '../../dsl/tensor.ts';

export type VarSpec = readonly (number | string)[] | { shape: readonly (number | string)[]; dtype: DType };

export interface PatternDef<V extends string> {
  name: string;
  /** variable shapes for this pattern where they differ from the rule's (they only have to trace) */
  vars?: Partial<Record<V, VarSpec>>;
  /** the pattern, in DSL ops over the variables; `tag` names internal tensors for check/rewrite */
  build: (v: Record<V, Tensor>, tag: (label: string, t: Tensor) => Tensor) => Tensor;
}

export interface Match<V extends string> {
  pattern: string;
  root: Node;
  /** the graph node a variable bound to */
  v(name: V): Node;
  /** the graph node a tagged pattern tensor matched */
  n(label: string): Node;
}

export interface RewriteCtx {
  nb: NB;
  /** the rebuilt version of a node of the graph being fused (operands, or anything upstream of the root) */
  map(old: Node): Node;
  /** build the fused node; it takes the root's site and module path (its place in the user's code and in ONNX node names) */
  fuse<K extends OpKind>(kind: K, params: OpParams[K], ins: readonly Node[]): Node;
}

export interface FusionRule<V extends string = string> {
  name: string;
  /** one line: what the rule fuses, and into what */
  doc: string;
  vars: Record<V, VarSpec>;
  patterns: readonly PatternDef<V>[];
  /** op kinds whose params the matcher does not compare (check validates them) */
  loose?: readonly OpKind[];
  /** variadic patterns (e.g. a concat of any number of pieces) match by hand instead */
  matchAt?: (n: Node) => Match<V> | undefined;
  check(m: Match<V>): string | undefined;
  rewrite(m: Match<V>, cx: RewriteCtx): Node;
  /**
   * Intermediates of the match that the rewrite also provides (a second output of the fused op,
   * like add-rms-norm's residual sum): their other users read the replacement, so they do not
   * make the match decline.
   */
  alsoReplace?(m: Match<V>): { node: Node; rewrite: (cx: RewriteCtx) => Node }[];
}

export function defineRule<V extends string>(r: FusionRule<V>): FusionRule<V> {
  return r;
}

const COMMUTATIVE = new Set<OpKind>(['add', 'mul', 'max', 'min', 'and', 'or', 'eq']);

export interface CompiledPattern {
  name: string;
  root: Node;
  vars: Map<Node, string>;
  tags: Map<string, Node>;
}

/** Trace each pattern once (patterns are fixed data; compile them lazily and keep them). */
const compiled = new WeakMap<FusionRule, CompiledPattern[]>();
export function compilePatterns(rule: FusionRule): CompiledPattern[] {
  let c = compiled.get(rule);
  if (c) return c;
  c = rule.patterns.map((p) => {
    const vars = new Map<Node, string>();
    const tags = new Map<string, Node>();
    const g: Graph = trace(`pattern_${rule.name}_${p.name}`.replace(/[^A-Za-z0-9_]/g, '_'), () => {
      const v = {} as Record<string, Tensor>;
      for (const [name, spec] of Object.entries({ ...rule.vars, ...(p.vars ?? {}) }) as [string, VarSpec][]) {
        const { shape, dtype } = Array.isArray(spec) ? { shape: spec as readonly (number | string)[], dtype: 'f32' as DType } : (spec as { shape: readonly (number | string)[]; dtype: DType });
        const t = input(`$${name}`, dtype, shape.map((d): Dim => (typeof d === 'number' ? d : dim(d))));
        vars.set(t.node, name);
        v[name] = t;
      }
      const root = p.build(v as never, (label, t) => (tags.set(label, t.node), t));
      return { root };
    });
    return { name: p.name, root: g.outputs[0]!.node, vars, tags };
  });
  compiled.set(rule, c);
  return c;
}

function constEqual(p: Node<'constant'>, g: Node): boolean {
  if (!g.is('constant')) return false;
  const pv = p.params.value.data, gv = g.params.value.data;
  if (pv.length !== 1) return paramsKey(p.params) === paramsKey(g.params);
  const want = pv[0]!;
  // a scalar pattern constant matches a graph constant holding that one value (any rank of size 1),
  // compared at the graph's precision (1/sqrt(2) in f32 is not 1/sqrt(2) in f64)
  if (gv.length !== 1) return false;
  const got = gv[0]!;
  return got === want || Math.abs(got - want) <= 1e-6 * Math.abs(want);
}

/** Structural match of pattern node `pn` at graph node `gn`; returns the bindings (pattern -> graph) or null. */
export function matchNode(pn: Node, gn: Node, loose: ReadonlySet<OpKind>, isVar: (n: Node) => boolean, env: Map<Node, Node> = new Map()): Map<Node, Node> | null {
  const bound = env.get(pn);
  if (bound) return bound === gn ? env : null;
  if (isVar(pn)) return new Map(env).set(pn, gn);
  if (pn.is('constant')) return constEqual(pn, gn) ? new Map(env).set(pn, gn) : null;
  if (pn.op !== gn.op || pn.inputs.length !== gn.inputs.length) return null;
  if (!loose.has(pn.op) && paramsKey(pn.params) !== paramsKey(gn.params)) return null;
  const orders = COMMUTATIVE.has(pn.op) && pn.inputs.length === 2 && pn.inputs[0] !== pn.inputs[1] ? [[0, 1], [1, 0]] : [pn.inputs.map((_, i) => i)];
  for (const order of orders) {
    let e: Map<Node, Node> | null = new Map(env).set(pn, gn);
    for (let i = 0; i < pn.inputs.length && e; i++) e = matchNode(pn.inputs[i]!, gn.inputs[order[i]!]!, loose, isVar, e);
    if (e) return e;
  }
  return null;
}

export function makeMatch<V extends string>(pattern: CompiledPattern, root: Node, env: Map<Node, Node>): Match<V> {
  const byVar = new Map<string, Node>();
  for (const [pn, name] of pattern.vars) {
    const g = env.get(pn);
    if (g) byVar.set(name, g);
  }
  return {
    pattern: pattern.name,
    root,
    v: (name) => {
      const g = byVar.get(name);
      if (!g) throw new Error(`pattern '${pattern.name}' has no variable '${name}'`);
      return g;
    },
    n: (label) => {
      const pn = pattern.tags.get(label);
      const g = pn && env.get(pn);
      if (!g) throw new Error(`pattern '${pattern.name}' has no tagged tensor '${label}'`);
      return g;
    },
  };
}

// ---------------------------------------------------------------------------
// Small helpers rules share in their checks

export function scalarConst(n: Node): number | undefined {
  return n.is('constant') && n.params.value.data.length === 1 ? n.params.value.data[0]! : undefined;
}

export function describe(n: Node): string {
  return `${n.op} ${n.dtype}[${n.shape.map((d) => (isStatic(d) ? String(d) : d.key)).join(', ')}]`;
}

/** The reason a scalar operand is not usable as a compile-time attribute, or undefined. */
export function notConstReason(n: Node, what: string): string | undefined {
  if (scalarConst(n) !== undefined) return undefined;
  if (n.is('constant')) return `${what} is a constant of ${n.params.value.data.length} values, not one`;
  return `${what} is computed at run time (${describe(n)}), not a constant: the fused op takes it as an attribute`;
}

export type { Builder };
