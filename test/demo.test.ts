// `unifusion demo` (npm start) end to end on a handful of prompts with the shipped pipeline
// (examples/shapes/pipeline): VLM rewriting / encoding through the pipeline's VLM package,
// Pipeline.generate, the scorer, grids and report.html in the output folder; and its refusals.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { demoCommand, readRecipe, SHIPPED_PIPELINE } from '../src/cli/demo.ts';
import { decodeImage } from '../runtime/shapes/png.ts';
import { readScene } from '../runtime/shapes/scorer.ts';
import { NAMED_SCENES } from '../runtime/shapes/scenes.ts';
import { caption } from '../runtime/shapes/captions.ts';

describe('unifusion demo (shipped shapes pipeline)', () => {
  it('samples every category, scores each sample from its pixels, and writes the grids and an offline report', async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-demo-')), 'demo');
    try {
      const r = await demoCommand({ out, n: 4, edits: 2, recon: 2, seeds: 1, quiet: true });
      const cats = new Set(r.results.map((x) => x.item.cat));
      for (const c of ['named, rewrite', 'named, no rewrite', 'edit', 'recon']) expect(cats.has(c as never), c).toBe(true);
      expect(r.results.filter((x) => x.item.cat.startsWith('t2i'))).toHaveLength(4);
      expect(r.results).toHaveLength(4 + 10 + 2 + 2);
      // every image is a 48 x 48 sample whose score is what the scorer reads from it
      for (const x of r.results) {
        expect(x.image.width).toBe(48);
        expect(x.read).toEqual(readScene(x.image.data));
        expect(x.score).toBeGreaterThanOrEqual(0);
        expect(x.score).toBeLessThanOrEqual(1);
      }
      // the VLM rewrites named scenes into their canonical captions (VERIFI); without rewriting there is no rewrite
      for (const x of r.results.filter((y) => y.item.cat === 'named, rewrite')) expect(x.rewritten).toBe(caption(NAMED_SCENES[x.item.name!]!));
      for (const x of r.results.filter((y) => y.item.cat === 'named, no rewrite')) expect(x.rewritten).toBeUndefined();
      const held = r.results.filter((x) => x.item.cat.startsWith('t2i'));
      expect(r.adherence).toBeCloseTo(held.reduce((a, x) => a + x.score, 0) / held.length, 12);
      // files: grids (decodable PNGs) and a self-contained report (inline images and SVG, no external URL)
      for (const f of ['report.html', 'edit.png', 'recon.png', 'named-rewrite.png']) expect(fs.existsSync(path.join(out, f)), f).toBe(true);
      const g = await decodeImage(fs.readFileSync(path.join(out, 'edit.png')));
      expect(g.width).toBeGreaterThan(4 * 48);
      const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
      expect(html).toContain('data:image/png;base64,');
      expect((html.match(/<svg/g) ?? []).length).toBeGreaterThanOrEqual(3); // 2 loss curves + LAP weights
      expect(html).not.toMatch(/(src|href)="https?:/);
      // the same items sample the same images (fixed seeds per item)
      const again = await demoCommand({ out, n: 4, edits: 2, recon: 2, seeds: 1, quiet: true });
      expect(again.results.map((x) => Buffer.from(x.image.data).toString('base64'))).toEqual(r.results.map((x) => Buffer.from(x.image.data).toString('base64')));
    } finally {
      fs.rmSync(path.dirname(out), { recursive: true, force: true });
    }
  }, 120_000);

  it('refuses bad counts, a missing pipeline, and an --out holding files it did not write', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-demo-'));
    try {
      await expect(demoCommand({ out: path.join(tmp, 'a'), n: 0, quiet: true })).rejects.toThrow(/--n must be an integer >= 1, got 0/);
      await expect(demoCommand({ out: path.join(tmp, 'a'), pipeline: path.join(tmp, 'nope'), quiet: true })).rejects.toThrow(/has no pipeline.json/);
      const mine = path.join(tmp, 'mine');
      fs.mkdirSync(mine);
      fs.writeFileSync(path.join(mine, 'keep.txt'), 'user file');
      await expect(demoCommand({ out: mine, n: 1, edits: 0, recon: 0, seeds: 1, quiet: true })).rejects.toThrow();
      expect(fs.readFileSync(path.join(mine, 'keep.txt'), 'utf8')).toBe('user file');
      expect(fs.readdirSync(mine)).toEqual(['keep.txt']);
      await expect(demoCommand({ out: SHIPPED_PIPELINE, n: 1, quiet: true })).rejects.toThrow();
      // a training folder's recipe.json: t2i and seed are required, provenance is optional
      const training = path.join(tmp, 'training');
      fs.mkdirSync(training);
      fs.writeFileSync(path.join(training, 'recipe.json'), JSON.stringify({ seed: 21 }));
      await expect(demoCommand({ out: path.join(tmp, 'b'), training, n: 1, quiet: true })).rejects.toThrow(/recipe\.json: 't2i' must be a non-negative integer/);
      expect(fs.existsSync(path.join(tmp, 'b'))).toBe(false);
      fs.writeFileSync(path.join(training, 'recipe.json'), JSON.stringify({ t2i: 10, seed: 21 }));
      expect(readRecipe(training)).toEqual({ t2i: 10, seed: 21 });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
