// `unifusion assemble --vlm DIR --dit RUN_OR_ONNX [--vae DIR] --out PIPE`: one pipeline folder
// (pipeline.json + parts + hashes) from an import-hf VLM, a trained DiT and an imported VAE (or
// pixel space). Mismatches are reported before anything is written; on error PIPE is untouched.
import * as path from 'node:path';
import { assemble } from '../../runtime/pipeline/assemble.ts';
import { FLUX_SHIFT, KREA2_SHIFT } from '../../runtime/sampler/index.ts';
import { parseSize, UsageError } from './sample.ts';

export interface AssembleCommandOptions {
  vlm?: string;
  dit: string;
  vae?: string;
  out: string;
  force?: boolean;
  /** typed TypeScript bindings of the DiT (codegen/ts) */
  bindings?: boolean;
  name?: string;
  nullCondition?: string;
  pixelShift?: string;
  pixelScale?: string;
  ema?: boolean;
  size?: string;
  steps?: string;
  guidance?: string;
  sampler?: string;
  shift?: string;
  dynamicShift?: string;
  cfgNorm?: boolean;
  systemPrompt?: string;
  rewrite?: boolean;
  /** keep the chat template's fixed tokens in no-rewrite conditions (pipeline.json dropTemplate: false) */
  keepTemplate?: boolean;
  quiet?: boolean;
}

const numbers = (flag: string, s: string | undefined): number | number[] | undefined => {
  if (s === undefined) return undefined;
  const xs = s.split(',').map(Number);
  if (xs.some((x) => !Number.isFinite(x))) throw new UsageError(`${flag} must be a number or comma-separated numbers per channel, got '${s}'`);
  return xs.length === 1 ? xs[0] : xs;
};

export async function assembleCommand(o: AssembleCommandOptions): Promise<void> {
  const num = (flag: string, v: string | undefined, int: boolean) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!(Number.isFinite(n) && n >= 0 && (!int || (Number.isInteger(n) && n >= 1)))) throw new UsageError(`${flag} must be a ${int ? 'positive integer' : 'non-negative number'}, got '${v}'`);
    return n;
  };
  if (o.sampler !== undefined && o.sampler !== 'euler' && o.sampler !== 'heun') throw new UsageError(`--sampler must be euler or heun, got '${o.sampler}'`);
  const dyn = o.dynamicShift === undefined ? undefined : o.dynamicShift === 'flux' ? FLUX_SHIFT : o.dynamicShift === 'krea2' ? KREA2_SHIFT : undefined;
  if (o.dynamicShift !== undefined && !dyn) throw new UsageError(`--dynamic-shift must be flux or krea2, got '${o.dynamicShift}'`);
  const scale = numbers('--pixel-scale', o.pixelScale);
  if (scale !== undefined && [scale].flat().some((s) => s === 0)) throw new UsageError('--pixel-scale must not be 0');
  const r = await assemble({
    vlm: o.vlm,
    dit: o.dit,
    vae: o.vae,
    out: o.out,
    force: o.force,
    bindings: o.bindings,
    name: o.name,
    nullCondition: o.nullCondition,
    pixelShift: numbers('--pixel-shift', o.pixelShift),
    pixelScale: scale,
    ema: o.ema,
    size: parseSize(o.size),
    systemPrompt: o.systemPrompt,
    rewrite: o.rewrite,
    ...(o.keepTemplate ? { dropTemplate: false } : {}),
    scheduler: { steps: num('--steps', o.steps, true), guidance: num('--guidance', o.guidance, false), sampler: o.sampler as 'euler' | 'heun' | undefined, shift: num('--shift', o.shift, false), dynamicShift: dyn, cfgNorm: o.cfgNorm },
    log: o.quiet ? undefined : (s) => process.stdout.write(`  ${s}\n`),
  });
  if (o.quiet) return;
  const j = r.json;
  const r0 = path.relative(process.cwd(), r.dir);
  const rel = r0 === '' ? '.' : r0.startsWith('..') ? r.dir : r0;
  process.stdout.write(
    [
      `assembled pipeline '${j.name}' -> ${rel}/ (${r.files.length} files, sha256 of each in pipeline.json)`,
      `  parts: VLM ${j.parts.vlm ? j.parts.vlm.dir + '/' : 'none (conditions from the caller)'}; DiT ${j.parts.dit.onnx}; ${j.parts.vae ? `VAE ${j.parts.vae.decoder}` : 'pixel space (no VAE)'}`,
      `  condition: taps [${j.conditioning.taps.join(', ')}] x ${j.conditioning.hidden}; dropped condition ${j.conditioning.nullCondition ?? 'none (CFG needs --true-cfg)'}`,
      `  latent: ${j.latent.kind}, ${j.latent.channels} channels, patch ${j.latent.patch}, factor ${j.latent.factor}; sizes multiple of ${j.resolutions.multiple}, default ${j.resolutions.default.join('x')}`,
      `  defaults: ${j.scheduler.steps} ${j.scheduler.sampler} steps, guidance ${j.scheduler.guidance}, ${j.scheduler.dynamicShift ? 'dynamic shift' : `shift ${j.scheduler.shift}`}`,
    ].join('\n') + '\n',
  );
}
