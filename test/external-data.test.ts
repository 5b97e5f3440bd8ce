import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { input, trace, Linear } from '../src/dsl/index.ts';
import { emitModel } from '../codegen/onnx/emit.ts';
import { decodeModel, encodeModel } from '../codegen/onnx/proto.ts';
import { writeModel } from '../codegen/onnx/write.ts';
import { checkExternalData } from '../codegen/onnx/external.ts';

async function modelWith(location: string | null, mutate?: (dir: string) => void): Promise<{ dir: string; file: string }> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-ext-'));
  const dir = path.join(root, 'model');
  const g = trace('m', () => ({ y: new Linear(64, 64).forward(input('x', 'f32', [1, 64])) }));
  const em = emitModel(g, { weights: 'external', externalThreshold: 0 });
  const w = await writeModel(dir, 'm', em);
  if (location !== null) {
    const m = decodeModel(fs.readFileSync(w.onnxPath));
    for (const t of m.graph!.initializer!) for (const e of t.externalData!) if (e.key === 'location') e.value = location;
    fs.writeFileSync(w.onnxPath, encodeModel(m));
  }
  mutate?.(dir);
  return { dir, file: w.onnxPath };
}

describe('external data references are confined to the model folder', () => {
  it('accepts the emitter\'s own output', async () => {
    const { file } = await modelWith(null);
    const refs = checkExternalData(file, decodeModel(fs.readFileSync(file)));
    expect(refs.map((r) => r.location)).toEqual(['m.onnx.data', 'm.onnx.data']);
  });

  it.each([
    ['parent escape', '../secret.bin', /escapes the model's folder/],
    ['deep escape', 'a/../../../etc/passwd', /escapes the model's folder/],
    ['absolute', '/etc/passwd', /is absolute/],
    ['missing', 'nope.data', /does not exist/],
  ])('%s', async (_n, loc, re) => {
    const { file } = await modelWith(loc);
    expect(() => checkExternalData(file, decodeModel(fs.readFileSync(file)))).toThrow(re);
  });

  it('refuses a symlink pointing outside and a range past the end of the file', async () => {
    const { file } = await modelWith('link.data', (dir) => {
      fs.writeFileSync(path.join(dir, '..', 'outside.data'), Buffer.alloc(1 << 16));
      fs.symlinkSync(path.join(dir, '..', 'outside.data'), path.join(dir, 'link.data'));
    });
    expect(() => checkExternalData(file, decodeModel(fs.readFileSync(file)))).toThrow(/resolves \(through a link\) outside/);
    const t = await modelWith(null, (dir) => fs.truncateSync(path.join(dir, 'm.onnx.data'), 100));
    expect(() => checkExternalData(t.file, decodeModel(fs.readFileSync(t.file)))).toThrow(/tensor '.*': external data location 'm.onnx.data': bytes .* past the end of the 100-byte file/);
  });
});
