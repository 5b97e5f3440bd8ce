// import-hf: Hugging Face checkpoint folders (config.json + safetensors, single or sharded) ->
// one ONNX model with external data. Checkpoints are written here, by the test, with our own
// safetensors writer: tiny random weights, f32 or bf16, in temp folders.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defineGraph, dim, Embedding, input, Module, range, RMSNorm, TransformerBlock, type Tensor } from '../src/dsl/index.ts';
import type { Graph } from '../src/ir/graph.ts';
import { Rng } from '../src/ir/init.ts';
import { bf16BitsToF32, f32ToBf16Bits, type DType } from '../src/ir/dtype.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../src/io/host.ts';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { applyRules, convertBytes, detectNameRules, HfCheckpoint, readHfConfig } from '../src/io/hf.ts';
import { importHf, type ImportFamily } from '../src/cli/import-hf.ts';
import { Session } from '../runtime/session.ts';
import { runOnnx, compare } from './helpers/harness.ts';
import type { RefTensor } from '../src/ir/ref.ts';

const roots: string[] = [];
const tmp = (tag = 'hf') => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `unifusion-import-${tag}-`));
  roots.push(d);
  return d;
};
afterAll(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// A toy decoder family (the real families are tested in their own files and below once they land)
// ---------------------------------------------------------------------------------------------

interface ToyConfig {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
}

const TOY: ToyConfig = { vocab: 40, hidden: 16, layers: 3, heads: 4, kvHeads: 2, intermediate: 24 };

class ToyDecoder extends Module {
  embed_tokens: Embedding;
  layers: TransformerBlock[];
  norm: RMSNorm;
  constructor(cfg: ToyConfig) {
    super();
    this.embed_tokens = new Embedding(cfg.vocab, cfg.hidden);
    this.layers = Array.from({ length: cfg.layers }, () => new TransformerBlock({ ...cfg, qkvBias: true, rope: { theta: 10000 } }));
    this.norm = new RMSNorm(cfg.hidden);
  }
}

/** taps: list:a,b | last (the real parser lives with the VLM graphs) */
function toyTaps(spec: string | undefined, layers: number): number[] {
  if (spec === undefined || spec === 'last') return [layers];
  const m = /^list:(.*)$/.exec(spec);
  if (!m) throw new Error(`--taps '${spec}': expected list:a,b or last`);
  const taps = m[1]!.split(',').map(Number);
  for (const t of taps) if (!Number.isInteger(t) || t < 0 || t > layers) throw new Error(`--taps '${spec}': layer ${t} is out of range 0..${layers}`);
  return taps;
}

function toyGraph(cfg: ToyConfig, taps: number[]): Graph {
  return defineGraph<ToyConfig>({
    name: 'toy_encoder',
    presets: { p: cfg },
    build(c) {
      const B = dim('batch'), S = dim('seq');
      const ids = input('input_ids', 'i64', [B, S]);
      const mask = input('attention_mask', 'i64', [B, S]);
      const m = new ToyDecoder(c);
      const hs: Tensor[] = [m.embed_tokens.forward(ids)];
      const call = { positions: [range(ids.dim(1))], causal: true, keyMask: mask.cast('bool') };
      for (const l of m.layers) hs.push(l.forward(hs[hs.length - 1]!, call));
      hs[hs.length - 1] = m.norm.forward(hs[hs.length - 1]!);
      return Object.fromEntries(taps.map((t) => [`hidden_states.${t}`, hs[t]!]));
    },
  }).trace();
}

const toyFamily: ImportFamily = {
  label: 'toy (test decoder)',
  matches: (c) => c.model_type === 'toy',
  build: (c, { taps }) => [{ graph: toyGraph(c.toy as ToyConfig, toyTaps(taps, (c.toy as ToyConfig).layers)) }],
};
const families = [toyFamily];

// ---------------------------------------------------------------------------------------------
// Checkpoint writing
// ---------------------------------------------------------------------------------------------

/** Random values for every param of the full graph, keyed by graph name. */
function toyWeights(seed = 1): Map<string, Float64Array & { shape?: number[] }> {
  const g = toyGraph(TOY, [TOY.layers]);
  const rng = new Rng(seed);
  const out = new Map<string, Float64Array & { shape?: number[] }>();
  for (const p of g.params()) {
    const n = p.shape.reduce((a: number, d) => a * (d as number), 1);
    const v = Object.assign(new Float64Array(n), { shape: p.shape as number[] });
    const norm = p.params.name.endsWith('norm.weight');
    for (let i = 0; i < n; i++) v[i] = norm ? 1 + 0.1 * rng.normal() : 0.3 * rng.normal();
    out.set(p.params.name, v);
  }
  return out;
}

interface CkptOptions {
  dtype?: 'f32' | 'bf16' | 'f16';
  /** number of shards (0: single model.safetensors) */
  shards?: number;
  prefix?: string;
  /** edits on the tensors (keyed by checkpoint name) before writing */
  edit?: (t: Map<string, HostTensor>) => void;
  config?: Record<string, unknown>;
}

function writeCheckpoint(dir: string, weights: Map<string, Float64Array & { shape?: number[] }>, o: CkptOptions = {}): Map<string, HostTensor> {
  const dtype = o.dtype ?? 'f32';
  const prefix = o.prefix ?? 'model.';
  const tensors = new Map<string, HostTensor>();
  for (const [k, v] of weights) tensors.set(prefix + k, fromFloat64(dtype, v.shape!, v));
  tensors.set('lm_head.weight', fromFloat64(dtype, [TOY.vocab, TOY.hidden], new Float64Array(TOY.vocab * TOY.hidden).fill(0.5)));
  o.edit?.(tensors);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(o.config ?? { model_type: 'toy', toy: TOY, torch_dtype: dtype }));
  const shards = o.shards ?? 0;
  if (!shards) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    return tensors;
  }
  const names = [...tensors.keys()].sort();
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = new Map(names.filter((_, i) => i % shards === s).map((n) => [n, tensors.get(n)!]));
    for (const n of part.keys()) weightMap[n] = file;
    writeSafetensors(path.join(dir, file), part);
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  return tensors;
}

