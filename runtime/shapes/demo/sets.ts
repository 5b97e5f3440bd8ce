// The demo's evaluation sets: what `npm start` samples and scores, drawn from fixed seeds so every
// run (and every machine) measures the same prompts.
//   t2i        canonical captions of random scenes that no training row had (about a third with a
//              held-out pair: purple triangle, yellow square, white circle)
//   named      the 5 named scenes, several seeds, with VERIFI rewriting and without
//   edit       an edit of a held-out scene: the source image in the VLM prompt + the instruction
//   recon      the image alone in the VLM prompt
import { caption } from '../captions.ts';
import { ditRows, evalScenes } from '../data.ts';
import { instruction, randomEdit } from '../edits.ts';
import { hasHeldOut, NAMED_SCENES, sceneKey } from '../scenes.ts';
import type { Scene } from '../world.ts';
import { Rng } from '../../../src/ir/init.ts';

export const CATEGORIES = ['t2i', 't2i held-out pairs', 'named, rewrite', 'named, no rewrite', 'edit', 'recon'] as const;
export type Category = (typeof CATEGORIES)[number];

export interface EvalItem {
  cat: Category;
  /** the user's text ('' for reconstruction) */
  prompt: string;
  /** the image in the VLM prompt (edits, reconstruction) */
  source?: Scene;
  rewrite: boolean;
  /** the scene the sample should show */
  target: Scene;
  /** the named scene's name */
  name?: string;
}

export interface SetSizes {
  /** held-out text-to-image prompts (>= 200 in the demo) */
  t2i: number;
  /** seeds per named scene, each with and without rewriting */
  namedSeeds: number;
  edits: number;
  recon: number;
}

/** The demo's set sizes (`unifusion demo` defaults: --n, --edits, --recon, --seeds). */
export const DEMO_SIZES: Readonly<SetSizes> = { t2i: 200, edits: 100, recon: 50, namedSeeds: 4 };

/** Which training rows the DiT saw (the recipe's counts and seed): their scenes are excluded. */
export interface TrainRows {
  t2i: number;
  seed: number;
}

export function trainingSceneKeys(rows: TrainRows): Set<string> {
  return new Set(ditRows(rows.t2i, rows.seed).map((r) => sceneKey(r.scene)));
}

/**
 * The demo's items. `seedBase` > 0 draws another set from other seeds (a validation set for dev
 * sweeps, so that sampler settings are not chosen on the demo's own prompts; give the demo's scenes
 * in `exclude` to keep the sets apart).
 */
export function evalItems(sizes: SetSizes, exclude: ReadonlySet<string>, seedBase = 0): EvalItem[] {
  const items: EvalItem[] = [];
  for (const s of evalScenes(sizes.t2i, seedBase + 7, exclude)) items.push({ cat: hasHeldOut(s) ? 't2i held-out pairs' : 't2i', prompt: caption(s), rewrite: true, target: s });
  for (const [name, s] of Object.entries(NAMED_SCENES))
    for (let k = 0; k < sizes.namedSeeds; k++) {
      items.push({ cat: 'named, rewrite', prompt: name, rewrite: true, target: s, name });
      items.push({ cat: 'named, no rewrite', prompt: name, rewrite: false, target: s, name });
    }
  const er = new Rng(seedBase + 8, 'eval-edits');
  let edits = 0;
  for (const s of evalScenes(4 * sizes.edits + 8, seedBase + 9, exclude)) {
    if (edits >= sizes.edits) break;
    const e = randomEdit(s, er);
    if (!e) continue;
    items.push({ cat: 'edit', prompt: instruction(e.edit), source: s, rewrite: true, target: e.target });
    edits++;
  }
  for (const s of evalScenes(sizes.recon, seedBase + 10, exclude)) items.push({ cat: 'recon', prompt: '', source: s, rewrite: true, target: s });
  return items;
}

/** The scene keys of the items' targets and source images. */
export function itemScenes(items: readonly EvalItem[]): string[] {
  return items.flatMap((it) => [it.target, ...(it.source ? [it.source] : [])].map(sceneKey));
}

/**
 * A validation set for dev sweeps: the demo's items drawn from other seeds (seedBase), apart from the
 * training scenes and from every scene of the demo's own set, so that settings chosen on it are not
 * fitted to the prompts the demo reports.
 */
export function validationItems(sizes: SetSizes, trained: ReadonlySet<string>, seedBase = 100): EvalItem[] {
  return evalItems(sizes, new Set([...trained, ...itemScenes(evalItems(DEMO_SIZES, trained))]), seedBase);
}
