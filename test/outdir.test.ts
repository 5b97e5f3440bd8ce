// The output discipline every writing command shares (src/io/outdir.ts): overlap refusals,
// ownership by marker, staging + rename, no partial output on failure or interrupt, no hang on
// virtual file systems, clear errors for paths that cannot be folders.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MARKER, OutputError, RunDir, checkOverlap, makeDirs, preflightOutputDir, preflightOutputFile, writeOutputDir, writeOutputFile } from '../src/io/outdir.ts';

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'outdir-'));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** path -> sha256 of every file and symlink under dir (folders as entries too). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      const abs = path.join(dir, r);
      if (e.isDirectory()) (out[`${r}/`] = 'dir'), walk(r);
      else if (e.isSymbolicLink()) out[r] = `link:${fs.readlinkSync(abs)}`;
      else out[r] = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
    }
  };
  walk('');
  return out;
}

const write = (files: Record<string, string>) => async (stage: string) => {
  for (const [f, v] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(stage, f)), { recursive: true });
    fs.writeFileSync(path.join(stage, f), v);
  }
  return Object.keys(files).length;
};

const ours = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, MARKER), 'utf8')).files as string[];

describe('writeOutputDir', () => {
  it('writes a new folder (and missing parents) through a staging folder that is gone afterwards', async () => {
    const out = path.join(root, 'a', 'b', 'out');
    const r = await writeOutputDir({ out, command: 'test' }, write({ 'm.onnx': 'x', 'sub/w.bin': 'y' }));
    expect(r.result).toBe(2);
    expect(fs.readFileSync(path.join(out, 'sub/w.bin'), 'utf8')).toBe('y');
    expect(ours(out)).toEqual(['m.onnx', 'sub/w.bin']);
    expect(fs.readdirSync(path.join(root, 'a', 'b'))).toEqual(['out']);
  });

  it('replaces an earlier output of ours exactly, dropping stale files', async () => {
    const out = path.join(root, 'out');
    await writeOutputDir({ out, command: 'test' }, write({ 'old.onnx': '1', 'old.onnx.data': '2', 'sub/x': '3' }));
    await writeOutputDir({ out, command: 'test' }, write({ 'new.onnx': '4' }));
    expect(fs.readdirSync(out).sort()).toEqual([MARKER, 'new.onnx']);
    expect(fs.readdirSync(root)).toEqual(['out']);
  });

  it('refuses a folder with files it did not write, unless --force; with --force keeps them and drops only our stale files', async () => {
    const out = path.join(root, 'out');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'notes.txt'), 'mine');
    const before = snapshot(root);
    await expect(writeOutputDir({ out, command: 'test' }, write({ 'm.onnx': 'x' }))).rejects.toThrow(/already holds files unifusion did not write \('notes.txt'\).*--force/);
    expect(snapshot(root)).toEqual(before);
    await writeOutputDir({ out, command: 'test', force: true }, write({ 'm.onnx': 'x', 'd/old': 'o' }));
    await writeOutputDir({ out, command: 'test', force: true }, write({ 'n.onnx': 'y' }));
    expect(fs.readFileSync(path.join(out, 'notes.txt'), 'utf8')).toBe('mine');
    expect(fs.readdirSync(out).sort()).toEqual([MARKER, 'n.onnx', 'notes.txt']);
  });

  it('with --force, a user file under a name it would write stops it before anything changes', async () => {
    const out = path.join(root, 'out');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'm.onnx'), 'the user model');
    const before = snapshot(root);
    await expect(writeOutputDir({ out, command: 'test', force: true }, write({ 'a.txt': '1', 'm.onnx': 'x' }))).rejects.toThrow(/m\.onnx' exists and was not written by unifusion/);
    expect(snapshot(root)).toEqual(before);
  });

  it('a failing fill leaves the previous output and no temporaries, and removes the parents it made', async () => {
    const out = path.join(root, 'out');
    await writeOutputDir({ out, command: 'test' }, write({ 'good.onnx': 'g' }));
    const before = snapshot(root);
    await expect(writeOutputDir({ out, command: 'test' }, async (s) => (fs.writeFileSync(path.join(s, 'half'), 'h'), Promise.reject(new Error('boom'))))).rejects.toThrow('boom');
    expect(snapshot(root)).toEqual(before);
    await expect(writeOutputDir({ out: path.join(root, 'x', 'y', 'z'), command: 'test' }, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(fs.existsSync(path.join(root, 'x'))).toBe(false);
  });

  it('an empty existing folder is used; a marker-less folder holding only a subfolder is not ours', async () => {
    const out = path.join(root, 'out');
    fs.mkdirSync(out);
    await writeOutputDir({ out, command: 'test' }, write({ a: '1' }));
    expect(ours(out)).toEqual(['a']);
    const other = path.join(root, 'other');
    fs.mkdirSync(path.join(other, 'keep'), { recursive: true });
    await expect(writeOutputDir({ out: other, command: 'test' }, write({ a: '1' }))).rejects.toThrow(/'keep'/);
  });
});

