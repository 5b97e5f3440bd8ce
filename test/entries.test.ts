// The public entry points as a user imports them (vitest resolves 'unifusion/*' to the sources, as
// tsconfig's paths do for tsc; test/package.test.ts checks the built ones), the DSL's dim
// arithmetic, and where the CLI's user-file bundler points this package's imports.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import * as uf from 'unifusion';
import * as dsl from 'unifusion/dsl';
import * as graphs from 'unifusion/graphs';
import * as rt from 'unifusion/runtime';
import { CODE_ROOT, ENTRY_POINTS, FROM_BUILD, PACKAGE_ROOT, codeFile, packageModule, resolveEntry } from '../src/layout.ts';
import { importUserModule } from '../src/cli/user-module.ts';
import { GRAPH_DEFINITION } from '../src/dsl/define.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

describe('entry points', () => {
  it('export the library: DSL and compiler, the model library, the runtime', () => {
    for (const k of ['compileGraph', 'writeCompiled', 'evaluate', 'compileTrainStep', 'defineTrainStep', 'defineGraph', 'trace', 'input', 'dim', 'dims', 'Linear', 'readSafetensors', 'writeSafetensors', 'Rng'] as const) expect(uf[k], k).toBeDefined();
    for (const k of ['trace', 'input', 'Tensor', 'Module', 'Attention', 'TransformerBlock', 'sdpa', 'rope', 'defineGraph', 'dims', 'dimMul', 'SymDim'] as const) expect(dsl[k], k).toBeDefined();
    for (const k of ['LAP', 'Refiner', 'DiT', 'UniFusion', 'uniFusionForward', 'uniFusionTrainStep', 'withConditioning', 'CONDITIONINGS', 'PRESETS', 'VLMS', 'AutoencoderKL', 'buildEncoder', 'DecoderLM', 'internvlEncoderFromHF', 't5EncoderFromHF', 'decoderLMEncoder'] as const) expect(graphs[k], k).toBeDefined();
    for (const g of [graphs.ditGraph, graphs.lapGraph, graphs.uniFusionGraph, graphs.vaeGraph, graphs.t5Graph]) expect(GRAPH_DEFINITION in g).toBe(true);
    expect(Object.keys(graphs.PRESETS)).toEqual(expect.arrayContaining(['tiny', 'ablation-5b', 'unifusion-8b', 'krea2']));
    for (const k of ['Session', 'SessionError', 'RuntimeInputError', 'Trainer', 'shuffledBatches', 'warmupCosine', 'readCheckpoint', 'dynamicTiles'] as const) expect(rt[k], k).toBeDefined();
  });

  it("'unifusion', 'unifusion/dsl' and 'unifusion/graphs' never load onnxruntime's native addon", () => {
    const script = `
      const seen = [];
      const dlopen = process.dlopen;
      process.dlopen = (m, file, ...rest) => { seen.push(file); return dlopen.call(process, m, file, ...rest); };
      await import('./src/index.ts'); await import('./src/dsl/index.ts'); await import('./graphs/index.ts');
      const before = seen.length;
      await import('./runtime/index.ts');
      console.log(JSON.stringify({ before, after: seen.filter((f) => /onnxruntime/.test(f)).length }));`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual({ before: 0, after: 1 });
  });
});

describe('dim arithmetic in the DSL', () => {
  it('keeps sizes symbolic and canonical, and evaluates them', () => {
    const { dims, dim } = dsl;
    const seq = dim('seq'), h = dim('h');
    expect(dims.eq(dims.div(dims.mul(seq, 2), 2), seq)).toBe(true);
    // an inexact division stays an opaque atom: (seq/2)*2 is not seq
    expect(dims.eq(dims.mul(dims.div(seq, 2), 2), seq)).toBe(false);
    expect(dims.str(dims.add(dims.mul(h, 2), 1))).toBe('1+h*2');
    expect(dims.eq(dims.mul(seq, h), dims.mul(h, seq))).toBe(true);
    expect(dims.sub(dims.add(seq, 3), 3)).toEqual(seq);
    expect(dims.mul(3, 4)).toBe(12);
    expect(dims.prod([h, 2, seq])).toEqual(dims.mul(dims.mul(h, seq), 2));
    expect(dims.evaluate(dims.parse('1+h*2'), { h: 5 })).toBe(11);
    expect(dims.isStatic(dims.div(dims.mul(h, 4), h))).toBe(true);
    expect(() => dims.div(seq, 0)).toThrow(/by zero/);
    // a shape built with them traces, and the graph's input keeps the symbol
    const g = dsl.trace('t', () => ({ y: dsl.input('x', 'f32', [dim('batch'), dims.mul(seq, 2), 8]).reshape(dim('batch'), seq, 16) }));
    expect(g.inputs[0]!.shape.map((d) => dims.str(d))).toEqual(['batch', 'seq*2', '8']);
    expect(g.outputs[0]!.node.shape.map((d) => dims.str(d))).toEqual(['batch', 'seq', '16']);
  });
});

describe('where user files import this package from (src/layout.ts, src/cli/user-module.ts)', () => {
  it('runs from the sources here, and maps every entry point and library file to them', () => {
    expect(FROM_BUILD).toBe(false);
    expect(CODE_ROOT).toBe(ROOT);
    expect(PACKAGE_ROOT).toBe(ROOT);
    expect(resolveEntry('unifusion/graphs')).toBe(path.join(ROOT, 'graphs/index.ts'));
    expect(resolveEntry('unifusion/nope')).toBeUndefined();
    expect(Object.keys(ENTRY_POINTS)).toEqual(['unifusion', 'unifusion/dsl', 'unifusion/graphs', 'unifusion/runtime']);
    expect(codeFile('examples/train-mlp.ts')).toBe(path.join(ROOT, 'examples/train-mlp.ts'));
    expect(packageModule(path.join(ROOT, 'graphs/dit.ts'))).toBe(path.join(ROOT, 'graphs/dit.ts'));
    expect(packageModule(path.join(ROOT, 'test/graphs/good.ts'))).toBeUndefined();
    expect(packageModule('/elsewhere/src/dsl/index.ts')).toBeUndefined();
  });

  it('bundles a user file with its own imports but shares this DSL instance', async () => {
    const mod = await importUserModule('test/graphs/good.ts', 'graph file');
    const def = mod.default as { trace(): { outputs: { name: string }[] } };
    // traced by the CLI's own DSL (one tracing context): a second instance would fail here
    expect(def.trace().outputs[0]!.name).toBe('y');
    await expect(importUserModule('test/graphs/syntax-error.ts', 'train file')).rejects.toThrow(/cannot build train file 'test\/graphs\/syntax-error.ts':\ntest\/graphs\/syntax-error.ts:1: /);
  });
});