/** What the graph should compute: the stored weights (rounded as stored), as f32 paramValues. */
function paramValuesOf(tensors: Map<string, HostTensor>, prefix = 'model.'): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [k, t] of tensors) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), fromFloat64('f32', t.shape, toFloat64(t)));
  return out;
}

function feeds(): { ref: Record<string, RefTensor>; host: Record<string, HostTensor> } {
  // batch 2, seq 5, the second row left-padded... right-padded by 2
  const ids = [3, 17, 5, 39, 0, 8, 8, 1, 2, 2];
  const mask = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
  const ref = {
    input_ids: { dtype: 'i64' as DType, shape: [2, 5], data: Float64Array.from(ids) },
    attention_mask: { dtype: 'i64' as DType, shape: [2, 5], data: Float64Array.from(mask) },
  };
  const host = { input_ids: fromFloat64('i64', [2, 5], ids), attention_mask: fromFloat64('i64', [2, 5], mask) };
  return { ref, host };
}

async function runImported(onnx: string): Promise<Record<string, HostTensor>> {
  const s = await Session.load(onnx);
  try {
    return await s.run(feeds().host);
  } finally {
    await s.release();
  }
}

function expectEmptyOrAbsent(dir: string): void {
  expect(fs.existsSync(dir) ? fs.readdirSync(dir) : []).toEqual([]);
  // no temp folders left next to it either
  expect(fs.readdirSync(path.dirname(dir)).filter((f) => f.includes('.import-'))).toEqual([]);
}

// ---------------------------------------------------------------------------------------------

