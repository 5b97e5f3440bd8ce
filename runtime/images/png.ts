// RGB -> PNG with text metadata (runtime/images/png.ts: image *output*; decoding lives beside it).
//
// Pixels are encoded by fast-png (pure JS, image-js project, fflate's deflate): deterministic bytes
// for the same pixels and text on every platform, which is what "the same seed gives a
// byte-identical PNG" needs, with no native code to build. It writes tEXt chunks, which are
// Latin-1 by the PNG spec; a value outside Latin-1 (most non-English prompts) goes into an iTXt
// chunk (UTF-8), which fast-png does not write, so that one chunk is added here.
import { encode } from 'fast-png';
import { crc32, inflateSync } from 'node:zlib';

export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, row-major, RGB interleaved */
  data: Uint8Array | Uint8ClampedArray;
}

export class PngError extends Error {
  override name = 'PngError';
}

const LATIN1 = /^[\u0000-\u00ff]*$/;
const KEYWORD = /^[\u0020-\u007e\u00a1-\u00ff]{1,79}$/;

function checkImage(img: RgbImage, what: string): void {
  const { width: w, height: h } = img;
  if (!(Number.isInteger(w) && Number.isInteger(h) && w >= 1 && h >= 1)) throw new PngError(`${what}: size ${w}x${h} must be positive integers`);
  if (img.data.length !== w * h * 3) throw new PngError(`${what}: a ${w}x${h} RGB image has ${w * h * 3} bytes, got ${img.data.length}`);
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** iTXt, uncompressed: keyword \0 flag 0, method 0, language "" \0, translated keyword "" \0, UTF-8 text. */
function iTXt(key: string, value: string): Uint8Array {
  const k = Buffer.from(key, 'latin1'), v = Buffer.from(value, 'utf8');
  const data = new Uint8Array(k.length + 5 + v.length);
  data.set(k, 0);
  data.set(v, k.length + 5); // the five bytes between are 0: \0, flag, method, \0 (language), \0 (translation)
  return chunk('iTXt', data);
}

/** Encode 8-bit RGB as PNG; `text` goes into tEXt chunks (iTXt where a value is not Latin-1). */
export function encodePng(img: RgbImage, text: Record<string, string> = {}, what = 'image'): Uint8Array {
  checkImage(img, what);
  const latin: Record<string, string> = {};
  const utf8: [string, string][] = [];
  for (const [k, v] of Object.entries(text)) {
    if (!KEYWORD.test(k)) throw new PngError(`${what}: PNG text keyword '${k}' must be 1-79 printable Latin-1 characters`);
    if (LATIN1.test(v)) latin[k] = v;
    else utf8.push([k, v]);
  }
  const data = img.data instanceof Uint8Array ? img.data : new Uint8Array(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  const png = encode({ width: img.width, height: img.height, data, channels: 3, depth: 8, text: latin });
  if (utf8.length === 0) return png;
  // before IEND, the last 12 bytes
  const extra = utf8.map(([k, v]) => iTXt(k, v));
  const size = png.length + extra.reduce((a, c) => a + c.length, 0);
  const out = new Uint8Array(size);
  out.set(png.subarray(0, png.length - 12), 0);
  let at = png.length - 12;
  for (const c of extra) out.set(c, at), (at += c.length);
  out.set(png.subarray(png.length - 12), at);
  return out;
}

/** Every tEXt / zTXt / iTXt entry of a PNG (later chunks win on repeated keywords). */
export function readPngText(bytes: Uint8Array, what = 'PNG'): Record<string, string> {
  const sig = [137, 80, 78, 71, 13, 10, 26, 10];
  if (bytes.length < 8 || sig.some((b, i) => bytes[i] !== b)) throw new PngError(`${what}: not a PNG file`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Record<string, string> = {};
  for (let at = 8; at + 12 <= bytes.length; ) {
    const len = dv.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const data = bytes.subarray(at + 8, at + 8 + len);
    if (data.length !== len) throw new PngError(`${what}: truncated ${type} chunk`);
    const z = data.indexOf(0);
    if (type === 'tEXt' && z > 0) out[Buffer.from(data.subarray(0, z)).toString('latin1')] = Buffer.from(data.subarray(z + 1)).toString('latin1');
    if (type === 'zTXt' && z > 0) out[Buffer.from(data.subarray(0, z)).toString('latin1')] = inflateSync(data.subarray(z + 2)).toString('latin1');
    if (type === 'iTXt' && z > 0) {
      const compressed = data[z + 1] === 1;
      let p = z + 3;
      p = data.indexOf(0, p) + 1; // language tag
      p = data.indexOf(0, p) + 1; // translated keyword
      const body = data.subarray(p);
      out[Buffer.from(data.subarray(0, z)).toString('latin1')] = (compressed ? inflateSync(body) : Buffer.from(body)).toString('utf8');
    }
    if (type === 'IEND') break;
    at += 12 + len;
  }
  return out;
}

/** Images of one size in a grid `cols` wide, `gap` pixels of dark grey between and around them. */
export function imageGrid(images: readonly RgbImage[], cols?: number, gap = 2): RgbImage {
  if (images.length === 0) throw new PngError('a grid of no images');
  const { width: w, height: h } = images[0]!;
  images.forEach((img, i) => {
    checkImage(img, `grid image ${i}`);
    if (img.width !== w || img.height !== h) throw new PngError(`grid image ${i} is ${img.width}x${img.height}, image 0 ${w}x${h}: grid images share one size`);
  });
  const c = Math.max(1, Math.min(images.length, cols ?? Math.ceil(Math.sqrt(images.length))));
  const rows = Math.ceil(images.length / c);
  const W = c * w + (c + 1) * gap, H = rows * h + (rows + 1) * gap;
  const data = new Uint8Array(W * H * 3).fill(48);
  images.forEach((img, k) => {
    const ox = gap + (k % c) * (w + gap), oy = gap + Math.floor(k / c) * (h + gap);
    for (let y = 0; y < h; y++) data.set(img.data.subarray(y * w * 3, (y + 1) * w * 3), ((oy + y) * W + ox) * 3);
  });
  return { width: W, height: H, data };
}
