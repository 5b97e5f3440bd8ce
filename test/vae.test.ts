// The AutoencoderKL graphs (graphs/vae.ts) against float64 PyTorch references of tiny
// diffusers-format folders (test/fixtures/vae, from scripts/py/gen_vae_fixtures.py), and
// the diffusers folder importer (src/io/diffusers.ts): sharded and legacy-named
// checkpoints, and the errors that must leave the output folder untouched.
//
// Tolerance (fp32): |got - want| <= 1e-5 * max|want| + 1e-4 * |want| per element (TOL.f32).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import vaeGraph, { traceVaeDecoder, traceVaeEncoder, VAE_CONFIGS, type VaeConfig } from '../graphs/vae.ts';
import { DiffusersImportError, importDiffusersVae, vaeConfigFromDiffusers, writeFolderAtomically, type VaeManifest } from '../src/io/diffusers.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import type { RefTensor } from '../src/ir/ref.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../src/io/host.ts';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { Session } from '../runtime/session.ts';
import { runOnnx, TOL } from './helpers/harness.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'vae');
const CASES = ['flux-tiny', 'sd-tiny'];

interface Fixture {
  dir: string;
  config: VaeConfig;
  rawConfig: Record<string, unknown>;
  weights: Map<string, HostTensor>;
  ref: Map<string, HostTensor>;
}

function loadFixture(name: string): Fixture {
  const dir = path.join(FIXTURES, name);
  const rawConfig = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  return {
    dir,
    rawConfig,
    config: vaeConfigFromDiffusers(rawConfig),
    weights: readSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors')).tensors,
    ref: readSafetensors(path.join(dir, 'reference.safetensors')).tensors,
  };
}

const toRef = (t: HostTensor): RefTensor => ({ dtype: t.dtype, shape: [...t.shape], data: toFloat64(t) });

function get(m: ReadonlyMap<string, HostTensor>, name: string): HostTensor {
  const t = m.get(name);
  if (!t) throw new Error(`no tensor '${name}' (has ${[...m.keys()].join(', ')})`);
  return t;
}

/** Worst error in units of TOL.f32 (<= 1 passes) and the largest relative-to-scale error. */
function measure(got: RefTensor | HostTensor, want: HostTensor): { ratio: number; rel: number } {
  expect([...got.shape]).toEqual(want.shape);
  const g = got.data instanceof Float64Array ? got.data : toFloat64(got as HostTensor);
  const w = toFloat64(want);
  const { atol, rtol } = TOL.f32;
  let scale = 0;
  for (const v of w) scale = Math.max(scale, Math.abs(v));
  let ratio = 0, maxAbs = 0;
  for (let i = 0; i < w.length; i++) {
    const d = Math.abs(g[i]! - w[i]!);
    if (Number.isNaN(d)) return { ratio: Infinity, rel: NaN };
    maxAbs = Math.max(maxAbs, d);
    ratio = Math.max(ratio, d / (atol * scale + rtol * Math.abs(w[i]!)));
  }
  return { ratio, rel: maxAbs / scale };
}

function expectClose(what: string, got: RefTensor | HostTensor | undefined, want: HostTensor): void {
  expect(got, what).toBeDefined();
  const m = measure(got!, want);
  if (process.env.UNIFUSION_PARITY_REPORT) console.log(`${what}: max abs err / max |ref| = ${m.rel.toExponential(2)} (${m.ratio.toFixed(3)}x tol)`);
  expect(m.ratio, `${what}: ${m.ratio.toFixed(2)}x tolerance (max abs err / scale ${m.rel})`).toBeLessThanOrEqual(1);
}

