// import-hf: Hugging Face checkpoint folders (config.json + safetensors, single or sharded) ->
// one ONNX model with external data. Checkpoints are written here, by the test, with our own
// safetensors writer: tiny random weights, f32 or bf16, in temp folders.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { defineGraph, dim, Embedding, input, Module, range, RMSNorm, TransformerBlock, type Tensor } from '../src/dsl/index.ts';
import type { Graph } from '../src/ir/graph.ts';
import { Rng } from '../src/ir/init.ts';
import { bf16BitsToF32, f32ToBf16Bits, type DType } from '../src/ir/dtype.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../src/io/host.ts';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { applyRules, convertBytes, detectNameRules, HfCheckpoint, readHfConfig } from '../src/io/hf.ts';
import { importHf, type ImportFamily, type ImportGraph } from '../src/cli/import-hf.ts';
import { buildEncoder } from '../graphs/vlm/index.ts';
import { Session } from '../runtime/session.ts';
import { runOnnx, compare } from './helpers/harness.ts';
import { optimize, pipelineFor } from '../src/passes/pipeline.ts';
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

/** The graph as import-hf compiles it by default (fused for --target cpu), for bit-exact comparisons. */
function asImported(g: Graph): Graph {
  return optimize(g, { passes: pipelineFor('cpu') });
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
    expect(fs.readdirSync(out).filter((f) => f !== '.unifusion-output.json').sort()).toEqual(['manifest.json', 'toy_encoder.onnx', 'toy_encoder.onnx.data']);
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
    const want = await runOnnx(asImported(toyGraph(TOY, [0, 2, 3])), feeds().ref, { paramValues: paramValuesOf(tensors), target: 'cpu' });
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
    const want = await runOnnx(asImported(toyGraph(TOY, [1])), feeds().ref, { paramValues: paramValuesOf(tensors), target: 'cpu' });
    expect(Array.from(got['hidden_states.1']!.data as Float32Array)).toEqual(Array.from(Float32Array.from(want['hidden_states.1']!.data)));
  });

  it('finds graph names under other HF prefixes (language_model.model., none) and reports what it tried', async () => {
    for (const prefix of ['language_model.model.', '']) {
      const src = tmp();
      const tensors = writeCheckpoint(path.join(src, 'ckpt'), toyWeights(3), { prefix });
      const out = path.join(src, 'out');
      await importHf(path.join(src, 'ckpt'), { out, families });
      const got = await runImported(path.join(out, 'toy_encoder.onnx'));
      const want = await runOnnx(asImported(toyGraph(TOY, [TOY.layers])), feeds().ref, { paramValues: paramValuesOf(tensors, prefix), target: 'cpu' });
      expect(compare({ dtype: 'f32', shape: [10 * 16], data: Float64Array.from(got[`hidden_states.${TOY.layers}`]!.data as Float32Array) }, { ...want[`hidden_states.${TOY.layers}`]!, shape: [160] })).toBeNull();
    }
  });

  it("uses the family's checkpoint prefixes, or its own candidate names (tied copies)", async () => {
    const src = tmp();
    const ck = path.join(src, 'ckpt');
    // embed_tokens stored only as the tied lm_head; names under 'language_model.model.'
    const tensors = writeCheckpoint(ck, toyWeights(4), { prefix: 'language_model.model.', edit: (t) => (t.set('lm_head.weight', t.get('language_model.model.embed_tokens.weight')!), t.delete('language_model.model.embed_tokens.weight')) });
    const withGraph = (extra: Partial<ImportGraph>): ImportFamily => ({ ...toyFamily, build: async (c, o) => (await toyFamily.build!(c, o)).map((g) => ({ ...g, ...extra })) });
    // prefixes alone: the embedding is reported missing under the family's prefix
    await expect(importHf(ck, { out: path.join(src, 'out2'), families: [withGraph({ checkpointPrefixes: ['model.', 'language_model.model.'] })] })).rejects.toThrow(
      /missing tensor 'language_model\.model\.embed_tokens\.weight' \(for graph parameter 'embed_tokens\.weight'\)/,
    );
    expectEmptyOrAbsent(path.join(src, 'out2'));
    const names = (n: string) => (n === 'embed_tokens.weight' ? [`language_model.model.${n}`, 'lm_head.weight'] : [`language_model.model.${n}`]);
    const r = await importHf(ck, { out: path.join(src, 'out'), families: [withGraph({ checkpointNames: names })], taps: 'list:0,3' });
    expect(r.ignored).toEqual([]);
    const got = await runImported(path.join(src, 'out', 'toy_encoder.onnx'));
    const pv = paramValuesOf(tensors, 'language_model.model.');
    pv.set('embed_tokens.weight', paramValuesOf(new Map([['x.lm', tensors.get('lm_head.weight')!]]), 'x.').get('lm')!);
    const want = await runOnnx(asImported(toyGraph(TOY, [0, 3])), feeds().ref, { paramValues: pv, target: 'cpu' });
    expect(Array.from(got['hidden_states.3']!.data as Float32Array)).toEqual(Array.from(Float32Array.from(want['hidden_states.3']!.data)));
    // every candidate is named when none exists
    fs.rmSync(ck, { recursive: true });
    writeCheckpoint(ck, toyWeights(4), { prefix: 'language_model.model.', edit: (t) => (t.delete('lm_head.weight'), t.delete('language_model.model.embed_tokens.weight')) });
    await expect(importHf(ck, { out: path.join(src, 'out3'), families: [withGraph({ checkpointNames: names })] })).rejects.toThrow(
      /missing tensor 'language_model\.model\.embed_tokens\.weight' \(for graph parameter 'embed_tokens\.weight'\), f32\[40, 16\]; also looked for 'lm_head\.weight'/,
    );
  });

  it('a DIR with files it did not write is refused; --force adds the outputs beside them and never deletes them; DIR may never overlap the checkpoint', async () => {
    const src = tmp();
    writeCheckpoint(path.join(src, 'ckpt'), toyWeights());
    const out = path.join(src, 'out');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'keep.txt'), 'x');
    await expect(importHf(path.join(src, 'ckpt'), { out, families })).rejects.toThrow(/--out '.*out' already holds files unifusion did not write \('keep.txt'\).*--force/);
    expect(fs.readdirSync(out)).toEqual(['keep.txt']);
    await importHf(path.join(src, 'ckpt'), { out, families, force: true });
    expect(fs.readdirSync(out).sort()).toEqual(['.unifusion-output.json', 'keep.txt', 'manifest.json', 'toy_encoder.onnx', 'toy_encoder.onnx.data']);
    expect(fs.readFileSync(path.join(out, 'keep.txt'), 'utf8')).toBe('x');
    expect(fs.readdirSync(src).sort()).toEqual(['ckpt', 'out']);
    // the checkpoint itself, its parent, a folder inside it: refused even with --force, nothing touched
    const ckptFiles = fs.readdirSync(path.join(src, 'ckpt')).sort();
    for (const [o, re] of [[path.join(src, 'ckpt'), /is the input <checkpoint>/], [src, /contains the input <checkpoint>/], [path.join(src, 'ckpt', 'onnx'), /lies inside the input <checkpoint>/]] as const)
      await expect(importHf(path.join(src, 'ckpt'), { out: o, families, force: true })).rejects.toThrow(re);
    expect(fs.readdirSync(path.join(src, 'ckpt')).sort()).toEqual(ckptFiles);
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

  it('removes parent folders it created for DIR when the import fails', async () => {
    const src = tmp();
    const ck = path.join(src, 'ckpt');
    writeCheckpoint(ck, toyWeights(), { edit: (t) => t.delete('model.norm.weight') });
    await expect(importHf(ck, { out: path.join(src, 'a', 'b', 'out'), families })).rejects.toThrow(/missing tensor 'model\.norm\.weight'/);
    expect(fs.readdirSync(src)).toEqual(['ckpt']);
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

// ---------------------------------------------------------------------------------------------
// The real families, on the parity fixtures of the graph authors (transformers references)
// ---------------------------------------------------------------------------------------------

/** max |got - want| / max |want| over the positions [..., S, H] where `valid` [B, S] is set. */
function relErr(got: HostTensor, want: HostTensor, valid?: HostTensor): number {
  const g = toFloat64(got), w = toFloat64(want);
  expect(got.shape).toEqual(want.shape);
  const row = want.shape[want.shape.length - 1]!;
  let num = 0, den = 0;
  for (let i = 0; i < w.length; i++) {
    if (valid && !valid.data[Math.floor(i / row)]) continue;
    num = Math.max(num, Math.abs(g[i]! - w[i]!));
    den = Math.max(den, Math.abs(w[i]!));
  }
  return num / den;
}

async function runModel(onnx: string, feeds: Record<string, HostTensor>): Promise<Record<string, HostTensor>> {
  const s = await Session.load(onnx);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

const VLM_TEXT = 'test/fixtures/vlm-text';
const textCases = fs.readdirSync(VLM_TEXT).filter((d) => fs.existsSync(path.join(VLM_TEXT, d, 'io.safetensors')));

describe('import-hf: decoder LLM checkpoints (test/fixtures/vlm-text) match transformers', () => {
  it('has the fixtures', () => expect(textCases).toEqual(expect.arrayContaining(['qwen2', 'qwen2_5_vl_text', 'llama3', 'gemma3_text'])));

  it.each(textCases)('%s: every hidden state within 1e-4 of output_hidden_states (padded rows included)', async (c) => {
    const dir = path.join(VLM_TEXT, c);
    const io = readSafetensors(path.join(dir, 'io.safetensors'));
    const L = Number(io.metadata.num_hidden_layers ?? JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).num_hidden_layers);
    const out = path.join(tmp(c), 'out');
    const r = await importHf(dir, { out, taps: 'every:1:0' });
    expect(r.models).toHaveLength(1);
    const m = r.models[0]!.manifest;
    expect(m.inputs.map((i) => [i.name, i.dtype])).toEqual([['input_ids', 'i64'], ['attention_mask', 'i64']]);
    const got = await runModel(path.join(out, r.models[0]!.onnx), { input_ids: io.tensors.get('input_ids')!, attention_mask: io.tensors.get('attention_mask')! });
    for (let i = 0; i <= L; i++) {
      const err = relErr(got[`hidden_states.${i}`]!, io.tensors.get(`hidden_states.${i}`)!, i === 0 ? undefined : io.tensors.get('valid_mask'));
      expect(err, `${c} hidden_states.${i}`).toBeLessThan(1e-4);
    }
  });

  it('a sharded bf16 copy imports (converted per tensor) and equals the graph compiled with the same weights', async () => {
    const dir = path.join(VLM_TEXT, 'qwen2');
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const src = tmp('bf16');
    const ck = path.join(src, 'ckpt');
    fs.mkdirSync(ck);
    fs.writeFileSync(path.join(ck, 'config.json'), JSON.stringify(config));
    const f32 = readSafetensors(path.join(dir, 'model.safetensors')).tensors;
    const bf = new Map([...f32].map(([k, t]) => [k, fromFloat64('bf16', t.shape, toFloat64(t))]));
    const names = [...bf.keys()].sort();
    const wm: Record<string, string> = {};
    for (let s = 0; s < 2; s++) {
      const file = `model-0000${s + 1}-of-00002.safetensors`;
      const part = new Map(names.filter((_, i) => i % 2 === s).map((n) => ((wm[n] = file), [n, bf.get(n)!])));
      writeSafetensors(path.join(ck, file), part);
    }
    fs.writeFileSync(path.join(ck, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: wm }));
    const out = path.join(src, 'out');
    const r = await importHf(ck, { out, taps: 'list:1,4' });
    expect(r.conversions).toEqual({ 'bf16->f32': r.models[0]!.manifest.params.length });
    const io = readSafetensors(path.join(dir, 'io.safetensors')).tensors;
    const feeds = { input_ids: io.get('input_ids')!, attention_mask: io.get('attention_mask')! };
    const got = await runModel(path.join(out, r.models[0]!.onnx), feeds);
    const pv = paramValuesOf(bf);
    const refFeeds = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape, data: toFloat64(t) }]));
    const want = await runOnnx(asImported(buildEncoder(config, 'list:1,4').trace()), refFeeds, { paramValues: pv, target: 'cpu' });
    for (const k of ['hidden_states.1', 'hidden_states.4']) expect(Array.from(got[k]!.data as Float32Array)).toEqual(Array.from(Float32Array.from(want[k]!.data)));
    // and bf16 weights stay close to the fp32 reference on valid tokens
    expect(relErr(got['hidden_states.4']!, io.get('hidden_states.4')!, io.get('valid_mask'))).toBeLessThan(0.05);
  });

  it('--dtype f16: f32 weights converted to the graph dtype; outputs stay f32 and close', async () => {
    const dir = path.join(VLM_TEXT, 'qwen2');
    const out = path.join(tmp('f16'), 'out');
    const r = await importHf(dir, { out, taps: 'last', dtype: 'f16' });
    expect(r.conversions).toEqual({ 'f32->f16': r.models[0]!.manifest.params.length });
    expect(r.models[0]!.manifest.params.every((p) => p.dtype === 'f16')).toBe(true);
    const io = readSafetensors(path.join(dir, 'io.safetensors')).tensors;
    const got = await runModel(path.join(out, r.models[0]!.onnx), { input_ids: io.get('input_ids')!, attention_mask: io.get('attention_mask')! });
    expect(got['hidden_states.4']!.dtype).toBe('f32');
    expect(relErr(got['hidden_states.4']!, io.get('hidden_states.4')!, io.get('valid_mask'))).toBeLessThan(1e-2);
    await expect(importHf(dir, { out: path.join(out, 'x'), dtype: 'f8' as never })).rejects.toThrow(/--dtype must be f32, f16 or bf16, got 'f8'/);
  });

  it('a missing tensor of a real checkpoint is named with its HF name; nothing is written', async () => {
    const src = tmp('miss');
    const ck = path.join(src, 'ckpt');
    fs.mkdirSync(ck);
    fs.copyFileSync(path.join(VLM_TEXT, 'llama3', 'config.json'), path.join(ck, 'config.json'));
    const t = readSafetensors(path.join(VLM_TEXT, 'llama3', 'model.safetensors')).tensors;
    t.delete('model.layers.1.self_attn.o_proj.weight');
    writeSafetensors(path.join(ck, 'model.safetensors'), t);
    await expect(importHf(ck, { out: path.join(src, 'out'), taps: 'last' })).rejects.toThrow(/missing tensor 'model\.layers\.1\.self_attn\.o_proj\.weight' \(for graph parameter 'layers\.1\.self_attn\.o_proj\.weight'\)/);
    await expect(importHf(ck, { out: path.join(src, 'out'), taps: 'list:0,9' })).rejects.toThrow(/index 9 is outside hidden_states 0\.\.\d+/);
    expectEmptyOrAbsent(path.join(src, 'out'));
  });
});

