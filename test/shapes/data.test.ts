import { describe, expect, it } from 'vitest';
import { Tokenizer } from '@huggingface/tokenizers';
import { input, trace } from '../../src/dsl/index.ts';
import { evaluate } from '../../src/ir/evaluate.ts';
import { Rng } from '../../src/ir/init.ts';
import { ref } from '../../src/ir/ref.ts';
import { caption, parseCaption } from '../../runtime/shapes/captions.ts';
import { ditRows, editRows, evalScenes, VLM_TASKS, vlmRows } from '../../runtime/shapes/data.ts';
import { applyEdit } from '../../runtime/shapes/edits.ts';
import { applyChatTemplate, buildTokenizerJson, EOS, IMG_CONTEXT, REWRITE_SYSTEM_PROMPT, userContent } from '../../runtime/shapes/prompts.ts';
import { hasHeldOut, NAMED_SCENES, sceneKey } from '../../runtime/shapes/scenes.ts';
import { sameScene } from '../../runtime/shapes/world.ts';
import { encodeRow, maskedCrossEntropy, shapesTokenizer, vlmBatch } from '../../examples/shapes/vlm.ts';
import { conditionTokens } from '../../examples/shapes/unifusion.ts';

const NAMES = Object.keys(NAMED_SCENES);

describe('shapes datasets', () => {
  it('DiT rows: seeded, no held-out pair, no named scene, prompts are captions or paraphrases of the scene', () => {
    const a = ditRows(3000, 1), b = ditRows(3000, 1);
    expect(a.map((r) => r.prompt)).toEqual(b.map((r) => r.prompt));
    expect(ditRows(50, 2).map((r) => r.prompt)).not.toEqual(a.slice(0, 50).map((r) => r.prompt));
    let para = 0;
    for (const r of a) {
      expect(hasHeldOut(r.scene)).toBe(false);
      expect(r.caption).toBe(caption(r.scene));
      for (const n of NAMES) expect(r.prompt.includes(n.replace(/^(a|the) /, ''))).toBe(false);
      for (const w of ['purple triangle', 'yellow square', 'white circle']) expect(r.caption.includes(w)).toBe(false);
      if (r.prompt !== r.caption) para++;
    }
    expect(para).toBeGreaterThan(1000);
  });

  it('edit rows: no held-out pair in source or target, targets are applyEdit of the instruction', () => {
    for (const r of editRows(1000, 3)) {
      expect(hasHeldOut(r.source) || hasHeldOut(r.target)).toBe(false);
      expect(sameScene(applyEdit(r.source, r.edit), r.target)).toBe(true);
      expect(parseCaption(r.targetCaption) && sameScene(parseCaption(r.targetCaption)!, r.target)).toBe(true);
    }
  });

  it('VLM rows: every task, named scenes rewrite to their captions, answers are canonical', () => {
    const rows = vlmRows(2000, 4);
    for (const t of VLM_TASKS) expect(rows.filter((r) => r.task === t).length).toBeGreaterThan(40);
    for (const r of rows) {
      if (r.task !== 'lm') expect(parseCaption(r.answer)).toBeDefined();
      if (r.task === 'rewrite-named') {
        const text = (r.messages[1]!.content as { text: string }[])[0]!.text;
        const name = NAMES.find((n) => text.endsWith(n))!;
        expect(r.answer).toBe(caption(NAMED_SCENES[name]!));
      }
      if (r.task.startsWith('rewrite')) expect(r.messages[0]).toEqual({ role: 'system', content: REWRITE_SYSTEM_PROMPT });
    }
  });

  it('cache rows with partial captions: only words removed from the canonical caption, same scenes, no held-out pair named', async () => {
    const { cacheRequests } = await import('../../examples/shapes/build-cache.ts');
    const plain = cacheRequests({ t2i: 600, edits: 20, recon: 10 });
    const part = cacheRequests({ t2i: 600, edits: 20, recon: 10, partial: 0.5 });
    expect(part.rows.map((r) => r.target)).toEqual(plain.rows.map((r) => r.target));
    let partial = 0;
    part.reqs.forEach((q, i) => {
      if (q.answer === plain.reqs[i]!.answer) return expect(q).toEqual(plain.reqs[i]);
      partial++;
      expect(part.rows[i]!.task).toBe('t2i');
      expect(q.prompt).toBe(q.answer);
      const words = (t: string) => t.split(/[ ,]+/);
      for (const w of words(q.answer!)) expect(w === 'one' || words(caption(part.rows[i]!.target)).includes(w)).toBe(true);
      for (const w of ['purple triangle', 'yellow square', 'white circle']) expect(q.answer!.includes(w)).toBe(false);
    });
    // half the t2i rows drawn partial; about 58 % of those lose at least one word
    expect(partial).toBeGreaterThan(120);
    expect(partial).toBeLessThan(260);
  });

  it('evaluation scenes avoid the training scenes', () => {
    const train = new Set(ditRows(2000, 5).map((r) => sceneKey(r.scene)));
    const ev = evalScenes(300, 6, train);
    expect(ev.some((s) => train.has(sceneKey(s)))).toBe(false);
    expect(new Set(ev.map(sceneKey)).size).toBe(300);
    expect(ev.filter(hasHeldOut).length).toBeGreaterThan(100);
  });
});

