import { describe, expect, it } from 'vitest';
import { Attention, constant, conv2d, DSLError, dim, input, Linear, MLP, Module, Param, RMSNorm, trace, TransformerBlock, type Tensor } from '../src/dsl/index.ts';

function thrown(fn: () => unknown): DSLError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DSLError) return e;
    throw e;
  }
  throw new Error('expected a DSLError');
}

describe('DSL errors name the op, the operand shapes and the user line', () => {
  it.each([
    ['add broadcast', () => input('a', 'f32', [2, 3]).add(input('b', 'f32', [4])), /add\(f32\[2, 3\], f32\[4\]\).*do not broadcast/],
    ['matmul inner', () => input('a', 'f32', [2, 3]).matmul(input('b', 'f32', [4, 5])), /matmul\(f32\[2, 3\], f32\[4, 5\]\): matmul inner dims differ/],
    ['symbolic mismatch', () => input('a', 'f32', [dim('batch'), 4]).add(input('b', 'f32', [dim('seq'), 4])), /add\(f32\[batch, 4\], f32\[seq, 4\]\)/],
    ['reshape count', () => input('a', 'f32', [2, 3]).reshape(4, 2), /reshape\(f32\[2, 3\]\).*element counts 6 and 8 differ/],
    ['dtype mix', () => input('a', 'f32', [2]).add(input('b', 'f16', [2])), /add\(f32\[2\], f16\[2\]\).*explicit cast/],
    ['conv channels', () => conv2d(input('x', 'f32', [1, 3, 8, 8]), input('w', 'f32', [4, 2, 3, 3]), undefined), /conv2d\(f32\[1, 3, 8, 8\], f32\[4, 2, 3, 3\]\).*3 channels/],
  ])('%s', (_name, build, re) => {
    const e = thrown(() => trace('t', () => ({ y: (build as () => Tensor)() })));
    expect(e.message).toMatch(re);
    expect(e.message).toMatch(/^test\/dsl\.test\.ts:\d+: /);
  });

  it('points at the module user code line, not the library internals', () => {
    const e = thrown(() =>
      trace('t', () => {
        const lin = new Linear(8, 4);
        return { y: lin.forward(input('x', 'f32', [2, 5])) };
      }),
    );
    expect(e.message).toMatch(/^test\/dsl\.test\.ts:\d+: matmul\(f32\[2, 5\], f32\[8, 4\]\)/);
  });

  it('refuses ops outside a trace', () => {
    expect(() => input('x', 'f32', [1])).toThrow(/no graph is being traced/);
  });
});

class Tiny extends Module {
  proj = new Linear(4, 6);
  layers = [new RMSNorm(6), new RMSNorm(6, 1e-5, { offset: 1 })];
  scale = new Param([6], { kind: 'ones' });
  forward(x: Tensor): Tensor {
    let h = this.proj.forward(x);
    for (const l of this.layers) h = l.forward(h);
    return h.mul(this.scale.t);
  }
}

describe('modules', () => {
  it('name params by property paths, as Hugging Face checkpoints do', () => {
    const m = new Tiny();
    expect(m.namedParameters().map(([n]) => n)).toEqual(['proj.weight', 'proj.bias', 'layers.0.weight', 'layers.1.weight', 'scale']);
    expect(m.paramCount()).toBe(4 * 6 + 6 + 6 + 6 + 6);
  });

  it('nested transformer blocks get Llama-style names and GQA shapes', () => {
    class Enc extends Module {
      layers = [0, 1].map(() => new TransformerBlock({ hidden: 32, heads: 4, kvHeads: 2, intermediate: 64, qkNorm: true }));
    }
    const names = new Map(new Enc().namedParameters().map(([n, p]) => [n, p.shape]));
    expect(names.get('layers.1.self_attn.k_proj.weight')).toEqual([16, 32]);
    expect(names.get('layers.0.self_attn.q_norm.weight')).toEqual([8]);
    expect(names.get('layers.0.mlp.gate_proj.weight')).toEqual([64, 32]);
    expect(names.has('layers.0.post_attention_layernorm.weight')).toBe(true);
    const sandwich = new TransformerBlock({ hidden: 8, heads: 2, intermediate: 16, style: 'sandwich' });
    expect(sandwich.namedParameters().map(([n]) => n)).toContain('pre_feedforward_layernorm.weight');
  });

  it('frozen flag flows to params and the traced graph', () => {
    const m = new Tiny();
    m.proj.freeze();
    expect(m.paramCount({ trainableOnly: true })).toBe(18);
    const g = trace('f', () => ({ y: m.forward(input('x', 'f32', [2, 4])) }));
    const frozen = g.params().filter((p) => p.params.frozen).map((p) => p.params.name);
    expect(frozen).toEqual(['proj.bias', 'proj.weight']);
    expect(g.paramCount()).toBe(m.paramCount());
    expect(g.paramCount((p) => !p.params.frozen)).toBe(18);
  });

  it('a param used twice is one graph node; an unowned param is an error', () => {
    const m = new Tiny();
    const g = trace('t', () => {
      const x = input('x', 'f32', [2, 4]);
      return { a: m.forward(x), b: m.forward(x.mul(2)) };
    });
    expect(g.params().length).toBe(5);
    const stray = new Param([2], { kind: 'zeros' });
    expect(() => trace('s', () => ({ y: stray.t }))).toThrow(/assigned to a Module property/);
  });

  it('two unowned modules cannot silently share parameter names', () => {
    expect(() =>
      trace('dup', () => {
        const x = input('x', 'f32', [2, 4]);
        return { y: new Linear(4, 4).forward(new Linear(4, 4).forward(x)) };
      }),
    ).toThrow(/two different parameters are both named 'weight'/);
    const g = trace('ok', () => {
      const x = input('x', 'f32', [2, 4]);
      return { y: new Linear(4, 4).named('b').forward(new Linear(4, 4).named('a').forward(x)) };
    });
    expect(g.params().map((p) => p.params.name)).toEqual(['a.bias', 'a.weight', 'b.bias', 'b.weight']);
  });

  it('attention validates head configuration', () => {
    expect(() => new Attention({ hidden: 30, heads: 4 })).toThrow(/not divisible/);
    expect(() => new Attention({ hidden: 32, heads: 4, kvHeads: 3 })).toThrow(/multiple/);
  });
});