describe('AutoencoderKL graphs match the float64 PyTorch reference', () => {
  it('the fixture folder holds exactly the tested cases', () => {
    expect(fs.readdirSync(FIXTURES).filter((f) => fs.statSync(path.join(FIXTURES, f)).isDirectory()).sort()).toEqual([...CASES].sort());
  });

  it.each(CASES)('%s: sampled encode and decode, in onnxruntime and the f64 evaluator', async (name) => {
    const fx = loadFixture(name);
    const enc = traceVaeEncoder(fx.config, { sample: true });
    const dec = traceVaeDecoder(fx.config);
    // every parameter comes from the checkpoint, and every checkpoint tensor is used
    const names = [...enc.params(), ...dec.params()].map((p) => p.params.name).sort();
    expect(names).toEqual([...fx.weights.keys()].sort());
    const paramRef = new Map([...fx.weights].map(([k, v]) => [k, toRef(v)] as const));

    const encFeeds = { image: toRef(get(fx.ref, 'image')), noise: toRef(get(fx.ref, 'noise')) };
    const decFeeds = { latent: toRef(get(fx.ref, 'latent_in')) };
    const engines = {
      onnxruntime: { enc: await runOnnx(enc, encFeeds, { paramValues: fx.weights }), dec: await runOnnx(dec, decFeeds, { paramValues: fx.weights }) },
      reference: { enc: evaluate(enc, encFeeds, { params: paramRef }), dec: evaluate(dec, decFeeds, { params: paramRef }) },
    };
    for (const [engine, r] of Object.entries(engines)) {
      expectClose(`${name} ${engine} mean`, r.enc.mean, get(fx.ref, 'mean'));
      expectClose(`${name} ${engine} logvar`, r.enc.logvar, get(fx.ref, 'logvar'));
      expectClose(`${name} ${engine} latent (sampled)`, r.enc.latent, get(fx.ref, 'latent_sample'));
      expectClose(`${name} ${engine} decoded image`, r.dec.image, get(fx.ref, 'decoded'));
    }
  }, 60_000); // the f64 evaluator's convolutions take a few seconds on one core

  it('graphs keep batch and latent size symbolic, image sides as multiples of the factor', () => {
    const enc = traceVaeEncoder(VAE_CONFIGS.tiny, { sample: true });
    const shapes = (ios: { name: string; shape: readonly unknown[] }[]) => Object.fromEntries(ios.map((i) => [i.name, i.shape.map(String)]));
    expect(shapes(enc.inputs.map((i) => ({ name: i.params.name, shape: i.shape })))).toEqual({
      image: ['batch', '3', 'latent_h*8', 'latent_w*8'],
      noise: ['batch', '16', 'latent_h', 'latent_w'],
    });
    expect(shapes(enc.outputs.map((o) => ({ name: o.name, shape: o.node.shape })))).toEqual({
      latent: ['batch', '16', 'latent_h', 'latent_w'],
      mean: ['batch', '16', 'latent_h', 'latent_w'],
      logvar: ['batch', '16', 'latent_h', 'latent_w'],
    });
    const dec = traceVaeDecoder(VAE_CONFIGS.tiny, { latentSize: [4, 6] });
    expect(dec.inputs.map((i) => i.shape.map(String))).toEqual([['batch', '16', '4', '6']]);
    expect(dec.outputs.map((o) => o.node.shape.map(String))).toEqual([['batch', '3', '32', '48']]);
  });

  it('full-size layouts have the published parameter counts (traced, no weights)', () => {
    const count = (c: VaeConfig) => traceVaeEncoder(c).paramCount() + traceVaeDecoder(c).paramCount();
    // the SD 1.x/2.x VAE (AutoencoderKL, 4 latent channels, quant convs): 83,653,863
    expect(count(VAE_CONFIGS.sd)).toBe(83_653_863);
    // FLUX.1 / SD3: 16 latent channels, no quant convs
    expect(count(VAE_CONFIGS.flux)).toBe(83_819_683);
    expect(count(VAE_CONFIGS.sd3)).toBe(83_819_683);
  });

  it('the graph file traces every preset', () => {
    for (const p of Object.keys(vaeGraph.presets).filter((k) => k.startsWith('tiny'))) expect(vaeGraph.trace(p).outputs.length).toBeGreaterThan(0);
    expect(Object.keys(vaeGraph.presets).sort()).toEqual(['flux-decoder', 'flux-encoder', 'sd-decoder', 'sd-encoder', 'sd3-decoder', 'sd3-encoder', 'tiny-decoder', 'tiny-encoder']);
  });
});

