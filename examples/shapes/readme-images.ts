// The README's two small pictures from the shipped pipeline, by the demo's own path
// (runtime/shapes/demo): 8 held-out prompts (target render | sample) and 4 edits (source | sample).
//   npx tsx examples/shapes/readme-images.ts [PIPELINE] [OUT_DIR]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { evalItems, trainingSceneKeys } from '../../runtime/shapes/demo/sets.ts';
import { evaluatePipeline } from '../../runtime/shapes/demo/run.ts';
import { pairGrid } from '../../runtime/shapes/demo/report.ts';
import { encodePng } from '../../runtime/shapes/png.ts';
import { readRecipe } from '../../src/cli/demo.ts';

const [pipe = 'examples/shapes/pipeline', out = 'examples/shapes/readme'] = process.argv.slice(2);
const recipe = readRecipe(path.join(path.dirname(pipe), 'pipeline-training'));
const items = evalItems({ t2i: 8, edits: 4, recon: 0, namedSeeds: 1 }, trainingSceneKeys(recipe)).filter((i) => i.cat.startsWith('t2i') || i.cat === 'edit');
const r = await evaluatePipeline(pipe, items, { progress: false });
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'samples.png'), await encodePng((pairGrid(r.results.filter((x) => x.item.cat.startsWith('t2i'))))));
fs.writeFileSync(path.join(out, 'edits.png'), await encodePng((pairGrid(r.results.filter((x) => x.item.cat === 'edit')))));
const lines = r.results.map((x) => `${x.item.cat}\t${x.item.prompt}\t${x.rewritten ?? ''}\t${x.score}`);
fs.writeFileSync(path.join(out, 'items.tsv'), lines.join('\n') + '\n');
process.stdout.write(lines.join('\n') + '\n');