describe('overlap with inputs', () => {
  it('refuses --out equal to, inside, or containing an input (also through a symlink), before writing anything', async () => {
    const ckpt = path.join(root, 'ckpt');
    fs.mkdirSync(ckpt);
    fs.writeFileSync(path.join(ckpt, 'model.safetensors'), 'w');
    fs.symlinkSync(ckpt, path.join(root, 'link'));
    const before = snapshot(root);
    const inputs = [{ path: ckpt, what: '<checkpoint>' }];
    const cases: [string, RegExp][] = [
      [ckpt, /is the input <checkpoint>/],
      [path.join(root, 'link'), /is the input <checkpoint>/],
      [path.join(ckpt, 'onnx'), /lies inside the input <checkpoint>/],
      [root, /contains the input <checkpoint>/],
    ];
    for (const [out, re] of cases) {
      await expect(writeOutputDir({ out, inputs, command: 'test', force: true }, write({ a: '1' }))).rejects.toThrow(re);
      await expect(checkOverlap({ out, inputs })).rejects.toBeInstanceOf(OutputError);
    }
    expect(snapshot(root)).toEqual(before);
    await expect(checkOverlap({ out: path.join(root, 'ckpt2'), inputs })).resolves.toBeUndefined();
  });
});

describe('paths that cannot hold outputs', () => {
  it('procfs and sysfs fail at once with a clear message (no mkdir -p retry loop)', async () => {
    const t0 = Date.now();
    for (const out of ['/proc/unifusion-x/y', '/sys/unifusion-x'])
      await expect(writeOutputDir({ out, command: 'test' }, write({ a: '1' }))).rejects.toThrow(/virtual file system that cannot hold outputs/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a file where a folder is needed is named', async () => {
    fs.writeFileSync(path.join(root, 'f'), 'x');
    await expect(makeDirs(path.join(root, 'f', 'sub'))).rejects.toThrow(/'.*f' is a file, not a folder/);
    await expect(writeOutputDir({ out: path.join(root, 'f'), command: 'test' }, write({ a: '1' }))).rejects.toThrow(/is a file, not a folder/);
  });

  it('a folder that cannot be written is named with the reason', async (ctx) => {
    const ro = path.join(root, 'ro');
    fs.mkdirSync(ro);
    let undo: () => void;
    if (process.getuid?.() === 0) {
      // root ignores mode bits: make the folder immutable instead where the file system allows it
      try {
        execFileSync('chattr', ['+i', ro], { stdio: 'ignore' });
      } catch {
        ctx.skip();
        return;
      }
      undo = () => execFileSync('chattr', ['-i', ro]);
    } else {
      fs.chmodSync(ro, 0o555);
      undo = () => fs.chmodSync(ro, 0o755);
    }
    try {
      await expect(writeOutputDir({ out: path.join(ro, 'out'), command: 'test' }, write({ a: '1' }))).rejects.toThrow(/cannot create a staging folder next to .*(permission denied|operation not permitted)/);
      await expect(writeOutputFile({ out: path.join(ro, 'x.bin'), command: 'test' }, 'x')).rejects.toThrow(/cannot write .*x\.bin.*(permission denied|operation not permitted)/);
      expect(fs.readdirSync(ro)).toEqual([]);
    } finally {
      undo();
    }
  });
});

describe('writeOutputFile', () => {
  it('writes atomically; replaces only files it recognises as its own, or with --force', async () => {
    const f = path.join(root, 'sub', 'o.bin');
    await writeOutputFile({ out: f, command: 'test' }, 'one');
    expect(fs.readFileSync(f, 'utf8')).toBe('one');
    await expect(writeOutputFile({ out: f, command: 'test' }, 'two')).rejects.toThrow(/already exists and was not written by unifusion/);
    await writeOutputFile({ out: f, command: 'test', isOurs: () => true }, 'two');
    await writeOutputFile({ out: f, command: 'test', force: true }, 'three');
    expect(fs.readFileSync(f, 'utf8')).toBe('three');
    await expect(writeOutputFile({ out: root, command: 'test', force: true }, 'x')).rejects.toThrow(/is a folder/);
    await expect(writeOutputFile({ out: path.join(root, 'in.bin'), command: 'test', inputs: [{ path: path.join(root, 'in.bin'), what: '--inputs' }] }, 'x')).rejects.toThrow(/is the input --inputs/);
    expect(fs.readdirSync(path.join(root, 'sub'))).toEqual(['o.bin']);
  });
});

describe('RunDir', () => {
  it('records the files it writes, removes only its own, and needs --resume for an earlier run', async () => {
    const out = path.join(root, 'run');
    const rd = await RunDir.open({ out, command: 'train' });
    await rd.writeFile('checkpoints/step-1.safetensors', 'c1');
    await rd.writeFile('metrics.jsonl', '{}\n');
    expect(rd.written).toEqual(['checkpoints/step-1.safetensors', 'metrics.jsonl']);
    fs.writeFileSync(path.join(out, 'checkpoints', 'user.txt'), 'u');
    await expect(rd.remove('checkpoints/user.txt')).rejects.toThrow(/did not write it/);
    await expect(rd.writeFile('checkpoints/user.txt', 'x')).rejects.toThrow(/was not written by unifusion/);
    await rd.remove('checkpoints/step-1.safetensors');
    expect(fs.readdirSync(path.join(out, 'checkpoints'))).toEqual(['user.txt']);
    await expect(rd.writeFile('../escape', 'x')).rejects.toThrow(/not a file inside the run folder/);
    fs.rmSync(path.join(out, 'checkpoints', 'user.txt'));
    await expect(RunDir.open({ out, command: 'train' })).rejects.toThrow(/holds an earlier run .*--resume/);
    const again = await RunDir.open({ out, command: 'train', resume: true });
    expect(again.written).toEqual(['metrics.jsonl']);
  });
});

describe('interrupts', () => {
  it('SIGTERM during a write removes the staging folder and leaves the previous output', async () => {
    const out = path.join(root, 'out');
    await writeOutputDir({ out, command: 'test' }, write({ 'good.onnx': 'g' }));
    const before = snapshot(root);
    const script = `
      import { writeOutputDir } from ${JSON.stringify(path.resolve('src/io/outdir.ts'))};
      import * as fs from 'node:fs';
      await writeOutputDir({ out: ${JSON.stringify(out)}, command: 'test' }, async (s) => {
        fs.writeFileSync(s + '/half.onnx', 'h');
        console.log('ready');
        await new Promise((r) => setTimeout(r, 60000));
      });`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child.on('exit', () => reject(new Error('child exited early')));
    });
    child.kill('SIGTERM');
    const code = await new Promise<NodeJS.Signals | number | null>((r) => child.on('exit', (c, s) => r(s ?? c)));
    expect(code).toBe('SIGTERM');
    expect(snapshot(root)).toEqual(before);
  });
});

