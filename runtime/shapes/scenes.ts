// Which scenes exist for whom: random scenes (seeded), the three held-out (colour, shape) pairs
// that no DiT training image or caption may contain (compositional generalisation is measured on
// them), and the five named scenes that only the VLM's rewriting data knows.
import type { Rng } from '../../src/ir/init.ts';
import { CELLS, COLOURS, emptyScene, objectsOf, sceneOf, SHAPES, type Colour, type Scene, type SceneObject, type Shape } from './world.ts';

export const HELD_OUT: readonly SceneObject[] = [
  { colour: 'purple', shape: 'triangle' },
  { colour: 'yellow', shape: 'square' },
  { colour: 'white', shape: 'circle' },
];

export function isHeldOut(o: SceneObject | null | undefined): boolean {
  return !!o && HELD_OUT.some((h) => h.colour === o.colour && h.shape === o.shape);
}

export function hasHeldOut(scene: Scene): boolean {
  return scene.some(isHeldOut);
}

/** Every (colour, shape) pair; `trainable` leaves the held-out ones out. */
export function pairs(which: 'all' | 'trainable' | 'held-out' = 'all'): SceneObject[] {
  const all = COLOURS.flatMap((colour) => SHAPES.map((shape) => ({ colour, shape })));
  return which === 'all' ? all : all.filter((o) => isHeldOut(o) === (which === 'held-out'));
}

export interface RandomSceneOptions {
  /** 'exclude': no held-out pair (DiT training); 'require': at least one; 'any' (default) */
  heldOut?: 'exclude' | 'require' | 'any';
  minObjects?: number;
  maxObjects?: number;
}

/** 1..3 objects (by default) in distinct random cells, colours and shapes uniform. */
export function randomScene(rng: Rng, opts: RandomSceneOptions = {}): Scene {
  const lo = opts.minObjects ?? 1, hi = opts.maxObjects ?? 3;
  const mode = opts.heldOut ?? 'any';
  const n = lo + Math.floor(rng.uniform() * (hi - lo + 1));
  const cells = Array.from({ length: CELLS }, (_, i) => i);
  for (let i = cells.length - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [cells[i], cells[j]] = [cells[j]!, cells[i]!];
  }
  const choices = pairs(mode === 'exclude' ? 'trainable' : 'all');
  const s = emptyScene();
  for (let k = 0; k < n; k++) s[cells[k]!] = { ...choices[Math.floor(rng.uniform() * choices.length)]! };
  if (mode === 'require' && !hasHeldOut(s)) {
    const held = pairs('held-out');
    s[cells[Math.floor(rng.uniform() * n)]!] = { ...held[Math.floor(rng.uniform() * held.length)]! };
  }
  return s;
}

const obj = (colour: Colour, shape: Shape, cell: number) => ({ colour, shape, cell });

/** The named scenes (VLM rewriting data only, never in DiT captions). */
export const NAMED_SCENES: Readonly<Record<string, Scene>> = {
  'a traffic light': sceneOf([obj('red', 'circle', 1), obj('yellow', 'circle', 4), obj('green', 'circle', 7)]),
  'a christmas tree': sceneOf([obj('green', 'triangle', 1), obj('green', 'triangle', 4), obj('red', 'square', 7)]),
  'the blue diagonal': sceneOf([obj('blue', 'square', 0), obj('blue', 'square', 4), obj('blue', 'square', 8)]),
  'a pyramid row': sceneOf([obj('yellow', 'triangle', 6), obj('yellow', 'triangle', 7), obj('yellow', 'triangle', 8)]),
  'a lonely moon': sceneOf([obj('yellow', 'circle', 2)]),
};

/** A stable key of a scene (for de-duplication and held-out-scene checks). */
export function sceneKey(scene: Scene): string {
  return objectsOf(scene).map((o) => `${o.cell}:${o.colour}:${o.shape}`).join('|');
}
