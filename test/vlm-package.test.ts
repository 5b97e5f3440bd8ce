// VlmPackage end to end: import-hf over the test/fixtures/vlm-gen checkpoints (model + tokenizer
// + chat template + generation config), load the package, and check the VERIFI condition:
//   - rewrite: the generated text is transformers' greedy continuation of the same chat prompt;
//     the condition holds exactly the generated tokens (+ the image tokens), and their taps equal
//     the imported ENCODER graph (a different graph, itself tested against transformers) run over
//     [prompt; generated] alone, at those positions (1e-5); decode-time taps equal the final pass;
//   - no-rewrite: exactly the user text's tokens (+ images), the template's prefix / suffix dropped;
//   - the empty prompt: S >= 1, all-false mask, and the UniFusion graph takes it (finite velocity,
//     independent of the masked values);
//   - a WordLevel tokenizer with a plain ChatML template (the demo's kind of folder) works;
//   - bad input: images for a model without vision tower, prompts over the context, a folder
//     without tokenizer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { importHf } from '../src/cli/import-hf.ts';
import { VlmPackage, VlmError } from '../runtime/vlm/index.ts';
import { Session } from '../runtime/session.ts';
import { trace } from '../src/dsl/index.ts';
import { compileGraph } from '../src/compiler.ts';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { PRESETS } from '../graphs/presets.ts';
import { uniFusionForward, type UniFusionConfig } from '../graphs/unifusion.ts';
import { decodeImage } from '../runtime/images/decode.ts';
import { dynamicTiles } from '../runtime/tiling.ts';
import { fromFloat64, numel, type HostTensor } from '../src/io/host.ts';
import { Rng } from '../src/ir/init.ts';
import { GEN_FIXTURES, genFixture, io, rowOf } from './helpers/vlm.ts';
import type { PromptEncoder } from '../runtime/pipeline/condition.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-vlmpkg-'));
const pkgs = new Map<string, VlmPackage>();
const dirs = new Map<string, string>();
afterAll(async () => {
  for (const p of pkgs.values()) await p.close();
  fs.rmSync(root, { recursive: true, force: true });
});

async function pkg(name: string, src = path.join(GEN_FIXTURES, name)): Promise<VlmPackage> {
  let p = pkgs.get(name);
  if (!p) {
    const out = path.join(root, name);
    await importHf(src, { out, taps: 'every:1' });
    dirs.set(name, out);
    pkgs.set(name, (p = await VlmPackage.load(out)));
  }
  return p;
}

/** The imported encoder graph over one unpadded sequence: hidden_states.<i> [S, H] per tap. */
async function encoderTaps(name: string, ids: number[], pixels?: HostTensor): Promise<Record<string, Float32Array>> {
  const dir = dirs.get(name)!;
  const onnx = fs.readdirSync(dir).find((f) => f.endsWith('-encoder.onnx'))!;
  const s = await Session.load(path.join(dir, onnx));
  try {
    const feeds: Record<string, HostTensor> = { input_ids: { dtype: 'i64', shape: [1, ids.length], data: BigInt64Array.from(ids.map(BigInt)) }, attention_mask: { dtype: 'i64', shape: [1, ids.length], data: new BigInt64Array(ids.length).fill(1n) } };
    if (pixels) feeds.pixel_values = pixels;
    const out = await s.run(feeds);
    return Object.fromEntries(Object.entries(out).filter(([k]) => k.startsWith('hidden_states.')).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await s.release();
  }
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) (num = Math.max(num, Math.abs(a[i]! - b[i]!))), (den = Math.max(den, Math.abs(b[i]!)));
  return num / den;
}

/** rows [from, to) of a [B, S, H] condition tensor's row b */
const condRow = (t: HostTensor, b: number, n: number) => (t.data as Float32Array).subarray(b * t.shape[1]! * t.shape[2]!, (b * t.shape[1]! + n) * t.shape[2]!);
const pick = (h: Float32Array, H: number, positions: number[]) => {
  const out = new Float32Array(positions.length * H);
  positions.forEach((p, j) => out.set(h.subarray(p * H, (p + 1) * H), j * H));
  return out;
};

