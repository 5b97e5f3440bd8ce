import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compileCommand } from '../src/cli/compile.ts';
import { loadGraphFile } from '../src/cli/load-graph.ts';

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
