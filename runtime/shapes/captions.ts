// Captions of shapes-world scenes: the canonical form (what the VLM rewrites every prompt into and
// what the scorer's prompts are written in), its strict parser, and seeded paraphrases (training
// variety for the VLM's rewriting task and the DiT's prompts).
//
// Canonical: objects in reading order, `a <colour> <shape> at the <position>`, joined by ", " and
// the last by " and ":  "a red circle at the top left, a blue square at the center and a yellow
// triangle at the bottom right".
import type { Rng } from '../../src/ir/init.ts';
import { COLOURS, objectsOf, POSITIONS, SceneError, sceneOf, SHAPES, type Colour, type PlacedObject, type Scene, type Shape } from './world.ts';

export function joinList(items: readonly string[], sep = ', ', last = ' and '): string {
  if (items.length <= 1) return items.join('');
  return items.slice(0, -1).join(sep) + last + items.at(-1)!;
}

export function objectPhrase(o: PlacedObject): string {
  return `a ${o.colour} ${o.shape} at the ${POSITIONS[o.cell]}`;
}

/** The canonical caption; an empty scene has none (throws). */
export function caption(scene: Scene): string {
  const objs = objectsOf(scene);
  if (objs.length === 0) throw new SceneError('an empty scene has no caption');
  return joinList(objs.map(objectPhrase));
}

const PHRASE = new RegExp(`^a (${COLOURS.join('|')}) (${SHAPES.join('|')}) at the (${[...POSITIONS].sort((a, b) => b.length - a.length).join('|')})$`);

/**
 * Parse a canonical caption back into a scene; undefined when the text is not exactly canonical
 * (wrong order, a repeated cell, other words). parse(caption(s)) equals s for every scene.
 */
export function parseCaption(text: string): Scene | undefined {
  const t = text.trim();
  const m = /^(.*) and (a [a-z ]+)$/.exec(t);
  const parts = m ? [...m[1]!.split(', '), m[2]!] : [t];
  const objs: PlacedObject[] = [];
  for (const p of parts) {
    const pm = PHRASE.exec(p);
    if (!pm) return undefined;
    objs.push({ colour: pm[1] as Colour, shape: pm[2] as Shape, cell: POSITIONS.indexOf(pm[3] as (typeof POSITIONS)[number]) });
  }
  for (let i = 1; i < objs.length; i++) if (objs[i]!.cell <= objs[i - 1]!.cell) return undefined;
  let scene: Scene;
  try {
    scene = sceneOf(objs);
  } catch {
    return undefined;
  }
  return caption(scene) === t ? scene : undefined;
}

// ------------------------------------------------------------------------------ paraphrases

/** Other words for each shape (the canonical word first). */
export const SHAPE_WORDS: Record<Shape, readonly string[]> = {
  circle: ['circle', 'disc', 'dot', 'ball'],
  square: ['square', 'box', 'block'],
  triangle: ['triangle', 'wedge'],
};

/** Other names for each position (the canonical name first). */
export const POSITION_WORDS: readonly (readonly string[])[] = [
  ['top left', 'upper left', 'top left corner'],
  ['top', 'top middle', 'upper middle', 'top center'],
  ['top right', 'upper right', 'top right corner'],
  ['left', 'middle left', 'left side', 'center left'],
  ['center', 'middle', 'centre'],
  ['right', 'middle right', 'right side', 'center right'],
  ['bottom left', 'lower left', 'bottom left corner'],
  ['bottom', 'bottom middle', 'lower middle', 'bottom center'],
  ['bottom right', 'lower right', 'bottom right corner'],
];

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng.uniform() * xs.length)]!;

/** One object in one of several phrasings (`a red box in the upper left`, `red circle top left`, ...). */
function paraphraseObject(o: PlacedObject, rng: Rng, short: boolean): string {
  const shape = pick(rng, SHAPE_WORDS[o.shape]);
  const pos = pick(rng, POSITION_WORDS[o.cell]!);
  if (short) return pick(rng, [`${o.colour} ${shape} ${pos}`, `${o.colour} ${shape} at ${pos}`]);
  const art = pick(rng, ['a', 'one']);
  return pick(rng, [`${art} ${o.colour} ${shape} at the ${pos}`, `${art} ${o.colour} ${shape} in the ${pos}`, `the ${pos} has ${art} ${o.colour} ${shape}`, `${o.colour} ${shape} in the ${pos}`]);
}

/**
 * A seeded paraphrase of the scene's caption: shape and position synonyms, other phrasings,
 * shuffled object order, other joiners, sometimes a lead-in. Never names a colour differently
 * (colours are the one vocabulary every prompt shares). Can equal the canonical caption.
 */
export function paraphrase(scene: Scene, rng: Rng): string {
  const objs = objectsOf(scene);
  if (objs.length === 0) throw new SceneError('an empty scene has no caption');
  const short = rng.uniform() < 0.3;
  const order = objs.slice();
  if (rng.uniform() < 0.5)
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rng.uniform() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
  const phrases = order.map((o) => paraphraseObject(o, rng, short));
  const joined = short ? pick(rng, [phrases.join(', '), joinList(phrases), phrases.join(' and ')]) : pick(rng, [joinList(phrases), phrases.join(', '), phrases.join(' and '), joinList(phrases, ', ', ', and ')]);
  if (short) return joined;
  return pick(rng, ['', '', '', 'an image of ', 'a picture with ', 'draw ', 'show '] as const) + joined;
}

// ------------------------------------------------------------------------------ partial captions

/**
 * A seeded under-specified caption of the scene, in canonical order: each object independently
 * loses its colour (`a triangle at the top left`) or its shape (`a purple one at the top left`)
 * with probability `drop` each (never both). The image still shows the whole scene, so a DiT
 * trained on these rows must draw a cell's colour from the colour word alone and its shape from
 * the shape word alone: attribute-level conditioning, the factorisation that held-out colour /
 * shape pairs need (examples/shapes/NOTES.md, phase 4). Can equal the canonical caption.
 */
export function partialCaption(scene: Scene, rng: Rng, drop = 0.25): string {
  if (!(drop >= 0 && drop <= 0.5)) throw new RangeError(`partialCaption: drop must be in [0, 0.5], got ${drop}`);
  const objs = objectsOf(scene);
  if (objs.length === 0) throw new SceneError('an empty scene has no caption');
  return joinList(
    objs.map((o) => {
      const u = rng.uniform();
      const what = u < drop ? o.shape : u < 2 * drop ? `${o.colour} one` : `${o.colour} ${o.shape}`;
      return `a ${what} at the ${POSITIONS[o.cell]}`;
    }),
  );
}
