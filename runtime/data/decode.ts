// Image files -> 8-bit RGB for datasets and the sample / edit commands: a thin naming layer over
// runtime/images/decode.ts (the project's one decoder: PNG / JPEG / WebP sniffed from the bytes,
// the pixel budget checked before decoding, truncated or hostile files refused), so a failure
// names the dataset row or the flag that gave the file.
import { decodeImage, DEFAULT_MAX_PIXELS, ImageError } from '../images/decode.ts';
import type { RgbImage } from '../images/png.ts';

export class ImageReadError extends Error {
  override name = 'ImageReadError';
}

/** Most pixels one decode may allocate (runtime/images/decode.ts' budget). */
export const MAX_DECODE_PIXELS = DEFAULT_MAX_PIXELS;

/** Decode an image file (path or bytes) to RGB; alpha is flattened onto white. `what` names it in errors. */
export async function readImage(src: string | Uint8Array, what = typeof src === 'string' ? src : 'image'): Promise<RgbImage> {
  try {
    const d = await decodeImage(src);
    return { width: d.width, height: d.height, data: d.data };
  } catch (e) {
    if (!(e instanceof ImageError)) throw e;
    throw new ImageReadError(`${what}: cannot read the image (${e.message})`);
  }
}
