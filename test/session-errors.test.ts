// The runtime refuses what cannot give a right answer and explains onnxruntime's failures in the
// user's terms (runtime/session.ts, runtime/ort-errors.ts), in process.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileGraph, writeCompiled } from '../src/compiler.ts';
import { dim, dimDiv, dimMul, Embedding, input, Linear, Module, trace, type Tensor } from '../src/dsl/index.ts';
import { fromFloat64, type HostTensor } from '../src/io/host.ts';
import { Session, SessionError } from '../runtime/session.ts';
import { cleanOrtMessage, explainLoadError } from '../runtime/ort-errors.ts';
import { f32ToF16Bits } from '../src/ir/dtype.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-session-errors-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

class Patchify extends Module {
  proj = new Linear(16, 8);
  forward(latents: Tensor): Tensor {
    const [B, C, H, W] = latents.shape;
    const h = dimDiv(H!, 2), w = dimDiv(W!, 2);
    return this.proj.forward(latents.reshape(B!, C!, h, 2, w, 2).transpose(0, 2, 4, 1, 3, 5).reshape(B!, dimMul(h, w), 16));
  }
}

async function tokensModel(weights: 'embed' | 'skeleton' | 'external' = 'embed'): Promise<string> {
  const embed = new Embedding(300, 8).named('vlm.embed_tokens');
  const dit = new Patchify().named('dit');
  const g = trace('tok', () => {
    const ids = input('input_ids', 'i64', [dim('batch'), dim('seq')]);
    const lat = input('latents', 'f32', [dim('batch'), 4, dimMul(dim('h'), 2), dimMul(dim('w'), 2)]);
    return { hidden: embed.forward(ids), patches: dit.forward(lat) };
  });
  const dir = fs.mkdtempSync(path.join(root, `${weights}-`));
  const w = await writeCompiled(dir, compileGraph(g, { weights }));
  return w.onnxPath;
}

const lat = (h: number, w: number, fill = 0.25): HostTensor => fromFloat64('f32', [1, 4, h, w], new Float64Array(4 * h * w).fill(fill));

describe('onnxruntime errors in the user terms', () => {
  it('an id past the vocabulary names the input, its value and position, the table and its module', async () => {
    const s = await Session.load(await tokensModel());
    const err = await s.run({ input_ids: fromFloat64('i64', [1, 6], [1, 2, 3, 4, 1672, 6]), latents: lat(4, 4) }).catch((e: unknown) => e);
    await s.release();
    expect(err).toBeInstanceOf(SessionError);
    expect((err as Error).message).toMatch(
      /input 'input_ids' holds 1672 at \[0, 4\], but the vocabulary of 'vlm\/embed_tokens' has 300 entries \('vlm\.embed_tokens\.weight' is \[300, 8\]\), so its values must lie in 0\.\.299 \(Gather node 'vlm\/embed_tokens\/Gather_0', in module 'vlm\/embed_tokens', made at test\/session-errors\.test\.ts:\d+\)/,
    );
    expect((err as Error).message).not.toMatch(/onnxruntime_src|\.cc:|Non-zero status/);
  });

  it('a latent size that is not a multiple of the patch is refused before onnxruntime, naming the input and dim', async () => {
    const s = await Session.load(await tokensModel());
    await expect(s.run({ input_ids: fromFloat64('i64', [1, 1], [1]), latents: lat(9, 8) })).rejects.toThrow(
      /input 'latents': dim 2 is 9, but the model declares it as h\*2, so it must be a multiple of 2 \(expected \[batch, 4, h\*2, w\*2\], given f32\[1, 4, 9, 8\]\)/,
    );
    // and h, w, batch stay consistent across the feeds
    await expect(s.run({ input_ids: fromFloat64('i64', [2, 1], [1, 2]), latents: lat(8, 8) })).rejects.toThrow(/symbolic dim 'batch' is 1 at axis 0, but 2 in input 'input_ids'/);
    const ok = await s.run({ input_ids: fromFloat64('i64', [1, 1], [1]), latents: lat(6, 8) });
    expect(ok.patches!.shape).toEqual([1, 12, 8]);
    await s.release();
  });

  it('other kernel failures name the node, its module, the file:line and the inputs it depends on, without C++ internals', () => {
    const raw =
      "Non-zero status code returned while running Reshape node. Name:'dit/Reshape_0' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, onnxruntime::TensorShapeVector&, bool) input_shape_size == requested_shape_size was false. The input tensor cannot be reshaped to the requested shape. Input shape:{1,4,9,8}, requested shape:{1,4,4,2,4,2}";
    expect(cleanOrtMessage(raw.slice(raw.indexOf('/onnxruntime_src')))).toBe('The input tensor cannot be reshaped to the requested shape. Input shape:[1, 4, 9, 8], requested shape:[1, 4, 4, 2, 4, 2]');
  });

  it('load failures on a device say what to do', () => {
    expect(explainLoadError('OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library', 'cuda')).toMatch(/CUDA execution provider is not available .*npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12/);
    expect(explainLoadError('Failed to get a WebGPU adapter: No supported adapters', 'webgpu')).toMatch(/no WebGPU adapter was found/);
    expect(explainLoadError('no available backend found. ERR: [tpu] backend not found.', 'tpu')).toMatch(/unknown device 'tpu'; onnxruntime-node here offers: cpu/);
  });
});

describe('refusing what cannot give a right answer', () => {
  it('a model compiled with --weights skeleton is refused (it would compute with zeros), unless allowSkeleton', async () => {
    const m = await tokensModel('skeleton');
    await expect(Session.load(m)).rejects.toThrow(/was compiled with --weights skeleton: its weights were never written, so every output would be wrong; compile it with --weights embed or --weights external/);
    await expect(Session.load(new Uint8Array(fs.readFileSync(m)))).rejects.toThrow(/--weights skeleton/);
    const s = await Session.load(m, { allowSkeleton: true });
    await s.release();
    // the same graph with real (seeded) weights loads
    const real = await Session.load(await tokensModel('external'));
    await real.release();
  });
});

describe('NaN / inf warnings', () => {
  it('name the input or output and count the values (f32 and f16), and can be turned off', async () => {
    const g = trace('nan', () => {
      const x = input('x', 'f32', [2, 3]);
      const h = input('h', 'f16', [2]);
      return { y: x.log(), h2: h.add(h) };
    });
    const dir = fs.mkdtempSync(path.join(root, 'nan-'));
    const w = await writeCompiled(dir, compileGraph(g));
    const warnings: string[] = [];
    const s = await Session.load(w.onnxPath, { onWarning: (m) => warnings.push(m) });
    const h = { dtype: 'f16' as const, shape: [2], data: Uint16Array.of(f32ToF16Bits(1), 0x7c00) };
    await s.run({ x: fromFloat64('f32', [2, 3], [1, NaN, 2, -1, 3, 4]), h });
    expect(warnings).toEqual([
      "input 'x' f32[2, 3] holds 1 NaN of 6 values (first at [0, 1])",
      "input 'h' f16[2] holds 1 inf of 2 values (first at [1])",
      "output 'y' f32[2, 3] holds 2 NaN of 6 values (first at [0, 1])",
      "output 'h2' f16[2] holds 1 inf of 2 values (first at [1])",
    ]);
    await s.release();
    const quiet = await Session.load(w.onnxPath, { onWarning: (m) => warnings.push(m), checkFinite: false });
    await quiet.run({ x: fromFloat64('f32', [2, 3], [NaN, 1, 1, 1, 1, 1]), h });
    await quiet.release();
    expect(warnings).toHaveLength(4);
  });
});
