// `unifusion demo --train`: the shapes pipeline from scratch with the commands that made the shipped
// one, each through the project's library functions (the same as the CLI commands named):
//   1. VLM pretraining         unifusion train examples/shapes/train-vlm.ts          (data regenerated from seeds)
//   2. HF folder               examples/shapes/save-vlm.ts (InternVL layout, transformers-loadable)
//   3. VLM package             unifusion import-hf <hf> --taps list:0,2,4
//   4. DiT condition cache     examples/shapes/build-cache.ts (teacher-forced VERIFI conditions of
//                              t2i / edit / reconstruction rows, through the package's encoder graph)
//   5. UniFusion training      unifusion train examples/shapes/train-unifusion.ts
//   6. pipeline                unifusion assemble --vlm <pkg> --dit <run> (+ the scheduler defaults)
// into <out>/{work/*, pipeline/, pipeline-training/} (the layout the demo reads: training logs and
// the recipe beside the pipeline). Every step writes its own fresh folder under <out>/work.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { trainCommand } from '../../src/cli/train.ts';
import { importHf } from '../../src/cli/import-hf.ts';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { assemble, RUN_MODEL_FILE, type RunModel } from '../../runtime/pipeline/assemble.ts';
import { codeFile } from '../../src/layout.ts';
import { REWRITE_SYSTEM_PROMPT } from '../../runtime/shapes/prompts.ts';
import { makeDirs } from '../../src/io/outdir.ts';

export interface PipelineRecipe {
  vlmSteps: number;
  vlmRows: number;
  ditSteps: number;
  /** feature-cache rows */
  t2i: number;
  edits: number;
  recon: number;
  /** share of t2i rows conditioned on a partial caption (build-cache.ts; 0 = none) */
  partial?: number;
  /** data seed of the cache rows (the demo excludes these scenes from its held-out prompts) */
  seed: number;
  /** sampler defaults stored in the pipeline */
  sampler: { steps: number; guidance: number; shift: number };
}

/** The recipe of the shipped pipeline (examples/shapes/NOTES.md). */
export const SHIPPED_RECIPE: PipelineRecipe = { vlmSteps: 2500, vlmRows: 20000, ditSteps: 4200, t2i: 16000, edits: 3000, recon: 1000, partial: 0.3, seed: 21, sampler: { steps: 10, guidance: 8, shift: 5 } };

export interface TrainPipelineResult {
  pipeline: string;
  training: string;
  seconds: Record<string, number>;
}

/** The shapes pipeline from a VLM package and a train-unifusion.ts run (what assemble reads from an image-training run: the config, the latent format, the dropped condition). */
export async function assembleShapesPipeline(pkg: string, ditRun: string, pipeline: string, sampler: PipelineRecipe['sampler']): Promise<void> {
  const { conditionBatch, EMPTY_CONDITION, shapesConfigFromEnv } = await import('./unifusion.ts');
  const CONFIG = shapesConfigFromEnv(); // train-unifusion.ts's
  writeSafetensors(path.join(ditRun, 'null_condition.safetensors'), conditionBatch([EMPTY_CONDITION]) as never);
  const model: RunModel = { format: 'unifusion-run-model', config: CONFIG, seed: 5, latent: { kind: 'pixel', channels: 3, patch: CONFIG.dit.patch, factor: 1, shift: 0, scale: 1 }, size: [48, 48], nullCondition: 'null_condition.safetensors', systemPrompt: REWRITE_SYSTEM_PROMPT };
  fs.writeFileSync(path.join(ditRun, RUN_MODEL_FILE), JSON.stringify(model, null, 2) + '\n');
  await assemble({ vlm: pkg, dit: ditRun, out: pipeline, name: 'shapes', size: [48, 48], rewrite: true, systemPrompt: REWRITE_SYSTEM_PROMPT, scheduler: { steps: sampler.steps, guidance: sampler.guidance, shift: sampler.shift, sampler: 'euler' } });
}

