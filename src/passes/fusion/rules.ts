// Every fusion rule by name. A target's rule list (targets.ts) picks and orders them:
// layer-norm before rms-norm (an RMSNorm of the centred x is LayerNorm's inner half),
// rope before rope-sections, the norms before ada-rms-norm (which matches a fused rms_norm), and
// sdpa before kv-attention (which matches a fused sdpa over the cache concats),
// ada-rms-norm before add-rms-norm / add-layer-norm (adaLN modulation keeps its norms).
import type { FusionRule } from './rule.ts';
import { adaRmsNormRule } from './ada-rms-norm.ts';
import { addLayerNormRule } from './add-layer-norm.ts';
import { addRmsNormRule } from './add-rms-norm.ts';
import { geluRule } from './gelu.ts';
import { kvAttentionRule } from './kv-attention.ts';
import { layerNormRule } from './layer-norm.ts';
import { layerPoolRule } from './layer-pool.ts';
import { rmsNormRule } from './rms-norm.ts';
import { ropeRule } from './rope.ts';
import { ropeSectionsRule } from './rope-sections.ts';
import { sdpaRule } from './sdpa.ts';
import { swigluRule } from './swiglu.ts';

export const RULES: Record<string, FusionRule> = Object.fromEntries(
  ([layerNormRule, rmsNormRule, geluRule, ropeRule, ropeSectionsRule, sdpaRule, kvAttentionRule, swigluRule, adaRmsNormRule, layerPoolRule, addRmsNormRule, addLayerNormRule] as FusionRule[]).map((r) => [r.name, r]),
);
