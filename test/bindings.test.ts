// Typed bindings (codegen/ts through ts-morph): `compile --bindings` and `train --bindings` write a
// module that type-checks; programs with a misspelled input, the wrong typed array, a missing
// input, a wrong static dim or rank fail tsc (each checked both ways: with `// @ts-expect-error`
// the program is clean, without it each case is exactly one error); and the bindings' run() and
// step() give exactly the untyped Session's outputs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { compileCommand } from '../src/cli/compile.ts';
import { Session } from '../runtime/session.ts';
import { Rng } from '../src/ir/init.ts';
import type { HostTensor } from '../src/io/host.ts';
import { className, generateBindings, ioFromModel, specFromManifest, specFromTrainStep, BindingsError } from '../codegen/ts/bindings.ts';
import { writeBindings } from '../codegen/ts/write.ts';
import { loadTrainFile } from '../src/cli/train.ts';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { compileGraph, writeCompiled } from '../src/compiler.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { assembleCommand } from '../src/cli/assemble.ts';
import { Pipeline } from '../runtime/pipeline/index.ts';
import { PRESETS } from '../graphs/presets.ts';
import { ditGraph, randomCondition, randomParams } from './helpers/pipeline-fixtures.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const made: string[] = [];
const tmpDir = (prefix: string) => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
};
afterAll(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

/** Type-check files in `dir` the way a strict TS user project would, with unifusion resolved to the sources. */
function typecheck(files: string[]): ts.Diagnostic[] {
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    allowImportingTsExtensions: true,
    skipLibCheck: true,
    types: ['node'],
    typeRoots: [path.join(ROOT, 'node_modules', '@types')],
    paths: { 'unifusion/runtime': [path.join(ROOT, 'runtime', 'index.ts')] },
  };
  const program = ts.createProgram(files, options);
  return ts.getPreEmitDiagnostics(program).filter((d) => d.file && files.includes(path.resolve(d.file.fileName)));
}

const lineOf = (d: ts.Diagnostic) => d.file!.getLineAndCharacterOfPosition(d.start!).line;
const show = (ds: readonly ts.Diagnostic[]) => ds.map((d) => `${path.basename(d.file!.fileName)}:${lineOf(d) + 1}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`).join('\n');

/** Check a fixture both ways: clean with its @ts-expect-error lines, one error per case without them. */
function expectFixture(dir: string, name: string, text: string): void {
  const cases = text.split('\n').filter((l) => l.includes('@ts-expect-error')).length;
  expect(cases).toBeGreaterThan(0);
  const withFile = path.join(dir, `${name}.ts`);
  fs.writeFileSync(withFile, text);
  const clean = typecheck([withFile]);
  expect(show(clean)).toBe('');
  const bare = text.replace(/^\s*\/\/ @ts-expect-error.*$/gm, '// (expected error below)');
  const bareFile = path.join(dir, `${name}-bare.ts`);
  fs.writeFileSync(bareFile, bare);
  const errs = typecheck([bareFile]);
  const lines = new Set(errs.map(lineOf));
  const expected = bare.split('\n').flatMap((l, i) => (l.includes('(expected error below)') ? [i + 1] : []));
  expect([...lines].sort((a, b) => a - b)).toEqual(expected);
}

function randomFeeds(rng: Rng, shapes: Record<string, { dtype: HostTensor['dtype']; shape: number[] }>): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  for (const [name, { dtype, shape }] of Object.entries(shapes)) {
    const n = shape.reduce((a, d) => a * d, 1);
    if (dtype === 'i64') out[name] = { dtype, shape, data: BigInt64Array.from({ length: n }, () => BigInt(Math.floor(rng.uniform() * 256))) };
    else if (dtype === 'bool') out[name] = { dtype, shape, data: Uint8Array.from({ length: n }, (_, i) => (i === 0 || rng.uniform() < 0.7 ? 1 : 0)) };
    else out[name] = { dtype: 'f32', shape, data: Float32Array.from({ length: n }, () => rng.normal()) };
  }
  return out;
}

