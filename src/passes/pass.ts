// A pass is a named graph -> graph step. Graphs are immutable, so a pass
// returns a new graph (or the same one) and says whether it changed anything.
import type { Graph } from '../ir/graph.ts';
import { Builder, Graph as GraphClass } from '../ir/graph.ts';
import { OpError, type Node } from '../ir/node.ts';
import { printGraph } from '../ir/print.ts';

export interface PassResult {
  graph: Graph;
  changed: boolean;
  /** short human-readable statistics, e.g. "folded 12 nodes" */
  note?: string;
}

export interface Pass {
  name: string;
  run(g: Graph): PassResult;
}

export interface PassOptions {
  /** print the graph after every step (also: UNIFUSION_DEBUG=passes) */
  debug?: boolean;
  log?: (s: string) => void;
}

export class PassError extends OpError {
  constructor(pass: string, message: string) {
    super(`pass '${pass}': ${message}`);
    this.name = 'PassError';
  }
}

export function runPasses(g: Graph, passes: readonly Pass[], opts: PassOptions = {}): Graph {
  const debug = opts.debug ?? /\bpasses\b/.test(process.env.UNIFUSION_DEBUG ?? '');
  const log = opts.log ?? ((s: string) => process.stderr.write(s + '\n'));
  if (debug) log(`== input (${g.nodes().length} nodes)\n${printGraph(g)}`);
  for (const p of passes) {
    let r: PassResult;
    try {
      r = p.run(g);
    } catch (e) {
      if (e instanceof PassError) throw e;
      throw new PassError(p.name, e instanceof Error ? e.message : String(e));
    }
    g = r.graph;
    if (debug) log(`== after ${p.name}${r.changed ? '' : ' (unchanged)'}${r.note ? `: ${r.note}` : ''} (${g.nodes().length} nodes)\n${printGraph(g)}`);
  }
  return g;
}

/**
 * Rebuild a graph bottom-up through a fresh Builder (which re-runs every shape
 * rule and interns nodes). `rewrite` may return a replacement for a node given
 * its already-rebuilt inputs; returning undefined keeps the op as is.
 */
export function rebuild(g: Graph, rewrite?: (n: Node, ins: Node[], b: Builder) => Node | undefined): { graph: Graph; map: Map<Node, Node> } {
  const b = new Builder();
  const map = new Map<Node, Node>();
  for (const n of g.nodes()) {
    const ins = n.inputs.map((i) => map.get(i)!);
    const r = rewrite?.(n, ins, b);
    map.set(n, r ?? b.apply(n.op, n.params as never, ins, n.site, n.scope));
  }
  const inputs = g.inputs.map((i) => map.get(i) as Node<'input'>);
  return { graph: new GraphClass(g.name, inputs, g.outputs.map((o) => ({ name: o.name, node: map.get(o.node)! }))), map };
}
