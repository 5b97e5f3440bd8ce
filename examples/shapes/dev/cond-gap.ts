// Dev measurement: how much the pipeline's DiT output depends on its condition. For held-out
// prompts (the demo's items), x0_hat = x_t - t * v at several t, with the VLM's condition and with
// the stored dropped condition: mean |x0_cond - x0_uncond| and each one's MSE to the target render.
//   npx tsx examples/shapes/dev/cond-gap.ts [PIPELINE] [n]
import * as path from 'node:path';
import { Pipeline } from '../../../runtime/pipeline/pipeline.ts';
import { repeatRows } from '../../../runtime/pipeline/condition.ts';
import { VlmPackage } from '../../../runtime/vlm/index.ts';
import { evalItems, trainingSceneKeys } from '../../../runtime/shapes/demo/sets.ts';
import { readRecipe } from '../../../src/cli/demo.ts';
import { REWRITE_SYSTEM_PROMPT } from '../../../runtime/shapes/prompts.ts';
import { render, SIZE } from '../../../runtime/shapes/world.ts';
import { Rng } from '../../../src/ir/init.ts';

const [dir = 'examples/shapes/pipeline', n = '64'] = process.argv.slice(2);
const items = evalItems({ t2i: Number(n), edits: 0, recon: 0, namedSeeds: 1 }, trainingSceneKeys(readRecipe(path.join(path.dirname(dir), 'pipeline-training')))).filter((i) => i.cat.startsWith('t2i'));
const vlm = await VlmPackage.load(path.join(dir, 'vlm'));
const pipe = await Pipeline.load(dir, { encoder: vlm });
const c = await vlm.condition(items.map((i) => ({ prompt: i.prompt })), { rewrite: true, systemPrompt: REWRITE_SYSTEM_PROMPT, maxNewTokens: 64 });
const B = items.length, N = 3 * SIZE * SIZE;
const x0 = new Float64Array(B * N);
items.forEach((it, b) => {
  const img = render(it.target);
  for (let i = 0; i < SIZE * SIZE; i++) for (let ch = 0; ch < 3; ch++) x0[b * N + ch * SIZE * SIZE + i] = img[3 * i + ch]! / 127.5 - 1;
});
const rng = new Rng(3, 'cond-gap');
const eps = Float64Array.from({ length: B * N }, () => rng.normal());
const shape = [B, 3, SIZE, SIZE];
for (const t of [1, 0.9, 0.7, 0.5]) {
  const xt = x0.map((v, i) => (1 - t) * v + t * eps[i]!);
  const vc = await pipe.velocity(xt, shape, t, c.tensors);
  const vu = await pipe.velocity(xt, shape, t, repeatRows(pipe.nullCondition!, B));
  let gap = 0, mc = 0, mu = 0;
  for (let i = 0; i < B * N; i++) {
    const a = xt[i]! - t * vc[i]!, u = xt[i]! - t * vu[i]!;
    gap += Math.abs(a - u), mc += (a - x0[i]!) ** 2, mu += (u - x0[i]!) ** 2;
  }
  process.stdout.write(`t ${t}: mean |x0_c - x0_u| ${(gap / (B * N)).toFixed(4)}, MSE(x0_c) ${(mc / (B * N)).toFixed(4)}, MSE(x0_u) ${(mu / (B * N)).toFixed(4)}\n`);
}
await pipe.close();
