// Small pipeline parts for tests: a tiny UniFusion DiT with random (non-zero) trained weights, a
// diffusers-layout AutoencoderKL folder with random weights, and condition tensors.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { trace } from '../../src/dsl/index.ts';
import { Rng } from '../../src/ir/init.ts';
import { fromFloat64, type HostTensor } from '../../src/io/host.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { traceVaeDecoder, traceVaeEncoder, type VaeConfig } from '../../graphs/vae.ts';
import { uniFusionForward, type UniFusionConfig } from '../../graphs/unifusion.ts';
import type { Graph } from '../../src/ir/graph.ts';
import type { ConditionRequest, ConditionResult, PromptEncoder } from '../../runtime/pipeline/condition.ts';

/** Every param of the graphs, N(0, 1) * scale (norm scales around 1), seeded by name. */
export function randomParams(graphs: readonly Graph[], seed: number, scale = 0.2): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const g of graphs)
    for (const p of g.params()) {
      const { name, dtype, shape } = p.params;
      if (out.has(name)) continue;
      const r = new Rng(seed, name);
      const n = shape.reduce((a, b) => a * b, 1);
      const isNorm = /norm/.test(name) && shape.length === 1;
      out.set(name, fromFloat64(dtype, [...shape], Float64Array.from({ length: n }, () => (isNorm ? 1 : 0) + scale * r.normal())));
    }
  return out;
}

export function ditGraph(cfg: UniFusionConfig): Graph {
  return trace('unifusion', () => ({ velocity: uniFusionForward(cfg).velocity }));
}

export const TINY_VAE: VaeConfig = {
  inChannels: 3,
  outChannels: 3,
  latentChannels: 4,
  blockOutChannels: [8, 16],
  layersPerBlock: 1,
  normNumGroups: 4,
  useQuantConv: false,
  usePostQuantConv: false,
  midBlockAddAttention: true,
  scalingFactor: 0.5,
  shiftFactor: 0.1,
};

/** A diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors), random weights. */
export function writeDiffusersVae(dir: string, cfg: VaeConfig = TINY_VAE, seed = 4): void {
  fs.mkdirSync(dir, { recursive: true });
  const levels = cfg.blockOutChannels.length;
  const config = {
    _class_name: 'AutoencoderKL',
    in_channels: cfg.inChannels,
    out_channels: cfg.outChannels,
    latent_channels: cfg.latentChannels,
    block_out_channels: cfg.blockOutChannels,
    layers_per_block: cfg.layersPerBlock,
    norm_num_groups: cfg.normNumGroups,
    act_fn: 'silu',
    down_block_types: Array(levels).fill('DownEncoderBlock2D'),
    up_block_types: Array(levels).fill('UpDecoderBlock2D'),
    use_quant_conv: cfg.useQuantConv,
    use_post_quant_conv: cfg.usePostQuantConv,
    mid_block_add_attention: cfg.midBlockAddAttention,
    scaling_factor: cfg.scalingFactor,
    shift_factor: cfg.shiftFactor,
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const params = randomParams([traceVaeEncoder(cfg), traceVaeDecoder(cfg)], seed, 0.15);
  writeSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), params);
}

/** Condition rows for prompts: hidden_states.<taps> [P, S, hE] random, condition_mask true for the first len[i] tokens. */
export function randomCondition(taps: readonly number[], hE: number, lens: readonly number[], seed: number): Record<string, HostTensor> {
  const S = Math.max(...lens), P = lens.length;
  const r = new Rng(seed, 'cond');
  const out: Record<string, HostTensor> = {};
  for (const t of taps) out[`hidden_states.${t}`] = fromFloat64('f32', [P, S, hE], Float64Array.from({ length: P * S * hE }, () => r.normal()));
  out.condition_mask = fromFloat64('bool', [P, S], lens.flatMap((l) => Array.from({ length: S }, (_, j) => (j < l ? 1 : 0))));
  return out;
}

/** A deterministic stand-in VLM: each word and each image adds a token with hidden states from a hash of it. */
export class HashEncoder implements PromptEncoder {
  calls = 0;
  constructor(private readonly taps: readonly number[], private readonly hE: number) {}
  async condition(reqs: ConditionRequest[]): Promise<ConditionResult> {
    this.calls++;
    const toks = reqs.map((r) => [...r.prompt.split(/\s+/).filter(Boolean), ...(r.images ?? []).map((im) => `img:${im.width}x${im.height}:${Buffer.from(im.data).toString('base64').slice(0, 64)}`)]);
    const S = Math.max(1, ...toks.map((t) => t.length));
    const out: Record<string, HostTensor> = {};
    for (const tap of this.taps) {
      const v = new Float64Array(reqs.length * S * this.hE);
      toks.forEach((ts, b) => ts.forEach((tok, s) => {
        const r = new Rng(tap, tok);
        for (let k = 0; k < this.hE; k++) v[(b * S + s) * this.hE + k] = r.normal();
      }));
      out[`hidden_states.${tap}`] = fromFloat64('f32', [reqs.length, S, this.hE], v);
    }
    out.condition_mask = fromFloat64('bool', [reqs.length, S], toks.flatMap((ts) => Array.from({ length: S }, (_, s) => (s < ts.length ? 1 : 0))));
    return { tensors: out, rewritten: reqs.map(() => undefined) };
  }
}