describe('import-hf: the infrastructure on a toy family', () => {
  it('single-file f32 checkpoint: the imported model equals the graph compiled with the same weights', async () => {
    const src = tmp();
    const tensors = writeCheckpoint(path.join(src, 'ckpt'), toyWeights());
    const out = path.join(src, 'out');
    const r = await importHf(path.join(src, 'ckpt'), { out, taps: 'list:0,2,3', families });
    expect(fs.readdirSync(out).sort()).toEqual(['manifest.json', 'toy_encoder.onnx', 'toy_encoder.onnx.data']);
    expect(r.ignored).toEqual(['lm_head.weight']);
    expect(r.conversions).toEqual({});
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    expect(m.format).toBe('unifusion-import');
    expect(m.ignoredTensors).toBe(1);
    expect(m.models[0].weights).toBe('external');
    expect(m.models[0].inputs).toEqual([
      { name: 'input_ids', dtype: 'i64', shape: ['batch', 'seq'] },
      { name: 'attention_mask', dtype: 'i64', shape: ['batch', 'seq'] },
    ]);
    expect(m.models[0].outputs.map((o: { name: string }) => o.name)).toEqual(['hidden_states.0', 'hidden_states.2', 'hidden_states.3']);

    const got = await runImported(path.join(out, 'toy_encoder.onnx'));
    const want = await runOnnx(toyGraph(TOY, [0, 2, 3]), feeds().ref, { paramValues: paramValuesOf(tensors) });
    for (const k of ['hidden_states.0', 'hidden_states.2', 'hidden_states.3']) {
      expect(got[k]!.dtype).toBe('f32');
      expect(Array.from(got[k]!.data as Float32Array)).toEqual(Array.from(Float32Array.from(want[k]!.data)));
    }
  });

  it('sharded bf16 checkpoint with index: converted to f32 per tensor; unused layers are ignored', async () => {
    const src = tmp();
    const ck = path.join(src, 'ckpt');
    const tensors = writeCheckpoint(ck, toyWeights(2), { dtype: 'bf16', shards: 3 });
    expect(fs.readdirSync(ck).filter((f) => f.startsWith('model-')).length).toBe(3);
    const out = path.join(src, 'out');
    const r = await importHf(ck, { out, taps: 'list:1', families });
    // hidden_states.1 is the output of layers.0: layers 1 and 2, the final norm and lm_head are ignored
    const perLayer = toyGraph(TOY, [TOY.layers]).params().filter((p) => p.params.name.startsWith('layers.2.')).length;
    expect(r.ignored.length).toBe(2 * perLayer + 2);
    expect(r.ignored).toContain('model.norm.weight');
    expect(r.conversions['bf16->f32']).toBe(r.models[0]!.manifest.params.length);
    const got = await runImported(path.join(out, 'toy_encoder.onnx'));
    const want = await runOnnx(toyGraph(TOY, [1]), feeds().ref, { paramValues: paramValuesOf(tensors) });
    expect(Array.from(got['hidden_states.1']!.data as Float32Array)).toEqual(Array.from(Float32Array.from(want['hidden_states.1']!.data)));
  });

  it('finds graph names under other HF prefixes (language_model.model., none) and reports what it tried', async () => {
    for (const prefix of ['language_model.model.', '']) {
      const src = tmp();
      const tensors = writeCheckpoint(path.join(src, 'ckpt'), toyWeights(3), { prefix });
      const out = path.join(src, 'out');
      await importHf(path.join(src, 'ckpt'), { out, families });
      const got = await runImported(path.join(out, 'toy_encoder.onnx'));
      const want = await runOnnx(toyGraph(TOY, [TOY.layers]), feeds().ref, { paramValues: paramValuesOf(tensors, prefix) });
      expect(compare({ dtype: 'f32', shape: [10 * 16], data: Float64Array.from(got[`hidden_states.${TOY.layers}`]!.data as Float32Array) }, { ...want[`hidden_states.${TOY.layers}`]!, shape: [160] })).toBeNull();
    }
  });

  it('--force replaces a non-empty DIR; without it the import refuses and leaves DIR alone', async () => {
    const src = tmp();
    writeCheckpoint(path.join(src, 'ckpt'), toyWeights());
    const out = path.join(src, 'out');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'keep.txt'), 'x');
    await expect(importHf(path.join(src, 'ckpt'), { out, families })).rejects.toThrow(/out.* is not empty \(use --force/);
    expect(fs.readdirSync(out)).toEqual(['keep.txt']);
    await importHf(path.join(src, 'ckpt'), { out, families, force: true });
    expect(fs.readdirSync(out).sort()).toEqual(['manifest.json', 'toy_encoder.onnx', 'toy_encoder.onnx.data']);
    expect(fs.readdirSync(src).sort()).toEqual(['ckpt', 'out']);
  });
});

