// Image files -> 8-bit RGB through sharp (libvips; prebuilt binaries come as npm packages): every
// PNG / JPEG / WebP flavour a dataset or a user hands in, with decompression bombs refused.
import sharp from 'sharp';
import type { RgbImage } from '../images/png.ts';

export class ImageReadError extends Error {
  override name = 'ImageReadError';
}

/** Most pixels one decode may allocate. */
export const MAX_DECODE_PIXELS = 8192 * 8192;

/** Decode an image file (path or bytes) to RGB; alpha is flattened onto white. `what` names it in errors. */
export async function readImage(src: string | Uint8Array, what = typeof src === 'string' ? src : 'image'): Promise<RgbImage> {
  try {
    const { data, info } = await sharp(src, { limitInputPixels: MAX_DECODE_PIXELS, failOn: 'error' })
      .rotate() // EXIF orientation, as viewers show the picture
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new ImageReadError(`${what}: cannot read the image (${/no such file|ENOENT|missing/i.test(msg) ? 'no such file' : msg})`);
  }
}
