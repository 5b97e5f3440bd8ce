// The tracing context: DSL calls made while a trace is active build IR nodes.
import { Builder, Graph } from '../ir/graph.ts';
import { sym, type Dim } from '../ir/dims.ts';
import type { DType } from '../ir/dtype.ts';
import { OpError, type Node } from '../ir/node.ts';
import type { OpKind, OpParams } from '../ir/params.ts';
import { captureSite, siteFromStack, userSite } from './site.ts';
import type { RecomputeRegion } from '../autodiff/grad.ts';
import { Tensor } from './tensor.ts';
import { checkDType, checkShape } from './check.ts';

export class DSLError extends Error {
  constructor(message: string, readonly site?: string) {
    super(site ? `${site}: ${message}` : message);
    this.name = 'DSLError';
  }
}

export class Trace {
  readonly builder = new Builder();
  readonly inputs: Node<'input'>[] = [];
  /** which Param object owns each parameter name (two objects, one name = a naming bug) */
  readonly paramOwners = new Map<string, object>();
  /** regions marked with recompute(): replayed in the backward pass */
  readonly regions: RecomputeRegion[] = [];
  constructor(
    readonly seed = 0,
    /** mixed precision: float params (fp32 masters) are cast to this dtype where used */
    readonly computeDtype?: DType,
  ) {}

  /** module paths of the methods being traced, innermost last (see Module: methods push their module's path) */
  private readonly scopes: string[] = [];

  /** The module path new nodes are attributed to ('' at top level). */
  get scope(): string {
    return this.scopes.at(-1) ?? '';
  }

  /** Attribute new nodes to `scope` until the matching exitScope() (module methods use this pair). */
  enterScope(scope: string): void {
    this.scopes.push(scope);
  }
  exitScope(): void {
    this.scopes.pop();
  }

  /** Run `fn` with nodes attributed to `scope` (a module path, '/'-separated). */
  inScope<T>(scope: string, fn: () => T): T {
    this.scopes.push(scope);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  apply<K extends OpKind>(op: K, params: OpParams[K], inputs: readonly Node[]): Node<K> {
    try {
      return this.builder.apply(op, params, inputs, captureSite, this.scope || undefined);
    } catch (e) {
      if (e instanceof OpError) throw new DSLError(e.message, userSite());
      throw e;
    }
  }
}

/**
 * A JavaScript error thrown by graph code (a typo'd property, a call on undefined) becomes a
 * DSLError naming the user's file:line; errors the code meant to throw pass through unchanged.
 */
export function asDSLError(e: unknown, graph: string): unknown {
  if (e instanceof DSLError || !(e instanceof TypeError || e instanceof ReferenceError || e instanceof RangeError)) return e;
  const site = siteFromStack(e.stack);
  const err = new DSLError(`while tracing graph '${graph}': ${e.name}: ${e.message}`, site);
  (err as { cause?: unknown }).cause = e;
  return err;
}

let current: Trace | null = null;

/** The active trace, or null outside one. */
export function tracing(): Trace | null {
  return current;
}

export function currentTrace(): Trace {
  if (!current) throw new DSLError('no graph is being traced: build tensors inside trace(...) or a defineGraph build function', userSite());
  return current;
}

export interface TraceOptions {
  seed?: number;
  computeDtype?: DType;
}

/** Run `fn` inside an existing trace (graph builders that add outputs around user code). */
export function withTrace<T>(t: Trace, fn: () => T): T {
  const prev = current;
  current = t;
  try {
    return fn();
  } finally {
    current = prev;
  }
}

/** Run `fn` with a fresh trace; its returned tensors become the graph's named outputs. */
export function trace(name: string, fn: () => Record<string, Tensor>, opts: TraceOptions = {}): Graph {
  const prev = current;
  const t = (current = new Trace(opts.seed ?? 0, opts.computeDtype));
  try {
    let outs: Record<string, Tensor>;
    try {
      outs = fn();
    } catch (e) {
      throw asDSLError(e, name);
    }
    if (outs === null || typeof outs !== 'object') throw new DSLError(`graph '${name}': the build function must return an object of named output tensors, got ${outs === null ? 'null' : typeof outs}`);
    const entries = Object.entries(outs);
    if (entries.length === 0) throw new DSLError(`graph '${name}' has no outputs`);
    for (const [k, v] of entries) if (!(v instanceof Tensor)) throw new DSLError(`graph '${name}': output '${k}' is not a Tensor`);
    return new Graph(name, t.inputs, entries.map(([k, v]) => ({ name: k, node: v.node })));
  } finally {
    current = prev;
  }
}

/** A named symbolic dimension (batch, seq, ...). */
export function dim(name: string): Dim {
  return sym(name);
}

export function input(name: string, dtype: DType, shape: readonly Dim[]): Tensor {
  if (typeof name !== 'string' || name === '') throw new DSLError(`input: the name must be a non-empty string, got ${JSON.stringify(name)}`, userSite());
  checkDType(`input '${name}'`, dtype);
  checkShape(`input '${name}'`, shape);
  const t = currentTrace();
  if (t.inputs.some((i) => i.params.name === name)) throw new DSLError(`input '${name}' declared twice`, userSite());
  const node = t.apply('input', { name, dtype, shape: [...shape] }, []);
  t.inputs.push(node);
  return new Tensor(node);
}