describe('typed bindings of a compiled graph (compile --bindings)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = tmpDir('unifusion-bindings-');
    await compileCommand('examples/web/tiny-pipeline.ts', { out: dir, bindings: true, quiet: true });
  });

  it('writes <name>.ts next to the ONNX, with the manifest facts in doc comments', () => {
    expect(fs.readdirSync(dir).filter((f) => !f.startsWith('.')).sort()).toEqual(['manifest.json', 'tiny_dit_step.onnx', 'tiny_dit_step.ts']);
    const text = fs.readFileSync(path.join(dir, 'tiny_dit_step.ts'), 'utf8');
    expect(text).toMatch(/^\/\/ Generated by unifusion/);
    expect(text).toContain("readonly latents: { dtype: 'f32'; shape: readonly [number, 4, number, number]; data: Float32Array }");
    expect(text).toContain("readonly input_ids: { dtype: 'i64'; shape: readonly [number, number]; data: BigInt64Array }");
    expect(text).toContain("readonly attention_mask: { dtype: 'bool'; shape: readonly [number, number]; data: Uint8Array }");
    expect(text).toMatch(/Symbolic dims: `batch`, `h\*2`, `w\*2`/);
    expect(text).toMatch(/preset `tiny`/);
    expect(text).toMatch(/Parameters: 59,920/);
    expect(text).toMatch(/flow time t in \[0, 1\]/);
  });

  it('type-checks, and rejects misspelled, missing and wrongly typed feeds', () => {
    expect(show(typecheck([path.join(dir, 'tiny_dit_step.ts')]))).toBe('');
    expectFixture(
      dir,
      'use',
      `import { TinyDitStep, type TinyDitStepFeeds } from './tiny_dit_step.ts';
const feeds: TinyDitStepFeeds = {
  input_ids: { dtype: 'i64', shape: [1, 3], data: new BigInt64Array(3) },
  attention_mask: { dtype: 'bool', shape: [1, 3], data: new Uint8Array(3) },
  latents: { dtype: 'f32', shape: [1, 4, 8, 8], data: new Float32Array(256) },
  timestep: { dtype: 'f32', shape: [1], data: new Float32Array(1) },
};
export async function use(dir: string): Promise<Float32Array> {
  const m = await TinyDitStep.load(dir, { device: 'cpu' });
  const v: Float32Array = (await m.run(feeds)).velocity.data;
  const { input_ids, attention_mask, latents, timestep } = feeds;
  // @ts-expect-error misspelled input name
  await m.run({ input_idz: input_ids, attention_mask, latents, timestep });
  // @ts-expect-error the wrong typed array (f32 is Float32Array)
  await m.run({ ...feeds, latents: { dtype: 'f32', shape: [1, 4, 8, 8], data: new Float64Array(256) } });
  // @ts-expect-error ids are BigInt64Array, not Int32Array
  await m.run({ ...feeds, input_ids: { dtype: 'i64', shape: [1, 3], data: new Int32Array(3) } });
  // @ts-expect-error a missing input
  await m.run({ input_ids, attention_mask, latents });
  // @ts-expect-error the static channel dim is the literal 4
  await m.run({ ...feeds, latents: { dtype: 'f32', shape: [1, 3, 8, 8], data: new Float32Array(192) } });
  // @ts-expect-error the rank is part of the type
  await m.run({ ...feeds, timestep: { dtype: 'f32', shape: [1, 1], data: new Float32Array(1) } });
  // @ts-expect-error the dtype tag must match
  await m.run({ ...feeds, timestep: { dtype: 'f16', shape: [1], data: new Float32Array(1) } });
  // @ts-expect-error no such output
  void (await m.run(feeds)).velocty;
  return v;
}
`,
    );
  });

  it('run() equals an untyped Session on the same feeds', async () => {
    const mod = (await import(pathToFileURL(path.join(dir, 'tiny_dit_step.ts')).href)) as { TinyDitStep: { load(dir: string): Promise<{ run(f: unknown): Promise<Record<string, HostTensor>>; release(): Promise<void> }> } };
    const typed = await mod.TinyDitStep.load(dir);
    const plain = await Session.load(path.join(dir, 'tiny_dit_step.onnx'));
    const rng = new Rng(3, 'bindings');
    for (const [S, H] of [[5, 8], [2, 4]] as const) {
      const feeds = randomFeeds(rng, {
        input_ids: { dtype: 'i64', shape: [2, S] },
        attention_mask: { dtype: 'bool', shape: [2, S] },
        latents: { dtype: 'f32', shape: [2, 4, H, H] },
        timestep: { dtype: 'f32', shape: [2] },
      });
      const a = await typed.run(feeds);
      const b = await plain.run(feeds);
      expect(a.velocity!.shape).toEqual([2, 4, H, H]);
      expect(Array.from(a.velocity!.data as Float32Array)).toEqual(Array.from(b.velocity!.data as Float32Array));
      // a non-trivial model: the velocity is neither zero nor the input
      expect(Math.max(...Array.from(a.velocity!.data as Float32Array, Math.abs))).toBeGreaterThan(1e-3);
    }
    await typed.release();
    await plain.release();
  });

  it('replaces its own file on a second compile, but never a file it did not write', async () => {
    const again = tmpDir('unifusion-bindings-');
    await compileCommand('examples/web/tiny-pipeline.ts', { out: again, bindings: true, quiet: true });
    await compileCommand('examples/web/tiny-pipeline.ts', { out: again, bindings: true, quiet: true });
    expect(fs.readFileSync(path.join(again, 'tiny_dit_step.ts'), 'utf8')).toBe(fs.readFileSync(path.join(dir, 'tiny_dit_step.ts'), 'utf8'));
    // a user's file under the name compile would write: kept, even with --force
    const mine = tmpDir('unifusion-bindings-');
    fs.writeFileSync(path.join(mine, 'tiny_dit_step.ts'), 'export const mine = 1;\n');
    await expect(compileCommand('examples/web/tiny-pipeline.ts', { out: mine, bindings: true, quiet: true, force: true })).rejects.toThrow(/tiny_dit_step\.ts' exists and was not written by unifusion/);
    expect(fs.readFileSync(path.join(mine, 'tiny_dit_step.ts'), 'utf8')).toBe('export const mine = 1;\n');
    // the library writer: the same rule for a single file
    const spec = specFromManifest(JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')));
    await expect(writeBindings(mine, spec)).rejects.toThrow(/tiny_dit_step\.ts' already exists and was not written by unifusion/);
    expect(fs.readFileSync(path.join(mine, 'tiny_dit_step.ts'), 'utf8')).toBe('export const mine = 1;\n');
  });
});

describe('typed bindings of a train step (train --bindings): step() carries the state', () => {
  it('type-checks, rejects bad batches, and equals untyped Session runs with the state carried by hand', async () => {
    const def = await loadTrainFile('examples/train-mlp.ts');
    const compiled = def.compile();
    const dir = tmpDir('unifusion-bindings-train-');
    fs.writeFileSync(path.join(dir, 'train-step.onnx'), encodeModel(compiled.emitted.model));
    const spec = specFromTrainStep(compiled.spec, 'train-step.onnx', ioFromModel(compiled.emitted.model));
    await writeBindings(dir, spec, { file: 'train-step.ts', command: 'train' });
    expect(show(typecheck([path.join(dir, 'train-step.ts')]))).toBe('');
    expectFixture(
      dir,
      'use-train',
      `import { MlpRegression, type MlpRegressionState, type MlpRegressionBatch } from './train-step.ts';
export async function train(m: MlpRegression, state: MlpRegressionState, batch: MlpRegressionBatch): Promise<number> {
  const r = await m.step(state, batch, { lr: 1e-3, step: 1 });
  const next: MlpRegressionState = r.state;
  const w: Float32Array = next['fc1.weight'].data;
  // @ts-expect-error the batch has no input 'z'
  await m.step(state, { ...batch, z: batch.x }, { lr: 1e-3, step: 2 });
  // @ts-expect-error the state must hold every carried tensor
  await m.step({ 'fc1.weight': state['fc1.weight'] }, batch, { lr: 1e-3, step: 2 });
  // @ts-expect-error x is [32, 4]
  await m.step(state, { ...batch, x: { dtype: 'f32', shape: [16, 4], data: new Float32Array(64) } }, { lr: 1e-3, step: 2 });
  // @ts-expect-error lr is required
  await m.step(state, batch, { step: 2 });
  return r.loss + w.length;
}
`,
    );

    const mod = (await import(pathToFileURL(path.join(dir, 'train-step.ts')).href)) as {
      MlpRegression: { load(dir: string): Promise<{ step(s: unknown, b: unknown, h: { lr: number; step: number }): Promise<{ state: Record<string, HostTensor>; loss: number; gradNorm: number }>; release(): Promise<void> }> };
    };
    const typed = await mod.MlpRegression.load(dir);
    const plain = await Session.load(path.join(dir, 'train-step.onnx'));
    const init = Object.fromEntries(compiled.initialState());
    const rng = new Rng(5, 'batches');
    let typedState: Record<string, HostTensor> = init;
    let plainState: Record<string, HostTensor> = init;
    const losses: number[] = [];
    for (let step = 1; step <= 3; step++) {
      const batch = randomFeeds(rng, { x: { dtype: 'f32', shape: [32, 4] }, y: { dtype: 'f32', shape: [32, 1] } });
      const r = await typed.step(typedState, batch, { lr: 1e-2, step });
      const scalar = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });
      const out = await plain.run({ ...plainState, ...batch, lr: scalar(1e-2), step: scalar(step) });
      const next: Record<string, HostTensor> = {};
      for (const c of compiled.spec.carry) next[c.input] = out[c.output]!;
      expect(r.loss).toBe((out.loss!.data as Float32Array)[0]);
      expect(r.gradNorm).toBe((out.grad_norm!.data as Float32Array)[0]);
      expect(Object.keys(r.state).sort()).toEqual(Object.keys(next).sort());
      for (const k of Object.keys(next)) expect(Array.from(r.state[k]!.data as Float32Array)).toEqual(Array.from(next[k]!.data as Float32Array));
      // the params moved
      expect(Array.from(r.state['fc1.weight']!.data as Float32Array)).not.toEqual(Array.from(typedState['fc1.weight']!.data as Float32Array));
      typedState = r.state;
      plainState = next;
      losses.push(r.loss);
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    await typed.release();
    await plain.release();
  });
});

