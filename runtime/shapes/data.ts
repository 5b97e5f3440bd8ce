// Seeded, deterministic dataset generators of the shapes demo:
//   ditRows    text-to-image rows for the DiT: a scene without held-out pairs, its canonical
//              caption and a prompt (the caption or a paraphrase); never a named scene's name
//   editRows   (source, instruction, target) without held-out pairs anywhere
//   vlmRows    the VLM's pretraining mixture: captioning (image -> caption), language modelling
//              on captions, rewriting (short / paraphrased / canonical prompt -> caption; named
//              scene -> caption; image + edit instruction -> target caption; image alone ->
//              its caption), the rewriting tasks under REWRITE_SYSTEM_PROMPT
//   evalScenes held-out evaluation scenes: none of them in a given set of training scenes
// The same (n, seed) always gives the same rows.
import { Rng } from '../../src/ir/init.ts';
import { caption, paraphrase } from './captions.ts';
import { instruction, randomEdit, type Edit } from './edits.ts';
import { CAPTION_QUESTION, REWRITE_SYSTEM_PROMPT, userContent, type ChatMessage } from './prompts.ts';
import { hasHeldOut, NAMED_SCENES, randomScene, sceneKey, type RandomSceneOptions } from './scenes.ts';
import type { Scene } from './world.ts';

export interface DitRow {
  scene: Scene;
  /** canonical caption */
  caption: string;
  /** what the row is prompted with: the caption or a paraphrase of it */
  prompt: string;
}

export interface EditRow {
  source: Scene;
  edit: Edit;
  instruction: string;
  target: Scene;
  /** canonical caption of the target */
  targetCaption: string;
}

/** DiT text-to-image rows; `paraphrased` is the share of rows prompted with a paraphrase. */
export function ditRows(n: number, seed: number, opts: { paraphrased?: number } = {}): DitRow[] {
  const rng = new Rng(seed, 'shapes-dit-rows');
  const share = opts.paraphrased ?? 0.5;
  return Array.from({ length: n }, () => {
    const scene = randomScene(rng, { heldOut: 'exclude' });
    const c = caption(scene);
    return { scene, caption: c, prompt: rng.uniform() < share ? paraphrase(scene, rng) : c };
  });
}

/** Edit rows (DiT training when allowHeldOut is false, the default). */
export function editRows(n: number, seed: number, opts: { allowHeldOut?: boolean; scenes?: RandomSceneOptions } = {}): EditRow[] {
  const rng = new Rng(seed, 'shapes-edit-rows');
  const allow = opts.allowHeldOut ?? false;
  const out: EditRow[] = [];
  while (out.length < n) {
    const source = randomScene(rng, opts.scenes ?? { heldOut: allow ? 'any' : 'exclude' });
    const r = randomEdit(source, rng, { allowHeldOut: allow });
    if (!r) continue;
    out.push({ source, edit: r.edit, instruction: instruction(r.edit), target: r.target, targetCaption: caption(r.target) });
  }
  return out;
}

export const VLM_TASKS = ['caption', 'lm', 'rewrite', 'rewrite-named', 'rewrite-edit', 'rewrite-image'] as const;
export type VlmTask = (typeof VLM_TASKS)[number];

/** Default VLM task mixture (shares, summing to 1). */
export const VLM_MIX: Record<VlmTask, number> = { caption: 0.25, lm: 0.05, rewrite: 0.3, 'rewrite-named': 0.08, 'rewrite-edit': 0.2, 'rewrite-image': 0.12 };

export interface VlmRow {
  task: VlmTask;
  /** chat messages before the answer (none for 'lm') */
  messages: ChatMessage[];
  /** images of the messages, in order */
  images: Scene[];
  /** the assistant's answer (the text itself for 'lm') */
  answer: string;
}

const NAMED_LEADS = ['', '', 'draw ', 'show ', 'an image of ', 'a picture of '];

function pickTask(rng: Rng, mix: Record<VlmTask, number>): VlmTask {
  let u = rng.uniform() * VLM_TASKS.reduce((a, t) => a + mix[t], 0);
  for (const t of VLM_TASKS) if ((u -= mix[t]) < 0) return t;
  return VLM_TASKS.at(-1)!;
}

/** The VLM's pretraining rows (every pair allowed: the VLM is a general model; held-out pairs are the DiT's). */
export function vlmRows(n: number, seed: number, mix: Record<VlmTask, number> = VLM_MIX): VlmRow[] {
  const rng = new Rng(seed, 'shapes-vlm-rows');
  const names = Object.keys(NAMED_SCENES);
  const sys: ChatMessage = { role: 'system', content: REWRITE_SYSTEM_PROMPT };
  const rows: VlmRow[] = [];
  while (rows.length < n) {
    const task = pickTask(rng, mix);
    const scene = randomScene(rng);
    switch (task) {
      case 'caption':
        rows.push({ task, messages: [{ role: 'user', content: userContent(CAPTION_QUESTION, 1) }], images: [scene], answer: caption(scene) });
        break;
      case 'lm':
        rows.push({ task, messages: [], images: [], answer: rng.uniform() < 0.7 ? caption(scene) : paraphrase(scene, rng) });
        break;
      case 'rewrite': {
        const prompt = rng.uniform() < 0.25 ? caption(scene) : paraphrase(scene, rng);
        rows.push({ task, messages: [sys, { role: 'user', content: userContent(prompt, 0) }], images: [], answer: caption(scene) });
        break;
      }
      case 'rewrite-named': {
        const name = names[Math.floor(rng.uniform() * names.length)]!;
        const lead = NAMED_LEADS[Math.floor(rng.uniform() * NAMED_LEADS.length)]!;
        rows.push({ task, messages: [sys, { role: 'user', content: userContent(lead + name, 0) }], images: [], answer: caption(NAMED_SCENES[name]!) });
        break;
      }
      case 'rewrite-edit': {
        const r = randomEdit(scene, rng);
        if (!r) continue;
        rows.push({ task, messages: [sys, { role: 'user', content: userContent(instruction(r.edit), 1) }], images: [scene], answer: caption(r.target) });
        break;
      }
      case 'rewrite-image':
        rows.push({ task, messages: [sys, { role: 'user', content: userContent(undefined, 1) }], images: [scene], answer: caption(scene) });
        break;
    }
  }
  return rows;
}

/**
 * `n` evaluation scenes that are not among `exclude` (scene keys of the training rows);
 * `heldOutShare` of them contain at least one held-out pair, the rest are drawn with every pair
 * allowed (so some of those contain held-out pairs by chance too).
 */
export function evalScenes(n: number, seed: number, exclude: ReadonlySet<string>, opts: { heldOutShare?: number } = {}): Scene[] {
  const rng = new Rng(seed, 'shapes-eval-scenes');
  const share = opts.heldOutShare ?? 0.34;
  const out: Scene[] = [];
  const seen = new Set<string>();
  while (out.length < n) {
    const s = randomScene(rng, { heldOut: rng.uniform() < share ? 'require' : 'any' });
    const k = sceneKey(s);
    if (exclude.has(k) || seen.has(k)) continue;
    seen.add(k);
    out.push(s);
  }
  return out;
}

export { hasHeldOut, sceneKey };
