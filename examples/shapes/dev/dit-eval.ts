// Dev measurement: the DiT alone, with teacher-forced conditions (the VLM's answer = the target's
// canonical caption, so rewriting slips do not count), on scenes the DiT trained on, fresh scenes
// without held-out pairs and fresh scenes with them; prints mean adherence per set.
//   npx tsx examples/shapes/dev/dit-eval.ts [PIPELINE] [n] [steps] [guidance]
import * as path from 'node:path';
import { Pipeline } from '../../../runtime/pipeline/pipeline.ts';
import { VlmPackage } from '../../../runtime/vlm/index.ts';
import { readRecipe } from '../../../src/cli/demo.ts';
import { caption } from '../../../runtime/shapes/captions.ts';
import { ditRows, evalScenes, hasHeldOut } from '../../../runtime/shapes/data.ts';
import { trainingSceneKeys } from '../../../runtime/shapes/demo/sets.ts';
import { REWRITE_SYSTEM_PROMPT } from '../../../runtime/shapes/prompts.ts';
import { adherence, readScene } from '../../../runtime/shapes/scorer.ts';
import type { Scene } from '../../../runtime/shapes/world.ts';

const [dir = 'examples/shapes/pipeline', n = '96', steps, guidance] = process.argv.slice(2);
const N = Number(n);
const recipe = readRecipe(path.join(path.dirname(dir), 'pipeline-training'));
const train = ditRows(recipe.t2i, recipe.seed).slice(0, N).map((r) => r.scene);
const fresh = evalScenes(4 * N, 7, trainingSceneKeys(recipe));
const sets: [string, Scene[]][] = [
  ['trained scenes', train],
  ['fresh, no held-out pair', fresh.filter((s) => !hasHeldOut(s)).slice(0, N)],
  ['fresh, held-out pairs', fresh.filter((s) => hasHeldOut(s)).slice(0, N)],
];
const vlm = await VlmPackage.load(path.join(dir, 'vlm'));
const pipe = await Pipeline.load(dir, { encoder: vlm });
const out: string[] = [];
for (const [name, scenes] of sets) {
  const c = await vlm.condition(scenes.map((s) => ({ prompt: caption(s), answer: caption(s) })), { rewrite: true, systemPrompt: REWRITE_SYSTEM_PROMPT });
  const r = await pipe.generate({ prompts: scenes.map(caption), conditions: c.tensors, rewrite: false, seed: 1, steps: steps ? Number(steps) : undefined, guidance: guidance ? Number(guidance) : undefined, progress: false });
  const sc = r.images.map((g, i) => adherence(scenes[i]!, readScene(g.image.data)).score);
  out.push(`${name.padEnd(26)} n ${scenes.length}  adherence ${((100 * sc.reduce((a, b) => a + b, 0)) / sc.length).toFixed(1)} %  exact ${sc.filter((x) => x === 1).length}`);
}
await pipe.close();
process.stdout.write(out.join('\n') + '\n');
