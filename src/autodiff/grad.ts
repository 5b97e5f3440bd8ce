// Reverse-mode differentiation over the IR: walks the nodes between `wrt` and
// `loss` in reverse topological order, asking each op's VJP for its inputs'
// cotangents. Cotangents of values used more than once are summed; integer and
// boolean values carry none; broadcasting is undone inside each rule.
import { isFloat } from '../ir/dtype.ts';
import { Graph, type Builder } from '../ir/graph.ts';
import { OpError, typeStr, type Node } from '../ir/node.ts';
import { NB } from '../ir/nb.ts';
import { opDef } from '../ir/optable.ts';

/**
 * A region marked for activation recomputation: in the backward pass its
 * forward is replayed from barriered copies of its inputs, so the originals'
 * intermediate values are needed only by the forward and can be freed early.
 */
export interface RecomputeRegion {
  inputs: readonly Node[];
  output: Node;
  /** rebuild the region's forward from the given inputs; returns its output */
  replay(inputs: readonly Node[]): Node;
}

export interface GradOptions {
  /** cotangent of `loss` (default: ones; loss is usually a scalar) */
  seed?: Node;
  regions?: readonly RecomputeRegion[];
}

let barrierTag = 1;

export function grad(b: Builder, loss: Node, wrt: readonly Node[], opts: GradOptions = {}): Node[] {
  if (!isFloat(loss.dtype)) throw new OpError(`grad: loss must be floating point, got ${typeStr(loss.type)}`);
  for (const w of wrt) if (!isFloat(w.dtype)) throw new OpError(`grad: cannot differentiate with respect to ${w.op} ${typeStr(w.type)} (not floating point)`);
  const nb = new NB(b);
  const order = new Graph('grad', [], [{ name: 'loss', node: loss }]).nodes();
  // nodes that depend on some wrt node: the only ones whose cotangents matter
  const live = new Set<Node>(wrt);
  for (const n of order) if (!live.has(n) && n.inputs.some((i) => live.has(i))) live.add(n);
  const adj = new Map<Node, Node>();
  adj.set(loss, opts.seed ?? (loss.rank === 0 ? nb.scalar(1, loss.dtype) : nb.expand(nb.scalar(1, loss.dtype), loss.shape)));
  const regions = new Map((opts.regions ?? []).map((r) => [r.output, r]));
  const accumulate = (inp: Node, c: Node) => {
    const prev = adj.get(inp);
    adj.set(inp, prev ? nb.add(prev, c) : c);
  };
  for (let k = order.length - 1; k >= 0; k--) {
    const n = order[k]!;
    const g = adj.get(n);
    if (!g || !live.has(n) || n.inputs.length === 0) continue;
    const region = regions.get(n);
    if (region) {
      // replay the region from barriers and differentiate the copy; the originals get no adjoints
      const tag = barrierTag++;
      const ins = region.inputs.map((x) => (isFloat(x.dtype) ? nb.op('barrier', { tag }, [x]) : x));
      const y = region.replay(ins);
      const inner = [...region.inputs.keys()].filter((i) => live.has(region.inputs[i]!) && isFloat(region.inputs[i]!.dtype));
      // params the replay itself uses: stop at the barriers, or earlier regions' params would be
      // differentiated twice (once here through the originals, once by their own replay)
      const params = paramsUpTo(y, new Set(ins)).filter((p) => live.has(p));
      const cots = grad(b, y, [...inner.map((i) => ins[i]!), ...params], { seed: g });
      inner.forEach((i, j) => accumulate(region.inputs[i]!, cots[j]!));
      params.forEach((p, j) => accumulate(p, cots[inner.length + j]!));
      continue;
    }
    const def = opDef(n.op);
    if (def.vjp === 'nondiff') continue;
    // gradient nodes are named after the forward module they differentiate ('backward/dit/blocks.3/attn/MatMul_0')
    nb.scope = n.scope ? `backward/${n.scope}` : 'backward';
    nb.site = n.site;
    const cots = def.vjp(nb, n.params as never, n.inputs, n as never, g);
    n.inputs.forEach((inp, i) => {
      const c = cots[i];
      if (!c || !live.has(inp) || !isFloat(inp.dtype)) return;
      if (c.dtype !== inp.dtype) throw new OpError(`grad: ${n.op} gave a ${c.dtype} cotangent for a ${inp.dtype} input`);
      accumulate(inp, c);
    });
  }
  return wrt.map((w) => adj.get(w) ?? nb.zeros(w.shape, w.dtype));
}

function paramsUpTo(root: Node, stop: ReadonlySet<Node>): Node[] {
  const seen = new Set<Node>();
  const out: Node[] = [];
  const stack = [root];
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n) || stop.has(n)) continue;
    seen.add(n);
    if (n.is('param')) out.push(n);
    stack.push(...n.inputs);
  }
  return out;
}
