// What turns an import-hf output into a complete VLM package (runtime/vlm/index.ts VlmPackage):
// the generation graph (graphs/vlm/generation.ts: LM head + KV cache + the import's taps), the
// InternVL vision graph, the tokenizer files, chat template and generation config copied from the
// checkpoint folder, and one copy of the weights: the encoder graph's initializers are pointed at
// the generation / vision graphs' data files instead of a second data file of its own.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Emitted } from '../../codegen/onnx/emit.ts';
import { buildGenerationGraph, internvlVisionGraph } from '../../graphs/vlm/generation.ts';
import { HfError, type HfCheckpoint, type HfConfig } from '../io/hf.ts';
import { VlmTokenizer } from '../../runtime/vlm/tokenizer.ts';
import type { ImportGraph, WeightDType } from './import-hf.ts';

/** Files of a Hugging Face model folder that describe the model to a runtime, copied as they are. */
export const PACKAGE_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
  'preprocessor_config.json',
  'processor_config.json',
] as const;

export interface VlmGraphs {
  generation: ImportGraph;
  vision?: ImportGraph;
  /** why no generation graph was built (a base model without an LM head) */
  skipped?: string;
}

/**
 * The generation graph (and InternVL's vision graph) for a decoder / internvl checkpoint, or the
 * reason there is none: an untied config whose checkpoint has no lm_head (a base model) gets an
 * encoder-only import.
 */
export function vlmGraphs(config: HfConfig, opts: { taps: string; dtype?: WeightDType }, ckpt: HfCheckpoint): VlmGraphs | { skipped: string } {
  const gen = buildGenerationGraph(config, { taps: opts.taps, dtype: opts.dtype });
  if (gen.config.text.bidirectional) return { skipped: 'no generation graph: the model attends bidirectionally (use_bidirectional_attention), it is an encoder' };
  if (!gen.config.tied && !gen.checkpointNames('lm_head.weight').some((n) => ckpt.has(n)))
    return { skipped: `no generation graph: the checkpoint has no LM head (${gen.checkpointNames('lm_head.weight').join(' / ')}) and config.json does not tie it to the embeddings` };
  const out: VlmGraphs = { generation: { graph: gen.trace(), checkpointNames: gen.checkpointNames } };
  if (gen.config.internvl) {
    const v = internvlVisionGraph(config, { dtype: opts.dtype });
    out.vision = { graph: v.trace(), checkpointNames: v.checkpointNames };
  }
  return out;
}

interface PlannedLike {
  compiled: { emitted: Emitted; manifest: { externalData?: string } };
  weights: { source: Map<string, string> };
}

/**
 * Point `user`'s external initializers at the owners' data files where an owner stores the same
 * checkpoint tensor with the same byte length (same name resolution, same dtype), so the weights
 * are written once. Applies only when every external tensor of `user` is found; returns whether
 * it did. `user` then writes no data file of its own.
 */
export function shareExternalData(user: PlannedLike, owners: readonly PlannedLike[]): boolean {
  const em = user.compiled.emitted;
  if (em.external.length === 0) return false;
  const bySource = new Map<string, { file: string; offset: number; length: number }>();
  for (const o of owners)
    for (const c of o.compiled.emitted.external) {
      const src = o.weights.source.get(c.name);
      if (src !== undefined && !bySource.has(`${src}|${c.length}`)) bySource.set(`${src}|${c.length}`, { file: o.compiled.emitted.externalFile, offset: c.offset, length: c.length });
    }
  const target = new Map<string, { file: string; offset: number; length: number }>();
  for (const c of em.external) {
    const src = user.weights.source.get(c.name);
    const hit = src === undefined ? undefined : bySource.get(`${src}|${c.length}`);
    if (!hit) return false;
    target.set(c.name, hit);
  }
  const files = new Set<string>();
  for (const init of em.model.graph?.initializer ?? []) {
    const t = init.name ? target.get(init.name) : undefined;
    if (!t) continue;
    init.externalData = [
      { key: 'location', value: t.file },
      { key: 'offset', value: String(t.offset) },
      { key: 'length', value: String(t.length) },
    ];
    files.add(t.file);
  }
  em.external = [];
  em.externalBytes = 0;
  user.compiled.manifest.externalData = [...files].join(', ');
  return true;
}

/**
 * Check the tokenizer files (so a package never ships one that does not load) and copy the
 * package files that exist in `src` into `dest`. Returns the copied names.
 */
export function copyPackageFiles(src: string, dest: string): string[] {
  if (fs.existsSync(path.join(src, 'tokenizer.json'))) {
    try {
      VlmTokenizer.load(src);
    } catch (e) {
      throw new HfError(`${(e as Error).message}`);
    }
  }
  const copied: string[] = [];
  for (const f of PACKAGE_FILES) {
    const from = path.join(src, f);
    let st: fs.Stats;
    try {
      st = fs.statSync(from);
    } catch {
      continue;
    }
    if (!st.isFile()) throw new HfError(`${from} is not a file`);
    if (f.endsWith('.json') && f !== 'tokenizer.json') {
      try {
        JSON.parse(fs.readFileSync(from, 'utf8'));
      } catch (e) {
        throw new HfError(`${from} is not valid JSON (${(e as Error).message})`);
      }
    }
    fs.copyFileSync(from, path.join(dest, f));
    copied.push(f);
  }
  return copied;
}
