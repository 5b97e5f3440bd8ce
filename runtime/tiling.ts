// InternVL's dynamic tiling of an input image: pick the grid of square tiles
// (minNum..maxNum tiles) whose aspect ratio is closest to the image's, resize the
// image onto that grid, cut it row-major into tiles, and append a thumbnail (the
// whole image resized to one tile) when there is more than one tile. Pixels are
// then scaled to [0, 1] and normalised with the ImageNet mean/std, giving
// pixel_values [nTiles, 3, size, size] as InternVL's load_image does.
//
// Input is raw 8-bit RGB (row-major, interleaved). Decoding PNG/JPEG is left to
// the caller (for example `sharp`, whose prebuilt binaries come as npm packages).
//
// Resizing reproduces Pillow's Image.resize(..., BICUBIC) on 8-bit images, which is
// what InternVL's reference code (PIL images through torchvision transforms) runs:
// separable cubic convolution (a = -0.5) widened by the scale when shrinking
// (antialiasing), horizontal pass then vertical pass, coefficients in 22-bit
// fixed point, each pass rounded and clamped to 8 bits. Outputs are identical to
// Pillow's (tested byte for byte). Hugging Face's InternVL processor resizes
// tensors with torch instead and so can differ by a few levels per pixel.
import type { HostTensor } from '../src/io/host.ts';

export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, row-major, RGB interleaved */
  data: Uint8Array | Uint8ClampedArray;
}

export interface TilingOptions {
  /** fewest tiles of a candidate grid (InternVL: 1) */
  minNum?: number;
  /** most tiles of a candidate grid (InternVL3: 12 by default; the paper uses up to 10) */
  maxNum?: number;
  /** tile side in pixels (448) */
  size?: number;
  /** append the whole image as one more tile when the grid has several (true) */
  thumbnail?: boolean;
}

export interface Grid {
  cols: number;
  rows: number;
}

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

function checkImage(img: RgbImage): void {
  const { width: w, height: h } = img;
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 1 || h < 1) throw new Error(`image size ${w}x${h} must be positive integers`);
  if (img.data.length !== w * h * 3) throw new Error(`image ${w}x${h} RGB needs ${w * h * 3} bytes, got ${img.data.length}`);
}

function options(opts: TilingOptions): Required<TilingOptions> {
  const o = { minNum: opts.minNum ?? 1, maxNum: opts.maxNum ?? 12, size: opts.size ?? 448, thumbnail: opts.thumbnail ?? true };
  if (!Number.isInteger(o.minNum) || !Number.isInteger(o.maxNum) || o.minNum < 1 || o.maxNum < o.minNum) throw new Error(`tiling needs integers 1 <= minNum <= maxNum, got ${o.minNum}, ${o.maxNum}`);
  if (!Number.isInteger(o.size) || o.size < 1) throw new Error(`tile size must be a positive integer, got ${o.size}`);
  return o;
}

/**
 * Candidate grids (cols, rows) with minNum <= cols*rows <= maxNum, fewest tiles first.
 * InternVL sorts a Python set by tile count, so grids with equal counts come in the
 * set's hash order; ours are by columns. For minNum = 1 that order never decides
 * (between two equal-count grids, some other grid is strictly closer at the aspect
 * ratio where they tie; test/vlm-vision.test.ts checks this up to 40 tiles); for
 * minNum > 1 an exact tie between such grids may resolve differently.
 */
export function candidateGrids(minNum: number, maxNum: number): Grid[] {
  const out: Grid[] = [];
  for (let cols = 1; cols <= maxNum; cols++) for (let rows = 1; cols * rows <= maxNum; rows++) if (cols * rows >= minNum) out.push({ cols, rows });
  return out.sort((a, b) => a.cols * a.rows - b.cols * b.rows || a.cols - b.cols);
}

/**
 * InternVL's find_closest_aspect_ratio: the grid with the smallest |w/h - cols/rows|;
 * on an exact tie a later candidate replaces the best one when the image area is
 * more than half of the later grid's pixel area (large images prefer more tiles).
 */
export function closestGrid(width: number, height: number, opts: TilingOptions = {}): Grid {
  const o = options(opts);
  const aspect = width / height;
  let best: Grid = { cols: 1, rows: 1 };
  let bestDiff = Infinity;
  for (const g of candidateGrids(o.minNum, o.maxNum)) {
    const diff = Math.abs(aspect - g.cols / g.rows);
    if (diff < bestDiff) {
      best = g;
      bestDiff = diff;
    } else if (diff === bestDiff && width * height > 0.5 * o.size * o.size * g.cols * g.rows) best = g;
  }
  return best;
}

// ---------------------------------------------------------------- Pillow-exact bicubic

const PRECISION_BITS = 32 - 8 - 2;

