// `unifusion rewrite` and `unifusion encode` (in child processes) and the feature cache library
// behind encode: the printed rewrite and the --out condition equal VlmPackage.condition with the
// same settings; bad input exits 1 with one line; encode writes shards + index, resumes after an
// interruption to the same bytes as an uninterrupted run, refuses a resume with other settings.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { importHf } from '../src/cli/import-hf.ts';
import { VlmPackage } from '../runtime/vlm/index.ts';
import { encodeDataset, readDataset, readFeatureCache } from '../runtime/vlm/feature-cache.ts';
import { RunDir } from '../src/io/outdir.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { GEN_FIXTURES } from './helpers/vlm.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-cli-vlm-'));
const model = path.join(root, 'pkg');
let vlm: VlmPackage;
beforeAll(async () => {
  await importHf(path.join(GEN_FIXTURES, 'qwen2'), { out: model, taps: 'list:1,3' });
  vlm = await VlmPackage.load(model);
});
afterAll(async () => {
  await vlm?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

const cli = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const env = { ...process.env };
    delete env.UNIFUSION_DEBUG;
    execFile(process.execPath, [path.join(ROOT, 'bin', 'unifusion.mjs'), ...args], { cwd: ROOT, env, timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });

describe('unifusion rewrite', () => {
  it('prints the rewrite and writes the condition; both equal the library', async () => {
    const out = path.join(root, 'cond.safetensors');
    const r = await cli('rewrite', '--model', model, 'a red circle', '--max-new-tokens', '6', '--system-prompt', 'Rewrite.', '--out', out);
    expect(r.code).toBe(0);
    const lib = await vlm.condition([{ prompt: 'a red circle' }], { rewrite: true, maxNewTokens: 6, systemPrompt: 'Rewrite.' });
    expect(r.stdout).toBe(lib.rewritten[0] + '\n');
    expect(r.stderr).toMatch(/wrote .*cond\.safetensors: \d+ condition tokens x 2 taps/);
    const f = readSafetensors(out);
    expect([...f.tensors.keys()].sort()).toEqual(['condition_mask', 'hidden_states.1', 'hidden_states.3']);
    for (const k of f.tensors.keys()) expect(Array.from(f.tensors.get(k)!.data as Float32Array)).toEqual(Array.from(lib.tensors[k]!.data as Float32Array));
    expect(f.metadata.rewritten).toBe(lib.rewritten[0]);
  });

  it('bad input: exit 1, one line naming the argument; --out inside the model folder refused', async () => {
    for (const [args, re] of [
      [['--temperature', 'hot'], /^error: --temperature must be a number, got "hot"\n$/],
      [['--top-p', '1.5'], /^error: --top-p must be <= 1, got 1.5\n$/],
      [['--max-new-tokens', '0'], /^error: --max-new-tokens must be >= 1, got 0\n$/],
      [['--out', path.join(model, 'x.safetensors')], /^error: --out .* (is inside|lies inside|overlaps).*--model/],
    ] as const) {
      const r = await cli('rewrite', '--model', model, 'a cat', ...args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toMatch(re);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const long = await cli('rewrite', '--model', model, 'red circle '.repeat(150), '--max-new-tokens', '4');
    expect(long.code).toBe(1);
    expect(long.stderr).toMatch(/^error: prompt 0 is \d+ tokens \+ 4 new tokens = \d+, longer than the model's context of 256 tokens \(use truncate \/ --truncate/);
    const tv = await cli('rewrite', '--model', model, 'a cat', '--template-var', 'enable_thinking=false');
    expect(tv.code).toBe(1);
    expect(tv.stderr).toMatch(/^error: .*unknown chat template variable 'enable_thinking'/);
    const none = await cli('rewrite', '--model', path.join(root, 'nope'), 'a cat');
    expect(none.stderr).toMatch(/^error: .*nope is not a VLM package: no manifest.json/);
  });
});

function dataset(name: string, lines: object[]): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'data.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return dir;
}

const RECORDS = [
  { id: 'a', caption: 'a red circle', target: 'a.png' },
  { id: 'b', instruction: 'make the square green' },
  { id: 'c', caption: '' },
  { id: 'd', prompt: 'a cat under a tree' },
  { id: 'e', text: 'a blue triangle' },
];

describe('unifusion encode: the feature cache', () => {
  it('writes shards + index; records equal VlmPackage.condition; the empty caption has 0 tokens', async () => {
    const ds = dataset('ds1', RECORDS);
    const out = path.join(root, 'cache1');
    const r = await cli('encode', '--model', model, '--dataset', ds, '--out', out, '--no-rewrite', '--shard-records', '2', '--batch-size', '2');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/encoded 5 records \(.*condition tokens, taps \[1, 3\] x 32\) into 3 shard\(s\)/);
    const cache = readFeatureCache(out);
    expect(cache.index.complete).toBe(true);
    expect(cache.index.records.map((x) => x.id)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(cache.index.records[2]!.tokens).toBe(0);
    const text = (x: Record<string, string | undefined>) => x.caption ?? x.instruction ?? x.prompt ?? x.text ?? '';
    const lib = await vlm.condition(RECORDS.map((x) => ({ prompt: text(x) })), { rewrite: false });
    for (let k = 0; k < 5; k++) {
      const rec = cache.record(k);
      expect(rec.get(1)!.shape).toEqual([lib.lengths[k], 32]);
      const full = lib.tensors['hidden_states.3']!;
      const S = full.shape[1]!;
      const want = (full.data as Float32Array).subarray(k * S * 32, (k * S + lib.lengths[k]!) * 32);
      const got = rec.get(3)!.data as Float32Array;
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      expect(worst, `record ${k}`).toBeLessThan(1e-5);
    }
    // a second run without --resume is refused; with it, nothing to do
    const again = await cli('encode', '--model', model, '--dataset', ds, '--out', out, '--no-rewrite');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/holds an earlier run .*--resume/);
  });

  it('an interrupted rewrite encode resumes after its last shard and ends with the same bytes; other settings refused', async () => {
    const ds = dataset('ds2', RECORDS);
    const full = path.join(root, 'cache-full');
    const opts = { rewrite: true, maxNewTokens: 4, systemPrompt: 'Rewrite.', temperature: 1.2, topP: 0.9, seed: 3, shardRecords: 2, batchSize: 2 };
    await encodeDataset(vlm, ds, await RunDir.open({ out: full, command: 'encode' }), opts);
    const part = path.join(root, 'cache-part');
    let calls = 0;
    await expect(
      encodeDataset(vlm, ds, await RunDir.open({ out: part, command: 'encode' }), {
        ...opts,
        onProgress: (done) => {
          if (done > 2 && ++calls === 1) throw new Error('interrupted');
        },
      }),
    ).rejects.toThrow('interrupted');
    expect(readFeatureCache(part).index.shards.length).toBe(1);
    await encodeDataset(vlm, ds, await RunDir.open({ out: part, command: 'encode', resume: true }), opts);
    const a = readFeatureCache(full), b = readFeatureCache(part);
    expect(b.index).toEqual(a.index);
    for (const s of a.index.shards) expect(fs.readFileSync(path.join(part, s.file)).equals(fs.readFileSync(path.join(full, s.file)))).toBe(true);
    await expect(encodeDataset(vlm, ds, await RunDir.open({ out: part, command: 'encode', resume: true }), { ...opts, seed: 4 })).rejects.toThrow(/cannot resume .*other settings/);
  });

  it('bad datasets are named by file and line', () => {
    const bad = dataset('bad', []);
    fs.writeFileSync(path.join(bad, 'data.jsonl'), '{"caption": "ok"}\n{"caption": 3}\n');
    expect(() => readDataset(bad)).toThrow(/data\.jsonl:2: 'caption' must be a string/);
    fs.writeFileSync(path.join(bad, 'data.jsonl'), '{"caption": "ok", "image": "missing.png"}\n');
    expect(() => readDataset(bad)).toThrow(/data\.jsonl:1: image .*missing\.png does not exist/);
    fs.writeFileSync(path.join(bad, 'data.jsonl'), 'not json\n');
    expect(() => readDataset(bad)).toThrow(/data\.jsonl:1: not JSON/);
    fs.writeFileSync(path.join(bad, 'data.jsonl'), '{"id": 1}\n{"id": 1}\n');
    expect(() => readDataset(bad)).toThrow(/data\.jsonl:2: id '1' repeats/);
  });
});