describe('shapes VLM tokens', () => {
  it('the tokenizer is deterministic, round-trips, and keeps world words whole', () => {
    expect(JSON.stringify(buildTokenizerJson())).toBe(JSON.stringify(shapesTokenizer().json));
    const t = shapesTokenizer();
    const c = 'a purple triangle at the bottom right, a white circle at the center and a yellow square at the top left';
    const enc = t.tok.encode(c, { add_special_tokens: false });
    expect(enc.tokens).toEqual(['a', 'Ġpurple', 'Ġtriangle', 'Ġat', 'Ġthe', 'Ġbottom', 'Ġright', ',', 'Ġa', 'Ġwhite', 'Ġcircle', 'Ġat', 'Ġthe', 'Ġcenter', 'Ġand', 'Ġa', 'Ġyellow', 'Ġsquare', 'Ġat', 'Ġthe', 'Ġtop', 'Ġleft']);
    for (const s of ['zebra! 123 ünïcödé 🙂\t\n  x', REWRITE_SYSTEM_PROMPT, ...NAMES]) expect(t.tok.decode(t.tok.encode(s, { add_special_tokens: false }).ids, { skip_special_tokens: false })).toBe(s);
    // a second, independent load of the JSON text gives the same ids
    const again = new Tokenizer(JSON.parse(JSON.stringify(t.json)), t.config);
    expect(again.encode(c).ids).toEqual(enc.ids);
    expect(t.id(IMG_CONTEXT)).toBe(t.json.added_tokens.find((a) => a.content === IMG_CONTEXT)!.id);
  });

  it('the chat template renders ChatML with the InternVL image placeholder', () => {
    expect(applyChatTemplate([{ role: 'system', content: 'S' }, { role: 'user', content: userContent('hi', 1) }], true)).toBe('<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n<IMG_CONTEXT>\nhi<|im_end|>\n<|im_start|>assistant\n');
    expect(applyChatTemplate([{ role: 'user', content: 'x' }, { role: 'assistant', content: 'y' }], false)).toBe('<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\ny<|im_end|>\n');
  });

  it('training batches predict exactly the answer and its <|im_end|>; images fill pixel_values in token order', () => {
    const t = shapesTokenizer();
    const rows = vlmRows(40, 7);
    const enc = rows.map(encodeRow);
    const b = vlmBatch(enc);
    const S = b.input_ids!.shape[1]!;
    enc.forEach((r, i) => {
      const row = rows[i]!;
      const predicted = [];
      for (let p = 0; p < S; p++) if ((b.loss_mask!.data as Float32Array)[i * S + p] === 1) predicted.push(Number((b.targets!.data as BigInt64Array)[i * S + p]));
      const want = t.tok.encode(row.answer + (row.task === 'lm' ? '<|endoftext|>' : EOS), { add_special_tokens: false }).ids;
      expect(t.tok.decode(predicted, { skip_special_tokens: false })).toBe(t.tok.decode(row.task === 'lm' ? want.slice(1) : want, { skip_special_tokens: false }));
    });
    const imgs = enc.reduce((a, r) => a + r.images.length, 0);
    expect(b.pixel_values!.shape).toEqual([40, 3, 48, 48]);
    expect(imgs).toBeGreaterThan(5);
  });

  it('masked cross-entropy equals a direct float64 computation', () => {
    const B = 2, S = 3, V = 5;
    const g = trace('ce', () => ({ loss: maskedCrossEntropy(input('logits', 'f32', [B, S, V]), input('targets', 'i64', [B, S]), input('mask', 'f32', [B, S])) }));
    const rng = new Rng(1, 'ce');
    const logits = Float64Array.from({ length: B * S * V }, () => 3 * rng.normal());
    const targets = Float64Array.from({ length: B * S }, () => Math.floor(rng.uniform() * V));
    const mask = Float64Array.from([1, 0, 1, 1, 1, 0]);
    const got = evaluate(g, { logits: ref('f32', [B, S, V], logits), targets: ref('i64', [B, S], targets), mask: ref('f32', [B, S], mask) }).loss!.data[0]!;
    let sum = 0, cnt = 0;
    for (let i = 0; i < B * S; i++) {
      if (!mask[i]) continue;
      const l = logits.subarray(i * V, (i + 1) * V);
      sum += Math.log(l.reduce((a, x) => a + Math.exp(x), 0)) - l[targets[i]!]!;
      cnt++;
    }
    expect(got).toBeCloseTo(sum / cnt, 5);
  });

  it('condition tokens: the answer and image tokens (rewrite), the prompt and image tokens (no rewrite)', () => {
    const t = shapesTokenizer();
    const img = t.id(IMG_CONTEXT);
    const scene = NAMED_SCENES['a traffic light']!;
    const rw = conditionTokens({ prompt: 'make the red circle blue', images: [scene], answer: 'a blue circle at the top', mode: 'rewrite' });
    expect(rw.selected.filter((i) => rw.ids[i] === img).length).toBe(9);
    expect(t.tok.decode(rw.selected.filter((i) => rw.ids[i] !== img).map((i) => rw.ids[i]!))).toBe('a blue circle at the top');
    const nr = conditionTokens({ prompt: 'a traffic light', images: [], mode: 'no-rewrite' });
    expect(t.tok.decode(nr.selected.map((i) => nr.ids[i]!))).toBe('a traffic light');
    expect(t.tok.decode(nr.ids.slice(nr.selected.at(-1)! + 1), { skip_special_tokens: false })).toBe('<|im_end|>\n<|im_start|>assistant\n');
    const rec = conditionTokens({ images: [scene], answer: caption(scene), mode: 'rewrite' });
    expect(rec.selected.length).toBe(9 + t.tok.encode(caption(scene)).ids.length);
  });
});