describe('import-hf: errors name the file or tensor and leave nothing in DIR', () => {
  const cases: [string, (dir: string) => void, RegExp, string?][] = [
    ['missing config.json', (d) => fs.rmSync(path.join(d, 'config.json')), /config\.json: not found/],
    ['config.json not JSON', (d) => fs.writeFileSync(path.join(d, 'config.json'), '{"model_type": '), /config\.json: not valid JSON/],
    ['config.json not an object', (d) => fs.writeFileSync(path.join(d, 'config.json'), '[1]'), /config\.json: must hold a JSON object/],
    [
      'unknown architecture',
      (d) => fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ model_type: 'mamba', architectures: ['MambaForCausalLM'] })),
      /unsupported architecture \(model_type 'mamba', architectures \[MambaForCausalLM\]\); supported: toy \(test decoder\)/,
    ],
    ['no weights at all', (d) => fs.rmSync(path.join(d, 'model.safetensors')), /no weights: expected model\.safetensors or model\.safetensors\.index\.json/],
    [
      'pytorch .bin only',
      (d) => (fs.rmSync(path.join(d, 'model.safetensors')), fs.writeFileSync(path.join(d, 'pytorch_model.bin'), 'x')),
      /found pytorch_model\.bin: PyTorch pickles are not read/,
    ],
    ['--taps out of range', () => {}, /--taps 'list:1,7': layer 7 is out of range 0\.\.3/, 'list:1,7'],
    ['corrupt safetensors', (d) => fs.writeFileSync(path.join(d, 'model.safetensors'), new Uint8Array(5)), /model\.safetensors: file is 5 bytes/],
  ];
  it.each(cases)('%s', async (_n, damage, re, taps) => {
    const src = tmp();
    const ck = path.join(src, 'ckpt');
    writeCheckpoint(ck, toyWeights());
    damage(ck);
    const out = path.join(src, 'out');
    await expect(importHf(ck, { out, taps, families })).rejects.toThrow(re);
    expectEmptyOrAbsent(out);
  });

  const tensorCases: [string, (t: Map<string, HostTensor>) => void, RegExp][] = [
    ['missing tensor', (t) => t.delete('model.layers.1.mlp.down_proj.weight'), /missing tensor 'model\.layers\.1\.mlp\.down_proj\.weight' \(for graph parameter 'layers\.1\.mlp\.down_proj\.weight'\), f32\[16, 24\]/],
    [
      'mis-shaped tensor',
      (t) => t.set('model.layers.0.self_attn.k_proj.weight', fromFloat64('f32', [16, 16], new Float64Array(256))),
      /tensor 'model\.layers\.0\.self_attn\.k_proj\.weight' in model\.safetensors has shape \[16, 16\], the graph expects \[8, 16\]/,
    ],
    [
      'integer tensor where a float is expected',
      (t) => t.set('model.norm.weight', fromFloat64('i64', [16], new Float64Array(16))),
      /tensor 'model\.norm\.weight' in model\.safetensors has dtype i64, which cannot be converted to the graph's f32/,
    ],
    [
      'small (embedded) tensor mis-shaped',
      (t) => t.set('model.layers.2.self_attn.k_proj.bias', fromFloat64('f32', [9], new Float64Array(9))),
      /tensor 'model\.layers\.2\.self_attn\.k_proj\.bias' in model\.safetensors has shape \[9\], the graph expects \[8\]/,
    ],
  ];
  it.each(tensorCases)('%s', async (_n, edit, re) => {
    const src = tmp();
    const ck = path.join(src, 'ckpt');
    writeCheckpoint(ck, toyWeights(), { edit });
    const out = path.join(src, 'out');
    await expect(importHf(ck, { out, families })).rejects.toThrow(re);
    expectEmptyOrAbsent(out);
  });

  it('reports every problem at once, not just the first', async () => {
    const src = tmp();
    const ck = path.join(src, 'ckpt');
    writeCheckpoint(ck, toyWeights(), { edit: (t) => (t.delete('model.layers.0.mlp.up_proj.weight'), t.delete('model.layers.2.mlp.up_proj.weight')) });
    const err = await importHf(ck, { out: path.join(src, 'out'), families }).catch((e: Error) => e);
    expect(String(err)).toMatch(/2 parameter\(s\) do not match.*layers\.0\.mlp\.up_proj.*layers\.2\.mlp\.up_proj/s);
  });

  const shardCases: [string, (dir: string) => void, RegExp][] = [
    ['a listed shard is missing', (d) => fs.rmSync(path.join(d, 'model-00002-of-00003.safetensors')), /shard model-00002-of-00003\.safetensors is listed .* does not exist/],
    [
      'the index lists a tensor its shard lacks',
      (d) => editIndex(d, (wm) => (wm['model.extra.weight'] = 'model-00001-of-00003.safetensors')),
      /lists tensor 'model\.extra\.weight' in shard model-00001-of-00003\.safetensors, but .* has no such tensor/,
    ],
    [
      'a tensor in two shards',
      (d) => {
        const first = readSafetensors(path.join(d, 'model-00001-of-00003.safetensors')).tensors;
        const [name, t] = [...first][0]!;
        const f = path.join(d, 'model-00003-of-00003.safetensors');
        const third = readSafetensors(f).tensors;
        third.set(name, t);
        writeSafetensors(f, third);
      },
      /tensor '[^']+' is in two shards: model-00001-of-00003\.safetensors and model-00003-of-00003\.safetensors/,
    ],
    ['a shard outside the folder', (d) => editIndex(d, (wm) => (wm['model.norm.weight'] = '../x.safetensors')), /shard '\.\.\/x\.safetensors' .* is not a plain file name/],
    ['shards without an index', (d) => fs.rmSync(path.join(d, 'model.safetensors.index.json')), /found 3 shard file\(s\) .* but no model\.safetensors\.index\.json/],
    ['an index without weight_map', (d) => fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), '{"metadata": {}}'), /has no "weight_map" object/],
  ];
  it.each(shardCases)('sharded: %s', async (_n, damage, re) => {
    const src = tmp();
    const ck = path.join(src, 'ckpt');
    writeCheckpoint(ck, toyWeights(), { shards: 3 });
    damage(ck);
    const out = path.join(src, 'out');
    await expect(importHf(ck, { out, families })).rejects.toThrow(re);
    expectEmptyOrAbsent(out);
  });
});

