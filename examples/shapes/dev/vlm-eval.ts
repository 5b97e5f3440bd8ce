// Development check of a saved shapes VLM folder (not the demo's path: the demo decodes with the
// VLM runtime's KV-cache graphs): greedy decoding by full recomputation over a batch, on fresh
// rows of every task (a seed the training rows did not use), exact-match accuracy per task.
//
//   npx tsx examples/shapes/dev/vlm-eval.ts out/shapes-vlm [rows per task]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compileGraph } from '../../../src/compiler.ts';
import { dim, input, trace } from '../../../src/dsl/index.ts';
import { readSafetensors } from '../../../src/io/safetensors.ts';
import { fromFloat64, type HostTensor } from '../../../src/io/host.ts';
import { encodeModel } from '../../../codegen/onnx/proto.ts';
import { Session } from '../../../runtime/session.ts';
import { VLM_TASKS, vlmRows, type VlmRow, type VlmTask } from '../../../runtime/shapes/data.ts';
import { applyChatTemplate, EOS, expandImages, PAD } from '../../../runtime/shapes/prompts.ts';
import { SIZE } from '../../../runtime/shapes/world.ts';
import { pixelValuesOf, shapesTokenizer, ShapesVLM } from '../vlm.ts';

export interface VlmEval {
  accuracy: Record<VlmTask, number>;
  examples: { task: VlmTask; prompt: string; want: string; got: string }[];
}

export async function loadVlmSession(dir: string): Promise<Session> {
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
  const graph = trace('shapes_vlm_logits', () => {
    const B = dim('batch'), S = dim('seq'), T = dim('tiles');
    const ids = input('input_ids', 'i64', [B, S]);
    const mask = input('attention_mask', 'i64', [B, S]);
    const px = input('pixel_values', 'f32', [T, 3, SIZE, SIZE]);
    return { logits: new ShapesVLM(config).logits(ids, mask, px) };
  });
  const c = compileGraph(graph, { paramValues: tensors, weights: 'embed' });
  return Session.load(encodeModel(c.emitted.model));
}

/** Greedy answers for rows (batched, full recomputation each step). */
export async function greedy(session: Session, rows: readonly VlmRow[], maxNew = 40): Promise<string[]> {
  const t = shapesTokenizer();
  const eos = t.id(EOS), pad = t.id(PAD);
  const seqs = rows.map((r) => t.tok.encode(r.task === 'lm' ? '' : expandImages(applyChatTemplate(r.messages, true), 9), { add_special_tokens: false }).ids as number[]);
  const done = rows.map(() => false);
  const images = rows.flatMap((r) => r.images);
  const pixels = pixelValuesOf(images, Math.max(1, images.length));
  for (let step = 0; step < maxNew && done.some((d) => !d); step++) {
    const S = Math.max(...seqs.map((s) => s.length));
    const ids = new Array<number>(rows.length * S).fill(pad), mask = new Array<number>(rows.length * S).fill(0);
    seqs.forEach((s, b) => s.forEach((x, i) => ((ids[b * S + i] = x), (mask[b * S + i] = 1))));
    const out = await session.run({ input_ids: fromFloat64('i64', [rows.length, S], ids), attention_mask: fromFloat64('i64', [rows.length, S], mask), pixel_values: pixels });
    const logits = out.logits! as HostTensor<'f32'>;
    const V = logits.shape[2]!;
    seqs.forEach((s, b) => {
      if (done[b]) return;
      const off = (b * S + s.length - 1) * V;
      let best = 0;
      for (let v = 1; v < V; v++) if (logits.data[off + v]! > logits.data[off + best]!) best = v;
      s.push(best);
      if (best === eos || best === pad) done[b] = true;
    });
  }
  return seqs.map((s, b) => {
    const start = t.tok.encode(rows[b]!.task === 'lm' ? '' : expandImages(applyChatTemplate(rows[b]!.messages, true), 9), { add_special_tokens: false }).ids.length;
    return t.tok.decode(s.slice(start), { skip_special_tokens: true });
  });
}

export async function evaluateVlm(dir: string, perTask = 50, seed = 99): Promise<VlmEval> {
  const session = await loadVlmSession(dir);
  const all = vlmRows(perTask * 40, seed);
  const accuracy = {} as Record<VlmTask, number>;
  const examples: VlmEval['examples'] = [];
  try {
    for (const task of VLM_TASKS) {
      if (task === 'lm') continue;
      const rows = all.filter((r) => r.task === task).slice(0, perTask);
      const got: string[] = [];
      for (let i = 0; i < rows.length; i += 25) got.push(...(await greedy(session, rows.slice(i, i + 25))));
      accuracy[task] = rows.filter((r, i) => got[i] === r.answer).length / rows.length;
      // the first row, then failures, at most 4 per task
      rows.forEach((r, i) => {
        if ((i === 0 || got[i] !== r.answer) && examples.filter((e) => e.task === task).length < 4) examples.push({ task, prompt: JSON.stringify(r.messages.at(-1)?.content), want: r.answer, got: got[i]! });
      });
    }
  } finally {
    await session.release();
  }
  return { accuracy, examples };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = process.argv[2] ?? 'out/shapes-vlm';
  const n = Number(process.argv[3] ?? 50);
  const t0 = performance.now();
  const r = await evaluateVlm(dir, n);
  for (const e of r.examples) process.stdout.write(`[${e.task}] ${e.prompt}\n   want: ${e.want}\n   got:  ${e.got}\n`);
  for (const [k, v] of Object.entries(r.accuracy)) process.stdout.write(`${k}: ${(100 * v).toFixed(1)}% exact (${n} rows)\n`);
  process.stdout.write(`eval ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
