// Parity of the DSL's composite ops and modules with PyTorch reference outputs
// (test/fixtures/composites, see its README). Each fixture is built with the DSL,
// run (1) in onnxruntime (CPU) and (2) in the float64 reference evaluator, and both
// are compared with the stored PyTorch output.
//
// Tolerance (fp32): |got - want| <= atol * scale + rtol * |want| with atol 1e-5,
// rtol 1e-4 (TOL.f32) and scale = max |want| of that output, so atol is relative to
// the output's magnitude.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Attention,
  Conv2d,
  dim,
  gelu,
  gridPositions,
  GroupNorm,
  input,
  LayerNorm,
  MLP,
  range,
  RMSNorm,
  rope,
  sdpa,
  silu,
  swiglu,
  trace,
  type Tensor,
} from '../src/dsl/index.ts';
import type { Graph } from '../src/ir/graph.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import type { RefTensor } from '../src/ir/ref.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { toFloat64, type HostTensor } from '../src/io/host.ts';
import { runOnnx, TOL } from './helpers/harness.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'composites');

const B = dim('batch');
const S = dim('seq');

interface Case {
  file: string;
  /** Builds the graph; `meta` is the fixture's __metadata__. */
  build: (meta: Record<string, string>) => Graph;
  /** graph input name -> fixture tensor name */
  inputs: Record<string, string>;
  /** fixture tensors fed as module params under the same name */
  params?: string[];
  /** graph output name -> fixture tensor name holding the PyTorch result */
  outputs: Record<string, string>;
}

const num = (meta: Record<string, string>, key: string): number => {
  const v = meta[key];
  if (v === undefined) throw new Error(`fixture metadata lacks '${key}'`);
  return Number(v);
};

function sdpaCase(file: string, opts: { causal?: boolean; keyMask?: boolean; kvHeads?: number }): Case {
  return {
    file,
    build: () =>
      trace(file, () => {
        const q = input('q', 'f32', [B, 4, S, 8]);
        const k = input('k', 'f32', [B, opts.kvHeads ?? 4, S, 8]);
        const v = input('v', 'f32', [B, opts.kvHeads ?? 4, S, 8]);
        const keyMask = opts.keyMask ? input('key_mask', 'bool', [B, S]) : undefined;
        return { y: sdpa(q, k, v, { causal: opts.causal, keyMask }) };
      }),
    inputs: { q: 'q', k: 'k', v: 'v', ...(opts.keyMask ? { key_mask: 'key_mask' } : {}) },
    outputs: { y: 'y' },
  };
}

function ropeCase(file: string, style: 'half' | 'interleaved'): Case {
  return {
    file,
    build: () =>
      trace(file, () => {
        const q = input('q', 'f32', [B, 4, S, 16]);
        const pos = input('position_ids', 'i64', [B, S]);
        return { y: rope(q, [pos], [16], { theta: 10000, style }) };
      }),
    inputs: { q: 'q', position_ids: 'position_ids' },
    outputs: { y: 'y' },
  };
}