/** A checkpoint folder from a vlm-vision fixture: config + the params under `keep`, optionally sharded. */
function folderFromFixture(file: string, config: object, keep: (n: string) => boolean, shards = 0, extra: Record<string, HostTensor> = {}): { dir: string; io: Map<string, HostTensor> } {
  const { tensors } = readSafetensors(file);
  const dir = path.join(tmp('vis'), 'ckpt');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const params = new Map([...tensors].filter(([n]) => keep(n)));
  for (const [k, v] of Object.entries(extra)) params.set(k, v);
  if (!shards) writeSafetensors(path.join(dir, 'model.safetensors'), params);
  else {
    const names = [...params.keys()].sort();
    const wm: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const f = `model-0000${s + 1}-of-0000${shards}.safetensors`;
      writeSafetensors(path.join(dir, f), new Map(names.filter((_, i) => i % shards === s).map((n) => ((wm[n] = f), [n, params.get(n)!]))));
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: wm }));
  }
  return { dir, io: tensors };
}

describe('import-hf: InternVL and T5 (test/fixtures/vlm-vision)', () => {
  it('internvl (sharded): text+image encoder with pixel_values; every hidden state matches transformers', async () => {
    const file = 'test/fixtures/vlm-vision/internvl.safetensors';
    const meta = readSafetensors(file).metadata;
    const { dir, io } = folderFromFixture(file, JSON.parse(meta.config!), (n) => n.startsWith('model.'), 3);
    const out = path.join(path.dirname(dir), 'out');
    const r = await importHf(dir, { out, taps: 'every:1:0' });
    const m = r.models[0]!.manifest;
    expect(m.inputs.map((i) => `${i.name}:${i.dtype}`)).toEqual(['input_ids:i64', 'attention_mask:i64', 'pixel_values:f32']);
    expect(m.outputs.map((o) => o.name)).toEqual(expect.arrayContaining(['hidden_states.0', 'hidden_states.3', 'image_mask', 'text_mask', 'pad_mask']));
    expect(r.ignored).toEqual([]);
    const got = await runModel(path.join(out, r.models[0]!.onnx), { input_ids: io.get('input_ids')!, attention_mask: io.get('attention_mask')!, pixel_values: io.get('pixel_values')! });
    for (let i = 0; i <= 3; i++) expect(relErr(got[`hidden_states.${i}`]!, io.get(`hidden_states.${i}`)!), `hidden_states.${i}`).toBeLessThan(1e-4);
    expect(Array.from(got.image_mask!.data as Uint8Array)).toEqual(Array.from(io.get('image_mask')!.data as Uint8Array));
  });

  it('t5 (decoder half and lm_head present, ignored): every hidden state matches transformers', async () => {
    const file = 'test/fixtures/vlm-vision/t5_gated.safetensors';
    const meta = readSafetensors(file).metadata;
    const config: Record<string, unknown> = { model_type: 't5', feed_forward_proj: meta.feed_forward_proj };
    for (const k of ['d_ff', 'd_kv', 'd_model', 'num_heads', 'num_layers', 'relative_attention_max_distance', 'relative_attention_num_buckets', 'vocab_size', 'layer_norm_epsilon']) config[k] = Number(meta[k]);
    const extra = { 'decoder.final_layer_norm.weight': fromFloat64('f32', [32], new Float64Array(32)), 'lm_head.weight': fromFloat64('f32', [128, 32], new Float64Array(128 * 32)) };
    const { dir, io } = folderFromFixture(file, config, (n) => n === 'shared.weight' || n.startsWith('encoder.'), 0, extra);
    const out = path.join(path.dirname(dir), 'out');
    const r = await importHf(dir, { out, taps: 'every:1:0' });
    expect(r.ignored.sort()).toEqual(['decoder.final_layer_norm.weight', 'lm_head.weight']);
    const got = await runModel(path.join(out, r.models[0]!.onnx), { input_ids: io.get('input_ids')!, attention_mask: io.get('attention_mask')! });
    for (let i = 0; i <= 3; i++) expect(relErr(got[`hidden_states.${i}`]!, io.get(`hidden_states.${i}`)!), `hidden_states.${i}`).toBeLessThan(1e-4);
  });
});

