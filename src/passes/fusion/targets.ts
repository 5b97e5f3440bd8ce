// The target table: per execution provider, which fusion rules run and how each
// fused op is lowered to ONNX. Every entry says which measurement made it:
//   [S]  the ORT 1.30 fused-op survey (../shared/notes/ort-1.30-fused-ops.md; CPU, 2 threads,
//        DiT shapes, medians; "unfused" = the forms this compiler emitted);
//   [B]  this repo's fusion benchmarks (bench/fusion-dit.ts: the mid DiT's denoise step fused vs
//        unfused, with a per-op-type kernel profile; bench/fusion-attention-memory.ts); figures in
//        BENCHMARKS.md;
//   [M]  scripts/py/kv_attention_probe.py / skipln_probe.py: the cached-attention and residual +
//        LayerNorm kernels of ORT 1.30 CPU, checked against float64 and timed interleaved (printed
//        by the scripts; figures in BENCHMARKS.md section 8);
//   [K]  kernel lists only (onnxruntime's OperatorKernels / contrib registrations, as the survey
//        read them): no GPU was available, so CUDA and WebGPU choices are NOT measured.
// A lowering that does not apply to a node (dtype, rank, GQA, mask form) falls through to the
// next entry of its list; 'decompose' (the op's reference decomposition in primitives) always applies.
import type { FusedKind } from '../../ir/params.ts';
import type { Target } from '../../ir/target.ts';

export type Lowering =
  | 'RMSNormalization-23'
  | 'LayerNormalization-17'
  | 'Gelu-20'
  | 'RotaryEmbedding-23'
  /** com.microsoft MultiHeadAttention (3D q, BNSH k/v, key_padding_mask); H == KV only */
  | 'MultiHeadAttention'
  /** ai.onnx Attention-23 with an additive float mask; only when the node has a mask */
  | 'Attention-23-masked'
  /** ai.onnx Attention-23 with or without a mask */
  | 'Attention-23'
  /** ai.onnx Attention-23 with past_key/past_value -> present_key/present_value (GQA from the head counts) */
  | 'Attention-23-past'
  /** com.microsoft MultiHeadAttention with past_key/past_value -> present (BNSH cache); H == KV only */
  | 'MultiHeadAttention-past'
  /** com.microsoft SkipSimplifiedLayerNormalization: residual sum and RMSNorm in one node */
  | 'SkipSimplifiedLayerNormalization'
  /** com.microsoft SkipLayerNormalization: residual sum and LayerNorm in one node */
  | 'SkipLayerNormalization'
  /** com.microsoft QuickGelu(alpha=1) * b */
  | 'QuickGelu'
  /** a node of domain ai.unifusion with a model-local function body */
  | 'function'
  | 'decompose';

export interface TargetSpec {
  description: string;
  /** fusion rules, in the order they run (names of src/passes/fusion/*.ts rules) */
  rules: readonly string[];
  /** per fused op: lowerings in order of preference, each with the measurement behind it */
  lower: { [K in FusedKind]: { use: readonly Lowering[]; why: string } };
  /**
   * Training graphs: rules that also run on the step's FORWARD before autodiff (src/train/step.ts),
   * so that its fused ops are differentiated by their dedicated backward (fused.ts VJP) instead of
   * the late pass declining them because the backward reads their intermediates. Only rules whose
   * fusion made the measured step faster (bench/train-step-ab.ts), with the figure.
   */
  train: { rules: readonly string[]; why: string };
}

const NORM_RULES = ['layer-norm', 'rms-norm', 'gelu', 'rope', 'rope-sections', 'sdpa', 'swiglu'] as const;
const CUSTOM_RULES = ['ada-rms-norm', 'layer-pool'] as const;
/** after sdpa: the cache concat + sdpa of the generation graphs -> one attention node with past/present */
const KV_RULES = ['kv-attention'] as const;
/** after ada-rms-norm, so that adaLN modulation keeps its norms */
const RESIDUAL_RULES = ['add-rms-norm', 'add-layer-norm'] as const;

