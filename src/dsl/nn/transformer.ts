// Attention, MLP and transformer blocks, named as in Hugging Face (Llama/Qwen/Gemma).
import type { DType } from '../../ir/dtype.ts';
import { Module } from '../module.ts';
import type { Tensor } from '../tensor.ts';
import { gelu, headMerge, headSplit, rope, sdpa, silu, type RopeStyle } from '../functional.ts';
import { LayerNorm, Linear, RMSNorm } from './basic.ts';
import { DSLError } from '../trace.ts';
import { userSite } from '../site.ts';
import { checkChoice, checkOptions, checkPositiveInt } from '../check.ts';

export interface RopeConfig {
  theta?: number;
  style?: RopeStyle;
  /** widths of the head-dim sections rotated by each position tensor (default: whole head dim, one section) */
  sections?: number[];
}

export interface AttentionConfig {
  hidden: number;
  heads: number;
  kvHeads?: number;
  headDim?: number;
  /** bias on q/k/v projections (Qwen2) */
  qkvBias?: boolean;
  outBias?: boolean;
  /** RMSNorm of q and k over the head dim before RoPE (Qwen3, Gemma-3, DiTs) */
  qkNorm?: boolean;
  normEps?: number;
  rope?: RopeConfig | null;
  dtype?: DType;
}

export interface AttentionCall {
  /** one position tensor ([S] or [B, S]) per rope section */
  positions?: Tensor[];
  causal?: boolean;
  keyMask?: Tensor;
  mask?: Tensor;
  /** cross-attention source [B, Sk, hidden]; defaults to x */
  context?: Tensor;
}

export class Attention extends Module {
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;
  q_norm?: RMSNorm;
  k_norm?: RMSNorm;
  constructor(readonly cfg: AttentionConfig) {
    super();
    this.heads = cfg.heads;
    this.kvHeads = cfg.kvHeads ?? cfg.heads;
    this.headDim = cfg.headDim ?? cfg.hidden / cfg.heads;
    checkPositiveInt('Attention hidden', cfg.hidden);
    checkPositiveInt('Attention heads', cfg.heads);
    if (!Number.isInteger(this.headDim)) throw new DSLError(`Attention: hidden ${cfg.hidden} is not divisible by ${cfg.heads} heads`, userSite());
    if (this.heads % this.kvHeads !== 0) throw new DSLError(`Attention: ${this.heads} heads is not a multiple of ${this.kvHeads} kv heads`, userSite());
    if (cfg.rope) checkOptions('Attention rope', cfg.rope, ['theta', 'style', 'sections']);
    const dt = cfg.dtype;
    this.q_proj = new Linear(cfg.hidden, this.heads * this.headDim, { bias: cfg.qkvBias ?? false, dtype: dt });
    this.k_proj = new Linear(cfg.hidden, this.kvHeads * this.headDim, { bias: cfg.qkvBias ?? false, dtype: dt });
    this.v_proj = new Linear(cfg.hidden, this.kvHeads * this.headDim, { bias: cfg.qkvBias ?? false, dtype: dt });
    this.o_proj = new Linear(this.heads * this.headDim, cfg.hidden, { bias: cfg.outBias ?? false, dtype: dt });
    if (cfg.qkNorm) {
      this.q_norm = new RMSNorm(this.headDim, cfg.normEps ?? 1e-6, { dtype: dt });
      this.k_norm = new RMSNorm(this.headDim, cfg.normEps ?? 1e-6, { dtype: dt });
    }
  }

  forward(x: Tensor, call: AttentionCall = {}): Tensor {
    const src = call.context ?? x;
    let q = headSplit(this.q_proj.forward(x), this.heads, this.headDim);
    let k = headSplit(this.k_proj.forward(src), this.kvHeads, this.headDim);
    const v = headSplit(this.v_proj.forward(src), this.kvHeads, this.headDim);
    if (this.q_norm && this.k_norm) {
      q = this.q_norm.forward(q);
      k = this.k_norm.forward(k);
    }
    const r = this.cfg.rope;
    if (r) {
      if (!call.positions) throw new DSLError('Attention with RoPE needs call.positions', userSite());
      const sections = r.sections ?? [this.headDim];
      q = rope(q, call.positions, sections, { theta: r.theta, style: r.style });
      k = rope(k, call.positions, sections, { theta: r.theta, style: r.style });
    }
    const o = sdpa(q, k, v, { causal: call.causal, keyMask: call.keyMask, mask: call.mask });
    return this.o_proj.forward(headMerge(o));
  }
}

export type Activation = 'swiglu' | 'gelu' | 'gelu_tanh' | 'silu';