describe('import-hf: diffusers AutoencoderKL folder', () => {
  it('the original InternVL remote-code layout gets a pointer to the -hf checkpoint', async () => {
    const src = tmp('chat');
    fs.writeFileSync(path.join(src, 'config.json'), JSON.stringify({ model_type: 'internvl_chat', architectures: ['InternVLChatModel'] }));
    await expect(importHf(src, { out: path.join(src, 'out') })).rejects.toThrow(/unsupported architecture \(model_type 'internvl_chat'.*use the transformers '-hf' checkpoint/);
  });

  it('writes encoder and decoder graphs that match the reference; --taps is refused', async () => {
    const dir = 'test/fixtures/vae/flux-tiny';
    const ref = readSafetensors(path.join(dir, 'reference.safetensors')).tensors;
    const out = path.join(tmp('vae'), 'out');
    await expect(importHf(dir, { out, taps: 'last' })).rejects.toThrow(/--taps does not apply to a VAE/);
    expectEmptyOrAbsent(out);
    const r = await importHf(dir, { out });
    expect(r.models.map((m) => m.onnx)).toEqual(['vae_encoder.onnx', 'vae_decoder.onnx']);
    expect(fs.readdirSync(out).filter((f) => f !== '.unifusion-output.json').sort()).toEqual(['manifest.json', 'vae_decoder.onnx', 'vae_decoder.onnx.data', 'vae_encoder.onnx', 'vae_encoder.onnx.data']);
    const dec = await runModel(path.join(out, 'vae_decoder.onnx'), { latent: ref.get('latent_in')! });
    expect(relErr(dec.image!, ref.get('decoded')!)).toBeLessThan(1e-4);
    const enc = await runModel(path.join(out, 'vae_encoder.onnx'), { image: ref.get('image')! });
    expect(relErr(enc.latent!, ref.get('latent_mode')!)).toBeLessThan(1e-4);
  });
});

describe('unifusion import-hf (the CLI, in a child process)', () => {
  const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const cli = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const env = { ...process.env };
      delete env.UNIFUSION_DEBUG;
      execFile(process.execPath, [path.join(ROOT, 'bin', 'unifusion.mjs'), 'import-hf', ...args], { cwd: ROOT, env, timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
      );
    });

  it('imports with the default taps (every:3) and prints what it wrote and ignored', async () => {
    const src = tmp('cli');
    const ck = path.join(src, 'ckpt');
    fs.mkdirSync(ck);
    fs.copyFileSync(path.join(VLM_TEXT, 'qwen2', 'config.json'), path.join(ck, 'config.json'));
    const t = readSafetensors(path.join(VLM_TEXT, 'qwen2', 'model.safetensors')).tensors;
    t.set('lm_head.weight', t.get('model.embed_tokens.weight')!);
    writeSafetensors(path.join(ck, 'model.safetensors'), t);
    const out = path.join(src, 'out');
    const r = await cli(ck, '--out', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // the encoder reads its weights from the generation graph's data file (one copy of the weights)
    expect(r.stdout).toMatch(/imported .*ckpt \(qwen2\) -> .*out in [\d.]+ s\n  qwen2-encoder\.onnx \+ qwen2-generation\.onnx\.data: /);
    expect(r.stdout).toMatch(/outputs: hidden_states\.3 f32\[batch, seq, 32\]; text_mask bool\[batch, seq\]; pad_mask bool\[batch, seq\]/);
    expect(r.stdout).toMatch(/qwen2-generation\.onnx \+ qwen2-generation\.onnx\.data: .*\n.*inputs:  input_ids i64\[batch, seq\]; attention_mask i64\[batch, past\+seq\]/);
    // every layer is used by the generation graph; the config ties the head to the embeddings, so lm_head is unused
    expect(r.stdout).toMatch(/ignored 1 checkpoint tensor\(s\) the graph does not use \(e\.g\. lm_head\.weight/);
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    expect(m.taps).toBe('every:3');
    expect(m.ignoredTensors).toBe(1);
    expect(fs.readdirSync(out).sort()).toEqual(['.unifusion-output.json', 'config.json', 'manifest.json', 'qwen2-encoder.onnx', 'qwen2-generation.onnx', 'qwen2-generation.onnx.data']);
  });

  it('an unknown architecture: exit 1, one line naming config.json and the supported families, nothing written', async () => {
    const src = tmp('cli');
    const ck = path.join(src, 'ckpt');
    fs.mkdirSync(ck);
    fs.writeFileSync(path.join(ck, 'config.json'), JSON.stringify({ model_type: 'mamba' }));
    const out = path.join(src, 'out');
    const r = await cli(ck, '--out', out, '--taps', 'last');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*ckpt\/config\.json: unsupported architecture \(model_type 'mamba'\); supported: qwen2, .*llama.*gemma3_text.*; internvl .*; t5 .*; AutoencoderKL/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expectEmptyOrAbsent(out);
  });
});

describe('import-hf --target', () => {
  const GEN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'vlm-gen', 'qwen2');
  it('fuses every graph for the target (default cpu); cuda turns the generation graph\'s cached attention into Attention-23 with past', async () => {
    const root = tmp('target');
    const src = path.join(root, 'ckpt');
    fs.mkdirSync(src);
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(GEN, f), path.join(src, f));
    const byDefault = await importHf(src, { out: path.join(root, 'cpu'), taps: 'last' });
    const L = 3;
    for (const m of [byDefault.models[0]!, byDefault.vlm!.generation!]) expect(m.manifest.target).toBe('cpu');
    expect(byDefault.vlm!.generation!.manifest.fused).toMatchObject({ sdpa: L, rope: 2 * L });
    expect(byDefault.vlm!.generation!.manifest.fused.kv_sdpa).toBeUndefined();
    const cuda = await importHf(src, { out: path.join(root, 'cuda'), taps: 'last', target: 'cuda' });
    expect(cuda.vlm!.generation!.manifest.target).toBe('cuda');
    expect(cuda.vlm!.generation!.manifest.fused).toMatchObject({ kv_sdpa: 3 * L });
    await expect(importHf(src, { out: path.join(root, 'bad'), target: 'tpu' as never })).rejects.toThrow(/--target must be one of cpu, cuda, webgpu, portable, got 'tpu'/);
    expectEmptyOrAbsent(path.join(root, 'bad'));
  });
});
