// Writes what scripts/py/check_shapes_vlm.py compares against transformers and Python `tokenizers`:
// a table of strings with our tokenizer's ids (@huggingface/tokenizers), and a padded batch of
// VLM inputs (text + image rows) with the logits of our compiled graph of the saved folder.
//
//   npx tsx examples/shapes/dev/vlm-parity-dump.ts out/shapes-vlm out/shapes-vlm-parity
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensors } from '../../../src/io/safetensors.ts';
import { fromFloat64 } from '../../../src/io/host.ts';
import { vlmRows } from '../../../runtime/shapes/data.ts';
import { applyChatTemplate, expandImages } from '../../../runtime/shapes/prompts.ts';
import { pixelValuesOf, shapesTokenizer, vlmBatch, encodeRow } from '../vlm.ts';
import { loadVlmSession } from './vlm-eval.ts';

const [dir = 'out/shapes-vlm', out = 'out/shapes-vlm-parity'] = process.argv.slice(2);
fs.mkdirSync(out, { recursive: true });
const t = shapesTokenizer();
const strings = [
  'a red circle at the top left, a blue square at the center and a yellow triangle at the bottom right',
  'Make the RED circle blue!!  now',
  'zebra crossing 123 ünïcödé 🙂 tabs\tand\nnewlines\n\n',
  '   leading and trailing spaces   ',
  "it's the traffic light's colours",
  '<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img>\ndescribe the image.<|im_end|>\n',
  ...vlmRows(12, 5).map((r) => expandImages(applyChatTemplate([...r.messages, { role: 'assistant', content: r.answer }], false), 9)),
];
const table = strings.map((s) => ({ text: s, ids: t.tok.encode(s, { add_special_tokens: false }).ids, decoded: t.tok.decode(t.tok.encode(s, { add_special_tokens: false }).ids, { skip_special_tokens: false }) }));
fs.writeFileSync(path.join(out, 'tokenizer-table.json'), JSON.stringify(table, null, 1));

const rows = vlmRows(40, 6).filter((r) => r.task !== 'lm').slice(0, 6).map(encodeRow);
const batch = vlmBatch(rows, Math.max(...rows.map((r) => r.ids.length)));
const images = rows.flatMap((r) => r.images);
const pixels = pixelValuesOf(images, images.length);
const session = await loadVlmSession(dir);
const res = await session.run({ input_ids: batch.input_ids!, attention_mask: batch.attention_mask!, pixel_values: pixels });
await session.release();
writeSafetensors(path.join(out, 'logits.safetensors'), { input_ids: batch.input_ids!, attention_mask: batch.attention_mask!, pixel_values: pixels, logits: res.logits!, n_images: fromFloat64('i64', [1], [images.length]) });
process.stdout.write(`wrote ${out}: ${table.length} strings, a batch of ${rows.length} rows (${images.length} images)\n`);