const CASES: Case[] = [
  {
    file: 'rmsnorm.safetensors',
    build: () =>
      trace('rmsnorm', () => {
        const x = input('x', 'f32', [B, S, 16]);
        return { y: new RMSNorm(16, 1e-6).forward(x) };
      }),
    inputs: { x: 'x' },
    params: ['weight'],
    outputs: { y: 'y' },
  },
  {
    file: 'layernorm.safetensors',
    build: () =>
      trace('layernorm', () => {
        const x = input('x', 'f32', [B, S, 16]);
        return { y: new LayerNorm(16, 1e-5).forward(x) };
      }),
    inputs: { x: 'x' },
    params: ['weight', 'bias'],
    outputs: { y: 'y' },
  },
  {
    file: 'groupnorm.safetensors',
    build: (meta) =>
      trace('groupnorm', () => {
        const x = input('x', 'f32', [B, 8, 5, 6]);
        return { y: new GroupNorm(num(meta, 'groups'), 8, num(meta, 'eps')).forward(x) };
      }),
    inputs: { x: 'x' },
    params: ['weight', 'bias'],
    outputs: { y: 'y' },
  },
  {
    file: 'conv2d_s1p1.safetensors',
    build: (meta) =>
      trace('conv2d_s1p1', () => {
        const x = input('x', 'f32', [B, 3, 9, 10]);
        return { y: new Conv2d(3, 4, num(meta, 'kernel_size'), { stride: num(meta, 'stride'), padding: num(meta, 'padding') }).forward(x) };
      }),
    inputs: { x: 'x' },
    params: ['weight', 'bias'],
    outputs: { y: 'y' },
  },
  {
    file: 'conv2d_s2p0.safetensors',
    build: (meta) =>
      trace('conv2d_s2p0', () => {
        const x = input('x', 'f32', [2, 3, 9, 10]);
        return { y: new Conv2d(3, 5, num(meta, 'kernel_size'), { stride: num(meta, 'stride'), padding: num(meta, 'padding') }).forward(x) };
      }),
    inputs: { x: 'x' },
    params: ['weight', 'bias'],
    outputs: { y: 'y' },
  },
  {
    file: 'gelu.safetensors',
    build: () =>
      trace('gelu', () => {
        const x = input('x', 'f32', [3, 17]);
        return { y_erf: gelu(x), y_tanh: gelu(x, 'tanh'), y_silu: silu(x) };
      }),
    inputs: { x: 'x' },
    outputs: { y_erf: 'y_erf', y_tanh: 'y_tanh', y_silu: 'y_silu' },
  },
  {
    // module (MLP params) and functional (weights as graph inputs) forms of the same SwiGLU
    file: 'swiglu.safetensors',
    build: () =>
      trace('swiglu', () => {
        const x = input('x', 'f32', [B, S, 16]);
        const gate = input('gate', 'f32', [40, 16]);
        const up = input('up', 'f32', [40, 16]);
        const down = input('down', 'f32', [16, 40]);
        return { y: new MLP({ hidden: 16, intermediate: 40, act: 'swiglu' }).forward(x), y_fn: swiglu(x, gate, up, down) };
      }),
    inputs: { x: 'x', gate: 'gate_proj.weight', up: 'up_proj.weight', down: 'down_proj.weight' },
    params: ['gate_proj.weight', 'up_proj.weight', 'down_proj.weight'],
    outputs: { y: 'y', y_fn: 'y' },
  },
  ropeCase('rope1d_half.safetensors', 'half'),
  ropeCase('rope1d_interleaved.safetensors', 'interleaved'),
  {
    file: 'rope2d_half.safetensors',
    build: (meta) =>
      trace('rope2d_half', () => {
        const H = num(meta, 'H'), W = num(meta, 'W');
        if (H !== 3 || W !== 4) throw new Error(`rope2d fixture grid is ${H}x${W}, the test builds 3x4`);
        const q = input('q', 'f32', [B, 4, H * W, 16]);
        const [row, col] = gridPositions(3, 4);
        return { y: rope(q, [row, col], [8, 8], { theta: num(meta, 'theta') }) };
      }),
    inputs: { q: 'q' },
    outputs: { y: 'y' },
  },
  sdpaCase('sdpa_bidir.safetensors', {}),
  sdpaCase('sdpa_causal.safetensors', { causal: true }),
  sdpaCase('sdpa_padding.safetensors', { keyMask: true }),
  sdpaCase('sdpa_causal_padding.safetensors', { causal: true, keyMask: true }),
  sdpaCase('sdpa_gqa.safetensors', { causal: true, kvHeads: 2 }),
  {
    file: 'attention_module.safetensors',
    build: () =>
      trace('attention_module', () => {
        const x = input('x', 'f32', [B, S, 32]);
        const keyMask = input('key_mask', 'bool', [B, S]);
        const attn = new Attention({ hidden: 32, heads: 4, kvHeads: 2, qkvBias: true, qkNorm: true, rope: { theta: 10000 } });
        return { y: attn.forward(x, { positions: [range(S)], causal: true, keyMask }) };
      }),
    inputs: { x: 'x', key_mask: 'key_mask' },
    params: ['q_proj.weight', 'q_proj.bias', 'k_proj.weight', 'k_proj.bias', 'v_proj.weight', 'v_proj.bias', 'o_proj.weight', 'q_norm.weight', 'k_norm.weight'],
    outputs: { y: 'y' },
  },
];

