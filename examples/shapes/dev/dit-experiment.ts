// Dev experiment: train only the shapes DiT (train-unifusion.ts, the env's SHAPES_UF_* settings) on an
// existing condition cache and VLM package, and assemble <out>/pipeline + <out>/pipeline-training/recipe.json
// so the demo and dev/dit-eval.ts read it like a --train output.
//   SHAPES_CACHE=CACHE npx tsx examples/shapes/dev/dit-experiment.ts PKG OUT STEPS [THREADS]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { trainCommand } from '../../../src/cli/train.ts';
import { codeFile } from '../../../src/layout.ts';
import { assembleShapesPipeline, SHIPPED_RECIPE } from '../train-pipeline.ts';

const [pkg, out, steps, threads] = process.argv.slice(2);
if (!pkg || !out || !steps) throw new Error('usage: dit-experiment.ts PKG OUT STEPS [THREADS]');
if (threads !== undefined && !(Number.isInteger(Number(threads)) && Number(threads) >= 1)) throw new Error(`THREADS must be an integer >= 1, got '${threads}'`);
// like --train-out: a new or empty folder, never inside (or around) the VLM package it reads
if (fs.existsSync(out) && fs.readdirSync(out).length) throw new Error(`OUT '${out}' is not empty: give a new or empty folder (nothing there is replaced)`);
const rel = path.relative(path.resolve(pkg), path.resolve(out)), back = path.relative(path.resolve(out), path.resolve(pkg));
if (!rel || !rel.startsWith('..') || !back.startsWith('..')) throw new Error(`OUT '${out}' overlaps the VLM package '${pkg}'`);
const run = path.join(out, 'dit-run');
const t0 = performance.now();
await trainCommand(codeFile('examples/shapes/train-unifusion.ts'), { out: run, steps: Number(steps), quiet: true, progress: false, typecheck: false, intraOpThreads: threads ? Number(threads) : undefined });
const seconds = (performance.now() - t0) / 1000;
await assembleShapesPipeline(pkg, run, path.join(out, 'pipeline'), SHIPPED_RECIPE.sampler);
fs.mkdirSync(path.join(out, 'pipeline-training'));
fs.copyFileSync(path.join(run, 'metrics.jsonl'), path.join(out, 'pipeline-training', 'dit-metrics.jsonl'));
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('SHAPES_')));
fs.writeFileSync(path.join(out, 'pipeline-training', 'recipe.json'), JSON.stringify({ t2i: SHIPPED_RECIPE.t2i, seed: SHIPPED_RECIPE.seed, steps: Number(steps), env, seconds }, null, 2) + '\n');
process.stdout.write(`trained ${steps} steps in ${seconds.toFixed(0)} s\n`);
