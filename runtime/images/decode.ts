// Image files -> 8-bit RGB for the VLM's tiling: PNG, JPEG and WebP decoded by sharp (libvips:
// libpng, mozjpeg, libwebp, lcms), whose prebuilt binaries come as npm packages. Hand-written
// decoders would have to get right what these libraries have been hardened on for years:
// truncated and malformed streams, CMYK / YCCK JPEGs with ICC profiles, 16-bit and palette PNGs,
// EXIF orientation, decompression bombs.
//
// What decodeImage guarantees:
//   - the format is sniffed from the bytes (a PNG named .jpg decodes; a text file named .png is
//     refused naming the file), only PNG / JPEG / WebP are accepted;
//   - the declared size is checked against a pixel budget BEFORE any pixel is decoded (default
//     64 megapixels: a 30000 x 30000 header is refused, never allocated); 0-sized images refused;
//   - truncated or corrupt data is an error (libvips' fail-on-warning), never a partial image;
//   - EXIF orientation applied (the image as a viewer shows it);
//   - alpha flattened onto white (what transformers' convert_to_rgb does), palette expanded,
//     grey / CMYK / 16-bit converted to 8-bit sRGB.
import * as fs from 'node:fs';
import sharp, { type Metadata } from 'sharp';

export class ImageError extends Error {
  override name = 'ImageError';
}

export interface DecodedImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, row-major RGB */
  data: Uint8Array;
  /** file name or '<buffer>' (messages) */
  source: string;
}

export interface DecodeOptions {
  /** refuse images with more pixels than this (default 64 * 2^20) */
  maxPixels?: number;
  /** colour under transparent pixels (default white) */
  background?: { r: number; g: number; b: number };
  /** refuse files larger than this many bytes (default 256 MiB) */
  maxBytes?: number;
}

export const DEFAULT_MAX_PIXELS = 64 * 2 ** 20;
const FORMATS = new Set(['png', 'jpeg', 'webp']);

/** Decode a PNG / JPEG / WebP file or buffer to 8-bit RGB (see the file header). */
export async function decodeImage(input: string | Uint8Array, opts: DecodeOptions = {}): Promise<DecodedImage> {
  const source = typeof input === 'string' ? input : '<buffer>';
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const maxBytes = opts.maxBytes ?? 256 * 2 ** 20;
  let bytes: Uint8Array;
  if (typeof input === 'string') {
    let st: fs.Stats;
    try {
      st = fs.statSync(input);
    } catch {
      throw new ImageError(`image '${source}' does not exist`);
    }
    if (!st.isFile()) throw new ImageError(`image '${source}' is not a file`);
    if (st.size > maxBytes) throw new ImageError(`image '${source}' is ${st.size} bytes, over the ${maxBytes}-byte limit`);
    bytes = fs.readFileSync(input);
  } else bytes = input;
  if (bytes.byteLength === 0) throw new ImageError(`image '${source}' is empty`);

  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false, failOn: 'warning' }).metadata();
  } catch (e) {
    throw new ImageError(`image '${source}' is not a readable PNG, JPEG or WebP file (${reason(e)})`);
  }
  if (!meta.format || !FORMATS.has(meta.format)) throw new ImageError(`image '${source}' is ${meta.format ?? 'of an unknown format'}; only PNG, JPEG and WebP are supported`);
  const w = meta.width ?? 0, h = meta.height ?? 0;
  if (!(w > 0 && h > 0)) throw new ImageError(`image '${source}' is ${w}x${h}: it has no pixels`);
  if (w * h > maxPixels) throw new ImageError(`image '${source}' declares ${w}x${h} = ${w * h} pixels, over the limit of ${maxPixels} (a decompression bomb, or raise maxPixels)`);
  if ((meta.pages ?? 1) > 1) throw new ImageError(`image '${source}' is animated (${meta.pages} frames); pass a still image`);

  const bg = opts.background ?? { r: 255, g: 255, b: 255 };
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'warning', animated: false })
      .autoOrient()
      .flatten({ background: bg })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new ImageError(`image '${source}': decoded to ${info.channels} channels, expected RGB`);
    if (data.byteLength !== info.width * info.height * 3) throw new ImageError(`image '${source}': decoded ${data.byteLength} bytes for ${info.width}x${info.height} RGB`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), source };
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`image '${source}' cannot be decoded (${reason(e)})`);
  }
}

function reason(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0]!.replace(/^Input (buffer|file) /, '').trim();
}
