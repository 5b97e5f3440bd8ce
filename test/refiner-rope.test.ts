// The refiner's optional 1D RoPE over the condition's token order (graphs/refiner.ts `rope`):
//  - without it the refiner is a bag of tokens: permuting the condition tokens permutes its output;
//  - with it the output depends on the order (so "a red circle at the top left, a blue square ..."
//    binds each colour / shape to its own position words), while padding after the tokens (the
//    packed conditions of training and sampling) leaves the real tokens' outputs unchanged;
//  - onnxruntime equals the float64 interpreter on the rotated graph.
// Every parameter is random (no zero-initialised projection hides the attention).
import { describe, expect, it } from 'vitest';
import { dim, input, trace } from '../src/dsl/index.ts';
import type { Graph } from '../src/ir/graph.ts';
import { Rng } from '../src/ir/init.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import { compileGraph } from '../src/compiler.ts';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../src/io/host.ts';
import { Session } from '../runtime/session.ts';
import { Refiner, type RefinerConfig } from '../graphs/refiner.ts';

const HE = 16, D = 24;
const cfg = (rope: boolean): RefinerConfig => ({ blocks: 2, heads: 2, ffn: 32, ...(rope ? { rope: { theta: 10000 } } : {}) });

function graphOf(c: RefinerConfig): Graph {
  return trace('refiner', () => {
    const r = new Refiner(HE, D, c);
    return { out: r.forward(input('x', 'f32', [dim('batch'), dim('seq'), HE]), input('mask', 'bool', [dim('batch'), dim('seq')])) };
  });
}

function randomParams(g: Graph, seed: number): Map<string, HostTensor> {
  const rng = new Rng(seed, 'refiner-rope');
  return new Map(g.params().map((p) => [p.params.name, fromFloat64('f32', p.params.shape, Array.from({ length: p.params.shape.reduce((a, b) => a * b, 1) }, () => 0.4 * rng.normal()))]));
}

async function run(g: Graph, params: Map<string, HostTensor>, x: number[][], pad = 0): Promise<number[][]> {
  const S = x.length + pad;
  const data = [...x.flat(), ...new Array(pad * HE).fill(0.7)];
  const mask = [...x.map(() => 1), ...new Array(pad).fill(0)];
  const s = await Session.load(encodeModel(compileGraph(g, { weights: 'embed', paramValues: params }).emitted.model));
  try {
    const out = toFloat64((await s.run({ x: fromFloat64('f32', [1, S, HE], data), mask: fromFloat64('bool', [1, S], mask) })).out!);
    return Array.from({ length: x.length }, (_, i) => Array.from(out.subarray(i * D, (i + 1) * D)));
  } finally {
    await s.release();
  }
}

const maxDiff = (a: number[][], b: number[][]) => Math.max(...a.flatMap((r, i) => r.map((v, j) => Math.abs(v - b[i]![j]!))));
const scale = (a: number[][]) => Math.max(...a.flat().map(Math.abs));

describe('refiner RoPE over the condition order', { timeout: 60_000 }, () => {
  const rng = new Rng(3, 'tokens');
  const tokens = Array.from({ length: 6 }, () => Array.from({ length: HE }, () => rng.normal()));
  const perm = [3, 0, 5, 1, 4, 2];
  const permuted = perm.map((i) => tokens[i]!);

  it('without rope the refiner is permutation-equivariant (a bag of tokens)', async () => {
    const g = graphOf(cfg(false));
    const p = randomParams(g, 1);
    const a = await run(g, p, tokens), b = await run(g, p, permuted);
    expect(maxDiff(perm.map((i) => a[i]!), b) / scale(a)).toBeLessThan(1e-5);
  });

  it('with rope the output depends on the token order', async () => {
    const g = graphOf(cfg(true));
    const p = randomParams(g, 1);
    const a = await run(g, p, tokens), b = await run(g, p, permuted);
    expect(maxDiff(perm.map((i) => a[i]!), b) / scale(a)).toBeGreaterThan(0.05);
  });

  it('with rope, padding after the tokens leaves their outputs unchanged (packed conditions)', async () => {
    const g = graphOf(cfg(true));
    const p = randomParams(g, 2);
    const a = await run(g, p, tokens), b = await run(g, p, tokens, 5);
    expect(maxDiff(a, b) / scale(a)).toBeLessThan(1e-5);
  });

  it('onnxruntime equals the float64 interpreter on the rotated graph', async () => {
    const g = graphOf(cfg(true));
    const p = randomParams(g, 4);
    const got = await run(g, p, tokens);
    const ref = evaluate(g, { x: { dtype: 'f32', shape: [1, 6, HE], data: Float64Array.from(tokens.flat()) }, mask: { dtype: 'bool', shape: [1, 6], data: new Float64Array(6).fill(1) } }, { params: new Map([...p].map(([k, v]) => [k, { dtype: 'f32' as const, shape: v.shape, data: toFloat64(v) }])) }).out!;
    const want = Array.from({ length: 6 }, (_, i) => Array.from(ref.data.subarray(i * D, (i + 1) * D)));
    expect(maxDiff(got, want) / scale(want)).toBeLessThan(1e-5);
  });

  it('refuses an odd head dim and a non-positive theta by name', () => {
    expect(() => new Refiner(HE, D, { blocks: 1, heads: 16, ffn: 8, rope: { theta: 10000 } })).toThrow(/rope needs an even head dim/);
    expect(() => new Refiner(HE, D, { blocks: 1, heads: 2, ffn: 8, rope: { theta: 0 } })).toThrow(/rope.theta must be > 0/);
  });
});