function cubic(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Taps {
  /** first source index of output i */
  first: Int32Array;
  /** number of source samples of output i */
  count: Int32Array;
  /** fixed-point weights, `ksize` per output */
  weights: Int32Array;
  ksize: number;
}

/** Per-output source windows and 22-bit fixed-point weights for inSize -> outSize. */
function resampleTaps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize), count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    // C's (int) truncation, then clipping to the image
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    const n = hi - lo;
    let sum = 0;
    for (let k = 0; k < n; k++) sum += w[k] = cubic((k + lo - center + 0.5) / filterScale);
    for (let k = 0; k < n; k++) {
      const v = sum !== 0 ? w[k]! / sum : w[k]!;
      weights[o * ksize + k] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    first[o] = lo;
    count[o] = n;
  }
  return { first, count, weights, ksize };
}

const clip8 = (acc: number): number => Math.min(255, Math.max(0, acc >> PRECISION_BITS));

/** One separable pass along x (stride 3 within a row) or y (stride rowBytes). */
function pass(src: Uint8Array | Uint8ClampedArray, sw: number, sh: number, horizontal: boolean, outSize: number): Uint8Array {
  const inSize = horizontal ? sw : sh;
  const t = resampleTaps(inSize, outSize);
  const ow = horizontal ? outSize : sw, oh = horizontal ? sh : outSize;
  const out = new Uint8Array(ow * oh * 3);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < ow; x++) {
      const o = horizontal ? x : y;
      const lo = t.first[o]!, n = t.count[o]!, kb = o * t.ksize;
      for (let c = 0; c < 3; c++) {
        let acc = half;
        if (horizontal) for (let k = 0; k < n; k++) acc += src[(y * sw + lo + k) * 3 + c]! * t.weights[kb + k]!;
        else for (let k = 0; k < n; k++) acc += src[((lo + k) * sw + x) * 3 + c]! * t.weights[kb + k]!;
        out[(y * ow + x) * 3 + c] = clip8(acc);
      }
    }
  return out;
}

/** Pillow's Image.resize((width, height), BICUBIC) of an 8-bit RGB image. */
export function resizeBicubic(img: RgbImage, width: number, height: number): RgbImage {
  checkImage(img);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) throw new Error(`resize target ${width}x${height} must be positive integers`);
  let data: Uint8Array | Uint8ClampedArray = img.data;
  if (width !== img.width) data = pass(data, img.width, img.height, true, width);
  if (height !== img.height) data = pass(data, width, img.height, false, height);
  return { width, height, data: data === img.data ? Uint8Array.from(data) : data };
}

/** The w x h window at (x0, y0). */
export function crop(img: RgbImage, x0: number, y0: number, w: number, h: number): RgbImage {
  if (x0 < 0 || y0 < 0 || x0 + w > img.width || y0 + h > img.height) throw new Error(`crop ${w}x${h}+${x0}+${y0} is outside ${img.width}x${img.height}`);
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) data.set(img.data.subarray(((y0 + y) * img.width + x0) * 3, ((y0 + y) * img.width + x0 + w) * 3), y * w * 3);
  return { width: w, height: h, data };
}

/** InternVL's dynamic_preprocess: the grid's tiles row-major, then the thumbnail if any. */
export function tileImage(img: RgbImage, opts: TilingOptions = {}): { grid: Grid; tiles: RgbImage[] } {
  checkImage(img);
  const o = options(opts);
  const grid = closestGrid(img.width, img.height, o);
  const big = resizeBicubic(img, grid.cols * o.size, grid.rows * o.size);
  const tiles: RgbImage[] = [];
  for (let r = 0; r < grid.rows; r++) for (let c = 0; c < grid.cols; c++) tiles.push(crop(big, c * o.size, r * o.size, o.size, o.size));
  if (o.thumbnail && tiles.length !== 1) tiles.push(resizeBicubic(img, o.size, o.size));
  return { grid, tiles };
}

/**
 * Tiles -> pixel_values [n, 3, h, w] (f32): x / 255, then (x - mean) / std per channel,
 * each step rounded to float32 as torchvision's ToTensor + Normalize do.
 */
export function toPixelValues(tiles: readonly RgbImage[], mean: readonly number[] = IMAGENET_MEAN, std: readonly number[] = IMAGENET_STD): HostTensor<'f32'> {
  if (tiles.length === 0) throw new Error('toPixelValues: no tiles');
  const { width: w, height: h } = tiles[0]!;
  const f = Math.fround;
  const m = mean.map(f), s = std.map(f);
  const out = new Float32Array(tiles.length * 3 * h * w);
  tiles.forEach((t, n) => {
    if (t.width !== w || t.height !== h) throw new Error(`tile ${n} is ${t.width}x${t.height}, tile 0 is ${w}x${h}`);
    for (let c = 0; c < 3; c++)
      for (let i = 0; i < h * w; i++) out[((n * 3 + c) * h * w) + i] = f(f(f(t.data[i * 3 + c]! / 255) - m[c]!) / s[c]!);
  });
  return { dtype: 'f32', shape: [tiles.length, 3, h, w], data: out };
}

/** tileImage + toPixelValues: InternVL's load_image for one image. */
export function dynamicTiles(img: RgbImage, opts: TilingOptions = {}): { grid: Grid; numTiles: number; pixelValues: HostTensor<'f32'> } {
  const { grid, tiles } = tileImage(img, opts);
  return { grid, numTiles: tiles.length, pixelValues: toPixelValues(tiles) };
}