export interface MLPConfig {
  hidden: number;
  intermediate: number;
  act?: Activation;
  bias?: boolean;
  dtype?: DType;
}

/** SwiGLU uses gate_proj/up_proj/down_proj (Llama); the others fc1/fc2 (CLIP/ViT). */
export class MLP extends Module {
  gate_proj?: Linear;
  up_proj?: Linear;
  down_proj?: Linear;
  fc1?: Linear;
  fc2?: Linear;
  readonly act: Activation;
  constructor(cfg: MLPConfig) {
    super();
    this.act = checkChoice('MLP act', cfg.act ?? 'swiglu', ['swiglu', 'gelu', 'gelu_tanh', 'silu'] as const);
    const o = { bias: cfg.bias ?? false, dtype: cfg.dtype };
    if (this.act === 'swiglu') {
      this.gate_proj = new Linear(cfg.hidden, cfg.intermediate, o);
      this.up_proj = new Linear(cfg.hidden, cfg.intermediate, o);
      this.down_proj = new Linear(cfg.intermediate, cfg.hidden, o);
    } else {
      this.fc1 = new Linear(cfg.hidden, cfg.intermediate, o);
      this.fc2 = new Linear(cfg.intermediate, cfg.hidden, o);
    }
  }
  forward(x: Tensor): Tensor {
    if (this.act === 'swiglu') return this.down_proj!.forward(silu(this.gate_proj!.forward(x)).mul(this.up_proj!.forward(x)));
    const h = this.fc1!.forward(x);
    const a = this.act === 'gelu' ? gelu(h) : this.act === 'gelu_tanh' ? gelu(h, 'tanh') : silu(h);
    return this.fc2!.forward(a);
  }
}

export interface BlockConfig extends AttentionConfig {
  intermediate: number;
  act?: Activation;
  mlpBias?: boolean;
  norm?: 'rms' | 'layer';
  /** pre: x + f(norm(x)); sandwich: x + norm_post(f(norm_pre(x))) (Gemma-3) */
  style?: 'pre' | 'sandwich';
  eps?: number;
  /** Gemma stores RMSNorm scales as (scale - 1) */
  normOffset?: number;
}

function makeNorm(cfg: BlockConfig): RMSNorm | LayerNorm {
  return cfg.norm === 'layer' ? new LayerNorm(cfg.hidden, cfg.eps ?? 1e-5, { dtype: cfg.dtype }) : new RMSNorm(cfg.hidden, cfg.eps ?? 1e-6, { offset: cfg.normOffset, dtype: cfg.dtype });
}

/**
 * Transformer block. Names follow Hugging Face: pre-norm as Llama
 * (input_layernorm, self_attn, post_attention_layernorm = the norm before the MLP, mlp);
 * sandwich as Gemma-3 (+ pre_feedforward_layernorm, post_feedforward_layernorm).
 */
export class TransformerBlock extends Module {
  input_layernorm: RMSNorm | LayerNorm;
  self_attn: Attention;
  post_attention_layernorm: RMSNorm | LayerNorm;
  pre_feedforward_layernorm?: RMSNorm | LayerNorm;
  post_feedforward_layernorm?: RMSNorm | LayerNorm;
  mlp: MLP;
  readonly style: 'pre' | 'sandwich';
  constructor(cfg: BlockConfig) {
    super();
    this.style = checkChoice('TransformerBlock style', cfg.style ?? 'pre', ['pre', 'sandwich'] as const);
    if (cfg.norm !== undefined) checkChoice('TransformerBlock norm', cfg.norm, ['rms', 'layer'] as const);
    this.input_layernorm = makeNorm(cfg);
    this.self_attn = new Attention(cfg);
    this.post_attention_layernorm = makeNorm(cfg);
    if (this.style === 'sandwich') {
      this.pre_feedforward_layernorm = makeNorm(cfg);
      this.post_feedforward_layernorm = makeNorm(cfg);
    }
    this.mlp = new MLP({ hidden: cfg.hidden, intermediate: cfg.intermediate, act: cfg.act, bias: cfg.mlpBias, dtype: cfg.dtype });
  }
  forward(x: Tensor, call: AttentionCall = {}): Tensor {
    if (this.style === 'pre') {
      const h = x.add(this.self_attn.forward(this.input_layernorm.forward(x), call));
      return h.add(this.mlp.forward(this.post_attention_layernorm.forward(h)));
    }
    const h = x.add(this.post_attention_layernorm.forward(this.self_attn.forward(this.input_layernorm.forward(x), call)));
    return h.add(this.post_feedforward_layernorm!.forward(this.mlp.forward(this.pre_feedforward_layernorm!.forward(h))));
  }
}