function toRef(t: HostTensor): RefTensor {
  return { dtype: t.dtype, shape: [...t.shape], data: toFloat64(t) };
}

/** Worst error in units of the tolerance (<= 1 passes), plus the max absolute error. */
function measure(got: RefTensor, want: RefTensor): { ratio: number; maxAbs: number; scale: number } {
  expect(got.shape).toEqual(want.shape);
  const { atol, rtol } = TOL.f32;
  let scale = 0;
  for (const v of want.data) scale = Math.max(scale, Math.abs(v));
  let ratio = 0, maxAbs = 0;
  for (let i = 0; i < want.data.length; i++) {
    const d = Math.abs(got.data[i]! - want.data[i]!);
    if (Number.isNaN(d)) return { ratio: Infinity, maxAbs: NaN, scale };
    maxAbs = Math.max(maxAbs, d);
    ratio = Math.max(ratio, d / (atol * scale + rtol * Math.abs(want.data[i]!)));
  }
  return { ratio, maxAbs, scale };
}

describe('composite ops match PyTorch reference fixtures', () => {
  it('the table covers every fixture file in the folder', () => {
    const files = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.safetensors')).sort();
    expect(CASES.map((c) => c.file).sort()).toEqual(files);
  });

  it.each(CASES.map((c) => [c.file, c] as const))('%s', async (file, c) => {
    // a missing fixture fails (never skips)
    const p = path.join(FIXTURES, file);
    expect(fs.existsSync(p), `fixture ${p} is missing`).toBe(true);
    const { tensors, metadata } = readSafetensors(p);
    const get = (name: string): HostTensor => {
      const t = tensors.get(name);
      if (!t) throw new Error(`${file}: no tensor '${name}' (has ${[...tensors.keys()].join(', ')})`);
      return t;
    };
    const graph = c.build(metadata);
    const feeds: Record<string, RefTensor> = {};
    for (const [inp, name] of Object.entries(c.inputs)) feeds[inp] = toRef(get(name));
    const paramHost = new Map((c.params ?? []).map((n) => [n, get(n)] as const));
    const paramRef = new Map([...paramHost].map(([n, t]) => [n, toRef(t)] as const));
    // every module param of the graph must come from the fixture, none may fall back to its init
    expect(graph.params().map((n) => n.params.name).sort()).toEqual([...paramHost.keys()].sort());

    const ref = evaluate(graph, feeds, { params: paramRef });
    const ort = await runOnnx(graph, feeds, { paramValues: paramHost });
    const report: string[] = [];
    for (const [out, name] of Object.entries(c.outputs)) {
      const want = toRef(get(name));
      for (const [engine, res] of [['onnxruntime', ort], ['reference', ref]] as const) {
        const got = res[out];
        expect(got, `${engine} output '${out}'`).toBeDefined();
        const m = measure(got!, want);
        report.push(`${file} ${out} ${engine}: max abs err ${m.maxAbs.toExponential(2)} (scale ${m.scale.toFixed(3)}, ${m.ratio.toFixed(3)}x tol)`);
        expect(m.ratio, `${file} ${out} via ${engine}: ${m.ratio.toFixed(2)}x tolerance, max abs err ${m.maxAbs}`).toBeLessThanOrEqual(1);
      }
    }
    if (process.env.UNIFUSION_PARITY_REPORT) console.log(report.join('\n'));
  });
});
