// The shapes world of the demo (issue 11): 48 x 48 RGB images on black, a 3 x 3 grid of 16-px
// cells, at most one flat-coloured circle, square or triangle per cell. Fixed here once, so that
// rendering (training data), the scorer and the captions all agree on the same geometry.
//
// Cell (row r, col c) has centre (16c + 8, 16r + 8), x right, y down. Pixel (x, y) belongs to a
// shape when its centre (px, py) = (x + 0.5, y + 0.5) satisfies
//   circle    (px - cx)^2 + (py - cy)^2 <= 36
//   square    |px - cx| <= 6 and |py - cy| <= 6
//   triangle  py <= cy + 6 and |px - cx| <= (py - (cy - 6)) / 2      (pointing up)
// A scene is the 9 cells in reading order (index 3r + c), each empty (null) or an object.

export const SIZE = 48;
export const CELL = 16;
export const GRID = 3;
export const CELLS = GRID * GRID;

export const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'white'] as const;
export type Colour = (typeof COLOURS)[number];

export const RGB: Record<Colour, readonly [number, number, number]> = {
  red: [220, 40, 40],
  green: [40, 180, 60],
  blue: [40, 80, 220],
  yellow: [230, 210, 40],
  purple: [150, 60, 200],
  white: [235, 235, 235],
};

export const SHAPES = ['circle', 'square', 'triangle'] as const;
export type Shape = (typeof SHAPES)[number];

/** Position names by cell index 3r + c (reading order). */
export const POSITIONS = ['top left', 'top', 'top right', 'left', 'center', 'right', 'bottom left', 'bottom', 'bottom right'] as const;
export type Position = (typeof POSITIONS)[number];

export interface SceneObject {
  colour: Colour;
  shape: Shape;
}

/** 9 cells in reading order; null = empty. */
export type Scene = (SceneObject | null)[];

export interface PlacedObject extends SceneObject {
  cell: number;
}

export class SceneError extends Error {
  override name = 'SceneError';
}

export function emptyScene(): Scene {
  return Array.from({ length: CELLS }, () => null);
}

/** A scene from placed objects (cells must be distinct and in 0..8). */
export function sceneOf(objects: readonly PlacedObject[]): Scene {
  const s = emptyScene();
  for (const o of objects) {
    if (!Number.isInteger(o.cell) || o.cell < 0 || o.cell >= CELLS) throw new SceneError(`cell ${o.cell} is not in 0..${CELLS - 1}`);
    if (s[o.cell]) throw new SceneError(`two objects in cell ${o.cell} (${POSITIONS[o.cell]})`);
    if (!COLOURS.includes(o.colour)) throw new SceneError(`unknown colour '${o.colour}'`);
    if (!SHAPES.includes(o.shape)) throw new SceneError(`unknown shape '${o.shape}'`);
    s[o.cell] = { colour: o.colour, shape: o.shape };
  }
  return s;
}

/** The objects of a scene in reading order. */
export function objectsOf(scene: Scene): PlacedObject[] {
  const out: PlacedObject[] = [];
  scene.forEach((o, cell) => {
    if (o) out.push({ ...o, cell });
  });
  return out;
}

export function sameObject(a: SceneObject | null | undefined, b: SceneObject | null | undefined): boolean {
  return !a || !b ? !a && !b : a.colour === b.colour && a.shape === b.shape;
}

export function sameScene(a: Scene, b: Scene): boolean {
  return a.length === b.length && a.every((o, i) => sameObject(o, b[i]));
}

export function cellCentre(cell: number): { cx: number; cy: number } {
  return { cx: CELL * (cell % GRID) + CELL / 2, cy: CELL * Math.floor(cell / GRID) + CELL / 2 };
}

/** Whether the pixel centred at (px, py) lies in `shape` centred at (cx, cy). */
export function inShape(shape: Shape, px: number, py: number, cx: number, cy: number): boolean {
  const dx = px - cx, dy = py - cy;
  switch (shape) {
    case 'circle':
      return dx * dx + dy * dy <= 36;
    case 'square':
      return Math.abs(dx) <= 6 && Math.abs(dy) <= 6;
    case 'triangle':
      return py <= cy + 6 && Math.abs(dx) <= (py - (cy - 6)) / 2;
  }
}

/** 48 x 48 RGB, row-major, interleaved (what runtime/tiling.ts and the PNG writer take). */
export function render(scene: Scene): Uint8Array {
  if (scene.length !== CELLS) throw new SceneError(`a scene has ${CELLS} cells, got ${scene.length}`);
  const img = new Uint8Array(SIZE * SIZE * 3);
  scene.forEach((o, cell) => {
    if (!o) return;
    const { cx, cy } = cellCentre(cell);
    const rgb = RGB[o.colour];
    const x0 = cx - CELL / 2, y0 = cy - CELL / 2;
    for (let y = y0; y < y0 + CELL; y++)
      for (let x = x0; x < x0 + CELL; x++)
        if (inShape(o.shape, x + 0.5, y + 0.5, cx, cy)) img.set(rgb, (y * SIZE + x) * 3);
  });
  return img;
}

/** The shape's pixel mask inside one 16 x 16 cell (row-major, CELL * CELL). */
export function shapeMask(shape: Shape): Uint8Array {
  const m = new Uint8Array(CELL * CELL);
  const c = CELL / 2;
  for (let y = 0; y < CELL; y++) for (let x = 0; x < CELL; x++) m[y * CELL + x] = inShape(shape, x + 0.5, y + 0.5, c, c) ? 1 : 0;
  return m;
}
