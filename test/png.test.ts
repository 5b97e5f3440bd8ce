// runtime/images/png.ts: pixels and text read back by independent decoders (sharp/libvips, fast-png),
// deterministic bytes, grids.
import { decode } from 'fast-png';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodePng, imageGrid, readPngText, type RgbImage } from '../runtime/images/png.ts';
import { Rng } from '../src/ir/init.ts';

function randomImage(w: number, h: number, seed: number): RgbImage {
  const r = new Rng(seed, 'img');
  return { width: w, height: h, data: Uint8Array.from({ length: w * h * 3 }, () => r.nextU32() & 255) };
}

describe('PNG output', () => {
  const img = randomImage(13, 7, 1);
  const text = { prompt: 'a red circle on a blue square', negative_prompt: '', 'prompt:utf8': 'un cercle rouge, 赤い円 ✓', seed: '42' };

  it('pixels round-trip through libvips (sharp) and fast-png', async () => {
    const png = encodePng(img, text);
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([13, 7, 3]);
    expect(Buffer.compare(data, Buffer.from(img.data))).toBe(0);
    const d = decode(png);
    expect([...d.data]).toEqual([...img.data]);
  });

  it('text chunks: Latin-1 in tEXt (read back by fast-png), anything else in iTXt; every chunk CRC valid', async () => {
    const png = encodePng(img, text);
    expect(readPngText(png)).toEqual(text);
    const d = decode(png, { checkCrc: true });
    const { 'prompt:utf8': _, ...latin } = text;
    expect(d.text).toEqual(latin);
    // libvips refuses a file with a broken chunk when asked to fail on warnings
    await sharp(png, { failOn: 'warning' }).raw().toBuffer();
    expect(() => encodePng(img, { '': 'x' })).toThrow(/keyword/);
  });

  it('the same pixels and text give the same bytes', () => {
    expect(Buffer.compare(Buffer.from(encodePng(img, text)), Buffer.from(encodePng(randomImage(13, 7, 1), { ...text })))).toBe(0);
  });

  it('bad images are refused by name', () => {
    expect(() => encodePng({ width: 2, height: 2, data: new Uint8Array(5) }, {}, 'sample 3')).toThrow(/sample 3: a 2x2 RGB image has 12 bytes, got 5/);
  });

  it('grids place every image', () => {
    const ims = [0, 1, 2].map((i) => randomImage(4, 3, i));
    const g = imageGrid(ims, 2, 1);
    expect([g.width, g.height]).toEqual([2 * 4 + 3, 2 * 3 + 3]);
    const px = (im: RgbImage, x: number, y: number) => [...im.data.subarray((y * im.width + x) * 3, (y * im.width + x) * 3 + 3)];
    expect(px(g, 1, 1)).toEqual(px(ims[0]!, 0, 0));
    expect(px(g, 1 + 4 + 1 + 3, 1 + 2)).toEqual(px(ims[1]!, 3, 2));
    expect(px(g, 1, 1 + 3 + 1)).toEqual(px(ims[2]!, 0, 0));
    expect(px(g, 0, 0)).toEqual([48, 48, 48]);
    expect(() => imageGrid([ims[0]!, randomImage(5, 3, 9)])).toThrow(/share one size/);
  });
});
