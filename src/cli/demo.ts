// `unifusion demo` (= `npm start`): the main job. A small but real UniFusion on the shapes world
// (runtime/shapes): the shipped pipeline examples/shapes/pipeline/ (the in-project tiny InternVL,
// LAP -> refiner -> pixel DiT) samples held-out prompts, the named scenes with and without VERIFI
// rewriting, edits (source image in the VLM prompt) and reconstructions; the scorer reads every
// sample back; PNG grids and an offline report.html go to --out (written as a whole through
// src/io/outdir.ts: staged, renamed into place, never deleting files it did not write). The last
// line printed is `prompt adherence: NN.N%` (held-out text-to-image).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { preflightOutputDir, writeOutputDir, type OutputTarget } from '../io/outdir.ts';
import { UsageError } from './errors.ts';
import { PACKAGE_ROOT } from '../layout.ts';
import { DEMO_SIZES, evalItems, trainingSceneKeys, type SetSizes, type TrainRows } from '../../runtime/shapes/demo/sets.ts';
import { evaluatePipeline, readMetrics, type EvalResult } from '../../runtime/shapes/demo/run.ts';
import { lapWeights, writeReport } from '../../runtime/shapes/demo/report.ts';

/** The shipped pipeline and its training logs (recipe.json, metrics) beside it. */
export const SHIPPED_PIPELINE = path.join(PACKAGE_ROOT, 'examples', 'shapes', 'pipeline');
export const SHIPPED_TRAINING = path.join(PACKAGE_ROOT, 'examples', 'shapes', 'pipeline-training');

export interface DemoOptions {
  out: string;
  /** pipeline folder (default: the shipped one) */
  pipeline?: string;
  /** training logs + recipe of that pipeline (default: the shipped one's) */
  training?: string;
  /** held-out text-to-image prompts (default 200) */
  n?: number | string;
  edits?: number | string;
  recon?: number | string;
  /** seeds per named scene (default 4) */
  seeds?: number | string;
  /** sampler steps / CFG scale (default: the pipeline's) */
  steps?: number | string;
  guidance?: number | string;
  quiet?: boolean;
  progress?: boolean;
  /** write into a folder that holds files the demo did not write (they are kept) */
  force?: boolean;
  /** first retrain the whole pipeline from scratch (examples/shapes/train-pipeline.ts) into trainOut */
  train?: boolean;
  /** where --train puts its work folders, pipeline/ and pipeline-training/ (a new or empty folder) */
  trainOut?: string;
  /** --train: the recipe's sizes (default: the shipped pipeline's) */
  recipe?: Partial<import('../../examples/shapes/train-pipeline.ts').PipelineRecipe>;
}

export interface DemoResult extends EvalResult {
  out: string;
  files: string[];
  /** --train: seconds per training stage */
  trainSeconds?: Record<string, number>;
}

export interface Recipe extends TrainRows {
  /** what made the pipeline, in words (shown in the report; optional) */
  provenance?: string;
}

function int(flag: string, v: number | string | undefined, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!(Number.isInteger(n) && n >= min)) throw new UsageError(`demo: ${flag} must be an integer >= ${min}, got ${v}`);
  return n;
}

export function readRecipe(dir: string): Recipe {
  const f = path.join(dir, 'recipe.json');
  if (!fs.existsSync(f)) throw new UsageError(`demo: --training '${dir}' has no recipe.json (the training rows' counts and seed)`);
  let r: Recipe;
  try {
    r = JSON.parse(fs.readFileSync(f, 'utf8')) as Recipe;
  } catch (e) {
    throw new UsageError(`demo: ${f} is not valid JSON (${(e as Error).message})`);
  }
  for (const k of ['t2i', 'seed'] as const)
    if (!Number.isInteger(r?.[k]) || r[k] < 0) throw new UsageError(`demo: ${f}: '${k}' must be a non-negative integer (the training rows' ${k === 't2i' ? 'count' : 'seed'}), got ${JSON.stringify(r?.[k])}`);
  if (r.provenance !== undefined && typeof r.provenance !== 'string') throw new UsageError(`demo: ${f}: 'provenance' must be a string`);
  return r;
}

