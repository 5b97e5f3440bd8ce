// An example graph file: a decoder-only transformer stack (Llama/Qwen layout),
// the kind of text encoder whose hidden states UniFusion taps.
//   npx unifusion compile examples/transformer.ts --preset tiny --out out/tiny
import { defineGraph, dim, input, range, Module, Embedding, RMSNorm, TransformerBlock, type Tensor } from '../src/dsl/index.ts';

export interface StackConfig {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  ropeTheta: number;
  causal: boolean;
}

export class TransformerStack extends Module {
  embed_tokens: Embedding;
  layers: TransformerBlock[];
  norm: RMSNorm;
  constructor(readonly cfg: StackConfig) {
    super();
    this.embed_tokens = new Embedding(cfg.vocab, cfg.hidden, { std: 0.02 });
    this.layers = Array.from(
      { length: cfg.layers },
      () =>
        new TransformerBlock({
          hidden: cfg.hidden,
          heads: cfg.heads,
          kvHeads: cfg.kvHeads,
          intermediate: cfg.intermediate,
          qkvBias: true,
          rope: { theta: cfg.ropeTheta },
        }),
    );
    this.norm = new RMSNorm(cfg.hidden);
  }
  forward(ids: Tensor, mask: Tensor): Tensor {
    let h = this.embed_tokens.forward(ids);
    const positions = [range(ids.dim(1))];
    for (const layer of this.layers) h = layer.forward(h, { positions, causal: this.cfg.causal, keyMask: mask });
    return this.norm.forward(h);
  }
}

const base = { ropeTheta: 10000, causal: true };

export default defineGraph<StackConfig>({
  name: 'transformer',
  description: 'decoder-only transformer stack with token embedding, RoPE, GQA, padding mask',
  presets: {
    tiny: { ...base, vocab: 256, hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 128 },
    small: { ...base, vocab: 1024, hidden: 96, layers: 5, heads: 4, kvHeads: 2, intermediate: 256 },
    'stack-32x4096': { ...base, vocab: 32000, hidden: 4096, layers: 32, heads: 32, kvHeads: 8, intermediate: 14336 },
  },
  build(cfg) {
    const B = dim('batch'), S = dim('seq');
    const ids = input('input_ids', 'i64', [B, S]);
    const mask = input('attention_mask', 'bool', [B, S]);
    const model = new TransformerStack(cfg);
    return { last_hidden_state: model.forward(ids, mask) };
  },
});
