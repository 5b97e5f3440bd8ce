// InternVL dynamic tiling (runtime/tiling.ts) against the Python reference rule and
// Pillow's bicubic resize (test/fixtures/vlm-vision/tiling_*.safetensors, written by
// scripts/py/gen_vlm_vision_fixtures.py).
import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '../src/io/safetensors.ts';
import { toFloat64, type HostTensor } from '../src/io/host.ts';
import { candidateGrids, closestGrid, crop, dynamicTiles, resizeBicubic, tileImage, toPixelValues, type RgbImage } from '../runtime/tiling.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'vlm-vision');

function load(file: string) {
  const { tensors, metadata } = readSafetensors(path.join(FIXTURES, file));
  const get = (name: string): HostTensor => {
    const t = tensors.get(name);
    if (!t) throw new Error(`${file}: no tensor '${name}'`);
    return t;
  };
  return { tensors, metadata, get };
}

/** [h, w, 3] tensor of 0..255 values -> RgbImage */
function image(t: HostTensor): RgbImage {
  const [h, w] = t.shape as [number, number, number];
  return { width: w, height: h, data: Uint8Array.from(toFloat64(t)) };
}

describe('tile grid selection (find_closest_aspect_ratio)', () => {
  const { metadata, get } = load('tiling_select.safetensors');
  const sizes = toFloat64(get('sizes'));
  for (const cfg of metadata.configs!.split(';')) {
    const [minNum, maxNum, size] = cfg.split(',').map(Number) as [number, number, number];
    it(`min ${minNum}, max ${maxNum}, tile ${size}: same grid as InternVL's rule for ${sizes.length / 2} image sizes`, () => {
      const want = toFloat64(get(`grid.${minNum}.${maxNum}.${size}`));
      const bad: string[] = [];
      for (let n = 0; n < sizes.length / 2; n++) {
        const [w, h] = [sizes[2 * n]!, sizes[2 * n + 1]!];
        const g = closestGrid(w, h, { minNum, maxNum, size });
        if (g.cols !== want[2 * n] || g.rows !== want[2 * n + 1]) bad.push(`${w}x${h}: ${g.cols}x${g.rows}, want ${want[2 * n]}x${want[2 * n + 1]}`);
      }
      expect(bad).toEqual([]);
      // same candidate set as the Python set comprehension (order among equal counts aside)
      const py = toFloat64(get(`candidates.${minNum}.${maxNum}`));
      const key = (c: number, r: number) => `${c * r}:${c}x${r}`;
      const pySet = Array.from({ length: py.length / 2 }, (_, i) => key(py[2 * i]!, py[2 * i + 1]!)).sort();
      expect(candidateGrids(minNum, maxNum).map((g) => key(g.cols, g.rows)).sort()).toEqual(pySet);
    });
  }

  it('with minNum 1 the order of equal-count grids never decides (exact rational check up to 40 tiles)', () => {
    // Two grids with the same tile count only tie at the midpoint of their aspect
    // ratios; if some candidate is strictly closer there, neither is chosen.
    for (let maxNum = 1; maxNum <= 40; maxNum++) {
      const cands = candidateGrids(1, maxNum);
      for (const a of cands)
        for (const b of cands) {
          if (a.cols * a.rows !== b.cols * b.rows || a.cols * b.rows >= b.cols * a.rows) continue;
          // midpoint m = (a + b) / 2 as num/den with integers; half-gap d = (b - a) / 2
          const den = 2 * a.rows * b.rows;
          const mid = a.cols * b.rows + b.cols * a.rows;
          const gap = b.cols * a.rows - a.cols * b.rows;
          const closer = cands.some((c) => Math.abs(mid * c.rows - c.cols * den) < gap * c.rows);
          expect(closer, `max ${maxNum}: ${a.cols}x${a.rows} vs ${b.cols}x${b.rows}`).toBe(true);
        }
    }
  });

  it('rejects bad options', () => {
    expect(() => closestGrid(10, 10, { minNum: 3, maxNum: 2 })).toThrow(/minNum <= maxNum/);
    expect(() => closestGrid(10, 10, { size: 0 })).toThrow(/tile size/);
  });
});

describe('bicubic resize and tiles match Pillow byte for byte', () => {
  const { metadata, get } = load('tiling_pixels.safetensors');
  const imgs = metadata.images!.split(';');
  imgs.forEach((spec, n) => {
    it(`image ${n} (${spec}): resizes, grid, tiles, pixel_values`, () => {
      const img = image(get(`image.${n}`));
      for (let k = 0; k < 3; k++) {
        const want = get(`resize.${n}.${k}`);
        const [th, tw] = want.shape as [number, number];
        const got = resizeBicubic(img, tw, th);
        expect([...got.data]).toEqual([...toFloat64(want)]);
      }
      const { grid, tiles } = tileImage(img, { minNum: 1, maxNum: 6, size: 16, thumbnail: true });
      expect([grid.cols, grid.rows]).toEqual([...toFloat64(get(`grid.${n}`))]);
      const wantTiles = get(`tiles_u8.${n}`);
      expect(tiles.length).toBe(wantTiles.shape[0]);
      expect(tiles.flatMap((t) => [...t.data])).toEqual([...toFloat64(wantTiles)]);
      const pv = toPixelValues(tiles);
      const want = toFloat64(get(`pixel_values.${n}`));
      expect(pv.shape).toEqual(get(`pixel_values.${n}`).shape);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(pv.data[i]! - want[i]!));
      expect(worst).toBeLessThan(1e-6);
    });
  });

  it('one-tile grids get no thumbnail; many-tile grids end with one', () => {
    const square: RgbImage = { width: 20, height: 20, data: new Uint8Array(20 * 20 * 3).fill(7) };
    expect(dynamicTiles(square, { size: 16 }).numTiles).toBe(1);
    const wide: RgbImage = { width: 60, height: 20, data: new Uint8Array(60 * 20 * 3).map((_, i) => i % 251) };
    const r = dynamicTiles(wide, { size: 16, maxNum: 6 });
    expect(r.grid).toEqual({ cols: 3, rows: 1 });
    expect(r.numTiles).toBe(4);
    expect(r.pixelValues.shape).toEqual([4, 3, 16, 16]);
    expect(dynamicTiles(wide, { size: 16, maxNum: 6, thumbnail: false }).numTiles).toBe(3);
  });

  it('same-size resize is a copy; crops and bad inputs are checked', () => {
    const img: RgbImage = { width: 3, height: 2, data: Uint8Array.from({ length: 18 }, (_, i) => i * 10) };
    const same = resizeBicubic(img, 3, 2);
    expect([...same.data]).toEqual([...img.data]);
    expect(same.data).not.toBe(img.data);
    expect([...crop(img, 1, 1, 2, 1).data]).toEqual([120, 130, 140, 150, 160, 170]);
    expect(() => crop(img, 2, 0, 2, 1)).toThrow(/outside 3x2/);
    expect(() => resizeBicubic({ width: 3, height: 2, data: new Uint8Array(5) }, 4, 4)).toThrow(/needs 18 bytes/);
  });
});
