// Reads a 48 x 48 image back into a shapes-world scene from pixels alone, and the demo's two
// measures of a sample: prompt adherence and edit success (issue 11's definitions).
//
// Per pixel: the nearest palette colour when it is within COLOUR_RADIUS (RGB distance), else
// background. Per cell: the colour with the most pixels in the cell; its pixel mask is compared
// with the three shape templates at the cell centre (intersection over union). A cell holds that
// (colour, shape) when the mask has at least MIN_PIXELS pixels and the best IoU is at least
// MIN_IOU; a mask that large matching no template is an unrecognisable object ('blob': never
// correct, and an extra object where the prompt wants none); anything smaller is empty.
// Why these thresholds: exact renders give IoU 1 with their own template, and the closest two
// templates (circle in square) have IoU 0.78, so the argmax is safe for anything near a render;
// uniform RGB noise puts ~4-9 % of a cell's pixels within the radius of any one palette colour
// (10-25 pixels of 256), far below the smallest shape (the triangle, 84 pixels).
import { CELL, CELLS, COLOURS, GRID, RGB, sameObject, SHAPES, shapeMask, SIZE, type Colour, type Scene, type SceneObject, type Shape } from './world.ts';

export const COLOUR_RADIUS = 70;
export const MIN_PIXELS = 40;
export const MIN_IOU = 0.5;

/** What the scorer sees in a cell: an object, an unrecognisable blob, or nothing (null). */
export type ReadCell = SceneObject | { colour: Colour; shape: 'blob' } | null;
export type ReadScene = ReadCell[];

const TEMPLATES: Record<Shape, Uint8Array> = Object.fromEntries(SHAPES.map((s) => [s, shapeMask(s)])) as Record<Shape, Uint8Array>;

export class ScoreError extends Error {
  override name = 'ScoreError';
}

/** Nearest palette colour index of an RGB pixel, or -1 for background. */
export function classifyPixel(r: number, g: number, b: number): number {
  let best = -1, bestD = COLOUR_RADIUS * COLOUR_RADIUS;
  COLOURS.forEach((c, i) => {
    const [R, G, B] = RGB[c];
    const d = (r - R) ** 2 + (g - G) ** 2 + (b - B) ** 2;
    if (d <= bestD) (bestD = d), (best = i);
  });
  return best;
}

/** The scene in a 48 x 48 RGB image (row-major, interleaved; 3 bytes a pixel). */
export function readScene(rgb: ArrayLike<number>, width = SIZE, height = SIZE): ReadScene {
  if (width !== SIZE || height !== SIZE) throw new ScoreError(`the scorer reads ${SIZE}x${SIZE} images, got ${width}x${height}`);
  if (rgb.length !== SIZE * SIZE * 3) throw new ScoreError(`a ${SIZE}x${SIZE} RGB image has ${SIZE * SIZE * 3} bytes, got ${rgb.length}`);
  const cls = new Int8Array(SIZE * SIZE);
  for (let i = 0; i < SIZE * SIZE; i++) cls[i] = classifyPixel(rgb[3 * i]!, rgb[3 * i + 1]!, rgb[3 * i + 2]!);
  const out: ReadScene = [];
  for (let cell = 0; cell < CELLS; cell++) {
    const x0 = CELL * (cell % GRID), y0 = CELL * Math.floor(cell / GRID);
    const counts = new Array<number>(COLOURS.length).fill(0);
    for (let y = 0; y < CELL; y++) for (let x = 0; x < CELL; x++) {
      const c = cls[(y0 + y) * SIZE + x0 + x]!;
      if (c >= 0) counts[c]!++;
    }
    const ci = counts.indexOf(Math.max(...counts));
    if (counts[ci]! < MIN_PIXELS) {
      out.push(null);
      continue;
    }
    let bestShape: Shape | undefined, bestIou = -1;
    for (const s of SHAPES) {
      const t = TEMPLATES[s];
      let inter = 0, union = 0;
      for (let y = 0; y < CELL; y++) for (let x = 0; x < CELL; x++) {
        const m = cls[(y0 + y) * SIZE + x0 + x] === ci ? 1 : 0;
        const k = t[y * CELL + x]!;
        inter += m & k;
        union += m | k;
      }
      const iou = inter / union;
      if (iou > bestIou) (bestIou = iou), (bestShape = s);
    }
    const colour = COLOURS[ci]!;
    out.push(bestIou >= MIN_IOU ? { colour, shape: bestShape! } : { colour, shape: 'blob' });
  }
  return out;
}

export interface Adherence {
  /** prompt objects the sample has in the right cell with the right colour and shape */
  correct: number;
  /** objects in the prompt */
  wanted: number;
  /** objects (or blobs) in cells the prompt leaves empty */
  extra: number;
  /** correct / (wanted + extra) */
  score: number;
}

/** Prompt adherence of one sample: correct objects / (objects in the prompt + extra objects in cells the prompt leaves empty). */
export function adherence(prompt: Scene, sample: ReadScene): Adherence {
  if (prompt.length !== CELLS || sample.length !== CELLS) throw new ScoreError(`scenes have ${CELLS} cells`);
  let correct = 0, wanted = 0, extra = 0;
  for (let i = 0; i < CELLS; i++) {
    const p = prompt[i], s = sample[i];
    if (p) {
      wanted++;
      if (s && s.shape !== 'blob' && sameObject(p, s as SceneObject)) correct++;
    } else if (s) extra++;
  }
  const denom = wanted + extra;
  return { correct, wanted, extra, score: denom === 0 ? 1 : correct / denom };
}

/** Edit success: the sample's scene equals the expected target scene exactly (no blobs, nothing extra). */
export function editSuccess(target: Scene, sample: ReadScene): boolean {
  return target.every((t, i) => {
    const s = sample[i];
    if (!t) return !s;
    return !!s && s.shape !== 'blob' && sameObject(t, s as SceneObject);
  });
}

/** Mean of per-sample scores, as a percentage with one decimal (the demo's printed figure). */
export function percent(scores: readonly number[]): string {
  if (scores.length === 0) return 'n/a';
  return `${((100 * scores.reduce((a, b) => a + b, 0)) / scores.length).toFixed(1)}%`;
}
