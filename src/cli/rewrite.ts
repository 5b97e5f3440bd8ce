// `unifusion rewrite --model DIR "prompt"`: VERIFI's rewrite step on its own. Prints the VLM's
// rewritten prompt as it is generated; with --out, writes the UniFusion condition (hidden_states.<i>
// [1, S, hE], condition_mask [1, S]) as safetensors.
import * as path from 'node:path';
import { serializeSafetensors } from '../io/safetensors.ts';
import { writeOutputFile } from '../io/outdir.ts';
import { checkSetting } from '../../runtime/vlm/sampling.ts';
import { VlmPackage } from '../../runtime/vlm/index.ts';

export interface RewriteCommandOptions {
  model: string;
  image?: string[];
  systemPrompt?: string;
  maxNewTokens?: string;
  temperature?: string;
  topP?: string;
  topK?: string;
  seed?: string;
  out?: string;
  force?: boolean;
  truncate?: boolean;
  device?: string;
  threads?: string;
  /** condition on the prompt itself (no generation) */
  rewrite?: boolean;
  templateVar?: string[];
  keepTemplate?: boolean;
}

/** --template-var key=value pairs; values parsed as JSON where they are JSON (false, 3, "x"), else kept as strings. */
export function templateVars(pairs: readonly string[] | undefined): Record<string, unknown> | undefined {
  if (!pairs?.length) return undefined;
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(p);
    if (!m) throw new Error(`--template-var '${p}' is not key=value (key: a template variable name)`);
    let v: unknown = m[2];
    try {
      v = JSON.parse(m[2]!);
    } catch {
      /* a plain string */
    }
    out[m[1]!] = v;
  }
  return out;
}

const num = (flag: string, v: string | undefined, range: Parameters<typeof checkSetting>[2]) => (v === undefined ? undefined : checkSetting(flag, v, range));

export async function rewriteCommand(prompt: string, o: RewriteCommandOptions): Promise<void> {
  const maxNewTokens = num('--max-new-tokens', o.maxNewTokens, { min: 1, integer: true });
  const temperature = num('--temperature', o.temperature, { min: 0 });
  const topP = num('--top-p', o.topP, { min: 0, max: 1, minExclusive: true });
  const topK = num('--top-k', o.topK, { min: 0, integer: true });
  const seed = num('--seed', o.seed, { min: 0, max: 2 ** 32 - 1, integer: true });
  const threads = num('--threads', o.threads, { min: 1, integer: true });
  const vars = templateVars(o.templateVar);
  const images = o.image ?? [];
  const vlm = await VlmPackage.load(o.model, { device: o.device, intraOpThreads: threads });
  try {
    const rewrite = o.rewrite ?? true;
    let streamed = false;
    const c = await vlm.condition([{ prompt, images }], {
      rewrite, systemPrompt: o.systemPrompt, maxNewTokens, temperature, topP, topK, seed, truncate: o.truncate, templateVars: vars, keepTemplate: o.keepTemplate,
      onToken: (_, t) => {
        process.stdout.write(t);
        streamed = true;
      },
    });
    if (rewrite) process.stdout.write(streamed ? '\n' : (c.rewritten[0] ?? '') + '\n');
    if (o.out) {
      const meta = { format: 'unifusion-condition', model: path.resolve(o.model), prompt, rewritten: c.rewritten[0] ?? '', rewrite: String(rewrite), taps: vlm.taps.join(','), tokens: String(c.lengths[0]) };
      const bytes = serializeSafetensors(c.tensors, meta);
      await writeOutputFile({ out: o.out, command: 'rewrite', force: o.force, inputs: [{ path: o.model, what: '--model' }, ...images.map((p) => ({ path: p, what: '--image' }))] }, bytes);
      process.stderr.write(`wrote ${o.out}: ${c.lengths[0]} condition tokens x ${vlm.taps.length} taps (hidden_states.${vlm.taps.join(', .')}) of ${vlm.hidden}\n`);
    }
  } finally {
    await vlm.close();
  }
}
