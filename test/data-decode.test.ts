// runtime/data's readImage is runtime/images/decode.ts' decoder (one decoder in the project): the
// same pixels, its format whitelist and pixel budget, errors naming the row / flag that gave the file.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImage, ImageReadError } from '../runtime/data/decode.ts';
import { decodeImage } from '../runtime/images/decode.ts';

let tmp: string;
const p = (...xs: string[]) => path.join(tmp, ...xs);

/** a PNG whose IHDR declares w x h, with one tiny IDAT (never enough data) */
function bombPng(w: number, h: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.alloc(16))), chunk('IEND', Buffer.alloc(0))]);
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-data-decode-'));
  const raw = Buffer.from(Array.from({ length: 20 * 12 * 3 }, (_, i) => (i * 37) & 255));
  await sharp(raw, { raw: { width: 20, height: 12, channels: 3 } }).jpeg({ quality: 80 }).toFile(p('a.jpg'));
  await sharp(raw, { raw: { width: 20, height: 12, channels: 3 } }).gif().toFile(p('a.gif'));
  fs.writeFileSync(p('text.png'), 'not an image at all');
  fs.writeFileSync(p('bomb.png'), bombPng(30000, 30000));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('readImage = decodeImage', () => {
  it('same pixels as the VLM decoder (JPEG)', async () => {
    const a = await readImage(p('a.jpg'), 'row 3');
    const b = await decodeImage(p('a.jpg'));
    expect([a.width, a.height]).toEqual([20, 12]);
    expect(a.data).toEqual(b.data);
  });

  it('refuses what decodeImage refuses, naming the caller', async () => {
    await expect(readImage(p('a.gif'), 'rows.jsonl:2: a.gif')).rejects.toThrow(/^rows\.jsonl:2: a\.gif: cannot read the image \(.*only PNG, JPEG and WebP/);
    await expect(readImage(p('text.png'), "--image 'text.png'")).rejects.toThrow(ImageReadError);
    await expect(readImage(p('text.png'), "--image 'text.png'")).rejects.toThrow(/--image 'text\.png': cannot read the image \(.*not a readable PNG, JPEG or WebP/);
    await expect(readImage(p('bomb.png'), 'bomb')).rejects.toThrow(/30000x30000 = 900000000 pixels, over the limit/);
    await expect(readImage(p('missing.png'), 'gone')).rejects.toThrow(/gone: cannot read the image \(image .* does not exist\)/);
  });
});