describe('assemble --bindings', () => {
  it('writes dit/<name>.ts into the pipeline folder, hashed in pipeline.json; it type-checks and the folder still loads', async () => {
    const dir = tmpDir('unifusion-bindings-assemble-');
    const TINY = PRESETS.tiny!;
    const g = ditGraph({ ...TINY, dit: { ...TINY.dit, channels: 3, patch: 4 } });
    await writeCompiled(path.join(dir, 'dit'), compileGraph(g, { paramValues: randomParams([g], 3) }));
    writeSafetensors(path.join(dir, 'null.safetensors'), randomCondition(TINY.taps, 32, [1], 8));
    await assembleCommand({ dit: path.join(dir, 'dit', `${g.name}.onnx`), nullCondition: path.join(dir, 'null.safetensors'), out: path.join(dir, 'pipe'), pixelShift: '0', pixelScale: '2', size: '16x16', bindings: true, quiet: true });
    const ts = path.join(dir, 'pipe', 'dit', `${g.name}.ts`);
    expect(fs.readFileSync(ts, 'utf8')).toMatch(/^\/\/ Generated by unifusion/);
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'pipe', 'pipeline.json'), 'utf8')) as { files: Record<string, string> };
    expect(Object.keys(json.files)).toContain(`dit/${g.name}.ts`);
    expect(show(typecheck([ts]))).toBe('');
    const pipe = await Pipeline.load(path.join(dir, 'pipe'));
    await pipe.close();
  });
});

