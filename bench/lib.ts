// Shared helpers for the benchmark scripts: statistics, peak RSS, child
// processes that print one JSON line, and the Python peer's interpreter.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BENCH_DIR = path.join(REPO_ROOT, 'bench');

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A field of /proc/self/status in kB (VmHWM = peak resident set, VmRSS = current). */
export function procStatusKB(field: 'VmHWM' | 'VmRSS'): number {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  if (!m) throw new Error(`no ${field} in /proc/self/status (Linux only)`);
  return Number(m[1]);
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The Python of the repo's venv (override with PYTHON). */
export function python(): string {
  return process.env.PYTHON ?? path.join(REPO_ROOT, '.venv', 'bin', 'python');
}

export interface ChildResult<T> {
  json: T;
  stderr: string;
  wallMs: number;
}

/**
 * Run a command whose last stdout line is a JSON object; reject with its
 * stderr tail when it fails. stdout lines before the last are ignored.
 */
export function runJson<T = Record<string, unknown>>(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ChildResult<T>> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO_ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = performance.now() - t0;
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${err.slice(-4000)}${out.slice(-2000)}`));
      try {
        resolve({ json: JSON.parse(last) as T, stderr: err, wallMs });
      } catch {
        reject(new Error(`${cmd} ${args.join(' ')}: last stdout line is not JSON: ${last.slice(0, 500)}\n${err.slice(-2000)}`));
      }
    });
  });
}

/** Run a bench TypeScript file in a fresh Node process (through tsx). */
export function runTsx<T = Record<string, unknown>>(file: string, args: readonly string[] = []): Promise<ChildResult<T>> {
  const tsx = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
  return runJson<T>(tsx, [file, ...args]);
}

/** True when this module is the process's entry script. */
export function isMain(metaUrl: string): boolean {
  return !!process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(metaUrl);
}

export function printJson(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

export function argValue(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v)) throw new Error(`--${name} needs a number`);
  return v;
}

function cpuTimes(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!; // "cpu  user nice system idle iowait irq softirq steal ..."
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - v[3]! - v[4]!, total };
}

/** Fraction of all CPUs busy over `ms` (this process should be idle meanwhile). */
export async function cpuBusy(ms = 500): Promise<number> {
  const a = cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTimes();
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
}

export interface QuietResult {
  /** busy fraction of the machine in the last sample (0..1) */
  busy: number;
  waitedMs: number;
  /** false when the machine stayed busy until the timeout */
  quiet: boolean;
}

/**
 * Wait until the rest of the machine is quiet (other processes using at most
 * `maxBusy` of all CPUs over a short sample), so timings are not taken while
 * something else (a test run, another build) competes for the 2 cores.
 * Gives up after `timeoutMs` and says so. BENCH_NO_WAIT=1 disables the wait.
 */
export async function waitQuiet(maxBusy = 0.15, timeoutMs = 180_000): Promise<QuietResult> {
  const t0 = performance.now();
  let busy = await cpuBusy();
  if (process.env.BENCH_NO_WAIT === '1') return { busy, waitedMs: 0, quiet: busy <= maxBusy };
  let noted = false;
  while (busy > maxBusy && performance.now() - t0 < timeoutMs) {
    if (!noted) process.stderr.write(`bench: machine busy (${Math.round(busy * 100)}% CPU used elsewhere); waiting for it to be quiet ...\n`), (noted = true);
    await new Promise((r) => setTimeout(r, 1000));
    busy = await cpuBusy();
  }
  return { busy, waitedMs: performance.now() - t0, quiet: busy <= maxBusy };
}

/** A Python peer in --serve mode (bench/py/*.py): one request line on stdin, one JSON line back. */
export class Peer {
  private lines: AsyncIterator<string>;
  private stderr = '';
  constructor(private child: ReturnType<typeof spawn>) {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  }
  /** the next JSON line (the peer's greeting, or the answer to a request) */
  async next<T>(): Promise<T> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`the PyTorch peer exited early:\n${this.stderr.slice(-4000)}`);
    return JSON.parse(r.value) as T;
  }
  async request<T>(line: string): Promise<T> {
    this.child.stdin!.write(line + '\n');
    return this.next<T>();
  }
  /** `run K`: K timed iterations, their milliseconds */
  async run(k: number): Promise<number[]> {
    return (await this.request<{ ms: number[] }>(`run ${k}`)).ms;
  }
  close(): void {
    this.child.stdin!.end('quit\n');
  }
}

// ---- foreign CPU load during a timed turn (used by denoise-step; the same accounting as train-step)

function procTicksOf(pid: number | 'self'): number {
  // utime + stime (fields 14, 15; after the ")" closing the command name)
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

export interface LoadSnap {
  busy: number;
  total: number;
  own: number;
}

/** Machine CPU ticks and those of this process and `pids` (ours, not foreign). */
export function loadSnap(pids: readonly number[] = []): LoadSnap {
  const v = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  let own = procTicksOf('self');
  for (const p of pids) {
    try {
      own += procTicksOf(p);
    } catch {
      /* gone: its ticks count as foreign */
    }
  }
  return { busy: total - v[3]! - v[4]!, total, own };
}

/** Share of all CPUs used between a and b by processes other than ours. */
export function foreignLoad(a: LoadSnap, b: LoadSnap): number {
  const dt = b.total - a.total;
  return dt <= 0 ? 0 : Math.max(0, (b.busy - a.busy - (b.own - a.own)) / dt);
}
