// What the hardening of issue 8 costs:
//   1. the type check of a graph file in `unifusion compile` (a worker thread beside the trace):
//      wall time of whole CLI processes with a cold check, with the check's cache of an unchanged
//      file, and with --no-typecheck, interleaved rounds;
//   2. the user file:line recorded on every IR node (a structured stack capture per new node,
//      for ONNX doc_strings): trace + passes + emit of the unifusion-8b pipeline (skeleton
//      weights) with it and with it switched off (Trace.apply patched to skip the capture),
//      interleaved in one process.
// Each round waits for a quiet machine (bench/lib.ts waitQuiet); the report gives medians and
// the with/without ratios.
//
//   npx tsx bench/cli-checks.ts [--rounds 5]
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { argValue, isMain, median, printJson, REPO_ROOT, round, waitQuiet } from './lib.ts';

export interface CliChecksResult {
  rounds: number;
  /** with_s: a cold check (its cache cleared first); cached_s: the same file again, unchanged */
  typecheck: { file: string; with_s: number; cached_s: number; without_s: number; overhead_s: number; ratio: number }[];
  sites: { graph: string; with_s: number; without_s: number; ratio: number; nodes: number };
  quiet: boolean;
}

function wall(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'unifusion.mjs'), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('close', (code) => (code === 0 ? resolve((performance.now() - t0) / 1000) : reject(new Error(`unifusion ${args.join(' ')} exited ${code}: ${err}`))));
  });
}

async function typecheckCost(rounds: number, tmp: string): Promise<{ rows: CliChecksResult['typecheck']; quiet: boolean }> {
  const files: [string, string[]][] = [
    ['test/graphs/good.ts', []],
    ['examples/transformer.ts', ['--preset', 'tiny']],
    ['graphs/unifusion.ts', ['--preset', 'tiny', '--weights', 'skeleton']],
  ];
  const rows: CliChecksResult['typecheck'] = [];
  let quiet = true;
  for (const [file, extra] of files) {
    const w: number[] = [], c: number[] = [], wo: number[] = [];
    const cache = path.join(REPO_ROOT, 'node_modules', '.cache', 'unifusion', 'typecheck');
    for (let r = 0; r < rounds; r++) {
      fs.rmSync(cache, { recursive: true, force: true });
      quiet = (await waitQuiet()).quiet && quiet;
      w.push(await wall(['compile', file, ...extra, '--out', path.join(tmp, `w-${r}`)]));
      quiet = (await waitQuiet()).quiet && quiet;
      c.push(await wall(['compile', file, ...extra, '--out', path.join(tmp, `c-${r}`)]));
      quiet = (await waitQuiet()).quiet && quiet;
      wo.push(await wall(['compile', file, ...extra, '--out', path.join(tmp, `wo-${r}`), '--no-typecheck']));
    }
    const a = median(w), b = median(wo);
    rows.push({ file, with_s: round(a), cached_s: round(median(c)), without_s: round(b), overhead_s: round(a - b), ratio: round(a / b, 2) });
  }
  return { rows, quiet };
}

async function siteCost(rounds: number): Promise<{ sites: CliChecksResult['sites']; quiet: boolean }> {
  const { Trace } = await import('../src/dsl/trace.ts');
  const { compileGraph } = await import('../src/compiler.ts');
  const def = (await import('../graphs/unifusion.ts')).default as unknown as { trace(p: string): import('../src/ir/graph.ts').Graph };
  const original = Trace.prototype.apply;
  // the same call without the per-node capture: what tracing cost before sites were recorded
  const bare: typeof original = function (this: InstanceType<typeof Trace>, op, params, inputs) {
    return this.builder.apply(op, params, inputs, undefined, this.scope || undefined);
  };
  const once = () => {
    const t0 = performance.now();
    const c = compileGraph(def.trace('unifusion-8b'), { weights: 'skeleton' });
    return { s: (performance.now() - t0) / 1000, nodes: c.manifest.irNodes };
  };
  once(); // warm up both paths' JIT
  Trace.prototype.apply = bare;
  once();
  Trace.prototype.apply = original;
  const w: number[] = [], wo: number[] = [];
  let nodes = 0;
  let quiet = true;
  for (let r = 0; r < rounds; r++) {
    quiet = (await waitQuiet()).quiet && quiet;
    const a = once();
    nodes = a.nodes;
    w.push(a.s);
    Trace.prototype.apply = bare;
    quiet = (await waitQuiet()).quiet && quiet;
    wo.push(once().s);
    Trace.prototype.apply = original;
  }
  const a = median(w), b = median(wo);
  return { sites: { graph: 'graphs/unifusion.ts unifusion-8b, weights skeleton (trace + passes + emit)', with_s: round(a), without_s: round(b), ratio: round(a / b, 3), nodes }, quiet };
}

export async function cliChecks(rounds: number): Promise<CliChecksResult> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-cli-checks-'));
  try {
    const tc = await typecheckCost(rounds, tmp);
    const st = await siteCost(rounds);
    return { rounds, typecheck: tc.rows, sites: st.sites, quiet: tc.quiet && st.quiet };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) printJson(await cliChecks(argValue('rounds', 5)));
