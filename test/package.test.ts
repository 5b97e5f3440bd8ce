// The package as a user gets it: `npm pack` (which builds dist/ through `prepare`), then a fresh
// project installs the tarball from the registry-only network the way the README says
// (ONNXRUNTIME_NODE_INSTALL=skip, so onnxruntime-node's CUDA download never starts; CPU binaries
// ship in its npm tarball), and
//   - a plain .mjs program imports every entry point, authors a UniFusion variant, compiles it and
//     runs it in onnxruntime-node against the float64 reference interpreter;
//   - a .ts program does the same with full types: `tsc --noEmit` (strict) is clean, its
//     `// @ts-expect-error` lines prove the types are real (not any), and the emitted JS runs;
//   - the CLI (node_modules/.bin/unifusion, what npx runs) compiles a user graph file with
//     --bindings, the bindings type-check and run, trains a user train file, and serve-web serves
//     the prebuilt page, and `unifusion demo` (the main job) runs on the shipped shapes pipeline.
// Slow (pack + install: minutes on a 2-core machine), so it runs where UNIFUSION_PACKAGE_TEST=1
// (.ci/run sets it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ENTRY_POINTS } from '../src/layout.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const enabled = process.env.UNIFUSION_PACKAGE_TEST === '1';
if (!enabled) console.warn('package test skipped: set UNIFUSION_PACKAGE_TEST=1 to pack, install into a temp project and run consumers (.ci/run does)');

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number }): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, timeout: opts.timeout ?? 600_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const ok = (r: Ran, what: string) => {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r;
};

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; exports: Record<string, { types: string; default: string } | string>; devDependencies: Record<string, string> };

// The consumers. `feedsFor` builds random feeds from a manifest with the DSL's own dim arithmetic.
const COMMON_JS = `
export function feedsFor(manifest, env, dims, Rng) {
  const rng = new Rng(11, 'consumer');
  const feeds = {};
  for (const i of manifest.inputs) {
    const shape = i.shape.map((d) => (typeof d === 'number' ? d : dims.evaluate(dims.parse(d), env)));
    const n = shape.reduce((a, b) => a * b, 1);
    if (i.dtype === 'bool') feeds[i.name] = { dtype: 'bool', shape, data: Uint8Array.from({ length: n }, (_, k) => (k % shape.at(-1) === 0 || rng.uniform() < 0.7 ? 1 : 0)) };
    else if (i.dtype === 'i64') feeds[i.name] = { dtype: 'i64', shape, data: BigInt64Array.from({ length: n }, () => BigInt(Math.floor(rng.uniform() * 64))) };
    else feeds[i.name] = { dtype: 'f32', shape, data: Float32Array.from({ length: n }, () => rng.normal()) };
  }
  return feeds;
}
`;

const CONSUMER_MJS = `import * as uf from 'unifusion';
import * as dsl from 'unifusion/dsl';
import * as graphs from 'unifusion/graphs';
import * as rt from 'unifusion/runtime';
import { feedsFor } from './common.mjs';

// a variant: hidden-state injection instead of LAP, a narrower DiT feed-forward
const base = graphs.PRESETS.tiny;
const cfg = { ...graphs.withConditioning(base, 'hsi'), dit: { ...base.dit, ffn: 48 } };
const g = dsl.trace('variant_mjs', () => ({ velocity: graphs.uniFusionForward(cfg).velocity }), { seed: 5 });
// random weights everywhere (an untrained DiT's zero-initialised output layer would make every velocity 0)
const prng = new uf.Rng(2, 'weights');
const values = new Map(uf.compileGraph(g).manifest.params.map((p) => [p.name, { dtype: 'f32', shape: p.shape, data: Float32Array.from({ length: uf.numel(p.shape) }, () => 0.2 * prng.normal()) }]));
const compiled = uf.compileGraph(g, { paramValues: values });
await uf.writeCompiled('out-mjs', compiled);
const session = await rt.Session.load('out-mjs/variant_mjs.onnx');
const feeds = feedsFor(compiled.manifest, { batch: 2, seq: 5, h: 2, w: 3 }, dsl.dims, uf.Rng);
const got = (await session.run(feeds)).velocity;
const ref = uf.evaluate(compiled.graph, Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, uf.toRefTensor(t)])), { params: new Map([...values].map(([k, t]) => [k, uf.toRefTensor(t)])) }).velocity;
let err = 0, scale = 0;
for (let i = 0; i < ref.data.length; i++) { err = Math.max(err, Math.abs(got.data[i] - ref.data[i])); scale = Math.max(scale, Math.abs(ref.data[i])); }
await session.release();
console.log(JSON.stringify({ shape: got.shape, relErr: err / scale, scale, params: compiled.manifest.paramCount, entries: [Object.keys(uf).length, Object.keys(dsl).length, Object.keys(graphs).length, Object.keys(rt).length] }));
`;

