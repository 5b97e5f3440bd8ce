// Phase-1 prototype of the demo's measurement (clearly a dev script: issue 10's sampler and the
// VLM runtime replace the loops here). Compiles the shapes UniFusion (taps as inputs) with trained
// params, builds the conditions of the evaluation sets with the frozen VLM encoder, samples with
// plain Euler + CFG (conditional and unconditional in one batched call), reads every sample back
// with the scorer, and writes PNG grids.
//   held-out t2i   canonical prompts of scenes not in the training rows (a third with held-out pairs)
//   named          the 5 named scenes, several seeds, with rewriting and without
//   edits          edits of held-out scenes (source image + instruction in the VLM prompt)
//   recon          reconstructions (image alone in the VLM prompt)
// Rewriting uses the VLM's own greedy answers (full-recompute loop of dev/vlm-eval.ts) with
// --vlm DIR, else the canonical answer (teacher forcing: what a perfect VLM would write).
//
//   npx tsx examples/shapes/dev/sample-eval.ts --params P.safetensors --encoder ENC [--vlm VLM] [--cache C] [--n 200] [--steps 10] [--guidance 3] [--out DIR]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { compileGraph } from '../../../src/compiler.ts';
import { trace } from '../../../src/dsl/index.ts';
import { Rng } from '../../../src/ir/init.ts';
import { readSafetensors } from '../../../src/io/safetensors.ts';
import { encodeModel } from '../../../codegen/onnx/proto.ts';
import { Session } from '../../../runtime/session.ts';
import { uniFusionForward } from '../../../graphs/unifusion.ts';
import { caption } from '../../../runtime/shapes/captions.ts';
import { evalScenes } from '../../../runtime/shapes/data.ts';
import { instruction, randomEdit } from '../../../runtime/shapes/edits.ts';
import { grid, encodePng } from '../../../runtime/shapes/png.ts';
import { REWRITE_SYSTEM_PROMPT, userContent } from '../../../runtime/shapes/prompts.ts';
import { hasHeldOut, NAMED_SCENES, sceneKey } from '../../../runtime/shapes/scenes.ts';
import { adherence, editSuccess, readScene } from '../../../runtime/shapes/scorer.ts';
import { render, SIZE, type Scene } from '../../../runtime/shapes/world.ts';
import type { VlmRow } from '../../../runtime/shapes/data.ts';
import type { CacheRow } from '../build-cache.ts';
import { conditionBatch, EMPTY_CONDITION, encodeConditions, fromLatent, shapesUniFusionConfig, type ConditionRequest, type PackedCondition } from '../unifusion.ts';
import { greedy, loadVlmSession } from './vlm-eval.ts';

