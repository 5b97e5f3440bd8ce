// `train --dataset --vlm`: every row's condition is the VLM package's (text-to-image captions,
// edit instruction + source images, reconstruction = the image alone, teacher-forced answers),
// cached in the run folder; an x0-prediction DiT trains and assembles like any other, and the
// assembled graph equals the float64 reference of the x0 config with the trained weights.
// References: VlmPackage.condition of each request alone (itself tested against transformers),
// and the IR interpreter (float64) for the assembled DiT.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importHf } from '../src/cli/import-hf.ts';
import { trainImagesCommand } from '../src/cli/train-images.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { fromFloat64, toFloat64, toRefTensor, type HostTensor } from '../src/io/host.ts';
import { Rng } from '../src/ir/init.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import { compileGraph } from '../src/compiler.ts';
import { trace } from '../src/dsl/index.ts';
import { encodePng } from '../runtime/images/png.ts';
import { assemble, Pipeline, loadTrainedParams } from '../runtime/pipeline/index.ts';
import { CACHE_FILE } from '../runtime/data/cache.ts';
import { VlmPackage } from '../runtime/vlm/index.ts';
import { uniFusionForward } from '../graphs/unifusion.ts';
import { seededNoise } from '../runtime/sampler/index.ts';
import { X0_CONFIG } from './fixtures/train/unifusion-x0.ts';
import { GEN_FIXTURES } from './helpers/vlm.ts';

const GRAPH = 'test/fixtures/train/unifusion-x0.ts';
let tmp: string;
let vlm: VlmPackage;
const p = (...xs: string[]) => path.join(tmp, ...xs);

const ROWS = [
  { image: 'a.png', caption: 'a red circle' },
  { image: 'b.png', caption: 'put a square left', answer: 'a blue square at the left' },
  { source: 'a.png', instruction: 'make it green', target: 'b.png' },
  { sources: ['a.png', 'b.png'], instruction: 'merge them', target: 'a.png', answer: 'a red circle and a blue square' },
];

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-train-vlm-'));
  await importHf(path.join(GEN_FIXTURES, 'internvl'), { out: p('vlm'), taps: 'list:1,2,3' });
  vlm = await VlmPackage.load(p('vlm'));
  fs.mkdirSync(p('ds'));
  for (const [name, seed] of [['a.png', 1], ['b.png', 2]] as const) {
    const r = new Rng(seed, 'img');
    fs.writeFileSync(p('ds', name), encodePng({ width: 16, height: 16, data: Uint8Array.from({ length: 16 * 16 * 3 }, () => Math.floor(r.uniform() * 256)) }));
  }
  fs.writeFileSync(p('ds', 'rows.jsonl'), ROWS.map((r) => JSON.stringify(r)).join('\n') + '\n');
  await trainImagesCommand(GRAPH, { dataset: p('ds'), vlm: p('vlm'), size: '16x16', steps: '3', batch: '2', lr: '1e-2', taskMix: '1,1,1', sampleSteps: '2', systemPrompt: 'Rewrite it.', out: p('run'), quiet: true, progress: false });
}, 180_000);

afterAll(async () => {
  await vlm?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) (num = Math.max(num, Math.abs(a[i]! - b[i]!))), (den = Math.max(den, Math.abs(b[i]!)));
  return den === 0 ? num : num / den;
}