const CONSUMER_TS = `import { compileGraph, writeCompiled, evaluate, toRefTensor, numel, Rng, dims, dim, input, trace, defineGraph, Linear, gelu, type Dim, type HostTensor, type Manifest } from 'unifusion';
import { Module, type Tensor } from 'unifusion/dsl';
import { PRESETS, withConditioning, uniFusionForward, LAP, DiT, type UniFusionConfig, type DiTConfig } from 'unifusion/graphs';
import { Session, type SessionOptions } from 'unifusion/runtime';

// a user module with dim arithmetic: widths stay symbolic where they are
class Widen extends Module {
  up = new Linear(8, 16);
  forward(x: Tensor): Tensor { return gelu(this.up.forward(x)); }
}
const seq2: Dim = dims.mul(dim('seq'), 2);
export const graph = defineGraph({ name: 'widen', presets: { one: {} }, build: () => ({ y: new Widen().forward(input('x', 'f32', [dim('batch'), seq2, 8])) }) });

// a UniFusion variant with the library's types
const base: UniFusionConfig = PRESETS.tiny!;
const cfg: UniFusionConfig = { ...withConditioning(base, 'last-layer'), dit: { ...base.dit, depth: 2 } satisfies DiTConfig };
const g = trace('variant_ts', () => ({ velocity: uniFusionForward(cfg).velocity }), { seed: 6 });
// random weights everywhere (an untrained DiT's zero-initialised output layer would make every velocity 0)
const prng = new Rng(2, 'weights');
const values = new Map<string, HostTensor>(compileGraph(g).manifest.params.map((p) => [p.name, { dtype: 'f32', shape: p.shape.map(Number), data: Float32Array.from({ length: numel(p.shape.map(Number)) }, () => 0.2 * prng.normal()) }]));
const compiled = compileGraph(g, { paramValues: values });
const m: Manifest = compiled.manifest;
await writeCompiled('out-ts', compiled);
const opts: SessionOptions = { device: 'cpu' };
const session = await Session.load('out-ts/variant_ts.onnx', opts);
const rng = new Rng(3, 'ts');
const env: Record<string, number> = { batch: 2, seq: 4, h: 2, w: 2 };
const feeds: Record<string, HostTensor> = {};
for (const i of m.inputs) {
  const shape = i.shape.map((d) => (typeof d === 'number' ? d : dims.evaluate(dims.parse(d), env)));
  const n = shape.reduce((a, b) => a * b, 1);
  feeds[i.name] = i.dtype === 'bool'
    ? { dtype: 'bool', shape, data: Uint8Array.from({ length: n }, (_, k) => (k % shape.at(-1)! === 0 || rng.uniform() < 0.7 ? 1 : 0)) }
    : { dtype: 'f32', shape, data: Float32Array.from({ length: n }, () => rng.normal()) };
}
const got = (await session.run(feeds)).velocity!;
const ref = evaluate(compiled.graph, Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, toRefTensor(t)])), { params: new Map([...values].map(([k, t]) => [k, toRefTensor(t)])) }).velocity!;
let err = 0, scale = 0;
for (let i = 0; i < ref.data.length; i++) { err = Math.max(err, Math.abs((got.data as Float32Array)[i]! - ref.data[i]!)); scale = Math.max(scale, Math.abs(ref.data[i]!)); }
await session.release();
const classes = [LAP, DiT].map((c) => c.name);

// the types are real, not any (never called: only tsc looks at these)
export async function misuses(): Promise<void> {
  // @ts-expect-error a dim is a number or a SymDim, not a string
  dims.mul('seq', 2);
  // @ts-expect-error presets hold numbers
  const bad: UniFusionConfig = { ...base, dit: { ...base.dit, hidden: '32' } };
  // @ts-expect-error no such conditioning variant
  withConditioning(base, 'cross-attention');
  // @ts-expect-error Session.load takes a path or bytes
  await Session.load(42);
  void bad;
}
console.log(JSON.stringify({ shape: got.shape, relErr: err / scale, scale, params: m.paramCount, classes }));
`;