const { values: a } = parseArgs({
  options: {
    params: { type: 'string' },
    encoder: { type: 'string', default: 'out/shapes-vlm-enc' },
    vlm: { type: 'string' },
    cache: { type: 'string', default: 'out/shapes-cache' },
    n: { type: 'string', default: '200' },
    edits: { type: 'string', default: '100' },
    recon: { type: 'string', default: '50' },
    seeds: { type: 'string', default: '4' },
    steps: { type: 'string', default: '10' },
    guidance: { type: 'string', default: '3' },
    shift: { type: 'string', default: '1' },
    dit: { type: 'string', default: '{}' },
    out: { type: 'string', default: 'out/shapes-eval' },
  },
});
if (!a.params) throw new Error('--params is required');
const N = Number(a.n), steps = Number(a.steps), g = Number(a.guidance), shift = Number(a.shift);
const cfg = shapesUniFusionConfig(JSON.parse(a.dit!));
const t0 = performance.now();
const log = (s: string) => process.stdout.write(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${s}\n`);

// --- evaluation sets
const trainKeys = new Set<string>();
if (fs.existsSync(path.join(a.cache!, 'rows.jsonl')))
  for (const l of fs.readFileSync(path.join(a.cache!, 'rows.jsonl'), 'utf8').trim().split('\n')) {
    const r = JSON.parse(l) as CacheRow;
    if (r.task === 't2i') trainKeys.add(sceneKey(r.target));
  }
interface Item {
  cat: string;
  req: Omit<ConditionRequest, 'answer'> & { want: string };
  target: Scene;
  seed: number;
}
const items: Item[] = [];
for (const s of evalScenes(N, 7, trainKeys)) items.push({ cat: hasHeldOut(s) ? 't2i held-out pairs' : 't2i', req: { prompt: caption(s), images: [], mode: 'rewrite', want: caption(s) }, target: s, seed: items.length });
const seeds = Number(a.seeds);
for (const [name, s] of Object.entries(NAMED_SCENES))
  for (let k = 0; k < seeds; k++) {
    items.push({ cat: 'named, rewrite', req: { prompt: name, images: [], mode: 'rewrite', want: caption(s) }, target: s, seed: 1000 + k });
    items.push({ cat: 'named, no rewrite', req: { prompt: name, images: [], mode: 'no-rewrite', want: caption(s) }, target: s, seed: 1000 + k });
  }
const er = new Rng(8, 'eval-edits');
for (const s of evalScenes(4 * Number(a.edits), 9, trainKeys)) {
  if (items.filter((i) => i.cat === 'edit').length >= Number(a.edits)) break;
  const e = randomEdit(s, er);
  if (e) items.push({ cat: 'edit', req: { prompt: instruction(e.edit), images: [s], mode: 'rewrite', want: caption(e.target) }, target: e.target, seed: 2000 + items.length });
}
for (const s of evalScenes(Number(a.recon), 10, trainKeys)) items.push({ cat: 'recon', req: { images: [s], mode: 'rewrite', want: caption(s) }, target: s, seed: 3000 + items.length });
log(`${items.length} evaluation items (${trainKeys.size} training scenes excluded)`);

// --- rewriting: the VLM's greedy answers or teacher forcing
const answers = items.map((it) => it.req.want);
if (a.vlm) {
  const vlm = await loadVlmSession(a.vlm);
  const idx = items.flatMap((it, i) => (it.req.mode === 'rewrite' ? [i] : []));
  const rows: VlmRow[] = idx.map((i) => ({ task: 'rewrite', messages: [{ role: 'system', content: REWRITE_SYSTEM_PROMPT }, { role: 'user', content: userContent(items[i]!.req.prompt, items[i]!.req.images.length) }], images: items[i]!.req.images, answer: '' }));
  for (let s = 0; s < rows.length; s += 32) {
    const got = await greedy(vlm, rows.slice(s, s + 32));
    got.forEach((txt, j) => (answers[idx[s + j]!] = txt));
  }
  await vlm.release();
  const right = idx.filter((i) => answers[i] === items[i]!.req.want).length;
  log(`VLM greedy rewrites: ${right}/${idx.length} equal the canonical target caption`);
}
const encoder = await Session.load(path.join(a.encoder!, 'internvl-encoder.onnx'));
const conds = await encodeConditions(encoder, items.map((it, i) => ({ ...it.req, answer: answers[i] })));
await encoder.release();
log('conditions encoded');

// --- the model
const { tensors: params } = readSafetensors(a.params);
const graph = trace('shapes_unifusion', () => ({ velocity: uniFusionForward(cfg).velocity }), { seed: 5 });
const session = await Session.load(encodeModel(compileGraph(graph, { paramValues: params, weights: 'embed' }).emitted.model));

// --- Euler + CFG, batched
const n = 3 * SIZE * SIZE;
const sigmas = Array.from({ length: steps + 1 }, (_, i) => {
  const s = 1 - i / steps;
  return (shift * s) / (1 + (shift - 1) * s);
});
async function sample(cs: PackedCondition[], seedsOf: number[]): Promise<Float32Array> {
  const B = cs.length;
  const x = new Float32Array(B * n);
  seedsOf.forEach((sd, b) => {
    const r = new Rng(sd, 'shapes-sample-noise');
    for (let i = 0; i < n; i++) x[b * n + i] = r.normal();
  });
  const cb = conditionBatch([...cs, ...cs.map(() => EMPTY_CONDITION)]);
  for (let i = 0; i < steps; i++) {
    const lat = new Float32Array(2 * B * n);
    lat.set(x), lat.set(x, B * n);
    const out = await session.run({ ...cb, latents: { dtype: 'f32', shape: [2 * B, 3, SIZE, SIZE], data: lat }, timestep: { dtype: 'f32', shape: [2 * B], data: new Float32Array(2 * B).fill(sigmas[i]!) } });
    const v = out.velocity!.data as Float32Array;
    const dt = sigmas[i + 1]! - sigmas[i]!;
    for (let j = 0; j < B * n; j++) {
      const c = v[j]!, u = v[B * n + j]!;
      x[j] += dt * (u + g * (c - u));
    }
  }
  return x;
}
const imgs: Uint8Array[] = [];
const BS = 32;
for (let s = 0; s < items.length; s += BS) {
  const x = await sample(conds.slice(s, s + BS), items.slice(s, s + BS).map((it) => it.seed));
  for (let b = 0; b < Math.min(BS, items.length - s); b++) imgs.push(fromLatent(x, b * n));
}
await session.release();
log(`sampled ${items.length} images (${steps} Euler steps, CFG ${g}, batch ${BS} x 2)`);

// --- scores
const by = new Map<string, number[]>();
items.forEach((it, i) => {
  const r = readScene(imgs[i]!);
  const score = it.cat === 'edit' ? (editSuccess(it.target, r) ? 1 : 0) : adherence(it.target, r).score;
  (by.get(it.cat) ?? by.set(it.cat, []).get(it.cat)!).push(score);
});
fs.mkdirSync(a.out!, { recursive: true });
for (const cat of by.keys()) {
  const idx = items.flatMap((it, i) => (it.cat === cat ? [i] : [])).slice(0, 64);
  const pics = idx.flatMap((i) => [{ width: SIZE, height: SIZE, data: items[i]!.req.images[0] ? render(items[i]!.req.images[0]!) : render(items[i]!.target) }, { width: SIZE, height: SIZE, data: imgs[i]! }]);
  fs.writeFileSync(path.join(a.out!, `${cat.replace(/[^a-z0-9]+/g, '-')}.png`), await encodePng(grid(pics, 16)));
}
const all = items.map((it, i) => ({ cat: it.cat, prompt: it.req.prompt, answer: answers[i], target: caption(it.target), read: readScene(imgs[i]!) }));
fs.writeFileSync(path.join(a.out!, 'items.json'), JSON.stringify(all, null, 1));
const pct = (xs: number[]) => `${((100 * xs.reduce((p, q) => p + q, 0)) / xs.length).toFixed(1)}%`;
for (const [cat, xs] of by) log(`${cat}: ${pct(xs)} (${xs.length})`);
const heldout = [...(by.get('t2i') ?? []), ...(by.get('t2i held-out pairs') ?? [])];
process.stdout.write(`prompt adherence: ${pct(heldout)}\n`);
