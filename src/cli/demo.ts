// `unifusion demo`: the README's main job until the UniFusion pipeline lands.
// Compiles the example transformer (tiny preset), runs it in onnxruntime on
// seeded random tokens with a padded batch, checks it against the float64
// reference interpreter, and leaves model + inputs + outputs in the out folder.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileGraph, writeCompiled } from '../compiler.ts';
import { evaluate } from '../ir/evaluate.ts';
import { Rng } from '../ir/init.ts';
import type { RefTensor } from '../ir/ref.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../io/host.ts';
import { writeSafetensors } from '../io/safetensors.ts';
import { Session } from '../../runtime/session.ts';
import { loadGraphFile } from './load-graph.ts';

const EXAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples/transformer.ts');

export async function demoCommand(opts: { out: string; preset?: string; device?: string; batch?: number; seq?: number }): Promise<void> {
  const preset = opts.preset ?? 'tiny';
  const say = (s: string) => process.stdout.write(s + '\n');
  const t0 = performance.now();
  const def = await loadGraphFile(EXAMPLE);
  const graph = def.trace(preset);
  const compiled = compileGraph(graph, { preset });
  const written = await writeCompiled(opts.out, compiled);
  const m = compiled.manifest;
  say(`1. compiled examples/transformer.ts (preset ${preset}): ${m.paramCount.toLocaleString('en-US')} params, ${m.irNodes} IR nodes -> ${m.onnxNodes} ONNX nodes in ${(performance.now() - t0).toFixed(0)} ms`);
  say(`   -> ${path.relative(process.cwd(), written.onnxPath)}`);

  const cfg = def.presets[preset] as { vocab: number };
  const B = opts.batch ?? 2, S = opts.seq ?? 9;
  const rng = new Rng(2026, 'demo');
  const ids = Float64Array.from({ length: B * S }, () => Math.floor(rng.uniform() * cfg.vocab));
  // the last sequence is right-padded by 3 tokens
  const mask = Float64Array.from({ length: B * S }, (_, i) => (Math.floor(i / S) === B - 1 && i % S >= S - 3 ? 0 : 1));
  const feeds: Record<string, HostTensor> = {
    input_ids: fromFloat64('i64', [B, S], ids),
    attention_mask: fromFloat64('bool', [B, S], mask),
  };
  const inputsPath = path.join(opts.out, 'inputs.safetensors');
  writeSafetensors(inputsPath, feeds);
  say(`2. inputs: input_ids i64[${B}, ${S}] (seeded random tokens), attention_mask bool[${B}, ${S}] (last row padded by 3) -> ${path.relative(process.cwd(), inputsPath)}`);

  const t1 = performance.now();
  const session = await Session.load(written.onnxPath, { device: opts.device ?? 'cpu' });
  const out = await session.run(feeds);
  const t2 = performance.now();
  await session.release();
  const y = out.last_hidden_state!;
  const outPath = path.join(opts.out, 'outputs.safetensors');
  writeSafetensors(outPath, out);
  say(`3. onnxruntime (${opts.device ?? 'cpu'}): last_hidden_state ${y.dtype}[${y.shape.join(', ')}] in ${(t2 - t1).toFixed(0)} ms (session load + run) -> ${path.relative(process.cwd(), outPath)}`);

  const refFeeds: Record<string, RefTensor> = {};
  for (const [k, v] of Object.entries(feeds)) refFeeds[k] = { dtype: v.dtype, shape: v.shape, data: toFloat64(v) };
  const want = evaluate(compiled.graph, refFeeds).last_hidden_state!;
  const got = toFloat64(y);
  let maxAbs = 0, maxRef = 0;
  for (let i = 0; i < got.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(got[i]! - want.data[i]!));
    maxRef = Math.max(maxRef, Math.abs(want.data[i]!));
  }
  const rel = maxAbs / maxRef;
  say(`4. float64 reference interpreter: max |ort - ref| = ${maxAbs.toExponential(2)} (${rel.toExponential(2)} of max |ref|) ${rel < 1e-4 ? 'OK' : 'MISMATCH'}`);
  say(`   re-run with: npx unifusion run ${path.relative(process.cwd(), written.onnxPath)} --inputs ${path.relative(process.cwd(), inputsPath)} --out ${path.join(path.relative(process.cwd(), opts.out), 'rerun.safetensors')}`);
  if (!(rel < 1e-4)) throw new Error(`demo: onnxruntime and the reference disagree (relative error ${rel})`);
}