const USER_GRAPH = `// a user graph file: the library's DiT on a user-sized latent, imported by package name
import { defineGraph, dim, dims, input } from 'unifusion/dsl';
import { DiT, PRESETS } from 'unifusion/graphs';

export default defineGraph({
  name: 'user_dit',
  presets: { small: { ...PRESETS.tiny!.dit, depth: 1 } },
  build(cfg) {
    const B = dim('batch'), S = dim('seq'), h = dim('h'), w = dim('w');
    const latents = input('latents', 'f32', [B, cfg.channels, dims.mul(h, cfg.patch), dims.mul(w, cfg.patch)]);
    const timestep = input('timestep', 'f32', [B]);
    const condition = input('condition', 'f32', [B, S, cfg.hidden]);
    const mask = input('condition_mask', 'bool', [B, S]);
    return { velocity: new DiT(cfg).forward(latents, timestep, { tokens: condition, mask }) };
  },
});
`;

const USE_BINDINGS = `import { UserDit } from './g/user_dit.ts';
const m = await UserDit.load('g');
const r = await m.run({
  latents: { dtype: 'f32', shape: [1, 4, 4, 4], data: Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)) },
  timestep: { dtype: 'f32', shape: [1], data: Float32Array.of(0.5) },
  condition: { dtype: 'f32', shape: [1, 3, 32], data: Float32Array.from({ length: 96 }, (_, i) => Math.cos(i)) },
  condition_mask: { dtype: 'bool', shape: [1, 3], data: Uint8Array.of(1, 1, 0) },
});
export const misuse = () =>
  // @ts-expect-error a misspelled input
  m.run({ latent: r.velocity });
await m.release();
console.log(JSON.stringify({ shape: r.velocity.shape, finite: r.velocity.data.every(Number.isFinite) }));
`;

const USER_TRAIN = `import { defineTrainStep, Linear, fromFloat64 } from 'unifusion';
const fc = new Linear(3, 1);
export default defineTrainStep({
  name: 'user-fit',
  batch: { x: { dtype: 'f32', shape: [16, 3] }, y: { dtype: 'f32', shape: [16, 1] } },
  loss: (b) => fc.forward(b.x!).sub(b.y!).square().mean(),
  data: (_step, rng) => {
    const x = Array.from({ length: 48 }, () => rng.normal());
    return { x: fromFloat64('f32', [16, 3], x), y: fromFloat64('f32', [16, 1], Array.from({ length: 16 }, (_, i) => x[3 * i]! - 2 * x[3 * i + 1]!)) };
  },
  defaults: { lr: 0.05 },
});
`;