describe('bindings generator', () => {
  it('names classes after the graph and refuses I/O it cannot type', () => {
    expect(className('tiny_dit-step.v2')).toBe('TinyDitStepV2');
    expect(className('8b')).toBe('Graph8b');
    expect(() => className('__')).toThrow(BindingsError);
    const base = { name: 'g', onnx: 'g.onnx', outputs: [{ name: 'y', dtype: 'f32' as const, shape: [1] }] };
    expect(() => generateBindings({ ...base, inputs: [{ name: 'x', dtype: 'f32', shape: [1] }, { name: 'x', dtype: 'f32', shape: [1] }] })).toThrow(/input 'x' appears twice/);
    expect(() => generateBindings({ ...base, inputs: [{ name: 'x', dtype: 'u8' as never, shape: [1] }] })).toThrow(/dtype 'u8', which has no typed array/);
    expect(() => generateBindings({ ...base, inputs: [{ name: 'x', dtype: 'f32', shape: [1] }], train: { carry: [{ input: 'w', output: 'next.w' }], batch: [] } })).toThrow(/carried state 'w' is not a graph input/);
  });

  it('quotes names that are not identifiers and keeps unknown ranks open', () => {
    const text = generateBindings({ name: 'enc', onnx: 'enc.onnx', inputs: [{ name: 'hidden_states.3', dtype: 'f16', shape: ['batch', null, 8] }], outputs: [{ name: 'out', dtype: 'f32', shape: null }] });
    expect(text).toContain(`readonly "hidden_states.3": { dtype: 'f16'; shape: readonly [number, number, 8]; data: Uint16Array }`);
    expect(text).toContain(`readonly out: { dtype: 'f32'; shape: readonly number[]; data: Float32Array }`);
    expect(text).toMatch(/VLM hidden state tap 3/);
  });
});
