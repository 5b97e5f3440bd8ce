// rope: the DSL's rotary embedding of one section -> rope (RotaryEmbedding-23).
//   interleaved: pairs (x[2i], x[2i+1]) = reshape(x, [..., d/2, 2]), split, (a c - b s, a s + b c), concat, reshape
//   half:        x * cos + concat(-x2, x1) * sin with cos/sin tables of two equal halves (cos(concat(a, a)))
// The fused op takes half-width tables [..., S, d/2]: the interleaved form's [..., d/2, 1] are
// reshaped, the half form's are recomputed from the half angle (cos(a) instead of cos(concat(a, a))).
import { concat } from '../../dsl/tensor.ts';
import { dimEq, isStatic } from '../../ir/dims.ts';
import type { Node } from '../../ir/node.ts';
import type { NB } from '../../ir/nb.ts';
import { defineRule, describe, type Match, type RewriteCtx } from './rule.ts';

type V = 'x' | 'c' | 's';

const lastAxis = (n: Node, axis: number) => axis === n.rank - 1 || axis === -1;

interface HalfTable {
  /** the half-width table, built in the rewrite */
  build(cx: RewriteCtx, nb: NB): Node;
}

/**
 * A table of two equal halves: cos(concat([a, a], -1)) (possibly reshaped), or a constant whose
 * halves are equal (positions known at compile time fold the tables). Its half, or why not.
 */
function halfTable(t: Node, fn: 'cos' | 'sin'): HalfTable | string {
  if (t.is('constant')) {
    const v = t.params.value, w = v.shape[v.shape.length - 1]!, h = w / 2;
    const half = new Float64Array(v.data.length / 2);
    for (let r = 0; r < v.data.length / w; r++)
      for (let j = 0; j < h; j++) {
        if (v.data[r * w + j] !== v.data[r * w + h + j]) return `the ${fn} table (a constant) does not have two equal halves`;
        half[r * h + j] = v.data[r * w + j]!;
      }
    return { build: (_cx, nb) => nb.op('constant', { value: { dtype: v.dtype, shape: [...v.shape.slice(0, -1), h], data: half } }, []) };
  }
  const reshapes: Node[] = [];
  let n = t;
  while (n.is('reshape') && dimEq(n.shape[n.rank - 1]!, n.inputs[0]!.shape[n.inputs[0]!.rank - 1]!)) (reshapes.push(n), (n = n.inputs[0]!));
  if (!n.is(fn)) return `the ${fn} table ${describe(t)} is not ${fn}(concat([a, a], -1)), so its halves are not known to be equal`;
  const c = n.inputs[0]!;
  if (!c.is('concat') || c.inputs.length !== 2 || c.inputs[0] !== c.inputs[1] || !lastAxis(c, c.params.axis)) return `the ${fn} table's angle ${describe(c)} is not concat([a, a], -1)`;
  const angle = c.inputs[0]!;
  return {
    build(cx, nb) {
      let h = nb.op(fn, {}, [cx.map(angle)]);
      for (const r of [...reshapes].reverse()) {
        const shape = [...r.shape];
        shape[shape.length - 1] = angle.shape[angle.rank - 1]!;
        h = nb.reshape(h, shape);
      }
      return h;
    },
  };
}

function interleavedReason(m: Match<V>): string | undefined {
  const x = m.v('x'), pairs = m.n('pairs'), out = m.root;
  const D = x.shape[x.rank - 1]!;
  if (!isStatic(D) || D % 2) return `the rotated width ${describe(x)} is not static and even`;
  const ps = pairs.shape;
  if (pairs.rank !== x.rank + 1 || ps[ps.length - 1] !== 2 || ps[ps.length - 2] !== D / 2 || !x.shape.slice(0, -1).every((d, i) => dimEq(d, ps[i]!)))
    return `x is not viewed as pairs [..., ${D / 2}, 2] (${describe(pairs)})`;
  for (const [lbl, idx] of [['a', 0], ['b', 1]] as const) {
    const sp = m.n(lbl) as Node<'split'>;
    if (!lastAxis(pairs, sp.params.axis) || sp.params.sizes.length !== 2 || sp.params.sizes[0] !== 1 || sp.params.sizes[1] !== 1 || sp.params.index !== idx) return `the pairs are not split into (x[2i], x[2i+1])`;
  }
  const cc = m.n('cat') as Node<'concat'>;
  if (!lastAxis(cc, cc.params.axis)) return 'the rotated pairs are not re-joined on the last axis';
  if (!out.shape.every((d, i) => dimEq(d, x.shape[i]!)) || out.rank !== x.rank) return 'the result is not reshaped back to x';
  for (const t of [m.v('c'), m.v('s')]) {
    if (t.dtype !== x.dtype) return `the cos/sin table is ${t.dtype} but x is ${x.dtype}`;
    if (t.rank < 2 || t.shape[t.rank - 1] !== 1 || t.shape[t.rank - 2] !== D / 2) return `the cos/sin table ${describe(t)} is not [..., ${D / 2}, 1] (one angle per pair)`;
  }
  if (!dimEq(m.v('c').shape.length, m.v('s').shape.length) || !m.v('c').shape.every((d, i) => dimEq(d, m.v('s').shape[i]!))) return 'cos and sin tables have different shapes';
  return undefined;
}

