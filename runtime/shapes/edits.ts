// Edit instructions of the shapes world and the scene each one must produce. Canonical forms:
//   make the <colour> <shape> <colour>     recolour
//   move the <colour> <shape> to the <position>
//   remove the <colour> <shape>
//   add a <colour> <shape> at the <position>
// An edit names an object by colour and shape, so it is only valid when exactly one object of the
// source matches; the target keeps 1..3 objects in distinct cells (the world's own rule).
import type { Rng } from '../../src/ir/init.ts';
import { isHeldOut, pairs } from './scenes.ts';
import { CELLS, COLOURS, objectsOf, POSITIONS, SceneError, SHAPES, type Colour, type Scene, type SceneObject, type Shape } from './world.ts';

export type Edit =
  | { kind: 'recolour'; colour: Colour; shape: Shape; to: Colour }
  | { kind: 'move'; colour: Colour; shape: Shape; to: number }
  | { kind: 'remove'; colour: Colour; shape: Shape }
  | { kind: 'add'; colour: Colour; shape: Shape; at: number };

export const EDIT_KINDS = ['recolour', 'move', 'remove', 'add'] as const;

export function instruction(e: Edit): string {
  switch (e.kind) {
    case 'recolour':
      return `make the ${e.colour} ${e.shape} ${e.to}`;
    case 'move':
      return `move the ${e.colour} ${e.shape} to the ${POSITIONS[e.to]}`;
    case 'remove':
      return `remove the ${e.colour} ${e.shape}`;
    case 'add':
      return `add a ${e.colour} ${e.shape} at the ${POSITIONS[e.at]}`;
  }
}

const C = COLOURS.join('|'), S = SHAPES.join('|'), P = [...POSITIONS].sort((a, b) => b.length - a.length).join('|');
const FORMS: [RegExp, (m: RegExpExecArray) => Edit][] = [
  [new RegExp(`^make the (${C}) (${S}) (${C})$`), (m) => ({ kind: 'recolour', colour: m[1] as Colour, shape: m[2] as Shape, to: m[3] as Colour })],
  [new RegExp(`^move the (${C}) (${S}) to the (${P})$`), (m) => ({ kind: 'move', colour: m[1] as Colour, shape: m[2] as Shape, to: POSITIONS.indexOf(m[3] as never) })],
  [new RegExp(`^remove the (${C}) (${S})$`), (m) => ({ kind: 'remove', colour: m[1] as Colour, shape: m[2] as Shape })],
  [new RegExp(`^add a (${C}) (${S}) at the (${P})$`), (m) => ({ kind: 'add', colour: m[1] as Colour, shape: m[2] as Shape, at: POSITIONS.indexOf(m[3] as never) })],
];

/** Parse a canonical instruction; undefined when it is not one. */
export function parseInstruction(text: string): Edit | undefined {
  const t = text.trim();
  for (const [re, make] of FORMS) {
    const m = re.exec(t);
    if (m) return make(m);
  }
  return undefined;
}

function findUnique(scene: Scene, colour: Colour, shape: Shape): number {
  const hits = objectsOf(scene).filter((o) => o.colour === colour && o.shape === shape);
  if (hits.length !== 1) throw new SceneError(`'${colour} ${shape}' names ${hits.length} objects of the scene (an edit needs exactly one)`);
  return hits[0]!.cell;
}

/** The scene the edit must produce; throws SceneError when the edit does not apply. */
export function applyEdit(scene: Scene, e: Edit): Scene {
  const out = scene.map((o) => (o ? { ...o } : null));
  const n = objectsOf(scene).length;
  switch (e.kind) {
    case 'recolour': {
      const c = findUnique(scene, e.colour, e.shape);
      if (e.to === e.colour) throw new SceneError(`the ${e.colour} ${e.shape} is already ${e.to}`);
      out[c] = { colour: e.to, shape: e.shape };
      break;
    }
    case 'move': {
      const c = findUnique(scene, e.colour, e.shape);
      if (!Number.isInteger(e.to) || e.to < 0 || e.to >= CELLS) throw new SceneError(`cell ${e.to} is not in 0..${CELLS - 1}`);
      if (scene[e.to]) throw new SceneError(`the ${POSITIONS[e.to]} is not empty`);
      out[e.to] = out[c]!;
      out[c] = null;
      break;
    }
    case 'remove': {
      const c = findUnique(scene, e.colour, e.shape);
      if (n < 2) throw new SceneError('removing the only object leaves an empty image');
      out[c] = null;
      break;
    }
    case 'add': {
      if (!Number.isInteger(e.at) || e.at < 0 || e.at >= CELLS) throw new SceneError(`cell ${e.at} is not in 0..${CELLS - 1}`);
      if (scene[e.at]) throw new SceneError(`the ${POSITIONS[e.at]} is not empty`);
      if (n >= 3) throw new SceneError('a scene holds at most 3 objects');
      if (objectsOf(scene).some((o) => o.colour === e.colour && o.shape === e.shape)) throw new SceneError(`the scene already has a ${e.colour} ${e.shape}`);
      out[e.at] = { colour: e.colour, shape: e.shape };
      break;
    }
  }
  return out;
}

export interface RandomEditOptions {
  /** false: neither the edit nor its target may involve a held-out pair (DiT training) */
  allowHeldOut?: boolean;
}

/**
 * A random valid edit of `scene` (kind uniform among those that apply), or undefined when none
 * applies. Every candidate is checked with applyEdit.
 */
export function randomEdit(scene: Scene, rng: Rng, opts: RandomEditOptions = {}): { edit: Edit; target: Scene } | undefined {
  const allow = opts.allowHeldOut ?? true;
  const objs = objectsOf(scene);
  const unique = objs.filter((o) => objs.filter((p) => p.colour === o.colour && p.shape === o.shape).length === 1);
  const empty = Array.from({ length: CELLS }, (_, i) => i).filter((i) => !scene[i]);
  const ok = (o: SceneObject) => allow || !isHeldOut(o);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.uniform() * xs.length)]!;
  const kinds = EDIT_KINDS.filter((k) => (k === 'add' ? objs.length < 3 && empty.length > 0 : unique.length > 0 && (k !== 'remove' || objs.length >= 2) && (k !== 'move' || empty.length > 0)));
  for (let tries = 0; tries < 20 && kinds.length; tries++) {
    const kind = pick(kinds);
    let edit: Edit;
    if (kind === 'add') {
      const o = pick(pairs(allow ? 'all' : 'trainable'));
      edit = { kind, colour: o.colour, shape: o.shape, at: pick(empty) };
    } else {
      const o = pick(unique);
      if (kind === 'recolour') edit = { kind, colour: o.colour, shape: o.shape, to: pick(COLOURS.filter((c) => c !== o.colour)) };
      else if (kind === 'move') edit = { kind, colour: o.colour, shape: o.shape, to: pick(empty) };
      else edit = { kind, colour: o.colour, shape: o.shape };
    }
    let target: Scene;
    try {
      target = applyEdit(scene, edit);
    } catch {
      continue;
    }
    if (!allow && (target.some((o) => o && !ok(o)) || scene.some((o) => o && !ok(o)))) continue;
    return { edit, target };
  }
  return undefined;
}