describe('vaeConfigFromDiffusers', () => {
  it('applies diffusers defaults for keys a config.json omits', () => {
    const c = vaeConfigFromDiffusers({ _class_name: 'AutoencoderKL', block_out_channels: [32, 64], norm_num_groups: 32 });
    expect(c).toMatchObject({ inChannels: 3, latentChannels: 4, layersPerBlock: 1, useQuantConv: true, usePostQuantConv: true, midBlockAddAttention: true, scalingFactor: 0.18215, shiftFactor: 0 });
  });
  it.each([
    [{ block_out_channels: [32] }, /no _class_name/],
    [{ _class_name: 'AutoencoderKLWan' }, /unknown _class_name "AutoencoderKLWan"/],
    [{ _class_name: 'AutoencoderKL', block_out_channels: [24], norm_num_groups: 32 }, /24 channels .* 32 groups/],
    [{ _class_name: 'AutoencoderKL', act_fn: 'gelu', norm_num_groups: 8 }, /act_fn "gelu"/],
    [{ _class_name: 'AutoencoderKL', up_block_types: ['AttnUpDecoderBlock2D'], norm_num_groups: 8 }, /only UpDecoderBlock2D/],
    [{ _class_name: 'AutoencoderKL', latents_mean: [0, 0, 0, 0], norm_num_groups: 8 }, /latents_mean and latents_std/],
  ])('rejects %j', (json, msg) => {
    expect(() => vaeConfigFromDiffusers(json)).toThrow(msg);
  });
});