function editIndex(dir: string, f: (wm: Record<string, string>) => void): void {
  const p = path.join(dir, 'model.safetensors.index.json');
  const j = JSON.parse(fs.readFileSync(p, 'utf8'));
  f(j.weight_map);
  fs.writeFileSync(p, JSON.stringify(j));
}

describe('src/io/hf.ts', () => {
  it('streams a conversion in chunks identical to a whole-tensor conversion', () => {
    const dir = tmp();
    const rng = new Rng(7);
    const vals = Array.from({ length: 1001 }, () => rng.normal() * 3);
    writeSafetensors(path.join(dir, 'model.safetensors'), { a: fromFloat64('bf16', [7, 143], vals), b: fromFloat64('f16', [1001], vals) });
    using c = HfCheckpoint.open(dir);
    for (const name of ['a', 'b']) {
      const whole = c.readAs(name, 'f32');
      const pieces = new Uint8Array(1001 * 4);
      const ats: number[] = [];
      c.stream(name, 'f32', (b, at) => (pieces.set(b, at), ats.push(at)), 100);
      expect(ats.length).toBe(11);
      expect(Array.from(new Float32Array(pieces.buffer))).toEqual(Array.from(whole.data as Float32Array));
      expect(Array.from(whole.data as Float32Array)).toEqual(Array.from(toFloat64(c.read(name))).map(Math.fround));
    }
    expect(() => c.readAs('a', 'i64')).toThrow(/tensor 'a' is bf16, which cannot be converted to the i64/);
  });

  it('converts between float dtypes like the scalar encoders', () => {
    const vals = [0, -0, 1, -2.5, 65504, 1e-8, 3.14159, Infinity, NaN];
    const f32 = new Uint8Array(Float32Array.from(vals).buffer);
    const bf = new Uint16Array(convertBytes('f32', f32, 'bf16').buffer.slice(0));
    expect(Array.from(bf)).toEqual(vals.map(f32ToBf16Bits));
    const back = new Float32Array(convertBytes('bf16', new Uint8Array(bf.buffer), 'f32').buffer.slice(0));
    expect(Array.from(back)).toEqual(Array.from(bf).map(bf16BitsToF32));
    const f64 = new Float64Array(convertBytes('bf16', new Uint8Array(bf.buffer), 'f64').buffer.slice(0));
    expect(Array.from(f64)).toEqual(Array.from(back));
  });

  it('detects prefix rules; never maps across layer indices or to a lone look-alike', () => {
    const graph = ['embed_tokens.weight', 'layers.0.mlp.w.weight', 'layers.1.mlp.w.weight', 'norm.weight'];
    const ckpt = ['language_model.model.embed_tokens.weight', 'language_model.model.layers.0.mlp.w.weight', 'language_model.model.layers.1.mlp.w.weight', 'language_model.model.norm.weight', 'lm_head.weight'];
    const rules = detectNameRules(graph, ckpt);
    expect(rules).toEqual([{ strip: '', add: 'language_model.model.' }]);
    // graph root differs from the checkpoint's: strip it
    expect(detectNameRules(graph.map((g) => `model.${g}`), ckpt)).toEqual([{ strip: '', add: 'language_model.' }]);
    expect(detectNameRules(graph.map((g) => `text.${g}`), ckpt)).toEqual([{ strip: 'text.', add: 'language_model.model.' }]);
    // two parts under different prefixes
    const two = detectNameRules(['vision.a.weight', 'vision.b.weight', 'text.a.weight', 'text.c.weight'], ['model.vision_tower.a.weight', 'model.vision_tower.b.weight', 'model.language_model.a.weight', 'model.language_model.c.weight']);
    expect(two).toHaveLength(2);
    const twoHave = new Set(['model.vision_tower.a.weight', 'model.vision_tower.b.weight', 'model.language_model.a.weight', 'model.language_model.c.weight']);
    expect(applyRules('text.a.weight', two, (n) => twoHave.has(n))).toBe('model.language_model.a.weight');
    expect(applyRules('vision.a.weight', two, (n) => twoHave.has(n))).toBe('model.vision_tower.a.weight');
    // a missing layer is not matched to another layer's tensor
    const miss = detectNameRules(graph, ckpt.filter((c) => !c.includes('layers.1')));
    expect(applyRules('layers.1.mlp.w.weight', miss, () => false)).toBe('language_model.model.layers.1.mlp.w.weight');
    // a lone missing norm is not matched to some other module's norm
    const lone = detectNameRules(['final.norm.weight', 'layers.0.x.weight', 'layers.1.x.weight'], ['m.layers.0.x.weight', 'm.layers.1.x.weight', 'vision.final.norm.weight']);
    expect(lone).toEqual([{ strip: '', add: 'm.' }]);
  });

  it('readHfConfig names the file', () => {
    const dir = tmp();
    expect(() => readHfConfig(dir)).toThrow(new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/config\\.json: not found`));
  });
});
