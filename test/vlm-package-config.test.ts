// What a VLM package reads from its processor and generation configs (the shapes demo's kind of
// InternVL: one tile of the vision tower's size, no thumbnail; ChatML stop tokens):
//   - preprocessor_config.json crop_to_patches: false / max_patches: 1 -> every image is one tile
//     (one tile's image tokens), where the default dynamic tiling makes a grid plus a thumbnail;
//   - a processor size other than the vision tower's image_size is refused, naming the file;
//   - generation_config.json's eos_token_id list: generation stops at any of them (the second
//     id of the list stops it exactly where plain generation produced that token).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importHf } from '../src/cli/import-hf.ts';
import { VlmPackage } from '../runtime/vlm/index.ts';
import { encodePng } from '../runtime/images/png.ts';
import { Rng } from '../src/ir/init.ts';
import { GEN_FIXTURES } from './helpers/vlm.ts';

let tmp: string;
const p = (...xs: string[]) => path.join(tmp, ...xs);
const SRC = path.join(GEN_FIXTURES, 'internvl');

/** the fixture with some JSON files replaced, imported as a package */
async function variant(name: string, files: Record<string, unknown>): Promise<string> {
  fs.cpSync(SRC, p(`${name}-src`), { recursive: true });
  for (const [f, j] of Object.entries(files)) fs.writeFileSync(p(`${name}-src`, f), JSON.stringify(j));
  await importHf(p(`${name}-src`), { out: p(name), taps: 'list:1,2,3' });
  return p(name);
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-vlm-cfg-'));
  const r = new Rng(9, 'img');
  fs.writeFileSync(p('wide.png'), encodePng({ width: 100, height: 40, data: Uint8Array.from({ length: 100 * 40 * 3 }, () => Math.floor(r.uniform() * 256)) }));
}, 60_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ONE_TILE = { image_processor_type: 'GotOcr2ImageProcessor', size: { height: 32, width: 32 }, crop_to_patches: false, min_patches: 1, max_patches: 1 };

describe('VlmPackage configs', () => {
  it('one tile, no thumbnail, from preprocessor_config.json; the default tiles a grid and adds a thumbnail', async () => {
    const one = await VlmPackage.load(await variant('one', { 'preprocessor_config.json': ONE_TILE }));
    const dflt = await VlmPackage.load(await variant('dflt', {}));
    try {
      const a = await one.condition([{ prompt: '', images: [p('wide.png')] }], { rewrite: false });
      const b = await dflt.condition([{ prompt: '', images: [p('wide.png')] }], { rewrite: false });
      expect(a.lengths).toEqual([16]); // (32 / 4 / 2)^2 tokens of one 32 x 32 tile
      expect(b.lengths[0]! % 16).toBe(0);
      expect(b.lengths[0]!).toBeGreaterThan(32); // a grid of tiles + the thumbnail
    } finally {
      await one.close();
      await dflt.close();
    }
  });

  it('refuses a processor size that is not the vision tower image_size', async () => {
    const dir = await variant('bad', { 'preprocessor_config.json': { ...ONE_TILE, size: { height: 48, width: 48 } } });
    await expect(VlmPackage.load(dir)).rejects.toThrow(/preprocessor_config\.json: size \{"height":48,"width":48\} differs from the vision tower's image_size 32/);
  });

  it("stops at any id of generation_config.json's eos_token_id list", async () => {
    const base = JSON.parse(fs.readFileSync(path.join(SRC, 'generation_config.json'), 'utf8')) as { eos_token_id: number };
    const plain = await VlmPackage.load(await variant('plain', {}));
    const free = await plain.generate([{ prompt: 'a red circle' }], { maxNewTokens: 8, systemPrompt: 's' });
    await plain.close();
    const toks = free.rows[0]!.tokens;
    expect(toks.length).toBeGreaterThan(3);
    const k = toks.findIndex((t, i) => i >= 2 && !toks.slice(0, i).includes(t));
    expect(k).toBeGreaterThanOrEqual(2);
    const two = await VlmPackage.load(await variant('two', { 'generation_config.json': { ...base, eos_token_id: [base.eos_token_id, toks[k]!] } }));
    try {
      const r = await two.generate([{ prompt: 'a red circle' }], { maxNewTokens: 8, systemPrompt: 's' });
      expect(r.rows[0]!.finish).toBe('stop');
      expect(r.rows[0]!.tokens).toEqual(toks.slice(0, k + 1));
      expect(r.rows[0]!.kept).toBe(k);
      // and the rewrite condition holds the kept tokens only
      const c = await two.condition([{ prompt: 'a red circle' }], { rewrite: true, maxNewTokens: 8, systemPrompt: 's' });
      expect(c.generatedIds[0]).toEqual(toks.slice(0, k));
      expect(c.finish[0]).toBe('stop');
    } finally {
      await two.close();
    }
  });
});
