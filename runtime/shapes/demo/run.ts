// The shapes demo's measurement on an assembled pipeline, through the public paths only: the
// pipeline's VLM package (runtime/vlm) rewrites and encodes every prompt (source images in the VLM
// prompt for edits and reconstructions), Pipeline.generate samples with CFG against the stored
// dropped condition, and the scorer reads every sample back into a scene.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Pipeline, type GenerateRequest } from '../../pipeline/pipeline.ts';
import { concatConditions, type Condition } from '../../pipeline/condition.ts';
import { progressBar } from '../../sampler/progress.ts';
import { VlmPackage } from '../../vlm/index.ts';
import { caption } from '../captions.ts';
import { REWRITE_SYSTEM_PROMPT } from '../prompts.ts';
import { adherence, editSuccess, readScene, type ReadScene } from '../scorer.ts';
import { render, SIZE } from '../world.ts';
import type { RgbImage } from '../png.ts';
import { CATEGORIES, type Category, type EvalItem } from './sets.ts';

export interface SampleOptions {
  steps?: number;
  guidance?: number;
  /** static shift of the sigma schedule (default: the pipeline's) */
  shift?: number;
  /** ODE solver and CFG renormalisation (default: the pipeline's) */
  sampler?: GenerateRequest['sampler'];
  cfgNorm?: boolean;
  /** images per DiT call (cond + uncond count as one) */
  batch?: number;
  /** prompts per VLM call */
  vlmBatch?: number;
  progress?: boolean | 'auto';
  intraOpThreads?: number;
}

export interface ItemResult {
  item: EvalItem;
  /** what the VLM wrote (rewriting items) */
  rewritten?: string;
  image: RgbImage;
  read: ReadScene;
  /** adherence (edits: 1 when the scene equals the target exactly, else 0) */
  score: number;
}

export interface CategoryScore {
  cat: Category;
  n: number;
  /** mean score, 0..1 */
  mean: number;
  /** rewriting items whose rewrite equals the target's canonical caption */
  rewriteExact?: number;
}

export interface EvalResult {
  results: ItemResult[];
  scores: CategoryScore[];
  /** held-out text-to-image adherence, 0..1 (the printed figure) */
  adherence: number;
  timings: { loadMs: number; conditionMs: number; sampleMs: number };
}

/** Seed of item k's noise: fixed per item, so a subset (the test's) samples the same images. */
const seedOf = (k: number) => 1 + k;

export async function evaluatePipeline(dir: string, items: readonly EvalItem[], o: SampleOptions = {}): Promise<EvalResult> {
  const t0 = performance.now();
  const vlm = await VlmPackage.load(path.join(dir, 'vlm'), { intraOpThreads: o.intraOpThreads });
  const pipe = await Pipeline.load(dir, { encoder: vlm, intraOpThreads: o.intraOpThreads });
  const loadMs = performance.now() - t0;
  try {
    const system = pipe.json.conditioning.systemPrompt ?? REWRITE_SYSTEM_PROMPT;
    // conditions, a VLM batch at a time (rewriting and not rewriting in separate calls)
    const t1 = performance.now();
    const conds: Condition[] = new Array(items.length);
    const rewritten: (string | undefined)[] = new Array(items.length);
    const vb = o.vlmBatch ?? 32;
    const bar = progressBar(items.length, 'VLM rewriting + encoding', o.progress ?? 'auto');
    for (const rw of [true, false]) {
      const idx = items.flatMap((it, i) => (it.rewrite === rw ? [i] : []));
      for (let s = 0; s < idx.length; s += vb) {
        const chunk = idx.slice(s, s + vb);
        const reqs = chunk.map((i) => {
          const it = items[i]!;
          return { prompt: it.prompt, images: it.source ? [{ width: SIZE, height: SIZE, data: render(it.source) }] : undefined };
        });
        const c = await vlm.condition(reqs, { rewrite: rw, systemPrompt: system, maxNewTokens: 64 });
        chunk.forEach((i, j) => {
          rewritten[i] = c.rewritten[j];
          const row: Condition = {};
          for (const [k, t] of Object.entries(c.tensors)) {
            const per = t.data.length / t.shape[0]!;
            row[k] = { dtype: t.dtype, shape: [1, ...t.shape.slice(1)], data: t.data.slice(j * per, (j + 1) * per) } as Condition[string];
          }
          conds[i] = row;
        });
        for (let k = 0; k < chunk.length; k++) bar?.tick();
      }
    }
    bar?.stop();
    const conditionMs = performance.now() - t1;

    // sampling: one generate call per chunk of items, each item its own seed
    const t2 = performance.now();
    const B = o.batch ?? 64;
    const images: RgbImage[] = new Array(items.length);
    const sbar = progressBar(Math.ceil(items.length / B), 'sampling (chunks of ' + B + ')', o.progress ?? 'auto');
    for (let s = 0; s < items.length; s += B) {
      const n = Math.min(B, items.length - s);
      const cond = concatConditions(conds.slice(s, s + n), pipe.seqAxes);
      // generate() seeds image k with seed + k: one call per chunk keeps item k at seedOf(k)
      const r = await pipe.generate({ prompts: items.slice(s, s + n).map((it) => it.prompt), conditions: cond, rewrite: false, seed: seedOf(s), steps: o.steps, guidance: o.guidance, shift: o.shift, sampler: o.sampler, cfgNorm: o.cfgNorm, progress: false });
      r.images.forEach((g, j) => (images[s + j] = { width: g.image.width, height: g.image.height, data: new Uint8Array(g.image.data.buffer, g.image.data.byteOffset, g.image.data.length) }));
      sbar?.tick();
    }
    sbar?.stop();
    const sampleMs = performance.now() - t2;

    const results: ItemResult[] = items.map((item, i) => {
      const read = readScene(images[i]!.data);
      const score = item.cat === 'edit' ? (editSuccess(item.target, read) ? 1 : 0) : adherence(item.target, read).score;
      return { item, rewritten: rewritten[i], image: images[i]!, read, score };
    });
    const scores: CategoryScore[] = [];
    for (const cat of CATEGORIES) {
      const rs = results.filter((r) => r.item.cat === cat);
      if (!rs.length) continue;
      const rw = rs.filter((r) => r.item.rewrite);
      scores.push({
        cat,
        n: rs.length,
        mean: rs.reduce((a, r) => a + r.score, 0) / rs.length,
        ...(rw.length ? { rewriteExact: rw.filter((r) => r.rewritten === caption(r.item.target)).length / rw.length } : {}),
      });
    }
    const held = results.filter((r) => r.item.cat === 't2i' || r.item.cat === 't2i held-out pairs');
    return { results, scores, adherence: held.length ? held.reduce((a, r) => a + r.score, 0) / held.length : NaN, timings: { loadMs, conditionMs, sampleMs } };
  } finally {
    await pipe.close(); // closes the VLM too (the pipeline's encoder)
  }
}

/** Training logs shipped beside a pipeline (metrics.jsonl of the VLM and the DiT runs). */
export function readMetrics(file: string): { step: number; loss: number }[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { step: number; loss: number })
    .map((m) => ({ step: m.step, loss: m.loss }));
}
