// Image decoding (runtime/images/decode.ts) on files written by an independent encoder: PNGs built
// here byte by byte (zlib + CRC), so the decoded pixels are known exactly; JPEG / WebP / CMYK /
// EXIF cases encoded by sharp from known pixels and checked against them. Hostile files: truncated,
// wrong extension, 0x0, a 30000 x 30000 decompression bomb, text posing as an image.
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import { decodeImage, ImageError } from '../runtime/images/decode.ts';
import { dynamicTiles } from '../runtime/tiling.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-img-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function chunk(type: string, data: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), Buffer.from(data)]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(td) >>> 0);
  return Buffer.concat([len, td, crc]);
}

/** A PNG from raw scanlines (filter byte 0 each row). colorType 0 grey, 2 RGB, 3 palette, 6 RGBA. */
function png(w: number, h: number, colorType: number, depth: number, pixels: Uint8Array, extra: Buffer[] = []): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = depth;
  ihdr[9] = colorType;
  const channels = { 0: 1, 2: 3, 3: 1, 6: 4 }[colorType]!;
  const rowBytes = (w * channels * depth) / 8;
  const raw = Buffer.alloc(h * (rowBytes + 1));
  for (let y = 0; y < h; y++) Buffer.from(pixels.subarray(y * rowBytes, (y + 1) * rowBytes)).copy(raw, y * (rowBytes + 1) + 1);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), ...extra, chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', new Uint8Array(0))]);
}

function rgbPattern(w: number, h: number): Uint8Array {
  const d = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) d.set([(x * 37 + y * 11) & 255, (x * 5 + y * 53) & 255, (x * y * 7 + 13) & 255], (y * w + x) * 3);
  return d;
}

const write = (name: string, bytes: Uint8Array) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
};

describe('decodeImage: exact pixels', () => {
  it('8-bit RGB PNG', async () => {
    const px = rgbPattern(13, 7);
    const img = await decodeImage(write('rgb.png', png(13, 7, 2, 8, px)));
    expect([img.width, img.height]).toEqual([13, 7]);
    expect(Buffer.from(img.data).equals(Buffer.from(px))).toBe(true);
  });

  it('RGBA PNG: alpha flattened onto white (out = a*c + (1-a)*255)', async () => {
    const w = 6, h = 4;
    const rgba = new Uint8Array(w * h * 4);
    const px = rgbPattern(w, h);
    for (let i = 0; i < w * h; i++) rgba.set([px[i * 3]!, px[i * 3 + 1]!, px[i * 3 + 2]!, (i * 47) & 255], i * 4);
    const img = await decodeImage(write('rgba.png', png(w, h, 6, 8, rgba)));
    for (let i = 0; i < w * h; i++)
      for (let c = 0; c < 3; c++) {
        const a = rgba[i * 4 + 3]! / 255;
        expect(Math.abs(img.data[i * 3 + c]! - (a * rgba[i * 4 + c]! + (1 - a) * 255))).toBeLessThanOrEqual(1);
      }
  });

  it('grey, palette (with tRNS) and 16-bit PNGs become 8-bit RGB', async () => {
    const w = 5, h = 3;
    const grey = Uint8Array.from({ length: w * h }, (_, i) => i * 17);
    const g = await decodeImage(write('grey.png', png(w, h, 0, 8, grey)));
    for (let i = 0; i < w * h; i++) expect([...g.data.subarray(i * 3, i * 3 + 3)]).toEqual([grey[i], grey[i], grey[i]]);
    const palette = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
    const idx = Uint8Array.from({ length: w * h }, (_, i) => i % 4);
    const p = await decodeImage(write('pal.png', png(w, h, 3, 8, idx, [chunk('PLTE', palette), chunk('tRNS', Uint8Array.from([255, 255, 255, 0]))])));
    for (let i = 0; i < w * h; i++) {
      const want = idx[i] === 3 ? [255, 255, 255] : [...palette.subarray(idx[i]! * 3, idx[i]! * 3 + 3)];
      expect([...p.data.subarray(i * 3, i * 3 + 3)]).toEqual(want);
    }
    const px16 = new Uint8Array(w * h * 6);
    const px = rgbPattern(w, h);
    for (let i = 0; i < w * h * 3; i++) (px16[i * 2] = px[i]!), (px16[i * 2 + 1] = 0x80);
    const s = await decodeImage(write('rgb16.png', png(w, h, 2, 16, px16)));
    for (let i = 0; i < w * h * 3; i++) expect(Math.abs(s.data[i]! - (px[i]! * 256 + 0x80) / 257)).toBeLessThanOrEqual(1);
  });

  it('a PNG named .jpg decodes (the format is sniffed from the bytes)', async () => {
    const px = rgbPattern(4, 4);
    const img = await decodeImage(write('really-png.jpg', png(4, 4, 2, 8, px)));
    expect(Buffer.from(img.data).equals(Buffer.from(px))).toBe(true);
  });

  it('lossless WebP exact; JPEG close; EXIF orientation 6 rotates; CMYK JPEG converted to RGB', async () => {
    const w = 16, h = 8;
    const px = rgbPattern(w, h);
    const raw = { raw: { width: w, height: h, channels: 3 as const } };
    const webp = await decodeImage(await sharp(Buffer.from(px), raw).webp({ lossless: true }).toBuffer());
    expect(Buffer.from(webp.data).equals(Buffer.from(px))).toBe(true);
    // a smooth image so JPEG's error stays small
    const smooth = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) smooth.set([x * 12, y * 25, 128], (y * w + x) * 3);
    const jpg = await sharp(Buffer.from(smooth), raw).jpeg({ quality: 95 }).toBuffer();
    const j = await decodeImage(jpg);
    let worst = 0;
    for (let i = 0; i < smooth.length; i++) worst = Math.max(worst, Math.abs(j.data[i]! - smooth[i]!));
    expect(worst).toBeLessThan(24);
    // orientation 6: the stored image is shown rotated 90 degrees clockwise
    const rot = await decodeImage(await sharp(Buffer.from(smooth), raw).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer());
    expect([rot.width, rot.height]).toEqual([h, w]);
    // shown pixel (x, y) = stored pixel (y, h - 1 - x)
    const at = (d: Uint8Array, W: number, x: number, y: number) => [...d.subarray((y * W + x) * 3, (y * W + x) * 3 + 3)];
    for (const [x, y] of [[0, 0], [3, 10], [7, 15]] as const) {
      const a = at(rot.data, h, x, y), b = at(smooth, w, y, h - 1 - x);
      for (let c = 0; c < 3; c++) expect(Math.abs(a[c]! - b[c]!)).toBeLessThan(24);
    }
    const cmyk = await sharp(Buffer.from(smooth), raw).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer();
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
    const c = await decodeImage(cmyk);
    expect(c.data.length).toBe(w * h * 3);
    let cw = 0;
    for (let i = 0; i < smooth.length; i++) cw = Math.max(cw, Math.abs(c.data[i]! - smooth[i]!));
    expect(cw).toBeLessThan(48);
  });
});

