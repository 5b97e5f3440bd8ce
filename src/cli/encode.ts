// `unifusion encode --model DIR --dataset DIR --out DIR`: the frozen VLM's condition for every
// record of a dataset, once, as the training feature cache (runtime/vlm/feature-cache.ts).
// Resumable (--resume continues after the last complete shard); progress bar with ETA on a TTY.
import cliProgress from 'cli-progress';
import { RunDir } from '../io/outdir.ts';
import { checkSetting } from '../../runtime/vlm/sampling.ts';
import { VlmPackage } from '../../runtime/vlm/index.ts';
import { encodeDataset } from '../../runtime/vlm/feature-cache.ts';
import { templateVars } from './rewrite.ts';

export interface EncodeCommandOptions {
  model: string;
  dataset: string;
  out: string;
  rewrite?: boolean;
  systemPrompt?: string;
  maxNewTokens?: string;
  temperature?: string;
  topP?: string;
  topK?: string;
  seed?: string;
  batchSize?: string;
  shardRecords?: string;
  truncate?: boolean;
  keepTemplate?: boolean;
  resume?: boolean;
  force?: boolean;
  device?: string;
  threads?: string;
  progress?: boolean;
  templateVar?: string[];
}

const num = (flag: string, v: string | undefined, range: Parameters<typeof checkSetting>[2]) => (v === undefined ? undefined : checkSetting(flag, v, range));

export async function encodeCommand(o: EncodeCommandOptions): Promise<void> {
  const opts = {
    rewrite: o.rewrite ?? true,
    systemPrompt: o.systemPrompt,
    maxNewTokens: num('--max-new-tokens', o.maxNewTokens, { min: 1, integer: true }),
    temperature: num('--temperature', o.temperature, { min: 0 }),
    topP: num('--top-p', o.topP, { min: 0, max: 1, minExclusive: true }),
    topK: num('--top-k', o.topK, { min: 0, integer: true }),
    seed: num('--seed', o.seed, { min: 0, max: 2 ** 32 - 1, integer: true }),
    batchSize: num('--batch-size', o.batchSize, { min: 1, integer: true }),
    shardRecords: num('--shard-records', o.shardRecords, { min: 1, integer: true }),
    truncate: o.truncate,
    keepTemplate: o.keepTemplate,
    templateVars: templateVars(o.templateVar),
  };
  const threads = num('--threads', o.threads, { min: 1, integer: true });
  const out = await RunDir.open({ out: o.out, command: 'encode', resume: o.resume, force: o.force, inputs: [{ path: o.model, what: '--model' }, { path: o.dataset, what: '--dataset' }] });
  const vlm = await VlmPackage.load(o.model, { device: o.device, intraOpThreads: threads });
  const show = (o.progress ?? true) && Boolean(process.stderr.isTTY) && !process.env.VITEST && !process.env.CI;
  const bar = show ? new cliProgress.SingleBar({ stream: process.stderr, format: 'encode {bar} {value}/{total} records | {rate} rec/s | ETA {eta_formatted}', hideCursor: true, etaBuffer: 20 }, cliProgress.Presets.shades_classic) : undefined;
  const t0 = performance.now();
  let start = -1;
  try {
    const index = await encodeDataset(vlm, o.dataset, out, {
      ...opts,
      onProgress: (done, total) => {
        if (start < 0) (start = done), bar?.start(total, done, { rate: '-' });
        const s = (performance.now() - t0) / 1000;
        bar?.update(done, { rate: s > 0 ? ((done - start) / s).toFixed(2) : '-' });
      },
    });
    bar?.stop();
    const tokens = index.records.reduce((a, r) => a + r.tokens, 0);
    process.stdout.write(`encoded ${index.records.length} records (${start > 0 ? `${index.records.length - start} this run, ` : ''}${tokens} condition tokens, taps [${index.model.taps.join(', ')}] x ${index.model.hidden}) into ${index.shards.length} shard(s) in ${o.out} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  } catch (e) {
    bar?.stop();
    throw e;
  } finally {
    await vlm.close();
  }
}
