// rope-sections: concat([rope(split(X)_0), rope(split(X)_1), ..., split(X)_k], -1) -> ONE rope of X
// with the section tables concatenated. Interleaved pairs never straddle sections, so axial 2D/3D
// RoPE (FLUX, the DiT) is one RotaryEmbedding: pass-through pieces before the last rotated one get
// angle 0 (cos 1, sin 0, an exact identity), trailing ones stay outside the rotary width.
// rotate_half sections cannot merge (each rotates within itself): declined with that reason.
// The concat takes any number of pieces, so this rule matches by hand (matchAt), not by a pattern.
import { dimEq, isStatic, type Dim } from '../../ir/dims.ts';
import type { Node } from '../../ir/node.ts';
import { defineRule, describe, type Match } from './rule.ts';

type V = 'x';

function lastRopeIndex(pieces: readonly Node[]): number {
  for (let i = pieces.length - 1; i >= 0; i--) if (pieces[i]!.is('rope')) return i;
  return -1;
}

function sectionsOf(n: Node): { x: Node; pieces: Node[] } | undefined {
  if (!n.is('concat') || n.inputs.length < 2 || !(n.params.axis === n.rank - 1 || n.params.axis === -1)) return undefined;
  let x: Node | undefined, sizesKey: string | undefined;
  let ropes = 0;
  for (const [i, p] of n.inputs.entries()) {
    const piece = p.is('rope') ? p.inputs[0]! : p;
    if (p.is('rope')) ropes++;
    if (!piece.is('split') || piece.params.index !== i || piece.params.sizes.length !== n.inputs.length) return undefined;
    const src = piece.inputs[0]!;
    const key = JSON.stringify(piece.params.sizes.map((d) => (isStatic(d) ? d : d.key))) + piece.params.axis;
    if (x === undefined) (x = src), (sizesKey = key);
    else if (x !== src || sizesKey !== key) return undefined;
    if (!(piece.params.axis === src.rank - 1 || piece.params.axis === -1)) return undefined;
  }
  return ropes > 0 && x ? { x, pieces: [...n.inputs] } : undefined;
}

export const ropeSectionsRule = defineRule<V>({
  name: 'rope-sections',
  doc: 'concat of rope-rotated split sections of one tensor -> one rope with concatenated tables',
  vars: { x: ['B', 'H', 'S', 8] },
  patterns: [],
  matchAt(n): Match<V> | undefined {
    const s = sectionsOf(n);
    if (!s) return undefined;
    return { pattern: `${s.pieces.length} sections`, root: n, v: () => s.x, n: (label) => s.pieces[Number(label)]! };
  },
  check(m) {
    const pieces = m.root.inputs;
    const ropes = pieces.filter((p): p is Node<'rope'> => p.is('rope'));
    if (ropes.some((r) => !r.params.interleaved)) return 'rotate_half sections rotate within each section: one RotaryEmbedding cannot express several';
    const lastRope = lastRopeIndex(pieces);
    let lead: readonly Dim[] | undefined;
    for (const [i, p] of pieces.entries()) {
      if (!p.is('rope')) {
        if (i < lastRope && !isStatic(p.shape[p.rank - 1]!)) return `pass-through piece ${describe(p)} has a symbolic width`;
        continue;
      }
      const cos = p.inputs[1]!, w = p.inputs[0]!.shape[p.rank - 1]!;
      if (!isStatic(w) || (cos.shape[cos.rank - 1] as number) * 2 !== w) return `section ${i} (${describe(p.inputs[0]!)}) is rotated only partly`;
      const l = cos.shape.slice(0, -1);
      if (lead && (lead.length !== l.length || !lead.every((d, k) => dimEq(d, l[k]!)))) return `the sections' tables have different leading shapes (${describe(cos)})`;
      lead = l;
    }
    return undefined;
  },
  rewrite(m, cx) {
    const pieces = m.root.inputs;
    const lastRope = lastRopeIndex(pieces);
    const first = pieces[lastRope] as Node<'rope'>;
    const lead = first.inputs[1]!.shape.slice(0, -1);
    const dtype = first.dtype;
    const cosParts: Node[] = [], sinParts: Node[] = [];
    for (const p of pieces.slice(0, lastRope + 1)) {
      if (p.is('rope')) {
        cosParts.push(cx.map(p.inputs[1]!));
        sinParts.push(cx.map(p.inputs[2]!));
      } else {
        const half = (p.shape[p.rank - 1] as number) / 2;
        cosParts.push(cx.nb.expand(cx.nb.scalar(1, dtype), [...lead, half]));
        sinParts.push(cx.nb.expand(cx.nb.scalar(0, dtype), [...lead, half]));
      }
    }
    const cat = (ts: Node[]) => (ts.length === 1 ? ts[0]! : cx.nb.op('concat', { axis: lead.length }, ts));
    return cx.fuse('rope', { interleaved: true }, [cx.map(m.v('x')), cat(cosParts), cat(sinParts)]);
  },
});
