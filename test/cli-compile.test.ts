import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compileCommand } from '../src/cli/compile.ts';
import { loadGraphFile } from '../src/cli/load-graph.ts';
import { decodeModel } from '../codegen/onnx/proto.ts';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-compile-'));

describe('compile <graph.ts>', () => {
  it('loads a user graph file with esbuild and writes <name>.onnx + manifest.json', async () => {
    const out = tmp();
    await compileCommand('test/graphs/good.ts', { out, preset: 'small', quiet: true });
    expect(fs.readdirSync(out).sort()).toEqual(['.unifusion-output.json', 'manifest.json', 'mlp.onnx']);
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    expect(m.name).toBe('mlp');
    expect(m.preset).toBe('small');
    expect(m.inputs).toEqual([{ name: 'x', dtype: 'f32', shape: ['batch', 8] }]);
    expect(m.outputs).toEqual([{ name: 'y', dtype: 'f32', shape: ['batch', 8] }]);
    expect(m.params.map((p: { name: string }) => p.name)).toEqual(['layers.0.bias', 'layers.0.weight', 'layers.1.bias', 'layers.1.weight']);
    expect(m.paramCount).toBe(2 * (8 * 8 + 8));
    fs.rmSync(out, { recursive: true });
  });

  it('uses the first preset by default and compiles every preset', async () => {
    const def = await loadGraphFile('test/graphs/good.ts');
    expect(Object.keys(def.presets)).toEqual(['small', 'wide']);
    for (const p of Object.keys(def.presets)) expect(def.trace(p).outputs[0]!.name).toBe('y');
    expect(def.trace().outputs[0]!.node.shape[1]).toBe(8);
  });

  it.each([
    ['unknown preset', 'test/graphs/good.ts', { preset: 'huge' }, /unknown preset 'huge' \(known: small, wide\)/],
    ['missing file', 'test/graphs/nope.ts', {}, /graph file 'test\/graphs\/nope.ts' does not exist/],
    ['no default export', 'test/graphs/no-default.ts', {}, /must default-export defineGraph/],
    ['syntax error', 'test/graphs/syntax-error.ts', {}, /cannot build graph file.*syntax-error.ts:1/s],
    ['shape error in graph code', 'test/graphs/shape-error.ts', {}, /shape-error.ts:9: matmul\(f32\[2, 3\], f32\[4, 5\]\)/],
    ['bad weights mode', 'test/graphs/good.ts', { weights: 'cloud' }, /--weights must be one of/],
  ])('%s: clear error, nothing written', async (_n, file, extra, re) => {
    const out = path.join(tmp(), 'out');
    await expect(compileCommand(file, { out, quiet: true, ...(extra as object) })).rejects.toThrow(re);
    expect(fs.existsSync(out) ? fs.readdirSync(out) : []).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Through the CLI (a child process, as a user runs it): paths, the output folder, what the model says.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = (cwd: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const env = { ...process.env };
    delete env.UNIFUSION_DEBUG;
    execFile(process.execPath, [path.join(ROOT, 'bin', 'unifusion.mjs'), ...args], { cwd, env, timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });

describe('compile through the CLI', () => {
  it('a shape error in a nested user folder outside the package prints a path that exists relative to the cwd', async () => {
    const root = tmp();
    fs.mkdirSync(path.join(root, 'my', 'models'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'test/graphs/shape-error.ts'), path.join(root, 'my', 'models', 'err.ts'));
    const r = await cli(root, 'compile', 'my/models/err.ts', '--out', 'out', '--no-typecheck');
    expect(r.code).toBe(1);
    const m = /^error: (\S+):(\d+): matmul/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(m![1]).toBe('my/models/err.ts');
    expect(fs.existsSync(path.join(root, m![1]!))).toBe(true);
    expect(fs.readFileSync(path.join(root, m![1]!), 'utf8').split('\n')[Number(m![2]) - 1]).toContain('a.matmul(b)');
    expect(fs.existsSync(path.join(root, 'out'))).toBe(false);
    fs.rmSync(root, { recursive: true });
  });

  it('type errors are reported with file:line:col, and --no-typecheck skips the check', async () => {
    const root = tmp();
    fs.writeFileSync(
      path.join(root, 'g.ts'),
      "import { defineGraph, input, gelu } from 'unifusion/dsl';\nexport default defineGraph({ name: 'g', presets: { a: { w: 4 } }, build(cfg) {\n  const x = input('x', 'f32', [2, cfg.w]);\n  const s: string = cfg.w;\n  return { y: gelu(x), s: x } as any;\n} });\n",
    );
    const bad = await cli(root, 'compile', 'g.ts', '--out', 'o');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: graph file 'g\.ts' has 1 type error \(pass --no-typecheck to run it anyway\):\n  g\.ts:4:9 - error TS2322: Type 'number' is not assignable to type 'string'\.\n$/);
    expect(fs.existsSync(path.join(root, 'o'))).toBe(false);
    const ok = await cli(root, 'compile', 'g.ts', '--out', 'o', '--no-typecheck');
    expect(ok.code, ok.stderr).toBe(0);
    expect(fs.existsSync(path.join(root, 'o', 'g.onnx'))).toBe(true);
    // a passed check is remembered until a file of the program changes
    fs.writeFileSync(path.join(root, 'g.ts'), fs.readFileSync(path.join(root, 'g.ts'), 'utf8').replace('const s: string = cfg.w;', 'const s: number = cfg.w;'));
    const first = await cli(root, 'compile', 'g.ts', '--out', 'o');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/type check \d+ ms \(beside them\)/);
    const again = await cli(root, 'compile', 'g.ts', '--out', 'o');
    expect(again.stdout).toMatch(/type check passed before \(files unchanged\)/);
    fs.writeFileSync(path.join(root, 'g.ts'), fs.readFileSync(path.join(root, 'g.ts'), 'utf8').replace('const s: number = cfg.w;', "const s: number = 'w';"));
    const changed = await cli(root, 'compile', 'g.ts', '--out', 'o');
    expect(changed.code).toBe(1);
    expect(changed.stderr).toMatch(/g\.ts:4:9 - error TS2322: Type 'string' is not assignable to type 'number'/);
    fs.rmSync(root, { recursive: true });
  }, 300_000);

  it('the ONNX explains itself: module paths in node names, the file:line in doc_string, metadata_props; params and I/O keep their names', async () => {
    const root = tmp();
    const r = await cli(ROOT, 'compile', 'test/graphs/tokens.ts', '--out', root, '--no-typecheck');
    expect(r.code, r.stderr).toBe(0);
    const m = decodeModel(fs.readFileSync(path.join(root, 'tokens.onnx')));
    const nodes = m.graph!.node!;
    const byName = new Map(nodes.map((n) => [n.name!, n]));
    expect(byName.get('embed_tokens/Gather_0')?.docString).toBe('test/graphs/tokens.ts:25');
    expect(byName.get('dit/Reshape_0')?.docString).toBe('test/graphs/tokens.ts:11');
    expect(byName.get('dit/proj/MatMul_0')?.docString).toBe('test/graphs/tokens.ts:12');
    expect(new Set(nodes.map((n) => n.name)).size).toBe(nodes.length);
    expect(m.graph!.initializer!.map((t) => t.name).filter((n) => !n!.startsWith('/')).sort()).toEqual(['dit.proj.bias', 'dit.proj.weight', 'embed_tokens.weight']);
    expect(m.graph!.input!.map((i) => i.name)).toEqual(['input_ids', 'latents']);
    expect(m.graph!.output!.map((o) => o.name)).toEqual(['hidden', 'patches']);
    const meta = Object.fromEntries(m.metadataProps!.map((e) => [e.key, e.value]));
    expect(meta).toMatchObject({ producer: 'unifusion', graph: 'tokens', preset: 'default', weights: 'embed', param_count: String(256 * 8 + 16 * 8 + 8), trainable_param_count: String(256 * 8 + 16 * 8 + 8), graph_file: 'test/graphs/tokens.ts' });
    expect(meta.config_hash).toMatch(/^[0-9a-f]{64}$/);
    fs.rmSync(root, { recursive: true });
  });

  it('an earlier compile is replaced exactly (no stale .onnx.data); --force keeps the user\'s files beside ours', async () => {
    const out = path.join(tmp(), 'out');
    await compileCommand('test/graphs/good.ts', { out, preset: 'wide', weights: 'external', quiet: true, typecheck: false });
    expect(fs.readdirSync(out).sort()).toEqual(['.unifusion-output.json', 'manifest.json', 'mlp.onnx', 'mlp.onnx.data']);
    await compileCommand('test/graphs/good.ts', { out, preset: 'small', quiet: true, typecheck: false });
    expect(fs.readdirSync(out).sort()).toEqual(['.unifusion-output.json', 'manifest.json', 'mlp.onnx']);
    fs.writeFileSync(path.join(out, 'notes.md'), 'mine');
    await expect(compileCommand('test/graphs/good.ts', { out, preset: 'wide', weights: 'external', quiet: true, typecheck: false })).rejects.toThrow(/already holds files unifusion did not write \('notes\.md'\)/);
    await compileCommand('test/graphs/good.ts', { out, preset: 'wide', weights: 'external', quiet: true, typecheck: false, force: true });
    expect(fs.readdirSync(out).sort()).toEqual(['.unifusion-output.json', 'manifest.json', 'mlp.onnx', 'mlp.onnx.data', 'notes.md']);
    await compileCommand('test/graphs/good.ts', { out, preset: 'small', quiet: true, typecheck: false, force: true });
    expect(fs.readdirSync(out).sort()).toEqual(['.unifusion-output.json', 'manifest.json', 'mlp.onnx', 'notes.md']);
    expect(fs.readFileSync(path.join(out, 'notes.md'), 'utf8')).toBe('mine');
    fs.rmSync(path.dirname(out), { recursive: true });
  });

  it('--version, and --help with an example for every command', async () => {
    const v = await cli(ROOT, '--version');
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
    const top = await cli(ROOT, '--help');
    const commands = [...top.stdout.matchAll(/^  ([a-z][a-z-]+)(?: \[options\]| <)/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
    expect(commands).toEqual(expect.arrayContaining(['compile', 'demo', 'run', 'inspect', 'train', 'import-hf']));
    for (const c of commands) {
      const h = await cli(ROOT, c, '--help');
      expect(h.code, c).toBe(0);
      expect(h.stdout, c).toMatch(new RegExp(`Examples?:\\n  \\$ unifusion ${c}`));
    }
  }, 180_000);
});