export const TARGET_TABLE: { [T in Target]: TargetSpec } = {
  cpu: {
    description: 'onnxruntime CPU EP (onnxruntime-node, the runtime of this project): standard opset-23 fused ops, com.microsoft MultiHeadAttention, ai.unifusion functions',
    rules: [...NORM_RULES, ...CUSTOM_RULES],
    lower: {
      rms_norm: { use: ['RMSNormalization-23', 'decompose'], why: '[S] RMSNormalization-23 2.38x / 2.70x over the emitted Mul(x,x)/Sqrt/Reciprocal chain at [2,4096,512] / [2,4096,3072]; SimplifiedLayerNormalization is no faster and fails onnx.checker' },
      layer_norm: { use: ['LayerNormalization-17', 'decompose'], why: '[S] LayerNormalization-17 4.99x / 4.28x at [2,4096,512] / [2,4096,3072]' },
      gelu: { use: ['Gelu-20', 'decompose'], why: '[S] Gelu-20 erf 2.56x / 2.48x, approximate=tanh 5.85x / 6.28x ([2,4096,2048] / [2,4096,12288]); ORT never fuses the tanh form itself' },
      rope: { use: ['RotaryEmbedding-23', 'decompose'], why: '[S] RotaryEmbedding-23 interleaved 8.24x / 5.71x, rotate-half 4.62x / 1.82x (q [2,8,S,64], S = 1024 / 4096); ORT never fuses RoPE' },
      sdpa: {
        use: ['MultiHeadAttention', 'Attention-23-masked', 'decompose'],
        why: '[S] com.microsoft MultiHeadAttention 1.40x / 1.35x unmasked, 1.48x / 1.60x with a key-padding mask (S = 1024 / 4096); Attention-23 only pays with a mask (1.36x / 1.09x; 0.90x without), and GQA without a mask gains nothing (1.06x / 1.04x) so it stays decomposed; [B] the fusion-dit profile: MultiHeadAttention in place of FusedMatMul + Where + Softmax + MatMul (BENCHMARKS.md)',
      },
      add_layer_norm: { use: ['decompose'], why: '[S] com.microsoft SkipLayerNormalization is 1.04x / 0.85x over the emitted Add + LayerNorm chain at [2,4096,512] / [2,4096,3072], but Add + LayerNormalization-17 is 2.65x / 2.58x: the Skip kernel is 2.5-3x slower than the standard pair (151 / 74 ms on 1 / 2 threads vs 45 / 33 ms at [2,4096,3072], skipln_threads.py), confirmed by [M] scripts/py/skipln_probe.py (both outputs used, interleaved, 2 threads, load average ~9): SkipLayerNormalization 0.53x / 0.34x of Add + LayerNormalization-17 (50.5 vs 26.8 ms, 323 vs 109 ms); so cpu keeps Add + LayerNormalization-17 (and does not run the add-layer-norm rule)' },
      kv_sdpa: { use: ['decompose'], why: '[M] scripts/py/kv_attention_probe.py (ORT 1.30 CPU, 2 threads, decode S=1, H=16, D=128): Attention-23 with past vs Concat + Attention-23 0.83-1.26x across P = 512..2048, B = 1..4, KV = 2..16 (noise-level, no consistent gain); GroupQueryAttention 0.62-1.25x and it refuses batch > 1 with a multi-token chunk after a past (\'batch_size must be 1 when sequence_length > 1 and past context is given\') and gives fully masked (left-padding) query rows another value than the reference; MultiHeadAttention with past 1.09x (H == KV only). So cpu keeps Concat + the sdpa lowering (the kv-attention rule does not run for cpu)' },
      add_rms_norm: { use: ['decompose'], why: '[S] SkipSimplifiedLayerNormalization 2.01x / 1.90x vs Add + RMSNormalization-23 1.93x / 1.89x: the same, so cpu keeps the standard pair (and does not run the add-rms-norm rule)' },
      swiglu: { use: ['decompose'], why: '[S] ORT already fuses Sigmoid*Mul into QuickGelu on CPU (QuickGelu by hand: 0.94x / 1.06x, i.e. no difference); Swish-24 is 0.39x' },
      ada_rms_norm: { use: ['function', 'decompose'], why: 'no standard op; the function body (RMSNormalization-23, Mul, Add) is what ORT runs after inlining, i.e. the RMSNormalization-23 gain above (no CPU kernel of its own: on CPU it is a function)' },
      layer_pool: { use: ['function', 'decompose'], why: 'no standard op; the body is one MatMul([1,n] x [.., n, C]) + Squeeze instead of Transpose + MatMul + Reshape (no CPU kernel of its own: on CPU it is a function)' },
    },
    train: {
      rules: [],
      why: 'measured, so off: rms-norm + swiglu fused before autodiff (34 RMSNormalization + 8 swiglu forwards in the 8 x 512 step, 3818 -> 3626 ONNX nodes, dedicated backwards) ran 0.912x / 0.94x of the old step vs 0.928x / 0.887x for the late-only cpu step in two quiet interleaved A/Bs (npx tsx bench/train-step-ab.ts OLD.onnx cpu cpu+rms-norm,swiglu --rounds 6; bench/results/train-step-ab-quiet.json): no consistent gain (the backward recomputes the rstd and the sigmoid)',
    },
  },
  cuda: {
    description: 'onnxruntime CUDA EP: standard opset-23 fused ops (Attention-23 has flash / memory-efficient kernels), ai.unifusion ops with their CUDA kernels from --cuda-ops (C/C++/Python ORT only) or their function bodies',
    rules: [...NORM_RULES, ...KV_RULES, ...CUSTOM_RULES, ...RESIDUAL_RULES],
    lower: {
      rms_norm: { use: ['RMSNormalization-23', 'decompose'], why: '[K] RMSNormalization-23 has f32/f16/bf16 CUDA kernels; not measured' },
      layer_norm: { use: ['LayerNormalization-17', 'decompose'], why: '[K] LayerNormalization CUDA kernel; not measured' },
      gelu: { use: ['Gelu-20', 'decompose'], why: '[K] Gelu-20 CUDA kernel; not measured' },
      rope: { use: ['RotaryEmbedding-23', 'decompose'], why: '[K] RotaryEmbedding-23 CUDA kernel; not measured' },
      sdpa: { use: ['Attention-23', 'decompose'], why: '[K] Attention-23/24 CUDA kernels with flash and memory-efficient paths (microsoft/onnxruntime PR #27542, as the survey cites); the unfused graph materialises B*H*S^2 scores (1 GiB in f32 at S = 4096); not measured' },
      add_layer_norm: { use: ['SkipLayerNormalization', 'decompose'], why: '[K] com.microsoft SkipLayerNormalization CUDA kernel (one pass for the residual sum and the norm); not measured (the CPU kernel is slow, [S], which says nothing about CUDA)' },
      kv_sdpa: { use: ['Attention-23-past', 'decompose'], why: '[K] Attention-23 with past/present has CUDA kernels (the sdpa row); one node instead of two cache Concats + attention; [M] exact on CPU against float64 (kv_attention_probe.py, test/fusion/kv-attention.test.ts); speed not measured (no GPU)' },
      add_rms_norm: { use: ['SkipSimplifiedLayerNormalization', 'decompose'], why: '[K] com.microsoft SkipSimplifiedLayerNormalization CUDA kernel (one pass for the residual sum and the norm); not measured' },
      swiglu: { use: ['decompose'], why: '[S] ORT registers its QuickGelu fusion for the CUDA EP too, so Sigmoid*Mul is fused by ORT; not measured' },
      ada_rms_norm: { use: ['function', 'decompose'], why: 'custom op: --cuda-ops generates its kernel; without the library ORT runs the function body' },
      layer_pool: { use: ['function', 'decompose'], why: 'custom op: --cuda-ops generates its kernel; without the library ORT runs the function body' },
    },
    train: { rules: [], why: 'no training-graph measurement for this EP (no device); the late pass still fuses what the backward does not read' },
  },
  webgpu: {
    description: 'onnxruntime WebGPU EP: ORT runs none of its level-2 fusions there, so every fusion is in the graph; no ai.onnx Attention kernel, so attention is MultiHeadAttention',
    rules: [...NORM_RULES, ...KV_RULES, ...CUSTOM_RULES, ...RESIDUAL_RULES],
    lower: {
      rms_norm: { use: ['RMSNormalization-23', 'decompose'], why: '[K] RMSNormalization-23 WebGPU registration; not measured (no GPU)' },
      layer_norm: { use: ['LayerNormalization-17', 'decompose'], why: '[K] LayerNormalization-17 WebGPU registration; not measured' },
      gelu: { use: ['Gelu-20', 'decompose'], why: '[K] Gelu-20 WebGPU registration; not measured' },
      rope: { use: ['RotaryEmbedding-23', 'decompose'], why: '[K] RotaryEmbedding-23 WebGPU registration; not measured' },
      sdpa: { use: ['MultiHeadAttention', 'decompose'], why: '[K] the survey found no ai.onnx Attention kernel for WebGPU; com.microsoft MultiHeadAttention is registered; not measured' },
      add_layer_norm: { use: ['SkipLayerNormalization', 'decompose'], why: '[K] com.microsoft SkipLayerNormalization WebGPU registration; ORT does not fuse it there itself; not measured' },
      kv_sdpa: { use: ['MultiHeadAttention-past', 'decompose'], why: '[K] no ai.onnx Attention kernel on WebGPU; MultiHeadAttention with past/present is registered (H == KV); GroupQueryAttention is not used: on the CPU reference it gives fully masked (left-padding) query rows another value than the graph (kv_attention_probe.py), so it would change the graph semantics; not measured (no GPU)' },
      add_rms_norm: { use: ['SkipSimplifiedLayerNormalization', 'decompose'], why: '[K] com.microsoft SkipSimplifiedLayerNormalization WebGPU registration; ORT does not fuse it there itself; not measured' },
      swiglu: { use: ['QuickGelu', 'decompose'], why: '[K] ORT\'s QuickGelu fusion is not registered for WebGPU (graph_transformer_utils.cc, as the survey read it), so the graph carries QuickGelu itself' },
      ada_rms_norm: { use: ['function', 'decompose'], why: 'custom op with a function body (inlined by ORT)' },
      layer_pool: { use: ['function', 'decompose'], why: 'custom op with a function body (inlined by ORT)' },
    },
    train: { rules: [], why: 'no training-graph measurement for this EP (no device); the late pass still fuses what the backward does not read' },
  },
  portable: {
    description: 'standard ai.onnx ops only (no com.microsoft, no custom domains): onnxruntime-web and other runtimes; fused ops that are standard opset-23 ops with kernels on every ORT EP the survey lists',
    rules: ['layer-norm', 'rms-norm', 'gelu', 'rope', 'rope-sections'],
    lower: {
      rms_norm: { use: ['RMSNormalization-23', 'decompose'], why: '[S][K] standard op with CPU, CUDA and WebGPU kernels, passes onnx.checker' },
      layer_norm: { use: ['LayerNormalization-17', 'decompose'], why: '[S][K] standard op with CPU, CUDA and WebGPU kernels' },
      gelu: { use: ['Gelu-20', 'decompose'], why: '[S][K] standard op with CPU, CUDA and WebGPU kernels' },
      rope: { use: ['RotaryEmbedding-23', 'decompose'], why: '[S][K] standard op with CPU, CUDA and WebGPU kernels' },
      sdpa: { use: ['decompose'], why: '[K] Attention-23 has no WebGPU kernel, so it does not run everywhere; [S] on CPU it is 0.90x without a mask' },
      add_layer_norm: { use: ['decompose'], why: 'no standard op for the pair: Add + LayerNormalization-17 (the rule does not run for portable)' },
      kv_sdpa: { use: ['decompose'], why: 'Attention-23 has no WebGPU kernel (the sdpa row): Concat + the decomposed attention (the kv-attention rule does not run for portable)' },
      add_rms_norm: { use: ['decompose'], why: 'no standard op for the pair: Add + RMSNormalization-23 (the rule does not run for portable)' },
      swiglu: { use: ['decompose'], why: 'no standard fused op (Swish-24 is a function, [S] 0.39x)' },
      ada_rms_norm: { use: ['decompose'], why: 'standard ops only: no custom domain' },
      layer_pool: { use: ['decompose'], why: 'standard ops only: no custom domain' },
    },
    train: { rules: [], why: 'no training-graph measurement for this EP (no device); the late pass still fuses what the backward does not read' },
  },
};

/** The default target of `compile`: the runtime of this project is onnxruntime-node's CPU EP. */
export const DEFAULT_TARGET: Target = 'cpu';