function halfReason(m: Match<V>): string | undefined {
  const x = m.v('x');
  const D = x.shape[x.rank - 1]!;
  if (!isStatic(D) || D % 2) return `the rotated width ${describe(x)} is not static and even`;
  for (const lbl of ['x1', 'x2'] as const) {
    const sp = m.n(lbl) as Node<'split'>;
    if (!lastAxis(x, sp.params.axis) || sp.params.sizes.length !== 2 || sp.params.sizes[0] !== D / 2 || sp.params.sizes[1] !== D / 2 || sp.params.index !== (lbl === 'x1' ? 0 : 1)) return 'x is not split into two halves';
  }
  const cc = m.n('rot') as Node<'concat'>;
  if (!lastAxis(cc, cc.params.axis)) return 'rotate_half is not joined on the last axis';
  for (const [t, fn] of [[m.v('c'), 'cos'], [m.v('s'), 'sin']] as const) {
    if (t.dtype !== x.dtype) return `the ${fn} table is ${t.dtype} but x is ${x.dtype}`;
    if (t.shape[t.rank - 1] !== D) return `the ${fn} table ${describe(t)} is not ${D} wide`;
    const h = halfTable(t, fn);
    if (typeof h === 'string') return h;
  }
  return undefined;
}

export const ropeRule = defineRule<V>({
  name: 'rope',
  doc: "one section of the DSL's rotary embedding (interleaved pairs or rotate_half) -> rope",
  vars: { x: ['B', 'H', 'S', 8], c: ['S', 4, 1], s: ['S', 4, 1] },
  patterns: [
    {
      name: 'interleaved',
      build: (v, tag) => {
        const pairs = tag('pairs', v.x.reshape(v.x.dim(0), v.x.dim(1), v.x.dim(2), 4, 2));
        const [a, b] = pairs.split(-1, [1, 1]).map((t, i) => tag(i ? 'b' : 'a', t)) as [typeof pairs, typeof pairs];
        const ra = a.mul(v.c).sub(b.mul(v.s));
        const rb = a.mul(v.s).add(b.mul(v.c));
        return tag('cat', concat([ra, rb], -1)).reshape(v.x.shape);
      },
    },
    {
      name: 'half',
      vars: { c: ['S', 8], s: ['S', 8] },
      build: (v, tag) => {
        const [x1, x2] = v.x.split(-1, [4, 4]).map((t, i) => tag(i ? 'x2' : 'x1', t)) as [typeof v.x, typeof v.x];
        const rot = tag('rot', concat([x2.neg(), x1], -1));
        return v.x.mul(v.c).add(rot.mul(v.s));
      },
    },
  ],
  loose: ['reshape', 'split', 'concat'],
  check: (m) => (m.pattern === 'interleaved' ? interleavedReason(m) : halfReason(m)),
  rewrite(m, cx) {
    const x = cx.map(m.v('x'));
    if (m.pattern === 'interleaved') {
      const flat = (t: Node) => cx.nb.reshape(cx.map(t), t.shape.slice(0, -1));
      return cx.fuse('rope', { interleaved: true }, [x, flat(m.v('c')), flat(m.v('s'))]);
    }
    const hc = halfTable(m.v('c'), 'cos') as HalfTable, hs = halfTable(m.v('s'), 'sin') as HalfTable;
    return cx.fuse('rope', { interleaved: false }, [x, hc.build(cx, cx.nb), hs.build(cx, cx.nb)]);
  },
});
