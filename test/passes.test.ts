import { describe, expect, it } from 'vitest';
import { constant, dim, input, range, trace, Linear, type Tensor } from '../src/dsl/index.ts';
import { Builder, Graph } from '../src/ir/graph.ts';
import { Node } from '../src/ir/node.ts';
import { optimize, verify, simplify, fold, cse, infer, runPasses } from '../src/passes/pipeline.ts';
import { dceWith } from '../src/passes/dce.ts';
import { printGraph } from '../src/ir/print.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import { Rng } from '../src/ir/init.ts';
import { compare, randomRef, runOnnx } from './helpers/harness.ts';

const count = (g: Graph, op: string) => g.nodes().filter((n) => n.op === op).length;

describe('passes', () => {
  it('simplify removes identities and composes transposes/reshapes', () => {
    const g = trace('s', () => {
      const x = input('x', 'f32', [2, 3, 4]);
      const y = x.transpose(1, 0, 2).transpose(1, 0, 2).reshape(6, 4).reshape(2, 12).reshape(2, 3, 4);
      return { y: y.mul(1).add(0).cast('f32') };
    });
    const out = simplify.run(g);
    expect(out.changed).toBe(true);
    expect(out.graph.nodes().map((n) => n.op)).toEqual(['input']);
    expect(out.note).toMatch(/transpose-transpose/);
  });

  it('fold evaluates constant subgraphs (range, arithmetic) but leaves inputs alone', () => {
    const g = trace('f', () => {
      const x = input('x', 'f32', [4]);
      const c = range(4, { dtype: 'f32' }).mul(2).add(constant([1, 2, 3, 4]));
      return { y: x.add(c) };
    });
    const r = fold.run(g);
    expect(r.changed).toBe(true);
    expect(count(r.graph, 'range')).toBe(0);
    const c = r.graph.nodes().find((n) => n.is('constant') && n.params.value.data.length === 4) as Node<'constant'>;
    expect(Array.from(c.params.value.data)).toEqual([1, 4, 7, 10]);
    expect(count(r.graph, 'add')).toBe(1);
  });

  it('fold keeps symbolic-size computations for runtime', () => {
    const g = trace('f2', () => {
      const x = input('x', 'f32', [dim('n')]);
      return { y: x.add(range(dim('n'), { dtype: 'f32' })) };
    });
    expect(count(fold.run(g).graph, 'range')).toBe(1);
  });

  it('cse merges equal nodes that rewrites exposed', () => {
    // two different-looking chains that simplify to the same x*2
    const g = trace('c', () => {
      const x = input('x', 'f32', [3]);
      const a = x.reshape(3).mul(2);
      const b = x.mul(2);
      return { y: a.add(b) };
    });
    expect(count(g, 'mul')).toBe(2);
    const out = runPasses(g, [simplify, cse]);
    expect(count(out, 'mul')).toBe(1);
  });

  it('verify rejects a node whose type disagrees with its shape rule', () => {
    const b = new Builder();
    const x = b.apply('input', { name: 'x', dtype: 'f32', shape: [2, 3] }, []);
    const bad = new Node('neg', {}, [x], { dtype: 'f32', shape: [3, 2] });
    const g = new Graph('bad', [x], [{ name: 'y', node: bad }]);
    expect(() => runPasses(g, [verify])).toThrow(/pass 'verify'.*neg node is typed f32\[3, 2\] but its shape rule gives f32\[2, 3\]/);
  });

  it('verify rejects a param name used with two shapes', () => {
    const b = new Builder();
    const mk = (shape: number[]) => b.apply('param', { name: 'w', dtype: 'f32', shape, init: { kind: 'zeros' }, frozen: false, seed: 0 }, []);
    const g = new Graph('p', [], [{ name: 'a', node: mk([2]) }, { name: 'b', node: mk([3]) }]);
    expect(() => verify.run(g)).toThrow(/param 'w' appears as f32\[2\] and as f32\[3\]/);
  });

  it('dce can drop unused inputs', () => {
    const g = trace('d', () => {
      const x = input('x', 'f32', [2]);
      input('unused', 'f32', [2]);
      return { y: x.exp() };
    });
    expect(dceWith({ dropUnusedInputs: true }).run(g).graph.inputs.map((i) => i.params.name)).toEqual(['x']);
    expect(dceWith().run(g).graph.inputs.length).toBe(2);
  });

  it('infer re-derives types and the debug flag dumps the graph after each step', () => {
    const g = trace('dbg', () => ({ y: new Linear(4, 2).forward(input('x', 'f32', [dim('b'), 4])) }));
    const logs: string[] = [];
    optimize(g, { debug: true, log: (s) => logs.push(s) });
    expect(logs[0]).toMatch(/^== input/);
    expect(logs.slice(1).map((l) => l.split('\n')[0]!.split(' ')[2])).toEqual(['verify', 'infer', 'simplify', 'fold', 'simplify', 'cse', 'dce', 'verify']);
    expect(logs.at(-1)).toMatch(/%\d+ = matmul\(%\d+, %\d+\) : f32\[b, 2\]/);
    expect(infer.run(g).changed).toBe(false);
  });

  it('the optimised graph computes what the original computes (reference and ORT)', async () => {
    const g = trace('eq', () => {
      const x = input('x', 'f32', [dim('b'), 8]);
      const l = new Linear(8, 8);
      let h: Tensor = x;
      for (let i = 0; i < 3; i++) h = l.forward(h).transpose(1, 0).transpose(1, 0).mul(1).tanh();
      return { y: h.add(range(8, { dtype: 'f32' }).mul(0.5)) };
    });
    const o = optimize(g);
    expect(o.nodes().length).toBeLessThan(g.nodes().length);
    const feeds = { x: randomRef('f32', [3, 8], new Rng(7)) };
    const a = evaluate(g, feeds).y!, b = evaluate(o, feeds).y!;
    expect(compare(b, a)).toBeNull();
    expect(compare((await runOnnx(o, feeds)).y!, a)).toBeNull();
    expect(printGraph(o)).toContain('graph eq(x: f32[b, 8])');
  });
});
