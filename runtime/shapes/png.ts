// PNG in and out for the shapes world, through sharp (libvips, prebuilt binaries from the npm
// registry): decoding handles every PNG flavour (palette, grey, 16-bit, alpha, interlaced) that a
// hand-written inflate+unfilter would have to re-implement, and writing is a one-liner.
import sharp from 'sharp';

export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, RGB interleaved, row-major */
  data: Uint8Array;
}

export class ImageReadError extends Error {
  override name = 'ImageReadError';
}

/** Most pixels a decode may allocate (a bomb declaring 30000 x 30000 is refused before decoding). */
const MAX_PIXELS = 4096 * 4096;

/** Encode 8-bit RGB as PNG. */
export async function encodePng(img: RgbImage): Promise<Buffer> {
  if (img.data.length !== img.width * img.height * 3) throw new Error(`a ${img.width}x${img.height} RGB image has ${img.width * img.height * 3} bytes, got ${img.data.length}`);
  return sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), { raw: { width: img.width, height: img.height, channels: 3 } }).png({ compressionLevel: 9 }).toBuffer();
}

/** Decode an image file's bytes to 8-bit RGB (alpha flattened onto black). `what` names it in errors. */
export async function decodeImage(bytes: Uint8Array, what = 'image'): Promise<RgbImage> {
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: MAX_PIXELS, failOn: 'error' })
      .flatten({ background: { r: 0, g: 0, b: 0 } })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (e) {
    throw new ImageReadError(`${what}: cannot decode: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** A grid of equally sized RGB images, `cols` wide, with a `gap`-pixel dark-grey border. */
export function grid(images: readonly RgbImage[], cols: number, gap = 2): RgbImage {
  if (images.length === 0) throw new Error('grid of no images');
  const { width: w, height: h } = images[0]!;
  if (images.some((i) => i.width !== w || i.height !== h)) throw new Error('grid images must share one size');
  const rows = Math.ceil(images.length / cols);
  const W = cols * w + (cols + 1) * gap, H = rows * h + (rows + 1) * gap;
  const data = new Uint8Array(W * H * 3).fill(64);
  images.forEach((img, k) => {
    const ox = gap + (k % cols) * (w + gap), oy = gap + Math.floor(k / cols) * (h + gap);
    for (let y = 0; y < h; y++) data.set(img.data.subarray(y * w * 3, (y + 1) * w * 3), ((oy + y) * W + ox) * 3);
  });
  return { width: W, height: H, data };
}
