// The shapes VLM's Hugging Face folder round trip: a (randomly initialised) ShapesVLM saved by
// examples/shapes/save-vlm.ts is read by `import-hf` (every tensor matched by name, shape and
// dtype, lm_head the only one ignored), and the imported encoder's hidden states equal the
// states of our own graph over the same params on a padded batch with images.
// (transformers' own load and logits parity: scripts/py/check_shapes_vlm.py.)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileGraph } from '../../src/compiler.ts';
import { dim, input, range, trace } from '../../src/dsl/index.ts';
import { paramTensor } from '../../codegen/onnx/emit.ts';
import { encodeModel } from '../../codegen/onnx/proto.ts';
import { importHf } from '../../src/cli/import-hf.ts';
import { Session } from '../../runtime/session.ts';
import { vlmRows } from '../../runtime/shapes/data.ts';
import { SIZE } from '../../runtime/shapes/world.ts';
import { saveVlmFolder } from '../../examples/shapes/save-vlm.ts';
import { encodeRow, pixelValuesOf, ShapesVLM, vlmBatch, vlmConfigJson } from '../../examples/shapes/vlm.ts';

describe('shapes VLM folder', () => {
  it('save -> import-hf -> the encoder reproduces our graph on a padded batch with images', async () => {
    const config = vlmConfigJson();
    const graph = trace('shapes_vlm_states', () => {
      const B = dim('batch'), S = dim('seq'), T = dim('tiles');
      const m = new ShapesVLM(config);
      const hs = m.model.forward(input('input_ids', 'i64', [B, S]), input('attention_mask', 'i64', [B, S]), input('pixel_values', 'f32', [T, 3, SIZE, SIZE]), range(S));
      return { last: hs['hidden_states.4']! };
    }, { seed: 9 });
    const params = new Map(graph.params().map((p) => [p.params.name, paramTensor(p)] as const));
    // the lm_head is not in this graph: give it one so the folder is complete (import-hf uses it in the generation graph)
    const V = (config.text_config as { vocab_size: number }).vocab_size;
    params.set('lm_head.weight', { dtype: 'f32', shape: [V, 96], data: new Float32Array(V * 96).fill(0.01) });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shapes-vlm-'));
    try {
      await saveVlmFolder(params, path.join(dir, 'hf'));
      for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) expect(fs.existsSync(path.join(dir, 'hf', f))).toBe(true);
      const imp = await importHf(path.join(dir, 'hf'), { out: path.join(dir, 'enc'), taps: 'list:0,2,4' });
      expect(imp.modelType).toBe('internvl');
      expect(imp.ignored).toEqual([]); // the lm_head feeds the VLM package's generation graph
      const rows = vlmRows(30, 3).filter((r) => r.task !== 'lm').slice(0, 5).map(encodeRow);
      const b = vlmBatch(rows, Math.max(...rows.map((r) => r.ids.length)));
      const images = rows.flatMap((r) => r.images);
      expect(images.length).toBeGreaterThan(0);
      const feeds = { input_ids: b.input_ids!, attention_mask: b.attention_mask!, pixel_values: pixelValuesOf(images, images.length) };
      const enc = await Session.load(path.join(dir, 'enc', 'internvl-encoder.onnx'));
      const ours = await Session.load(encodeModel(compileGraph(graph, { paramValues: params, weights: 'embed' }).emitted.model));
      const got = (await enc.run(feeds))['hidden_states.4']!.data as Float32Array;
      const want = (await ours.run(feeds)).last!.data as Float32Array;
      await enc.release();
      await ours.release();
      const mask = b.attention_mask!.data as BigInt64Array;
      let maxErr = 0, maxRef = 0;
      for (let i = 0; i < want.length; i++) {
        if (!mask[Math.floor(i / 96)]) continue;
        maxErr = Math.max(maxErr, Math.abs(got[i]! - want[i]!));
        maxRef = Math.max(maxRef, Math.abs(want[i]!));
      }
      expect(maxRef).toBeGreaterThan(0.1);
      expect(maxErr / maxRef).toBeLessThan(1e-5);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