describe('preflight (the checks before a long command, without writing)', () => {
  it('refuses what writeOutputDir / writeOutputFile / RunDir.open would, and creates nothing', async () => {
    fs.writeFileSync(path.join(root, 'f'), 'x');
    fs.mkdirSync(path.join(root, 'theirs'));
    fs.writeFileSync(path.join(root, 'theirs', 'a.txt'), 'a');
    const before = snapshot(root);
    await expect(preflightOutputDir({ out: '/proc/unifusion-x/y', command: 't' })).rejects.toThrow(/--out '\/proc\/unifusion-x\/y': '\/proc' is a virtual file system that cannot hold outputs/);
    await expect(preflightOutputDir({ out: path.join(root, 'f', 'sub'), command: 't' })).rejects.toThrow(/--out '.*f\/sub': '.*f' is a file, not a folder/);
    await expect(preflightOutputDir({ out: path.join(root, 'theirs'), command: 't' })).rejects.toThrow(/already holds files unifusion did not write \('a\.txt'\)/);
    await expect(preflightOutputFile({ out: path.join(root, 'f'), command: 't' })).rejects.toThrow(/already exists and was not written by unifusion/);
    await expect(RunDir.preflight({ out: path.join(root, 'theirs'), command: 'train' })).rejects.toThrow(/already holds files/);
    await expect(preflightOutputDir({ out: path.join(root, 'new', 'deeper'), command: 't', flag: '--dir' })).resolves.toBeUndefined();
    expect(snapshot(root)).toEqual(before);
  });
});

describe('RunDir: logs, failed starts, killed runs', () => {
  it('claim records a log before it is written; a run that wrote nothing leaves no trace; stale temps of dead processes are ours', async () => {
    const out = path.join(root, 'a', 'run');
    const rd = await RunDir.open({ out, command: 'train' });
    await rd.discardIfUnused();
    expect(fs.existsSync(path.join(root, 'a'))).toBe(false);

    const rd2 = await RunDir.open({ out, command: 'train' });
    const log = await rd2.claim('metrics.jsonl');
    fs.appendFileSync(log, '{"step":1}\n');
    expect(ours(out)).toEqual(['metrics.jsonl']);
    fs.writeFileSync(path.join(out, 'user.log'), 'u');
    await expect(rd2.claim('user.log')).rejects.toThrow(/'.*user\.log' exists and was not written by unifusion/);
    fs.rmSync(path.join(out, 'user.log'));
    // a temp file of a killed writer (pid 2^22 + 1 does not exist) is not someone else's file
    const stale = path.join(out, '.step-000000001.safetensors.tmp-4194305-0123abcd');
    fs.writeFileSync(stale, 'half');
    const again = await RunDir.open({ out, command: 'train', resume: true });
    expect(fs.existsSync(stale)).toBe(false);
    expect(again.owns('metrics.jsonl')).toBe(true);
    // opening an earlier run and failing at once changes nothing
    const markerBefore = fs.readFileSync(path.join(out, MARKER), 'utf8');
    const failed = await RunDir.open({ out, command: 'train', resume: true });
    await failed.discardIfUnused();
    expect(fs.readFileSync(path.join(out, MARKER), 'utf8')).toBe(markerBefore);
  });
});