export async function trainPipeline(out: string, recipe: PipelineRecipe = SHIPPED_RECIPE, log: (s: string) => void = () => {}, opts: { progress?: boolean } = {}): Promise<TrainPipelineResult> {
  const work = path.join(out, 'work');
  if (fs.existsSync(out) && fs.readdirSync(out).length) throw new Error(`--train-out '${out}' is not empty: give a new or empty folder (nothing there is replaced)`);
  await makeDirs(work, '--train-out');
  const seconds: Record<string, number> = {};
  const timed = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    log(`[train] ${what} ...`);
    const r = await f();
    seconds[what] = (performance.now() - t0) / 1000;
    log(`[train] ${what}: ${seconds[what]!.toFixed(0)} s`);
    return r;
  };
  // the train files read their sizes from the environment at import (one import per process)
  process.env.SHAPES_VLM_ROWS = String(recipe.vlmRows);
  process.env.SHAPES_CACHE = path.join(work, 'cache');
  process.env.SHAPES_UF_T_MEAN ??= '1';
  const vlmRun = path.join(work, 'vlm-run'), hf = path.join(work, 'vlm-hf'), pkg = path.join(work, 'vlm-pkg'), cache = path.join(work, 'cache'), ditRun = path.join(work, 'dit-run');
  await timed('VLM pretraining', () => trainCommand(codeFile('examples/shapes/train-vlm.ts'), { out: vlmRun, steps: recipe.vlmSteps, quiet: true, progress: opts.progress, typecheck: false }));
  await timed('HF folder', async () => {
    const { saveVlmFolder } = await import('./save-vlm.ts');
    await saveVlmFolder(readSafetensors(path.join(vlmRun, 'params.safetensors')).tensors, hf, [vlmRun]);
  });
  await timed('import-hf', () => importHf(hf, { out: pkg, taps: 'list:0,2,4' }));
  await timed('condition cache', async () => {
    const { buildCache } = await import('./build-cache.ts');
    await buildCache(pkg, cache, { t2i: recipe.t2i, edits: recipe.edits, recon: recipe.recon, partial: recipe.partial, seed: recipe.seed }, opts.progress === false ? undefined : (s) => process.stderr.isTTY && process.stderr.write(s));
  });
  await timed('UniFusion training', () => trainCommand(codeFile('examples/shapes/train-unifusion.ts'), { out: ditRun, steps: recipe.ditSteps, quiet: true, progress: opts.progress, typecheck: false }));
  const pipeline = path.join(out, 'pipeline');
  await timed('assemble', () => assembleShapesPipeline(pkg, ditRun, pipeline, recipe.sampler));
  const training = path.join(out, 'pipeline-training');
  await makeDirs(training, '--train-out');
  fs.copyFileSync(path.join(vlmRun, 'metrics.jsonl'), path.join(training, 'vlm-metrics.jsonl'));
  fs.copyFileSync(path.join(ditRun, 'metrics.jsonl'), path.join(training, 'dit-metrics.jsonl'));
  const total = Object.values(seconds).reduce((a, b) => a + b, 0);
  fs.writeFileSync(
    path.join(training, 'recipe.json'),
    JSON.stringify({ t2i: recipe.t2i, seed: recipe.seed, recipe, seconds, provenance: `made by unifusion demo --train (examples/shapes/train-pipeline.ts): VLM ${recipe.vlmSteps} steps on ${recipe.vlmRows} rows (task shares: runtime/shapes/data.ts VLM_MIX), UniFusion ${recipe.ditSteps} steps x batch 32 on ${recipe.t2i} t2i (${Math.round(100 * (recipe.partial ?? 0))} % drawn with partial captions) / ${recipe.edits} edit / ${recipe.recon} reconstruction rows (seed ${recipe.seed}); ${total.toFixed(0)} s of training.` }, null, 2) + '\n',
  );
  return { pipeline, training, seconds };
}
