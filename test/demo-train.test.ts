// `unifusion demo --train` in a shortened run: every stage of the shipped recipe (VLM pretraining,
// HF folder, import-hf, condition cache, UniFusion training, assemble) at toy sizes, then the demo
// on the pipeline it made. Checks the chain, not quality (a few steps learn nothing).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { demoCommand } from '../src/cli/demo.ts';
import { Pipeline } from '../runtime/pipeline/pipeline.ts';

describe('unifusion demo --train (shortened)', () => {
  it('retrains VLM and UniFusion from scratch, assembles a pipeline and runs the demo on it', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-demo-train-'));
    try {
      const trainOut = path.join(tmp, 'train');
      const r = await demoCommand({
        out: path.join(tmp, 'demo'),
        train: true,
        trainOut,
        recipe: { vlmSteps: 4, vlmRows: 96, ditSteps: 4, t2i: 48, edits: 8, recon: 4, seed: 21 },
        n: 2,
        edits: 1,
        recon: 1,
        seeds: 1,
        steps: 2,
        quiet: true,
      });
      expect(Object.keys(r.trainSeconds ?? {})).toEqual(['VLM pretraining', 'HF folder', 'import-hf', 'condition cache', 'UniFusion training', 'assemble']);
      for (const f of ['work/vlm-hf/model.safetensors', 'work/vlm-hf/config.json', 'work/vlm-pkg/manifest.json', 'work/cache/cache.safetensors', 'work/dit-run/params.safetensors', 'pipeline/pipeline.json', 'pipeline-training/recipe.json', 'pipeline-training/dit-metrics.jsonl'])
        expect(fs.existsSync(path.join(trainOut, f)), f).toBe(true);
      expect(fs.readFileSync(path.join(trainOut, 'pipeline-training/dit-metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(4);
      const p = await Pipeline.load(path.join(trainOut, 'pipeline'));
      expect(p.json.conditioning.taps).toEqual([0, 2, 4]);
      expect(p.json.conditioning.rewrite).toBe(true);
      expect(p.json.latent.kind).toBe('pixel');
      await p.close();
      expect(r.results.length).toBe(2 + 10 + 1 + 1);
      expect(fs.existsSync(path.join(tmp, 'demo', 'report.html'))).toBe(true);
      // a second --train into the same folder is refused (nothing replaced)
      await expect(demoCommand({ out: path.join(tmp, 'demo2'), train: true, trainOut, quiet: true })).rejects.toThrow(/is not empty/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, 300_000);
});