describe('importDiffusersVae', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-vae-'));
  });
  afterAll(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function runImported(out: string, fx: Fixture): Promise<{ latent: HostTensor; image: HostTensor }> {
    const enc = await Session.load(path.join(out, 'vae_encoder.onnx'));
    const dec = await Session.load(path.join(out, 'vae_decoder.onnx'));
    try {
      const { latent } = await enc.run({ image: get(fx.ref, 'image') }, ['latent']);
      const { image } = await dec.run({ latent: get(fx.ref, 'latent_in') });
      return { latent: latent!, image: image! };
    } finally {
      await enc.release();
      await dec.release();
    }
  }

  it('writes encoder and decoder with external weights that reproduce the reference', async () => {
    const fx = loadFixture('flux-tiny');
    const out = path.join(tmp, 'flux', 'out');
    const res = await importDiffusersVae(fx.dir, out);
    expect(fs.readdirSync(out).filter((f) => f !== '.unifusion-output.json').sort()).toEqual(['manifest.json', 'vae_decoder.onnx', 'vae_decoder.onnx.data', 'vae_encoder.onnx', 'vae_encoder.onnx.data']);
    expect(fs.readdirSync(path.dirname(out))).toEqual(['out']); // no staging leftovers
    expect(res.paramCount).toBe([...fx.weights.values()].reduce((a, t) => a + t.data.length, 0));
    const m = JSON.parse(fs.readFileSync(res.manifest, 'utf8')) as VaeManifest;
    expect(m).toMatchObject({ format: 'unifusion-vae', className: 'AutoencoderKL', factor: 8, latentShift: 0.1159, latentScale: 0.3611 });
    expect(m.graphs.encoder.inputs).toEqual([{ name: 'image', dtype: 'f32', shape: ['batch', 3, 'latent_h*8', 'latent_w*8'] }]);
    expect(m.graphs.decoder.weights).toBe('external');
    const r = await runImported(out, fx);
    expectClose('imported flux-tiny latent (mode)', r.latent, get(fx.ref, 'latent_mode'));
    expectClose('imported flux-tiny decoded image', r.image, get(fx.ref, 'decoded'));
  });

  it('reads a pipeline root (vae/), sharded weights with an index, and pre-refactor attention names', async () => {
    const fx = loadFixture('flux-tiny');
    const vae = path.join(tmp, 'pipeline', 'vae');
    fs.mkdirSync(vae, { recursive: true });
    fs.copyFileSync(path.join(fx.dir, 'config.json'), path.join(vae, 'config.json'));
    const legacy = (n: string) => n.replace(/\.to_q\./, '.query.').replace(/\.to_k\./, '.key.').replace(/\.to_v\./, '.value.').replace(/\.to_out\.0\./, '.proj_attn.');
    const names = [...fx.weights.keys()].sort();
    const shards = [names.slice(0, 100), names.slice(100)];
    const weightMap: Record<string, string> = {};
    shards.forEach((ns, i) => {
      const file = `diffusion_pytorch_model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(path.join(vae, file), new Map(ns.map((n) => [legacy(n), fx.weights.get(n)!] as const)));
      for (const n of ns) weightMap[legacy(n)] = file;
    });
    expect(Object.keys(weightMap).some((n) => n.includes('.proj_attn.'))).toBe(true);
    fs.writeFileSync(path.join(vae, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const out = path.join(tmp, 'sharded-out');
    await importDiffusersVae(path.dirname(vae), out);
    const r = await runImported(out, fx);
    expectClose('sharded flux-tiny latent (mode)', r.latent, get(fx.ref, 'latent_mode'));
    expectClose('sharded flux-tiny decoded image', r.image, get(fx.ref, 'decoded'));
  });

  it('converts f16 checkpoints to f32 graphs (sampling with a noise input on request) and emits f16 graphs', async () => {
    const fx = loadFixture('sd-tiny');
    const dir = path.join(tmp, 'sd-f16');
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(fx.dir, 'config.json'), path.join(dir, 'config.json'));
    const half = new Map([...fx.weights].map(([k, t]) => [k, fromFloat64('f16', t.shape, toFloat64(t))] as const));
    writeSafetensors(path.join(dir, 'diffusion_pytorch_model.fp16.safetensors'), half);
    const out = path.join(tmp, 'sd-f16-out');
    await importDiffusersVae(dir, out, { variant: 'fp16', sample: true });
    const enc = await Session.load(path.join(out, 'vae_encoder.onnx'));
    try {
      expect(enc.inputs.map((i) => i.name)).toEqual(['image', 'noise']);
      const { latent } = await enc.run({ image: get(fx.ref, 'image'), noise: get(fx.ref, 'noise') }, ['latent']);
      // f16-rounded weights: the same function up to ~1e-3
      const m = measure(latent!, get(fx.ref, 'latent_sample'));
      expect(m.rel).toBeLessThan(2e-2);
    } finally {
      await enc.release();
    }
    // and an f16 graph (f16 weights, inputs and outputs; norm statistics and softmax in f32)
    const out16 = path.join(tmp, 'sd-f16-graph');
    await importDiffusersVae(dir, out16, { variant: 'fp16', dtype: 'f16' });
    const dec = await Session.load(path.join(out16, 'vae_decoder.onnx'));
    try {
      const li = get(fx.ref, 'latent_in');
      const { image } = await dec.run({ latent: fromFloat64('f16', li.shape, toFloat64(li)) });
      expect(image!.dtype).toBe('f16');
      expect(measure(image!, get(fx.ref, 'decoded')).rel).toBeLessThan(5e-3);
    } finally {
      await dec.release();
    }
  });

  describe('errors name the tensor and leave the output folder untouched', () => {
    type Mutate = (cfg: Record<string, unknown>, w: Map<string, HostTensor>) => void;
    const cases: [string, Mutate, RegExp, string | undefined][] = [
      ['missing tensor', (_c, w) => void w.delete('decoder.up_blocks.1.resnets.2.conv1.weight'), /missing tensor 'decoder\.up_blocks\.1\.resnets\.2\.conv1\.weight' \(expected f32 \[8, 8, 3, 3\]\)/, 'decoder.up_blocks.1.resnets.2.conv1.weight'],
      [
        'wrong shape',
        (_c, w) => void w.set('encoder.conv_in.weight', fromFloat64('f32', [8, 3, 1, 1], new Float64Array(24))),
        /tensor 'encoder\.conv_in\.weight' has shape \[8, 3, 1, 1\], the config needs \[8, 3, 3, 3\]/,
        'encoder.conv_in.weight',
      ],
      [
        'wrong dtype',
        (_c, w) => void w.set('quant_conv.bias', { dtype: 'i64', shape: [8], data: new BigInt64Array(8) }),
        /tensor 'quant_conv\.bias' has dtype i64, expected a float tensor/,
        'quant_conv.bias',
      ],
      ['unknown class', (c) => void (c._class_name = 'VQModel'), /unknown _class_name "VQModel"/, undefined],
      ['tensor the config does not use', (c) => void (c.use_quant_conv = false), /unexpected tensor 'quant_conv\.bias'/, 'quant_conv.bias'],
      ['mis-shaped config', (c) => void (c.norm_num_groups = 3), /8 channels .* 3 groups/, undefined],
    ];

    it.each(cases)('%s', async (_what, mutate, msg, tensor) => {
      const fx = loadFixture('sd-tiny');
      const dir = fs.mkdtempSync(path.join(tmp, 'bad-'));
      const cfg = structuredClone(fx.rawConfig);
      const w = new Map(fx.weights);
      mutate(cfg, w);
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
      writeSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), w);

      const fresh = path.join(dir, 'nested', 'out'); // absent, and so is its parent
      const err = await importDiffusersVae(dir, fresh).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DiffusersImportError);
      expect((err as Error).message).toMatch(msg);
      expect((err as DiffusersImportError).tensor).toBe(tensor);
      expect(fs.existsSync(path.join(dir, 'nested'))).toBe(false);

      const existing = path.join(dir, 'existing');
      fs.mkdirSync(existing);
      fs.writeFileSync(path.join(existing, 'keep.txt'), 'x');
      await expect(importDiffusersVae(dir, existing)).rejects.toThrow(msg);
      expect(fs.readdirSync(existing)).toEqual(['keep.txt']);
      expect(fs.readdirSync(dir).filter((f) => f.includes('staging'))).toEqual([]);
    });

    it('a shard index pointing outside the folder or at a missing shard', async () => {
      const fx = loadFixture('sd-tiny');
      const dir = fs.mkdtempSync(path.join(tmp, 'bad-index-'));
      fs.copyFileSync(path.join(fx.dir, 'config.json'), path.join(dir, 'config.json'));
      const index = path.join(dir, 'diffusion_pytorch_model.safetensors.index.json');
      fs.writeFileSync(index, JSON.stringify({ weight_map: { 'encoder.conv_in.weight': '../escape.safetensors' } }));
      await expect(importDiffusersVae(dir, path.join(dir, 'out'))).rejects.toThrow(/tensor 'encoder\.conv_in\.weight' maps to "\.\.\/escape\.safetensors"/);
      fs.writeFileSync(index, JSON.stringify({ weight_map: { 'encoder.conv_in.weight': 'part-1.safetensors' } }));
      await expect(importDiffusersVae(dir, path.join(dir, 'out'))).rejects.toThrow(/shard 'part-1\.safetensors' \(holding tensor 'encoder\.conv_in\.weight'\) does not exist/);
      expect(fs.existsSync(path.join(dir, 'out'))).toBe(false);
    });

    it('a failure while writing removes what was staged', async () => {
      const dir = fs.mkdtempSync(path.join(tmp, 'write-fail-'));
      const boom = async (stage: string) => {
        fs.writeFileSync(path.join(stage, 'vae_encoder.onnx'), 'partial');
        throw new Error('disk full');
      };
      await expect(writeFolderAtomically(path.join(dir, 'a', 'b'), boom)).rejects.toThrow('disk full');
      expect(fs.readdirSync(dir)).toEqual([]);
      fs.mkdirSync(path.join(dir, 'c'));
      await expect(writeFolderAtomically(path.join(dir, 'c'), boom)).rejects.toThrow('disk full');
      expect(fs.readdirSync(dir)).toEqual(['c']);
      expect(fs.readdirSync(path.join(dir, 'c'))).toEqual([]);
    });
  });
});