function png(w: number, h: number, seed: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const raw = Buffer.alloc(h * (w * 3 + 1));
  for (let y = 0; y < h; y++) for (let x = 0; x < w * 3; x++) raw[y * (w * 3 + 1) + 1 + x] = (x * 31 + y * 17 + seed * 101) & 255;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

describe('VlmPackage: VERIFI condition', () => {
  beforeAll(async () => {
    await pkg('qwen2');
  });

  it('the package folder: generation + encoder graphs sharing one data file, tokenizer and configs copied', () => {
    const files = fs.readdirSync(dirs.get('qwen2')!).filter((f) => f !== '.unifusion-output.json').sort();
    expect(files).toEqual(['config.json', 'generation_config.json', 'manifest.json', 'qwen2-encoder.onnx', 'qwen2-generation.onnx', 'qwen2-generation.onnx.data', 'tokenizer.json', 'tokenizer_config.json']);
    const p = pkgs.get('qwen2')!;
    // the diffusion runtime's encoder interface (runtime/pipeline/condition.ts): checked by tsc
    const encoder: PromptEncoder = p;
    expect(typeof encoder.condition).toBe('function');
    expect(p.taps).toEqual([1, 2, 3]);
    expect(p.hidden).toBe(32);
  });

  it('rewrite: transformers greedy text; the condition is exactly the generated tokens, taps equal the encoder graph over [prompt; generated]', async () => {
    const p = await pkg('qwen2');
    const f = genFixture('qwen2');
    const prompts = JSON.parse(f.meta.prompts!) as string[];
    const streamed: string[] = prompts.map(() => '');
    const c = await p.condition(prompts.map((prompt) => ({ prompt })), { rewrite: true, systemPrompt: f.meta.system, maxNewTokens: Number(f.meta.max_new_tokens), onToken: (b, t) => (streamed[b] += t) });
    const ids = io(f, 'input_ids'), mask = io(f, 'attention_mask');
    const H = p.hidden;
    for (let b = 0; b < prompts.length; b++) {
      const prompt = rowOf(ids, b, mask);
      expect(c.promptIds[b]).toEqual(prompt);
      const solo = rowOf(io(f, `solo.${b}.sequences`), 0).slice(prompt.length);
      const eos = Number(f.meta.eos);
      const want = solo.includes(eos) ? solo.slice(0, solo.indexOf(eos)) : solo;
      expect(c.generatedIds[b]).toEqual(want);
      expect(c.rewritten[b]).toBe(p.tokenizer.decode(want, { skipSpecialTokens: true }));
      expect(streamed[b]).toBe(c.rewritten[b]);
      expect(c.lengths[b]).toBe(want.length);
      const m = c.tensors.condition_mask!.data;
      const S = c.tensors.condition_mask!.shape[1]!;
      for (let s = 0; s < S; s++) expect(m[b * S + s]).toBe(s < want.length ? 1 : 0);
      const enc = await encoderTaps('qwen2', [...prompt, ...want]);
      for (const i of p.taps) {
        const got = condRow(c.tensors[`hidden_states.${i}`]!, b, want.length);
        expect(relErr(got, pick(enc[`hidden_states.${i}`]!, H, want.map((_, k) => prompt.length + k))), `row ${b} hidden_states.${i}`).toBeLessThan(1e-5);
      }
    }
    // the final-pass taps equal the decode-time taps
    const fp = await p.condition(prompts.map((prompt) => ({ prompt })), { rewrite: true, systemPrompt: f.meta.system, maxNewTokens: Number(f.meta.max_new_tokens), tapsFrom: 'final-pass' });
    expect(fp.lengths).toEqual(c.lengths);
    for (const i of p.taps) expect(relErr(fp.tensors[`hidden_states.${i}`]!.data as Float32Array, c.tensors[`hidden_states.${i}`]!.data as Float32Array)).toBeLessThan(1e-5);
  });

  it('no-rewrite: exactly the user text tokens, the template prefix and suffix dropped (or kept with keepTemplate)', async () => {
    const p = await pkg('qwen2');
    const reqs = [{ prompt: 'a red circle on a blue square' }, { prompt: 'a cat' }];
    const c = await p.condition(reqs, { rewrite: false });
    for (let b = 0; b < reqs.length; b++) {
      const ids = c.promptIds[b]!;
      const user = p.tokenizer.encode(reqs[b]!.prompt);
      expect(c.lengths[b]).toBe(user.length);
      // the user tokens sit in the prompt; the rest is the template's
      const start = ids.findIndex((_, k) => user.every((u, j) => ids[k + j] === u));
      expect(start).toBeGreaterThan(0);
      const enc = await encoderTaps('qwen2', ids);
      for (const i of p.taps) expect(relErr(condRow(c.tensors[`hidden_states.${i}`]!, b, user.length), pick(enc[`hidden_states.${i}`]!, p.hidden, user.map((_, j) => start + j)))).toBeLessThan(1e-5);
    }
    expect(c.rewritten).toEqual([undefined, undefined]);
    const k = await p.condition(reqs, { rewrite: false, keepTemplate: true });
    expect(k.lengths).toEqual(c.promptIds.map((x) => x.length));
  });

  it('the empty prompt: S >= 1, all-false mask (alone and in a batch); the UniFusion graph takes it', async () => {
    const p = await pkg('qwen2');
    const alone = await p.condition([{ prompt: '' }], { rewrite: true });
    expect(alone.tensors.condition_mask!.shape).toEqual([1, 1]);
    expect([...alone.tensors.condition_mask!.data]).toEqual([0]);
    for (const i of p.taps) expect(alone.tensors[`hidden_states.${i}`]!.shape).toEqual([1, 1, 32]);
    expect(alone.rewritten).toEqual(['']);
    const mixed = await p.condition([{ prompt: 'a cat' }, { prompt: '   ' }], { rewrite: false });
    const S = mixed.tensors.condition_mask!.shape[1]!;
    expect([...mixed.tensors.condition_mask!.data.subarray(S)]).toEqual(new Array(S).fill(0));
    expect(mixed.finish).toEqual(['prefill', 'empty']);

    // UniFusion (tiny preset shapes, LAP over this package's taps)
    const cfg: UniFusionConfig = { ...PRESETS.tiny!, vlm: { ...PRESETS.tiny!.vlm, layers: 3 }, taps: p.taps };
    const graph = trace('uf', () => ({ velocity: uniFusionForward(cfg).velocity }));
    // random weights everywhere (the preset zero-inits its output layers, which would make any condition give 0)
    const rng = new Rng(5);
    const pv = new Map(graph.params().map((q) => [q.params.name, fromFloat64(q.dtype, [...q.params.shape], Float64Array.from({ length: numel(q.params.shape) }, () => 0.3 * rng.normal()))]));
    const s = await Session.load(encodeModel(compileGraph(graph, { weights: 'embed', paramValues: pv }).emitted.model));
    try {
      const lat: HostTensor = { dtype: 'f32', shape: [1, 4, 8, 8], data: Float32Array.from({ length: 256 }, (_, i) => Math.sin(i)) };
      const run = async (cond: Record<string, HostTensor>) => (await s.run({ ...cond, latents: lat, timestep: { dtype: 'f32', shape: [1], data: Float32Array.from([0.5]) } })).velocity!.data as Float32Array;
      const v0 = await run(alone.tensors);
      expect(v0.every(Number.isFinite)).toBe(true);
      // masked tokens do not matter: other values under the all-false mask give the same velocity
      const noisy = Object.fromEntries(Object.entries(alone.tensors).map(([k, t]) => [k, k === 'condition_mask' ? t : { ...t, data: Float32Array.from(t.data as Float32Array, (_, j) => Math.cos(j) * 3) }]));
      expect(relErr(await run(noisy), v0)).toBeLessThan(1e-6);
      // and a real condition gives something else
      const real = await p.condition([{ prompt: 'a cat' }], { rewrite: false });
      expect(relErr(await run(real.tensors), v0)).toBeGreaterThan(1e-3);
    } finally {
      await s.release();
    }
  });

  it('bad input: a prompt over the context (both lengths, or cut with truncate); images without a vision tower; bad sampling', async () => {
    const p = await pkg('qwen2');
    const long = 'red circle '.repeat(150);
    await expect(p.condition([{ prompt: long }], { rewrite: true, maxNewTokens: 10 })).rejects.toThrow(/prompt 0 is \d+ tokens \+ 10 new tokens = \d+, longer than the model's context of 256 tokens \(use truncate/);
    const cut = await p.condition([{ prompt: long }], { rewrite: false, truncate: true });
    expect(cut.promptIds[0]!.length).toBe(256);
    await expect(p.condition([{ prompt: 'x', images: ['a.png'] }], { rewrite: true })).rejects.toThrow(/qwen2 has no vision tower: prompt 0 passes 1 image/);
    await expect(p.condition([{ prompt: 'x' }], { rewrite: true, temperature: -1 })).rejects.toThrow(/temperature must be >= 0/);
    await expect(p.condition([{ prompt: 'x' }], { rewrite: true, maxNewTokens: 0 })).rejects.toThrow(/max new tokens must be an integer >= 1/);
  });
});

describe('VlmPackage: InternVL with images', () => {
  it('rewrite with an image: the condition is the image tokens then the generated tokens; taps equal the encoder graph with the same pixels', async () => {
    const p = await pkg('internvl');
    const img = path.join(root, 'img.png');
    fs.writeFileSync(img, png(64, 32, 1));
    const c = await p.condition([{ prompt: 'make it blue', images: [img] }, { prompt: 'combine', images: [img, await decodeImage(png(20, 40, 2))] }], { rewrite: true, maxNewTokens: 6, systemPrompt: 'Rewrite.' });
    // 64x32: 2 x 1 tiles + thumbnail = 3 tiles x 16 tokens; 20x40: 1 x 2 + thumbnail = 3 tiles
    const nImg = [48, 96];
    for (let b = 0; b < 2; b++) {
      expect(c.lengths[b]).toBe(nImg[b]! + c.generatedIds[b]!.length);
      const ids = c.promptIds[b]!;
      const imgPos = ids.map((id, k) => (id === p.config.internvl!.imageTokenId ? k : -1)).filter((k) => k >= 0);
      expect(imgPos.length).toBe(nImg[b]);
      const images = b === 0 ? [await decodeImage(img)] : [await decodeImage(img), await decodeImage(png(20, 40, 2))];
      const tiles = images.map((im) => dynamicTiles(im, { size: 32 }).pixelValues);
      const n = tiles.reduce((a, t) => a + t.data.length, 0);
      const data = new Float32Array(n);
      let o = 0;
      for (const t of tiles) data.set(t.data as Float32Array, o), (o += t.data.length);
      const gen = c.generatedIds[b]!;
      const enc = await encoderTaps('internvl', [...ids, ...gen], { dtype: 'f32', shape: [n / (3 * 32 * 32), 3, 32, 32], data });
      const positions = [...imgPos, ...gen.map((_, k) => ids.length + k)];
      for (const i of p.taps) expect(relErr(condRow(c.tensors[`hidden_states.${i}`]!, b, positions.length), pick(enc[`hidden_states.${i}`]!, p.hidden, positions)), `row ${b} tap ${i}`).toBeLessThan(1e-5);
    }
    // no-rewrite keeps the image tokens and the user text
    const nr = await p.condition([{ prompt: 'make it blue', images: [img] }], { rewrite: false });
    expect(nr.lengths[0]).toBe(48 + p.tokenizer.encode('make it blue').length);
  });
});

describe('VlmPackage: a WordLevel tokenizer with a plain ChatML template (the demo folder kind)', () => {
  it('loads, rewrites and conditions', async () => {
    const src = path.join(root, 'wl-src');
    fs.mkdirSync(src);
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors']) fs.copyFileSync(path.join(GEN_FIXTURES, 'qwen2', f), path.join(src, f));
    const tokDir = path.join(GEN_FIXTURES, '..', 'vlm-tok', 'wordlevel');
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(tokDir, f), path.join(src, f));
    // the demo's generation config names its own eos (the tokenizer's <|im_end|>)
    const tc = JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer.json'), 'utf8'));
    const imEnd = tc.added_tokens.find((t: { content: string }) => t.content === '<|im_end|>').id;
    fs.writeFileSync(path.join(src, 'generation_config.json'), JSON.stringify({ eos_token_id: imEnd, pad_token_id: 0 }));
    const p = await pkg('wordlevel', src);
    const c = await p.condition([{ prompt: 'A red circle' }], { rewrite: true, maxNewTokens: 5, systemPrompt: 'rewrite' });
    expect(c.promptIds[0]![0]).toBe(p.tokenizer.tokenToId('<|im_start|>'));
    expect(c.generatedIds[0]!.length).toBeGreaterThan(0);
    expect(c.rewritten[0]).toBe(p.tokenizer.decode(c.generatedIds[0]!, { skipSpecialTokens: true }));
    const nr = await p.condition([{ prompt: 'A red circle' }], { rewrite: false });
    expect(nr.lengths[0]).toBe(3);
    const t = await p.generate([{ prompt: 'a cat' }], { maxNewTokens: 4 });
    expect(t.texts[0]!.length).toBeGreaterThan(0);
  });

  it('a folder without tokenizer or without generation graph is refused by name', async () => {
    const src = path.join(root, 'notok');
    fs.mkdirSync(src);
    for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(GEN_FIXTURES, 'qwen2', f), path.join(src, f));
    const out = path.join(root, 'notok-out');
    await importHf(src, { out, taps: 'last' });
    await expect(VlmPackage.load(out)).rejects.toThrow(/notok-out has no tokenizer\.json/);
    await expect(VlmPackage.load(src)).rejects.toThrow(VlmError);
  });
});
