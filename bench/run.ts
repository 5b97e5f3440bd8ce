// Run all benchmarks, each in its own fresh Node process (one after another, so
// none shares the cores with another), and print a markdown table of the
// figures. The raw JSON of every benchmark goes to bench/results/latest.json.
//
//   npm run bench                    (= npx tsx bench/run.ts)
//   npx tsx bench/run.ts --no-setup  skip bench/setup.sh (venv + onnxscript check)
//   npx tsx bench/run.ts --only compile-stack,block-forward
//   npx tsx bench/run.ts --out FILE  where to write the JSON (default bench/results/latest.json)
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BENCH_DIR, REPO_ROOT, runTsx } from './lib.ts';
import type { CompileStackResult } from './compile-stack.ts';
import type { CompileVsTorchResult } from './compile-vs-torch.ts';
import type { BlockForwardResult } from './block-forward.ts';
import type { CompileUniFusionResult } from './compile-unifusion.ts';
import type { TrainStepResult } from './train-step.ts';
import type { DenoiseStepResult } from './denoise-step.ts';
import type { SampleBenchResult } from './sample.ts';
import type { FusionDitResult } from './fusion-dit.ts';
import type { AttentionMemoryResult } from './fusion-attention-memory.ts';
import type { DecodeBenchResult } from './decode.ts';

const ALL = ['compile-stack', 'compile-vs-torch', 'block-forward', 'compile-unifusion', 'train-step', 'denoise-step', 'sample', 'fusion-dit', 'fusion-attention-memory', 'decode'] as const;
type Name = (typeof ALL)[number];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const only = arg('only')?.split(',') ?? [...ALL];
for (const n of only) if (!(ALL as readonly string[]).includes(n)) throw new Error(`--only: unknown benchmark '${n}' (known: ${ALL.join(', ')})`);
const outFile = path.resolve(arg('out') ?? path.join(BENCH_DIR, 'results', 'latest.json'));

