// add-layer-norm: layer_norm(x + r, w?, b?) where the sum also feeds the residual path -> the
// add_layer_norm pair (normed, sum), lowered to ONE com.microsoft SkipLayerNormalization on cuda
// and webgpu. Not run for cpu (the survey measured that CPU kernel 2.5-3x slower than
// Add + LayerNormalization-17, targets.ts) or portable (no standard op). Runs after layer-norm
// (it matches the fused layer_norm) and after ada-rms-norm.
import type { Node } from '../../ir/node.ts';
import { fused } from '../../dsl/fused.ts';
import { defineRule, type Match, type RewriteCtx } from './rule.ts';
import { checkResidual } from './add-rms-norm.ts';

type V = 'x' | 'r' | 'w' | 'b';

const params = (m: { n(l: string): Node }) => (m.n('norm') as Node<'layer_norm'>).params;

function ins(m: Match<V>, cx: RewriteCtx): Node[] {
  const p = params(m);
  return [m.v('x'), m.v('r'), ...(p.weight ? [m.v('w')] : []), ...(p.bias ? [m.v('b')] : [])].map((n) => cx.map(n));
}

export const addLayerNormRule = defineRule<V>({
  name: 'add-layer-norm',
  doc: 'layer_norm(x + r, w, b) with the sum used elsewhere -> add_layer_norm (normed, sum)',
  vars: { x: ['B', 'S', 'D'], r: ['B', 'S', 'D'], w: ['D'], b: ['D'] },
  patterns: [
    { name: 'weight+bias', build: (v, tag) => tag('norm', fused.layerNorm(tag('sum', v.x.add(v.r)), v.w, v.b)) },
    { name: 'weight', build: (v, tag) => tag('norm', fused.layerNorm(tag('sum', v.x.add(v.r)), v.w)) },
    { name: 'plain', build: (v, tag) => tag('norm', fused.layerNorm(tag('sum', v.x.add(v.r)))) },
  ],
  loose: ['layer_norm'],
  check: checkResidual,
  rewrite(m, cx) {
    const p = params(m);
    return cx.fuse('add_layer_norm', { eps: p.eps, weight: p.weight, bias: p.bias, index: 0 }, ins(m, cx));
  },
  alsoReplace(m) {
    const p = params(m);
    return [{ node: m.n('sum'), rewrite: (cx) => cx.fuse('add_layer_norm', { eps: p.eps, weight: p.weight, bias: p.bias, index: 1 }, ins(m, cx)) }];
  },
});
