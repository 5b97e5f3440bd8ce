// Pretraining of the shapes demo's tiny VLM (examples/shapes/vlm.ts) with the project's training
// stack: next-token cross-entropy on the answers of the VLM rows (captioning, language modelling,
// rewriting: runtime/shapes/data.ts), every parameter trained (vision tower, projector, LM,
// lm_head), AdamW, fixed seeds.
//
//   npx unifusion train examples/shapes/train-vlm.ts --out out/shapes-vlm-run
// then examples/shapes/save-vlm.ts writes the Hugging Face folder from the run's params.
import { defineTrainStep } from '../../src/cli/train.ts';
import { shuffledBatches } from '../../runtime/trainer.ts';
import { VLM_MIX, vlmRows } from '../../runtime/shapes/data.ts';
import { encodeRow, maskedCrossEntropy, SEQ, ShapesVLM, vlmBatch, vlmConfigJson } from './vlm.ts';
import { SIZE } from '../../runtime/shapes/world.ts';

export const BATCH = Number(process.env.SHAPES_VLM_BATCH ?? 32);
export const ROWS = Number(process.env.SHAPES_VLM_ROWS ?? 20000);
export const DATA_SEED = Number(process.env.SHAPES_VLM_DATA_SEED ?? 11);
/** task shares (JSON, e.g. '{"rewrite":0.4}' over the defaults) */
export const MIX = { ...VLM_MIX, ...JSON.parse(process.env.SHAPES_VLM_MIX ?? '{}') };

const config = vlmConfigJson();
const model = new ShapesVLM(config);
const rows = vlmRows(ROWS, DATA_SEED, MIX).map(encodeRow);

export default defineTrainStep({
  name: 'shapes_vlm_pretrain',
  description: `tiny InternVL (ViT 2x64 on 48x48, Qwen2 4x96) pretrained on ${ROWS} shapes-world rows: captioning, LM, rewriting`,
  batch: {
    input_ids: { dtype: 'i64', shape: [BATCH, SEQ] },
    attention_mask: { dtype: 'i64', shape: [BATCH, SEQ] },
    pixel_values: { dtype: 'f32', shape: [BATCH, 3, SIZE, SIZE] },
    targets: { dtype: 'i64', shape: [BATCH, SEQ] },
    loss_mask: { dtype: 'f32', shape: [BATCH, SEQ] },
  },
  loss: (b) => maskedCrossEntropy(model.logits(b.input_ids!, b.attention_mask!, b.pixel_values!), b.targets!, b.loss_mask!),
  seed: 3,
  data: shuffledBatches(rows, BATCH, (items) => vlmBatch(items)),
  optimizer: { clipNorm: 1, weightDecay: 0.01 },
  defaults: { steps: 1500, lr: 3e-3, warmup: 50, minLr: 1e-4, checkpointEvery: 250, keep: 2 },
});