describe('train --dataset --vlm', () => {
  it('caches the VLM condition of every example: t2i, recon (image only), edit (instruction + sources), teacher-forced answers', async () => {
    const cache = readSafetensors(p('run', CACHE_FILE));
    const index = JSON.parse(cache.metadata.index!) as { examples: { task: string; condition: number; line: number }[] };
    const tasks = index.examples.map((e) => `${e.task}:${e.line}`).sort();
    expect(tasks).toEqual(['edit:3', 'edit:4', 'recon:1', 'recon:2', 't2i:1', 't2i:2']);
    const img = (f: string) => p('ds', f);
    for (const e of index.examples) {
      const row = ROWS[e.line - 1]! as Record<string, unknown>;
      const req: { prompt: string; images?: string[]; answer?: string } =
        e.task === 'recon'
          ? { prompt: '', images: [img(row.image as string)] }
          : e.task === 't2i'
            ? { prompt: row.caption as string, ...(row.answer ? { answer: row.answer as string } : {}) }
            : { prompt: row.instruction as string, images: ((row.sources as string[] | undefined) ?? [row.source as string]).map(img), ...(row.answer ? { answer: row.answer as string } : {}) };
      const want = await vlm.condition([req], 'answer' in req ? { rewrite: true, systemPrompt: 'Rewrite it.' } : { rewrite: false });
      const n = want.lengths[0]!;
      expect(n).toBeGreaterThan(0);
      const mask = cache.tensors.get(`c${e.condition}.condition_mask`)!;
      expect(mask.shape).toEqual([1, n]);
      expect([...mask.data]).toEqual(new Array(n).fill(1));
      for (const t of vlm.taps) {
        const got = cache.tensors.get(`c${e.condition}.hidden_states.${t}`)!;
        expect(got.shape).toEqual([1, n, 32]);
        expect(relErr(got.data as Float32Array, want.tensors[`hidden_states.${t}`]!.data as Float32Array), `${e.task}:${e.line} hidden_states.${t}`).toBeLessThan(1e-5);
      }
      if ('answer' in req) expect(n).toBe(vlm.tokenizer.encode(req.answer!, { addSpecialTokens: false }).length + (req.images?.length ? (await vlm.condition([{ prompt: '', images: req.images }], { rewrite: false })).lengths[0]! : 0));
    }
    // the dropped condition: the VLM's empty prompt
    const nul = readSafetensors(p('run', 'null_condition.safetensors')).tensors;
    expect([...nul.get('condition_mask')!.data]).toEqual([0]);
  });

  it('an x0-prediction run assembles: the pipeline DiT = the float64 reference of the x0 config with the trained weights', async () => {
    const model = JSON.parse(fs.readFileSync(p('run', 'unifusion.json'), 'utf8'));
    expect(model.config.prediction).toBe('x0');
    expect(model.systemPrompt).toBe('Rewrite it.');
    const a = await assemble({ vlm: p('vlm'), dit: p('run'), out: p('pipe'), scheduler: { steps: 4, shift: 3, guidance: 3 } });
    expect(a.json.conditioning.systemPrompt).toBe('Rewrite it.');
    expect(a.json.scheduler).toMatchObject({ steps: 4, shift: 3, guidance: 3, sampler: 'euler' });
    const pipe = await Pipeline.load(p('pipe'));
    const cond = (await vlm.condition([{ prompt: 'a red circle' }], { rewrite: false })).tensors;
    const x = seededNoise([3], 3 * 16 * 16);
    const got = await pipe.velocity(x, [1, 3, 16, 16], 0.6, cond);
    const trained = loadTrainedParams([p('run')]);
    const ref = (prediction: 'x0' | 'velocity') => {
      const g = trace('unifusion', () => ({ velocity: uniFusionForward({ ...X0_CONFIG, prediction }).velocity }));
      const feeds: Record<string, HostTensor> = { ...cond, latents: fromFloat64('f32', [1, 3, 16, 16], x), timestep: fromFloat64('f32', [1], [0.6]) };
      return evaluate(compileGraph(g, { paramValues: trained.params }).graph, Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, toRefTensor(v)])), { params: new Map([...trained.params].map(([k, v]) => [k, toRefTensor(v)])) }).velocity!.data;
    };
    const want = ref('x0');
    expect(relErr(got, want)).toBeLessThan(1e-4);
    expect(relErr(got, ref('velocity'))).toBeGreaterThan(1e-2); // the x0 conversion is in the graph
    // and it samples from a prompt through the pipeline's VLM with the assembled defaults
    const out = await pipe.generate({ prompts: ['a red circle'], seed: 1, progress: false });
    expect(out.images[0]!.meta).toMatchObject({ steps: 4, guidance: 3, schedule: 'flow, shift 3' });
    expect(out.evaluations).toBe(4);
    expect(toFloat64(fromFloat64('f32', [1], [out.images[0]!.latent[0]!])).every(Number.isFinite)).toBe(true);
    await pipe.close();
  });
});
