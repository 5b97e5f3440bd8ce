// Dev measurement: the demo's scores for a few sampler settings (steps, CFG scale, shift) on one
// pipeline, the same items for each (runtime/shapes/demo), so the pipeline's stored defaults are
// a measured choice. Guidance 1 = conditional only (no CFG): the gap to guidance > 1 shows how
// much the DiT's output depends on the condition.
//   npx tsx examples/shapes/dev/sweep-sampling.ts [PIPELINE] [n] 'steps,guidance,shift;...'
import * as path from 'node:path';
import { evalItems, trainingSceneKeys } from '../../../runtime/shapes/demo/sets.ts';
import { evaluatePipeline } from '../../../runtime/shapes/demo/run.ts';
import { readRecipe } from '../../../src/cli/demo.ts';

const [pipe = 'examples/shapes/pipeline', n = '100', grid = '10,3,1;10,1,1;10,5,1;10,3,3;20,3,1'] = process.argv.slice(2);
const recipe = readRecipe(path.join(path.dirname(pipe), 'pipeline-training'));
const items = evalItems({ t2i: Number(n), edits: Math.round(Number(n) / 2), recon: Math.round(Number(n) / 4), namedSeeds: 2 }, trainingSceneKeys(recipe));
for (const g of grid.split(';')) {
  const [steps, guidance, shift] = g.split(',').map(Number) as [number, number, number];
  const t0 = performance.now();
  const r = await evaluatePipeline(pipe, items, { steps, guidance, shift, progress: false });
  const cells = r.scores.map((s) => `${s.cat} ${(100 * s.mean).toFixed(1)}`).join(' | ');
  process.stdout.write(`steps ${steps} guidance ${guidance} shift ${shift}: held-out t2i ${(100 * r.adherence).toFixed(1)}% | ${cells} (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
}
