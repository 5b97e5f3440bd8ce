// simplify: algebraic identities as data. Each rule looks at a node whose
// inputs are already simplified and may return a cheaper equivalent.
import { shapeEq } from '../ir/dims.ts';
import type { Node } from '../ir/node.ts';
import type { Builder } from '../ir/graph.ts';
import { rebuild, type Pass } from './pass.ts';

export interface Rule {
  name: string;
  apply(n: Node, ins: Node[], b: Builder): Node | undefined;
}

const isScalarConst = (n: Node, v: number) => n.is('constant') && n.params.value.data.length === 1 && n.params.value.data[0] === v;
const sameType = (a: Node, n: Node) => a.dtype === n.dtype && shapeEq(a.shape, n.shape);

export const RULES: Rule[] = [
  { name: 'cast-noop', apply: (n, [x]) => (n.is('cast') && x!.dtype === n.params.to ? x : undefined) },
  { name: 'reshape-noop', apply: (n, [x]) => (n.is('reshape') && shapeEq(x!.shape, n.shape) ? x : undefined) },
  { name: 'reshape-reshape', apply: (n, [x], b) => (n.is('reshape') && x!.is('reshape') ? b.apply('reshape', n.params, [x.inputs[0]!], n.site, n.scope) : undefined) },
  { name: 'expand-noop', apply: (n, [x]) => (n.is('expand') && sameType(x!, n) ? x : undefined) },
  { name: 'transpose-identity', apply: (n, [x]) => (n.is('transpose') && n.params.perm.every((p, i) => p === i) ? x : undefined) },
  {
    name: 'transpose-transpose',
    apply: (n, [x], b) => {
      if (!n.is('transpose') || !x!.is('transpose')) return undefined;
      const inner = x.params.perm;
      return b.apply('transpose', { perm: n.params.perm.map((p) => inner[p]!) }, [x.inputs[0]!], n.site, n.scope);
    },
  },
  { name: 'neg-neg', apply: (n, [x]) => (n.is('neg') && x!.is('neg') ? x.inputs[0] : undefined) },
  { name: 'mul-one', apply: (n, [a, c]) => (n.is('mul') && isScalarConst(c!, 1) && sameType(a!, n) ? a : n.is('mul') && isScalarConst(a!, 1) && sameType(c!, n) ? c : undefined) },
  { name: 'add-zero', apply: (n, [a, c]) => (n.is('add') && isScalarConst(c!, 0) && sameType(a!, n) ? a : n.is('add') && isScalarConst(a!, 0) && sameType(c!, n) ? c : undefined) },
  { name: 'div-one', apply: (n, [a, c]) => (n.is('div') && isScalarConst(c!, 1) && sameType(a!, n) ? a : undefined) },
  { name: 'concat-single', apply: (n, ins) => (n.is('concat') && ins.length === 1 ? ins[0] : undefined) },
  { name: 'slice-noop', apply: (n, [x]) => (n.is('slice') && sameType(x!, n) && n.params.steps.every((s) => s === 1) && n.params.starts.every((s) => s === 0) ? x : undefined) },
];

export function simplifyWith(rules: readonly Rule[]): Pass {
  return {
    name: 'simplify',
    run(g) {
      const hits = new Map<string, number>();
      const { graph } = rebuild(g, (n, ins, b) => {
        // re-apply to each replacement until no rule fires, so chains
        // (transpose of transpose -> identity transpose -> x) collapse fully
        let cur: Node | undefined;
        let node = n, nodeIns = ins;
        for (let iter = 0; iter < 16; iter++) {
          const hit = rules.find((r) => {
            const out = r.apply(node, nodeIns, b);
            if (!out) return false;
            hits.set(r.name, (hits.get(r.name) ?? 0) + 1);
            cur = out;
            return true;
          });
          if (!hit || cur === undefined) break;
          node = cur;
          nodeIns = [...cur.inputs];
        }
        return cur;
      });
      const note = [...hits].map(([k, v]) => `${k}×${v}`).join(' ');
      return { graph, changed: hits.size > 0, note: note || undefined };
    },
  };
}

export const simplify = simplifyWith(RULES);
