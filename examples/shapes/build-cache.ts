// The DiT's feature cache (phase-1 prototype of issue 10's `encode` path): generates the
// text-to-image, editing and reconstruction rows, runs the frozen VLM encoder that `import-hf`
// wrote (hidden_states.0..4 + masks) once over their VLM sequences, and keeps the taps of the
// conditioning tokens, packed.
//   <out>/cache.safetensors   hidden_states.<i> f32 [tokens, 96] (all rows' tokens back to back),
//                             offsets i64 [rows + 1]
//   <out>/rows.jsonl          per row: task, prompt, mode, target scene (the x0 to render)
//
//   npx tsx examples/shapes/build-cache.ts out/shapes-vlm-enc out/shapes-cache [t2i] [edits] [recon] [partial]
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Session } from '../../runtime/session.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { writeOutputDir } from '../../src/io/outdir.ts';
import { ditRows, editRows } from '../../runtime/shapes/data.ts';
import { caption, partialCaption } from '../../runtime/shapes/captions.ts';
import { randomScene } from '../../runtime/shapes/scenes.ts';
import { Rng } from '../../src/ir/init.ts';
import type { Scene } from '../../runtime/shapes/world.ts';
import { encodeConditions, TAPS, VLM_HIDDEN, type ConditionRequest } from './unifusion.ts';

export type CacheTask = 't2i' | 'edit' | 'recon';
export interface CacheRow {
  task: CacheTask;
  mode: ConditionRequest['mode'];
  prompt?: string;
  target: Scene;
}

export interface CacheCounts {
  t2i: number;
  edits: number;
  recon: number;
  /** share of text-to-image rows conditioned without rewriting */
  noRewrite?: number;
  /** share of text-to-image rows whose prompt and answer are a partial caption (runtime/shapes/captions.ts partialCaption; default 0) */
  partial?: number;
  seed?: number;
}

export function cacheRequests(c: CacheCounts): { rows: CacheRow[]; reqs: ConditionRequest[] } {
  const seed = c.seed ?? 21;
  if (c.partial !== undefined && !(c.partial >= 0 && c.partial <= 1)) throw new RangeError(`build-cache: the partial-caption share must be in [0, 1], got ${c.partial}`);
  const rng = new Rng(seed, 'shapes-cache-modes');
  // its own stream, so the other rows stay what they were without partial captions
  const pr = new Rng(seed, 'shapes-cache-partial');
  const rows: CacheRow[] = [];
  const reqs: ConditionRequest[] = [];
  for (const r of ditRows(c.t2i, seed)) {
    const mode = rng.uniform() < (c.noRewrite ?? 0.2) ? 'no-rewrite' : 'rewrite';
    let partial = c.partial && pr.uniform() < c.partial ? partialCaption(r.scene, pr) : undefined;
    if (partial === r.caption) partial = undefined; // nothing dropped: the row keeps its own prompt
    const prompt = partial ?? r.prompt;
    rows.push({ task: 't2i', mode, prompt, target: r.scene });
    reqs.push({ prompt, images: [], answer: partial ?? r.caption, mode });
  }
  for (const e of editRows(c.edits, seed)) {
    rows.push({ task: 'edit', mode: 'rewrite', prompt: e.instruction, target: e.target });
    reqs.push({ prompt: e.instruction, images: [e.source], answer: e.targetCaption, mode: 'rewrite' });
  }
  const rr = new Rng(seed, 'shapes-cache-recon');
  for (let i = 0; i < c.recon; i++) {
    const s = randomScene(rr, { heldOut: 'exclude' });
    rows.push({ task: 'recon', mode: 'rewrite', target: s });
    reqs.push({ images: [s], answer: caption(s), mode: 'rewrite' });
  }
  return { rows, reqs };
}

export async function buildCache(encoderDir: string, out: string, counts: CacheCounts, log: (s: string) => void = () => {}): Promise<void> {
  const { rows, reqs } = cacheRequests(counts);
  const encoder = await Session.load(path.join(encoderDir, 'internvl-encoder.onnx'));
  const t0 = performance.now();
  let conds;
  try {
    conds = await encodeConditions(encoder, reqs, { batch: 64, onBatch: (d) => log(`\rencoded ${d}/${reqs.length}`) });
  } finally {
    await encoder.release();
  }
  log(`\nencoded ${reqs.length} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const total = conds.reduce((a, c) => a + c.n, 0);
  const offsets = new BigInt64Array(conds.length + 1);
  conds.forEach((c, i) => (offsets[i + 1] = offsets[i]! + BigInt(c.n)));
  const tensors = new Map<string, { dtype: 'f32' | 'i64'; shape: number[]; data: Float32Array | BigInt64Array }>();
  TAPS.forEach((k, ti) => {
    const data = new Float32Array(total * VLM_HIDDEN);
    let o = 0;
    for (const c of conds) (data.set(c.taps[ti]!, o), (o += c.taps[ti]!.length));
    tensors.set(`hidden_states.${k}`, { dtype: 'f32', shape: [total, VLM_HIDDEN], data });
  });
  tensors.set('offsets', { dtype: 'i64', shape: [conds.length + 1], data: offsets });
  await writeOutputDir({ out, command: 'shapes build-cache', inputs: [{ path: encoderDir, what: '<encoder>' }] }, async (stage) => {
    writeSafetensors(path.join(stage, 'cache.safetensors'), tensors);
    await fs.writeFile(path.join(stage, 'rows.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [enc, out, t2i = '8000', edits = '2000', recon = '600', partial = '0'] = process.argv.slice(2);
  if (!enc || !out) {
    process.stderr.write('usage: tsx examples/shapes/build-cache.ts ENCODER_DIR OUT_DIR [t2i] [edits] [recon] [partial share]\n');
    process.exit(2);
  }
  await buildCache(enc, out, { t2i: Number(t2i), edits: Number(edits), recon: Number(recon), partial: Number(partial) }, (s) => process.stderr.write(s));
}