export async function demoCommand(opts: DemoOptions): Promise<DemoResult> {
  const t0 = performance.now();
  const d = DEMO_SIZES;
  const sizes: SetSizes = { t2i: int('--n', opts.n, d.t2i, 1), edits: int('--edits', opts.edits, d.edits, 0), recon: int('--recon', opts.recon, d.recon, 0), namedSeeds: int('--seeds', opts.seeds, d.namedSeeds, 1) };
  const steps = opts.steps === undefined ? undefined : int('--steps', opts.steps, 0, 1);
  const guidance = opts.guidance === undefined ? undefined : Number(opts.guidance);
  if (guidance !== undefined && !(Number.isFinite(guidance) && guidance >= 0)) throw new UsageError(`demo: --guidance must be a non-negative number, got ${opts.guidance}`);
  const say = (s: string) => {
    if (!opts.quiet) process.stdout.write(s + '\n');
  };
  let trained: { pipeline: string; training: string; seconds: Record<string, number> } | undefined;
  if (opts.train) {
    if (opts.pipeline) throw new UsageError('demo: --train makes its own pipeline; give --train-out, not --pipeline');
    await preflightOutputDir({ out: opts.out, force: opts.force, command: 'demo' });
    const { trainPipeline, SHIPPED_RECIPE } = await import('../../examples/shapes/train-pipeline.ts');
    const trainOut = opts.trainOut ?? 'out/shapes-train';
    trained = await trainPipeline(trainOut, { ...SHIPPED_RECIPE, ...opts.recipe }, say, { progress: opts.progress ?? (opts.quiet ? false : undefined) });
    say(`[train] the whole pipeline in ${Object.values(trained.seconds).reduce((a, b) => a + b, 0).toFixed(0)} s -> ${trained.pipeline}`);
  }
  const pipeline = trained?.pipeline ?? opts.pipeline ?? SHIPPED_PIPELINE;
  const training = trained?.training ?? opts.training ?? (opts.pipeline ? path.join(path.dirname(path.resolve(opts.pipeline)), 'pipeline-training') : SHIPPED_TRAINING);
  if (!fs.existsSync(path.join(pipeline, 'pipeline.json'))) throw new UsageError(`demo: --pipeline '${pipeline}' has no pipeline.json (train one with \`unifusion demo --train\`)`);
  const recipe = readRecipe(training);
  const target: OutputTarget = { out: opts.out, force: opts.force, command: 'demo', inputs: [{ path: pipeline, what: '--pipeline' }, { path: training, what: '--training' }] };
  await preflightOutputDir(target);
  const progress = opts.progress ?? (opts.quiet ? false : undefined);

  const items = evalItems(sizes, trainingSceneKeys(recipe));
  say(`shapes demo: ${items.length} samples from ${path.relative(process.cwd(), pipeline) || '.'} (${sizes.t2i} held-out prompts, 5 named scenes x ${sizes.namedSeeds} seeds x with / without rewriting, ${sizes.edits} edits, ${sizes.recon} reconstructions)`);
  const ev = await evaluatePipeline(pipeline, items, { steps, guidance, progress: progress === undefined ? 'auto' : progress });
  const pj = JSON.parse(fs.readFileSync(path.join(pipeline, 'pipeline.json'), 'utf8')) as { conditioning: { taps: number[] } };
  const w = lapWeights(pipeline, pj.conditioning.taps);
  const written = await writeOutputDir(target, async (stage) =>
    writeReport(stage, {
      eval: ev,
      pipeline: path.relative(process.cwd(), pipeline) || pipeline,
      curves: [
        { title: 'VLM pretraining loss (cross-entropy)', points: readMetrics(path.join(training, 'vlm-metrics.jsonl')) },
        { title: 'UniFusion training loss (flow-matching MSE)', points: readMetrics(path.join(training, 'dit-metrics.jsonl')) },
      ],
      lap: w ? { taps: pj.conditioning.taps, weights: w } : undefined,
      provenance: recipe.provenance ?? `training recipe: ${path.join(training, 'recipe.json')}`,
      seconds: (performance.now() - t0) / 1000,
    }),
  );
  for (const s of ev.scores) say(`  ${s.cat.padEnd(20)} ${String(s.n).padStart(4)} samples  ${(100 * s.mean).toFixed(1).padStart(5)}%${s.rewriteExact === undefined ? '' : `   (VLM rewrite exact ${(100 * s.rewriteExact).toFixed(0)}%)`}`);
  say(`report: ${path.join(path.relative(process.cwd(), written.dir) || '.', 'report.html')} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  // the last line
  if (!opts.quiet) process.stdout.write(`prompt adherence: ${(100 * ev.adherence).toFixed(1)}%\n`);
  return { ...ev, out: written.dir, files: written.files, ...(trained ? { trainSeconds: trained.seconds } : {}) };
}
