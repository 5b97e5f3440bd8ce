import { describe, expect, it } from 'vitest';
import { Rng } from '../../src/ir/init.ts';
import { decodeImage, encodePng } from '../../runtime/shapes/png.ts';
import { randomScene } from '../../runtime/shapes/scenes.ts';
import { adherence, editSuccess, readScene } from '../../runtime/shapes/scorer.ts';
import { objectsOf, render, sameScene, sceneOf, SIZE, type Scene } from '../../runtime/shapes/world.ts';

const asScene = (r: ReturnType<typeof readScene>): Scene | undefined => (r.some((c) => c?.shape === 'blob') ? undefined : (r as Scene));

describe('shapes scorer', () => {
  it('reads exact renders of random scenes back (>= 99 %; here all of 2000), through PNG too', async () => {
    const rng = new Rng(11, 'scorer');
    let ok = 0, adh = 0;
    const N = 2000;
    for (let i = 0; i < N; i++) {
      const s = randomScene(rng);
      const r = readScene(render(s));
      if (asScene(r) && sameScene(asScene(r)!, s)) ok++;
      adh += adherence(s, r).score;
    }
    expect(ok / N).toBeGreaterThanOrEqual(0.99);
    expect(adh / N).toBeGreaterThanOrEqual(0.99);
    const s = randomScene(rng, { minObjects: 3 });
    const back = await decodeImage(await encodePng({ width: SIZE, height: SIZE, data: render(s) }), 'test png');
    expect(back.width).toBe(SIZE);
    expect(Buffer.from(back.data).equals(Buffer.from(render(s)))).toBe(true);
    expect(sameScene(readScene(back.data) as Scene, s)).toBe(true);
  });

  it('tolerates what a generator leaves: per-pixel noise of sigma 20 and a one-pixel shift', () => {
    const rng = new Rng(12, 'scorer-noise');
    let ok = 0;
    const N = 300;
    for (let i = 0; i < N; i++) {
      const s = randomScene(rng);
      const img = render(s);
      const shifted = new Uint8Array(img.length);
      const dx = i % 2, dy = (i >> 1) % 2;
      for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) for (let c = 0; c < 3; c++) {
        const sx = x - dx, sy = y - dy;
        const v = sx >= 0 && sy >= 0 ? img[(sy * SIZE + sx) * 3 + c]! : 0;
        shifted[(y * SIZE + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v + 20 * rng.normal())));
      }
      const r = asScene(readScene(shifted));
      if (r && sameScene(r, s)) ok++;
    }
    expect(ok / N).toBeGreaterThanOrEqual(0.97);
  });

  it('scores <= 5 % on black and on random-noise images', () => {
    const rng = new Rng(13, 'scorer-black');
    const black = new Uint8Array(SIZE * SIZE * 3);
    let sumBlack = 0, sumNoise = 0, sumCellNoise = 0;
    const N = 300;
    for (let i = 0; i < N; i++) {
      const s = randomScene(rng);
      sumBlack += adherence(s, readScene(black)).score;
      const noise = Uint8Array.from({ length: SIZE * SIZE * 3 }, () => Math.floor(rng.uniform() * 256));
      sumNoise += adherence(s, readScene(noise)).score;
      // noise inside the shapes' own cells only, black elsewhere: the hardest noise for the scorer
      const img = render(s);
      for (const o of objectsOf(s)) {
        const x0 = 16 * (o.cell % 3), y0 = 16 * Math.floor(o.cell / 3);
        for (let y = y0; y < y0 + 16; y++) for (let x = x0; x < x0 + 16; x++) for (let c = 0; c < 3; c++) img[(y * SIZE + x) * 3 + c] = Math.floor(rng.uniform() * 256);
      }
      sumCellNoise += adherence(s, readScene(img)).score;
    }
    expect(sumBlack / N).toBe(0);
    expect(sumNoise / N).toBeLessThanOrEqual(0.05);
    expect(sumCellNoise / N).toBeLessThanOrEqual(0.05);
  });

  it('adherence and edit success follow the issue definitions', () => {
    const prompt = sceneOf([{ colour: 'red', shape: 'circle', cell: 0 }, { colour: 'blue', shape: 'square', cell: 4 }]);
    // sample: the circle right, the square wrong colour, an extra triangle at cell 8
    const sample = sceneOf([{ colour: 'red', shape: 'circle', cell: 0 }, { colour: 'green', shape: 'square', cell: 4 }, { colour: 'white', shape: 'triangle', cell: 8 }]);
    const a = adherence(prompt, readScene(render(sample)));
    expect(a).toEqual({ correct: 1, wanted: 2, extra: 1, score: 1 / 3 });
    expect(editSuccess(prompt, readScene(render(prompt)))).toBe(true);
    expect(editSuccess(prompt, readScene(render(sample)))).toBe(false);
    expect(() => readScene(new Uint8Array(10))).toThrow(/48x48 RGB image has 6912 bytes/);
  });

  it('a blob (big enough, no template) is an object but never a correct one', () => {
    const img = new Uint8Array(SIZE * SIZE * 3);
    // a 16 x 6 red bar across cell 0's middle rows: 96 pixels, IoU with every template < 0.5
    for (let y = 5; y < 11; y++) for (let x = 0; x < 16; x++) img.set([220, 40, 40], (y * SIZE + x) * 3);
    const r = readScene(img);
    expect(r[0]).toEqual({ colour: 'red', shape: 'blob' });
    expect(adherence(sceneOf([{ colour: 'red', shape: 'circle', cell: 0 }]), r).score).toBe(0);
    expect(adherence(sceneOf([{ colour: 'red', shape: 'circle', cell: 4 }]), r)).toMatchObject({ correct: 0, extra: 1 });
  });
});
