// Dev measurement: the demo's scores for a few sampler settings (steps, CFG scale, shift) on one
// pipeline, the same items for each (runtime/shapes/demo), so the pipeline's stored defaults are
// a measured choice. Guidance 1 = conditional only (no CFG): the gap to guidance > 1 shows how
// much the DiT's output depends on the condition.
//   npx tsx examples/shapes/dev/sweep-sampling.ts [--dev] [PIPELINE] [n] 'steps,guidance,shift[,euler|heun[,norm]];...'
// --dev: score a validation set drawn from other seeds, disjoint from the demo's scenes (choose
// settings there, then report them on the demo's set).
import * as path from 'node:path';
import { evalItems, trainingSceneKeys, validationItems } from '../../../runtime/shapes/demo/sets.ts';
import { evaluatePipeline } from '../../../runtime/shapes/demo/run.ts';
import { readRecipe } from '../../../src/cli/demo.ts';

const args = process.argv.slice(2);
const dev = args.includes('--dev');
const [pipe = 'examples/shapes/pipeline', n = '100', grid = '10,3,1;10,1,1;10,5,1;10,3,3;20,3,1'] = args.filter((a) => a !== '--dev');
const recipe = readRecipe(path.join(path.dirname(pipe), 'pipeline-training'));
const sizes = { t2i: Number(n), edits: Math.round(Number(n) / 2), recon: Math.round(Number(n) / 4), namedSeeds: 2 };
const trained = trainingSceneKeys(recipe);
const items = dev ? validationItems(sizes, trained) : evalItems(sizes, trained);
process.stdout.write(`${dev ? 'validation set (seeds 107-110, disjoint from the demo)' : "the demo's set"}: ${items.length} items\n`);
for (const g of grid.split(';')) {
  const [a, b, c, sampler, norm] = g.split(',');
  const [steps, guidance, shift] = [a, b, c].map(Number) as [number, number, number];
  if (sampler !== undefined && sampler !== 'euler' && sampler !== 'heun') throw new Error(`grid entry '${g}': the sampler is euler or heun`);
  if (norm !== undefined && norm !== 'norm') throw new Error(`grid entry '${g}': the fifth field is 'norm' (CFG renormalisation) or absent`);
  const t0 = performance.now();
  const r = await evaluatePipeline(pipe, items, { steps, guidance, shift, sampler, cfgNorm: norm === 'norm', progress: false });
  const cells = r.scores.map((s) => `${s.cat} ${(100 * s.mean).toFixed(1)}`).join(' | ');
  process.stdout.write(`steps ${steps} guidance ${guidance} shift ${shift}${sampler ? ' ' + sampler : ''}${norm ? ' cfg-norm' : ''}: held-out t2i ${(100 * r.adherence).toFixed(1)}% | ${cells} (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
}