if (!process.argv.includes('--no-setup') && only.some((n) => n !== 'compile-stack' && n !== 'compile-unifusion' && n !== 'sample')) {
  const r = spawnSync('bash', [path.join(BENCH_DIR, 'setup.sh')], { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`bench/setup.sh failed (exit ${r.status})`);
}

const results: Partial<{ 'compile-stack': CompileStackResult; 'compile-vs-torch': CompileVsTorchResult; 'block-forward': BlockForwardResult; 'compile-unifusion': CompileUniFusionResult; 'train-step': TrainStepResult; 'denoise-step': DenoiseStepResult; sample: SampleBenchResult; 'fusion-dit': FusionDitResult; 'fusion-attention-memory': AttentionMemoryResult; decode: DecodeBenchResult }> = {};
for (const name of only as Name[]) {
  process.stderr.write(`bench: running ${name} ...\n`);
  const t0 = performance.now();
  const r = await runTsx(path.join(BENCH_DIR, `${name}.ts`));
  process.stderr.write(`bench: ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  (results as Record<string, unknown>)[name] = r.json;
}

const meta = {
  date: new Date().toISOString(),
  command: `npx tsx bench/run.ts${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`,
  node: process.version,
  cpus: os.cpus().length,
  cpu_model: os.cpus()[0]?.model ?? 'unknown',
  mem_gib: Math.round(os.totalmem() / 2 ** 30),
  platform: `${os.platform()} ${os.release()}`,
};
fs.mkdirSync(path.dirname(outFile), { recursive: true });
fs.writeFileSync(outFile, JSON.stringify({ meta, results }, null, 2) + '\n');

// ---- markdown table ----
const yes = (b: boolean) => (b ? 'yes' : '**NO**');
const s = (x: number, d = 3) => `${x.toFixed(d)} s`;
const rows: string[][] = [];
const cs = results['compile-stack'];
if (cs) {
  rows.push([`compile 32x4096 stack, weights skeleton (trace+passes+emit+encode; median of ${cs.runs} processes)`, s(cs.compile_s), '—', '—', `≤ ${cs.goal_s} s`, yes(cs.met)]);
  rows.push([`peak RSS of that compile process (VmHWM; Node+tsx baseline ${cs.baseline_rss_mib} MiB)`, `${cs.peak_rss_mib} MiB`, '—', '—', '—', '—']);
}
const cv = results['compile-vs-torch'];
if (cv) {
  rows.push([
    `compile small (5x96) to ONNX bytes, warm (ours median of ${cv.ours.runs}; torch median of ${cv.torch.warm_runs})`,
    s(cv.ours.median_s, 4),
    `torch.onnx.export dynamo ${s(cv.torch.warm_total_s)}`,
    `${cv.ratio_warm}x faster`,
    `≥ ${cv.goal_ratio}x`,
    yes(cv.ratio_warm >= cv.goal_ratio),
  ]);
  rows.push(['compile small, cold (first in the process)', s(cv.ours.cold_s, 4), s(cv.torch.cold_total_s), `${cv.ratio_cold}x faster`, `≥ ${cv.goal_ratio}x`, yes(cv.ratio_cold >= cv.goal_ratio)]);
  rows.push(['import time before the first compile / export (not in the figures above)', s(cv.ours.import_s), s(cv.torch.import_s), '—', '—', '—']);
}
const bf = results['block-forward'];
if (bf) {
  const c = bf.config;
  rows.push([
    `one block forward, CPU fp32, ${bf.threads} threads (h${c.hidden}, ${c.heads} heads, ffn ${c.intermediate}, B${c.batch} S${c.seq}; median of ${bf.ours.runs})`,
    `${bf.ours.median_ms.toFixed(2)} ms (ORT ${bf.ours.ort})`,
    `${bf.torch.median_ms.toFixed(2)} ms (torch eager ${bf.torch.torch})`,
    `${bf.ratio.toFixed(2)} (ours/torch)`,
    '— (report)',
    '—',
  ]);
}
const cu = results['compile-unifusion'];
if (cu) {
  for (const [label, r] of [['forward', cu.forward], ['AdamW train step (frozen encoder)', cu.train]] as const) {
    rows.push([
      `compile ${cu.preset} pipeline (InternVL3-8B LLM = Qwen2.5-7B taps + LAP + refiner + DiT), ${label}, weights skeleton (median of ${cu.runs} processes)`,
      s(r.compile_s),
      '—',
      '—',
      `≤ ${cu.goal_s} s`,
      yes(r.compile_s <= cu.goal_s),
    ]);
    rows.push([`peak RSS of that compile process (VmHWM; baseline ${r.baseline_rss_mib} MiB)`, `${r.peak_rss_mib} MiB`, '—', '—', `≤ ${cu.goal_rss_mib} MiB`, yes(r.peak_rss_mib <= cu.goal_rss_mib)]);
  }
}
const ts = results['train-step'];
if (ts) {
  const c = ts.config;
  rows.push([
    `one AdamW train step (fwd + bwd + clip + AdamW), CPU fp32, ${ts.threads} threads: ${c.layers} x ${c.hidden} DiT-like stack (${c.heads} heads, SwiGLU ${c.intermediate}, qk-norm, 2D RoPE; ${(c.params / 1e6).toFixed(1)} M params), B${c.batch} x ${c.seq} tokens (median of ${ts.ours.runs} / ${ts.torch.runs}; ${ts.load.rounds_clean} clean rounds of ${ts.load.rounds_run})`,
    `${ts.ours.median_ms.toFixed(0)} ms (ORT ${ts.ours.ort})`,
    `${ts.torch.median_ms.toFixed(0)} ms (torch eager + optim.AdamW ${ts.torch.torch})`,
    `${ts.ratio.toFixed(2)} (ours/torch; per-round median ${ts.ratio_rounds_median.toFixed(2)})`,
    `≤ ${ts.goal_ratio}`,
    yes(ts.met),
  ]);
  rows.push([`peak RSS of each process during that benchmark (VmHWM${ts.arena ? '; ORT CPU arena on' : '; ORT CPU arena off'})`, `${ts.ours.peak_rss_mib} MiB`, `${ts.torch.peak_rss_mib} MiB`, `${(ts.ours.peak_rss_mib / ts.torch.peak_rss_mib).toFixed(2)}`, '— (report)', '—']);
  rows.push([
    `achieved FLOP/s of that step (${ts.flops.step_gflop} GFLOP of matmuls per step) as a share of one 2048^3 ORT MatMul's FLOP/s (${ts.flops.matmul.gflops_median} GFLOP/s, same process; torch.mm: ${ts.torch.matmul_gflops} GFLOP/s)`,
    `${ts.flops.ours_gflops} GFLOP/s = ${(ts.flops.ours_share_of_matmul * 100).toFixed(0)} %`,
    `${ts.flops.torch_gflops} GFLOP/s = ${(ts.flops.torch_share_of_ort_matmul * 100).toFixed(0)} %`,
    '—',
    '— (report)',
    '—',
  ]);
}
const ds = results['denoise-step'];
if (ds) {
  const c = ds.config;
  rows.push([
    `one denoise step, cond + uncond batched (B${c.batch}), CPU fp32, ${ds.threads} threads, ours compiled ${ds.target ? `--target ${ds.target} (fused)` : "unfused"}: DiT ${c.dit.depth} x ${c.dit.hidden} (${c.dit.heads} heads, SwiGLU ${c.dit.ffn}, gated attention; ${(c.params / 1e6).toFixed(1)} M params), ${c.image_tokens} image + ${c.condTokens} condition tokens (median of ${ds.ours.all_ms.length} / ${ds.torch.all_ms.length}; outputs agree to ${ds.check.rel.toExponential(1)} rel)`,
    `${ds.ours.median_ms.toFixed(0)} ms`,
    `${ds.torch.median_ms.toFixed(0)} ms (torch eager ${ds.torch.version})`,
    `${ds.ratio.toFixed(2)} (ours/torch)`,
    `≤ ${ds.goal}`,
    yes(ds.ratio <= ds.goal),
  ]);
}
const sb = results.sample;
if (sb)
  for (const c of sb.cases)
    rows.push([
      `\`sample\` end to end, ${c.name}: ${c.images} images ${c.size}, ${c.steps} steps, CFG ${c.guidance} (load ${c.load_ms} ms, rewrite ${c.rewrite_ms} ms, encode ${c.encode_ms} ms, denoise ${c.denoise_ms} ms in ${c.dit_calls} DiT calls, decode ${c.decode_ms} ms, PNGs ${c.write_ms} ms)`,
      `${(c.total_ms / 1000).toFixed(2)} s (${c.ms_per_image} ms / image)`,
      '—',
      '—',
      '— (report)',
      '—',
    ]);
const fd = results['fusion-dit'];
if (fd) {
  const a = String(fd.anchor.best);
  rows.push([`denoise step of the mid DiT (${fd.config.depth} x ${fd.config.hidden}), cond + uncond, CPU fp32, ${fd.threads} threads: fused (--target cpu) vs unfused (${fd.load.rounds_clean} clean rounds of ${fd.load.rounds_run})`, `${fd.variants.fused!.median_ms.toFixed(0)} ms`, `unfused ${fd.variants.unfused!.median_ms.toFixed(0)} ms`, `${fd.speedup.toFixed(2)}x`, `≥ ${fd.goal_speedup}x`, yes(fd.met_speedup)]);
  rows.push([`same step vs onnxruntime.transformers.optimizer on the unfused graph (${a})`, `${fd.variants.fused!.median_ms.toFixed(0)} ms`, `${fd.variants[a]!.median_ms.toFixed(0)} ms`, `${fd.vs_anchor.toFixed(2)}x`, '≥ 1.0x', yes(fd.met_anchor)]);
}
const am = results['fusion-attention-memory'];
if (am) rows.push([`peak RSS above baseline of one attention core at ${am.config.seq} tokens (${am.config.heads} heads x ${am.config.head_dim}), fused (cpu: MultiHeadAttention) vs unfused`, `${am.variants.cpu.peak_over_baseline_mib} MiB`, `${am.variants.unfused.peak_over_baseline_mib} MiB`, `${am.memory_ratio_cpu}x less`, '— (report)', '—']);
const dec = results.decode;
if (dec) {
  const c = dec.config;
  for (const [th, batches] of Object.entries(dec.threads))
    for (const [B, r] of Object.entries(batches)) {
      const ours = r.ours_reuse.decode_tok_s >= r.ours_preallocate.decode_tok_s ? r.ours_reuse : r.ours_preallocate;
      rows.push([
        `greedy decode tokens/s, batch ${B}, ${th} thread(s): Qwen2 ${c.layers} x ${c.hidden} (${c.heads}/${c.kvHeads} heads, vocab ${c.vocab}, ${(c.params / 1e6).toFixed(1)} M params), ${c.prompt}-token prompt, ${c.newTokens} new tokens, CPU fp32 (tokens equal: ${dec.tokens_equal[B] ? 'yes' : 'NO'})`,
        `${ours.decode_tok_s} tok/s`,
        `${r.torch.decode_tok_s} tok/s (transformers generate, eager)`,
        `${r.decode_ratio.toFixed(2)}`,
        `≥ ${dec.goal_decode_ratio}`,
        yes(r.decode_ratio >= dec.goal_decode_ratio),
      ]);
      rows.push([`prefill tokens/s, batch ${B}, ${th} thread(s)`, `${ours.prefill_tok_s} tok/s`, `${r.torch.prefill_tok_s} tok/s`, `${r.prefill_ratio.toFixed(2)}`, '— (report)', '—']);
    }
  rows.push([`KV-cache bytes per token (fp32, all layers)`, `${dec.kv_cache_bytes_per_token} B`, '—', '—', '— (report)', '—']);
}
const table = [
  '| metric | ours | peer | ratio | goal | met? |',
  '|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.join(' | ')} |`),
].join('\n');
process.stdout.write(
  `${table}\n\n${meta.command} — ${meta.date} — ${meta.cpus} cores (${meta.cpu_model}), ${meta.mem_gib} GiB, Node ${meta.node}\nraw results: ${path.relative(REPO_ROOT, outFile)}\n`,
);