describe('decodeImage: hostile files give a clear error, never a crash or a huge allocation', () => {
  it('truncated PNG and JPEG', async () => {
    const full = png(64, 64, 2, 8, rgbPattern(64, 64));
    await expect(decodeImage(write('trunc.png', full.subarray(0, full.length - 40)))).rejects.toThrow(/image '.*trunc\.png' (cannot be decoded|is not a readable)/);
    const jpg = await sharp(Buffer.from(rgbPattern(64, 64)), { raw: { width: 64, height: 64, channels: 3 } }).jpeg().toBuffer();
    await expect(decodeImage(write('trunc.jpg', jpg.subarray(0, jpg.length / 2)))).rejects.toThrow(ImageError);
  });

  it('a 30000 x 30000 header with a tiny payload is refused before decoding', async () => {
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(30000, 0);
    ihdr.writeUInt32BE(30000, 4);
    ihdr[8] = 8;
    ihdr[9] = 2;
    const bomb = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.alloc(1000))), chunk('IEND', new Uint8Array(0))]);
    const before = process.memoryUsage().rss;
    await expect(decodeImage(write('bomb.png', bomb))).rejects.toThrow(/declares 30000x30000 = 900000000 pixels, over the limit/);
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 2 ** 20);
  });

  it('0x0, text posing as PNG, an empty file, a missing file, a GIF', async () => {
    const ihdr = Buffer.alloc(13);
    ihdr[8] = 8;
    ihdr[9] = 2;
    const zero = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IEND', new Uint8Array(0))]);
    await expect(decodeImage(write('zero.png', zero))).rejects.toThrow(/zero\.png/);
    await expect(decodeImage(write('text.png', Buffer.from('hello, I am not an image\n')))).rejects.toThrow(/text\.png' is not a readable PNG, JPEG or WebP/);
    await expect(decodeImage(write('empty.png', new Uint8Array(0)))).rejects.toThrow(/is empty/);
    await expect(decodeImage(path.join(dir, 'nope.png'))).rejects.toThrow(/does not exist/);
    const gif = await sharp(Buffer.from(rgbPattern(4, 4)), { raw: { width: 4, height: 4, channels: 3 } }).gif().toBuffer();
    await expect(decodeImage(gif)).rejects.toThrow(/is gif; only PNG, JPEG and WebP/);
  });
});

describe('decoded images feed InternVL tiling', () => {
  it('a 640x320 PNG tiles into 2 x 1 tiles + thumbnail of pixel_values', async () => {
    const img = await decodeImage(write('wide.png', png(640, 320, 2, 8, rgbPattern(640, 320))));
    const t = dynamicTiles(img, { size: 32, maxNum: 6 });
    expect(t.grid).toEqual({ cols: 2, rows: 1 });
    expect(t.pixelValues.shape).toEqual([3, 3, 32, 32]);
  });
});