describe('slice defaults follow Python', () => {
  it('x.slice(axis, -1, undefined, -1) reverses the whole axis (ORT and reference)', async () => {
    const { checkGraph } = await import('./helpers/harness.ts');
    const g = trace('rev', () => ({ y: input('x', 'f32', [5, 2]).slice(0, -1, undefined, -1) }));
    const x = { dtype: 'f32' as const, shape: [5, 2], data: Float64Array.from({ length: 10 }, (_, i) => i + 1) };
    const { got, want } = await checkGraph(g, { x });
    expect(Array.from(want.y!.data)).toEqual([9, 10, 7, 8, 5, 6, 3, 4, 1, 2]);
    expect(Array.from(got.y!.data)).toEqual(Array.from(want.y!.data));
  });
});

describe('DSL misuse is a DSLError naming the user line, never a JavaScript TypeError', () => {
  const here = /test\/dsl\.test\.ts:\d+: /;
  const traced = (fn: () => Record<string, Tensor>) => () => trace('misuse', fn);
  it.each([
    ["unknown dtype in input()", traced(() => ({ y: input('x', 'f16x' as never, [2]) })), /input 'x': unknown dtype 'f16x' \(known: f32, f16, bf16, f64, i64, i32, bool\); did you mean 'f16'\?/],
    ['unknown dtype in cast()', traced(() => ({ y: input('x', 'f32', [2]).cast('float' as never) })), /cast of Tensor\(f32\[2\]\): unknown dtype 'float'/],
    ['unknown dtype in constant()', traced(() => ({ y: constant(1, 'int64' as never) })), /constant: unknown dtype 'int64'/],
    ['a string where a size belongs', traced(() => ({ y: input('x', 'f32', ['batch' as never, 3]) })), /input 'x': shape \[batch, 3\] axis 0 is 'batch', not a non-negative integer or a dim\(\) \(use dim\('batch'\) for a symbolic size\)/],
    ['a typo in a layer option', () => new Linear(4, 4, { bais: false } as never), /Linear: unknown option 'bais' \(known: bias, dtype, std\); did you mean 'bias'\?/],
    ['an unknown activation', () => new MLP({ hidden: 4, intermediate: 8, act: 'relu' as never }), /MLP act must be one of 'swiglu', 'gelu', 'gelu_tanh', 'silu', got 'relu'/],
    ['a layer size that is not one', () => new Linear(4, '8' as never), /Linear out_features must be a positive integer, got '8'/],
    ['a JavaScript error in graph code', traced(() => ({ y: input('x', 'f32', [2]).mul((undefined as unknown as { s: number }).s) })), /while tracing graph 'misuse': TypeError: Cannot read properties of undefined/],
  ])('%s', (_what, fn, re) => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DSLError);
    expect((err as Error).message).toMatch(re);
    expect((err as Error).message).toMatch(here);
  });
});

it('a build function that returns no outputs is a DSLError naming the graph', () => {
  expect(() => trace('misuse', () => undefined as never)).toThrow(/graph 'misuse': the build function must return an object of named output tensors, got undefined/);
  expect(() => trace('misuse', () => ({ y: 3 }) as never)).toThrow(/graph 'misuse': output 'y' is not a Tensor/);
});