describe.skipIf(!enabled)('npm pack + install into a fresh project', () => {
  let proj: string;
  let packDir: string;
  let tgz: string;
  let files: string[];
  const bin = () => path.join(proj, 'node_modules', '.bin', 'unifusion');
  // the project holds a full install (~400 MB): remove what this test made
  afterAll(() => {
    for (const d of [proj, packDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  beforeAll(async () => {
    packDir = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-pack-'));
    const packed = ok(await run('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: ROOT }), 'npm pack');
    const info = (JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[])[0]!;
    tgz = path.join(packDir, info.filename);
    files = info.files.map((f) => f.path);
    proj = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-consumer-'));
    // npm 11.19 reads allowScripts; ONNXRUNTIME_NODE_INSTALL=skip covers npm 10 as well (README)
    fs.writeFileSync(path.join(proj, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module', allowScripts: { 'onnxruntime-node': false } }, null, 2));
    const dev = pkg.devDependencies;
    ok(
      await run('npm', ['install', tgz, `typescript@${dev.typescript}`, `@types/node@${dev['@types/node']}`, '--no-audit', '--no-fund', '--prefer-offline'], { cwd: proj, env: { ONNXRUNTIME_NODE_INSTALL: 'skip' } }),
      'npm install of the tarball',
    );
    fs.writeFileSync(path.join(proj, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', skipLibCheck: true, types: ['node'], allowImportingTsExtensions: true, rewriteRelativeImportExtensions: true, outDir: 'js' } }, null, 2));
  }, 900_000);

  it('packs dist (JS, types, maps, the web page) and the bin, and no sources or tests', () => {
    for (const f of ['package.json', 'README.md', 'bin/unifusion.mjs', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/index.js.map', 'dist/src/cli/main.js', 'dist/web/index.html', 'dist/web/app.js', 'dist/web/ort-wasm-simd-threaded.jsep.wasm', 'dist/examples/web/tiny-pipeline.js'])
      expect(files).toContain(f);
    expect(files.filter((f) => /^(src|test|bench|graphs|runtime|codegen|scripts|node_modules)\//.test(f) || /\.tsbuildinfo$/.test(f) || (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)))).toEqual([]);
    // package.json "exports" and src/layout.ts (how the CLI resolves user imports) agree
    for (const [spec, src] of Object.entries(ENTRY_POINTS)) {
      const key = spec === 'unifusion' ? '.' : `./${spec.slice('unifusion/'.length)}`;
      const e = pkg.exports[key] as { types: string; default: string };
      expect(e.default).toBe(`./dist/${src.replace(/\.ts$/, '.js')}`);
      expect(e.types).toBe(`./dist/${src.replace(/\.ts$/, '.d.ts')}`);
      expect(files).toContain(e.default.slice(2));
      expect(files).toContain(e.types.slice(2));
    }
    expect(Object.keys(pkg.exports).sort()).toEqual(['.', './dsl', './graphs', './package.json', './runtime']);
  });

  it('installed without onnxruntime-node trying its download', () => {
    expect(fs.existsSync(path.join(proj, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64', 'libonnxruntime.so.1'))).toBe(true);
    expect(fs.existsSync(path.join(proj, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64', 'libonnxruntime_providers_cuda.so'))).toBe(false);
    expect(fs.existsSync(path.join(proj, 'node_modules', 'unifusion', 'src'))).toBe(false);
  });

  it('a plain .mjs program imports every entry point, compiles a variant and runs it (plain Node, no tsx)', async () => {
    fs.writeFileSync(path.join(proj, 'common.mjs'), COMMON_JS);
    fs.writeFileSync(path.join(proj, 'consumer.mjs'), CONSUMER_MJS);
    const r = ok(await run(process.execPath, ['consumer.mjs'], { cwd: proj }), 'consumer.mjs');
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { shape: number[]; relErr: number; scale: number; params: number; entries: number[] };
    expect(out.shape).toEqual([2, 4, 4, 6]);
    expect(out.params).toBeGreaterThan(40_000);
    expect(out.scale).toBeGreaterThan(0.1);
    expect(out.relErr).toBeLessThan(1e-4);
    expect(out.params).toBeGreaterThan(10_000);
    expect(out.entries.every((n) => n > 5)).toBe(true);
    expect(fs.existsSync(path.join(proj, 'node_modules', 'tsx'))).toBe(false);
  });

  it('a .ts program type-checks with full types (tsc --noEmit, strict) and its compiled JS runs', async () => {
    fs.writeFileSync(path.join(proj, 'consumer.ts'), CONSUMER_TS);
    const tsc = path.join(proj, 'node_modules', 'typescript', 'bin', 'tsc');
    ok(await run(process.execPath, [tsc, '--noEmit', '-p', '.'], { cwd: proj }), 'tsc --noEmit');
    // without the @ts-expect-error lines, each of the 4 misuses is an error: the types are not any
    fs.writeFileSync(path.join(proj, 'consumer.ts'), CONSUMER_TS.replace(/\/\/ @ts-expect-error.*\n/g, ''));
    const bare = await run(process.execPath, [tsc, '--noEmit', '-p', '.'], { cwd: proj });
    expect(bare.code).not.toBe(0);
    expect(bare.stdout.split('\n').filter((l) => /^consumer\.ts\(\d+,\d+\): error/.test(l))).toHaveLength(4);
    fs.writeFileSync(path.join(proj, 'consumer.ts'), CONSUMER_TS);
    ok(await run(process.execPath, [tsc, '-p', '.'], { cwd: proj }), 'tsc emit');
    const r = ok(await run(process.execPath, ['js/consumer.js'], { cwd: proj }), 'node js/consumer.js');
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { shape: number[]; relErr: number; scale: number; classes: string[] };
    expect(out.shape).toEqual([2, 4, 4, 4]);
    expect(out.scale).toBeGreaterThan(0.1);
    expect(out.relErr).toBeLessThan(1e-4);
    expect(out.classes).toEqual(['LAP', 'DiT']);
  });

  it('the CLI compiles a user graph file with --bindings; the bindings type-check and run', async () => {
    fs.writeFileSync(path.join(proj, 'user-graph.ts'), USER_GRAPH);
    const c = ok(await run(bin(), ['compile', 'user-graph.ts', '--out', 'g', '--bindings'], { cwd: proj }), 'unifusion compile');
    expect(c.stdout).toMatch(/compiled user_dit \(preset small\) -> g\/user_dit\.onnx/);
    expect(c.stdout).toMatch(/bindings: g\/user_dit\.ts/);
    fs.writeFileSync(path.join(proj, 'use-bindings.ts'), USE_BINDINGS);
    const tsc = path.join(proj, 'node_modules', 'typescript', 'bin', 'tsc');
    ok(await run(process.execPath, [tsc, '--noEmit', 'false', '-p', '.'], { cwd: proj }), 'tsc on the bindings');
    const r = ok(await run(process.execPath, ['js/use-bindings.js'], { cwd: proj }), 'node js/use-bindings.js');
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toEqual({ shape: [1, 4, 4, 4], finite: true });
    const insp = ok(await run(bin(), ['inspect', 'g/user_dit.onnx', '--json'], { cwd: proj }), 'unifusion inspect');
    expect(insp.stdout).toMatch(/"latents"/);
  });

  it('the CLI trains a user train file and reports errors in user files by file:line, without a stack', async () => {
    fs.writeFileSync(path.join(proj, 'user-train.ts'), USER_TRAIN);
    const t = ok(await run(bin(), ['train', 'user-train.ts', '--steps', '30', '--out', 'train-out', '--no-progress'], { cwd: proj }), 'unifusion train');
    const m = /loss: +([\d.e+-]+) -> ([\d.e+-]+)/.exec(t.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBeLessThan(Number(m![1]));
    fs.writeFileSync(path.join(proj, 'bad-graph.ts'), `import { defineGraph, input } from 'unifusion/dsl';\nexport default defineGraph({ name: 'bad', presets: { a: {} }, build: () => ({\n  y: input('a', 'f32', [2, 3]).matmul(input('b', 'f32', [4, 5])),\n}) });\n`);
    const bad = await run(bin(), ['compile', 'bad-graph.ts', '--out', 'bad-out'], { cwd: proj });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: bad-graph\.ts:3: matmul\(f32\[2, 3\], f32\[4, 5\]\)/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  it('the main job runs from the installed package: `unifusion demo` on the shipped shapes pipeline', async () => {
    expect(files).toContain('examples/shapes/pipeline/pipeline.json');
    expect(files).toContain('examples/shapes/pipeline-training/recipe.json');
    const r = ok(await run(bin(), ['demo', '--n', '4', '--edits', '2', '--recon', '1', '--seeds', '1', '--out', 'demo-out'], { cwd: proj }), 'unifusion demo');
    expect(r.stdout.trim().split('\n').at(-1)).toMatch(/^prompt adherence: \d+\.\d%$/);
    expect(fs.existsSync(path.join(proj, 'demo-out', 'report.html'))).toBe(true);
  });

  it('serve-web serves the prebuilt page from the installed package', async () => {
    const child = spawn(bin(), ['serve-web', '--port', '0'], { cwd: proj, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let text = '';
        child.stdout.on('data', (d: Buffer) => {
          text += d.toString();
          const m = /serving (http:\/\/\S+)/.exec(text);
          if (m) resolve(m[1]!);
        });
        child.stderr.on('data', (d: Buffer) => (text += d.toString()));
        child.on('exit', (code) => reject(new Error(`serve-web exited ${code}: ${text}`)));
        setTimeout(() => reject(new Error(`serve-web printed no URL: ${text}`)), 60_000);
      });
      for (const p of ['', 'app.js', 'ort-wasm-simd-threaded.jsep.wasm', 'pipeline/manifest.json', 'pipeline/tiny_dit_step.onnx']) expect((await fetch(new URL(p, url))).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
