// A graph is its named outputs plus the inputs it declares; nodes are whatever
// the outputs reach. The Builder interns nodes (CSE at construction) and runs
// each op's shape rule as the node is made.
import { OpError, Node, paramsKey, typeStr } from './node.ts';
import type { OpKind, OpParams } from './params.ts';
import { opDef } from './optable.ts';

export interface GraphOutput {
  name: string;
  node: Node;
}

export class Graph {
  constructor(
    readonly name: string,
    readonly inputs: readonly Node<'input'>[],
    readonly outputs: readonly GraphOutput[],
  ) {
    const names = new Set<string>();
    for (const o of outputs) {
      if (names.has(o.name)) throw new OpError(`graph '${name}': output name '${o.name}' used twice`);
      names.add(o.name);
    }
  }

  /** Reachable nodes, inputs before users (deterministic: DFS in operand order). */
  nodes(): Node[] {
    const seen = new Set<Node>();
    const order: Node[] = [];
    const stack: [Node, number][] = [];
    for (const root of [...this.inputs, ...this.outputs.map((o) => o.node)]) {
      if (seen.has(root)) continue;
      stack.push([root, 0]);
      seen.add(root);
      while (stack.length) {
        const top = stack[stack.length - 1]!;
        const [n, i] = top;
        if (i < n.inputs.length) {
          top[1]++;
          const c = n.inputs[i]!;
          if (!seen.has(c)) {
            seen.add(c);
            stack.push([c, 0]);
          }
        } else {
          stack.pop();
          order.push(n);
        }
      }
    }
    return order;
  }

  params(): Node<'param'>[] {
    const ps = this.nodes().filter((n): n is Node<'param'> => n.is('param'));
    return ps.sort((a, b) => (a.params.name < b.params.name ? -1 : a.params.name > b.params.name ? 1 : 0));
  }

  paramCount(filter: (p: Node<'param'>) => boolean = () => true): number {
    return this.params().filter(filter).reduce((acc, p) => acc + p.params.shape.reduce((a, d) => a * d, 1), 0);
  }

  withOutputs(outputs: readonly GraphOutput[]): Graph {
    return new Graph(this.name, this.inputs, outputs);
  }
}

export class Builder {
  private interned = new Map<string, Node>();

  /**
   * The node for `op(params, inputs)`: an existing equal node, or a new one. `site` may be a
   * function: it is called only when a node is made (finding the user's file:line costs a stack
   * capture, not worth paying for nodes that already exist).
   */
  apply<K extends OpKind>(op: K, params: OpParams[K], inputs: readonly Node[], site?: string | (() => string | undefined), scope?: string): Node<K> {
    const def = opDef(op);
    const [lo, hi] = typeof def.arity === 'number' ? [def.arity, def.arity] : def.arity;
    if (inputs.length < lo || inputs.length > hi) throw new OpError(`${op}: expected ${lo === hi ? lo : `${lo}..${hi}`} inputs, got ${inputs.length}`);
    const key = `${op}|${paramsKey(params)}|${inputs.map((n) => n.id).join(',')}`;
    const hit = this.interned.get(key);
    if (hit) return hit as Node<K>;
    let type;
    try {
      type = def.infer(params, inputs.map((n) => n.type));
    } catch (e) {
      if (e instanceof OpError) throw new OpError(`${op}(${inputs.map((n) => typeStr(n.type)).join(', ')}): ${e.message}`);
      throw e;
    }
    const node = new Node(op, params, inputs, type, typeof site === 'function' ? site() : site, scope);
    this.interned.set(key, node);
    return node;
  }
}
