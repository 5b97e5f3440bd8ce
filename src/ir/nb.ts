// Node-level builder helpers: what gradient rules (and other IR rewrites) use
// to build new nodes, so that a VJP reads like the math it implements.
import { dimEq, type Dim, type Shape } from './dims.ts';
import type { DType } from './dtype.ts';
import type { Builder } from './graph.ts';
import type { Node } from './node.ts';
import type { OpKind, OpParams } from './params.ts';

export class NB {
  /** module path and file:line new nodes are attributed to (autodiff: those of the forward node being differentiated) */
  scope?: string;
  site?: string;
  constructor(readonly b: Builder) {}
  op<K extends OpKind>(k: K, p: OpParams[K], ins: readonly Node[]): Node {
    return this.b.apply(k, p, ins, this.site, this.scope);
  }
  scalar(v: number, dtype: DType): Node {
    return this.op('constant', { value: { dtype, shape: [], data: Float64Array.of(v) } }, []);
  }
  add(a: Node, b: Node): Node { return this.op('add', {}, [a, b]); }
  sub(a: Node, b: Node): Node { return this.op('sub', {}, [a, b]); }
  mul(a: Node, b: Node): Node { return this.op('mul', {}, [a, b]); }
  div(a: Node, b: Node): Node { return this.op('div', {}, [a, b]); }
  neg(a: Node): Node { return this.op('neg', {}, [a]); }
  /** a * constant */
  scale(a: Node, c: number): Node { return c === 1 ? a : this.mul(a, this.scalar(c, a.dtype)); }
  where(c: Node, a: Node, b: Node): Node { return this.op('where', {}, [c, a, b]); }
  cast(a: Node, to: DType): Node { return a.dtype === to ? a : this.op('cast', { to }, [a]); }
  reshape(a: Node, shape: readonly Dim[]): Node { return this.op('reshape', { shape: [...shape] }, [a]); }
  transpose(a: Node, perm: readonly number[]): Node { return this.op('transpose', { perm: [...perm] }, [a]); }
  expand(a: Node, shape: Shape): Node { return this.op('expand', { shape: [...shape] }, [a]); }
  matmul(a: Node, b: Node): Node { return this.op('matmul', {}, [a, b]); }
  sum(a: Node, axes: number[], keepdims: boolean): Node {
    return axes.length === 0 ? a : this.op('reduce_sum', { axes, keepdims }, [a]);
  }
  zeros(shape: Shape, dtype: DType): Node { return this.expand(this.scalar(0, dtype), shape); }
  /** swap the last two axes */
  mT(a: Node): Node {
    const perm = a.shape.map((_, i) => i);
    [perm[perm.length - 1], perm[perm.length - 2]] = [perm[perm.length - 2]!, perm[perm.length - 1]!];
    return this.transpose(a, perm);
  }
  /** Sum a broadcast gradient back to `shape` (numpy broadcasting, right-aligned). */
  sumTo(g: Node, shape: Shape): Node {
    const lead = g.rank - shape.length;
    const axes: number[] = [];
    for (let i = 0; i < g.rank; i++) {
      if (i < lead) axes.push(i);
      else if (shape[i - lead] === 1 && g.shape[i] !== 1) axes.push(i);
    }
    let r = this.sum(g, axes, true);
    if (lead > 0 || !r.shape.every((d, i) => i < lead || dimEq(d, shape[i - lead]!))) r = this.reshape(r, shape);
    return r;
  }
}
