// Writes the trained shapes VLM as an ordinary Hugging Face folder, the layout transformers'
// InternVLForConditionalGeneration.save_pretrained produces and `unifusion import-hf` reads:
//   config.json                 model_type internvl, vision_config + text_config (qwen2)
//   model.safetensors           transformers-5 names: model.vision_tower.*, model.multi_modal_projector.*,
//                               model.language_model.*, lm_head.weight (f32)
//   tokenizer.json              byte-level BPE in Qwen2's layout (runtime/shapes/bpe.ts)
//   tokenizer_config.json       Qwen2Tokenizer, ChatML chat_template with InternVL's image placeholder,
//                               eos <|im_end|>, pad <|endoftext|>
//   generation_config.json      eos / pad ids, greedy
//   preprocessor_config.json, processor_config.json   InternVL's processor: one 48 x 48 tile, 9 tokens
//
//   npx tsx examples/shapes/save-vlm.ts out/shapes-vlm-run/params.safetensors out/shapes-vlm
import * as path from 'node:path';
import * as fs from 'node:fs/promises';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { writeOutputDir } from '../../src/io/outdir.ts';
import type { HostTensor } from '../../src/io/host.ts';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../runtime/tiling.ts';
import { SIZE } from '../../runtime/shapes/world.ts';
import { generationConfigJson, shapesTokenizer, ShapesVLM, vlmConfigJson } from './vlm.ts';

export async function saveVlmFolder(params: ReadonlyMap<string, HostTensor>, out: string, inputs: string[] = []): Promise<string> {
  const config = vlmConfigJson();
  const want = new ShapesVLM(config).namedParameters().map(([n, p]) => ({ name: n, shape: [...p.shape] }));
  const missing = want.filter((w) => !params.has(w.name)).map((w) => w.name);
  if (missing.length) throw new Error(`the params lack ${missing.length} VLM tensors: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  for (const w of want) {
    const t = params.get(w.name)!;
    if (t.shape.join(',') !== w.shape.join(',')) throw new Error(`param '${w.name}' is [${t.shape}], the VLM has [${w.shape}]`);
  }
  const tok = shapesTokenizer();
  const tensors = new Map(want.map((w) => [w.name, params.get(w.name)!] as const));
  const json = (o: unknown) => JSON.stringify(o, null, 2) + '\n';
  await writeOutputDir({ out, command: 'shapes save-vlm', inputs: inputs.map((p) => ({ path: p, what: '<params>' })) }, async (stage) => {
    await fs.writeFile(path.join(stage, 'config.json'), json(config));
    writeSafetensors(path.join(stage, 'model.safetensors'), tensors, { format: 'pt' });
    await fs.writeFile(path.join(stage, 'tokenizer.json'), JSON.stringify(tok.json));
    await fs.writeFile(path.join(stage, 'tokenizer_config.json'), json(tok.config));
    await fs.writeFile(path.join(stage, 'generation_config.json'), json(generationConfigJson()));
    await fs.writeFile(
      path.join(stage, 'preprocessor_config.json'),
      json({
        image_processor_type: 'GotOcr2ImageProcessor',
        processor_class: 'InternVLProcessor',
        size: { height: SIZE, width: SIZE },
        crop_to_patches: false,
        min_patches: 1,
        max_patches: 1,
        do_resize: true,
        resample: 3,
        do_rescale: true,
        rescale_factor: 1 / 255,
        do_normalize: true,
        image_mean: [...IMAGENET_MEAN],
        image_std: [...IMAGENET_STD],
        do_convert_rgb: true,
      }),
    );
    await fs.writeFile(path.join(stage, 'processor_config.json'), json({ processor_class: 'InternVLProcessor', image_seq_length: 9 }));
  });
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [paramsFile, out] = process.argv.slice(2);
  if (!paramsFile || !out) {
    process.stderr.write('usage: tsx examples/shapes/save-vlm.ts PARAMS.safetensors OUT_DIR\n');
    process.exit(2);
  }
  const { tensors } = readSafetensors(paramsFile);
  await saveVlmFolder(tensors, out, [paramsFile]);
  process.stdout.write(`wrote ${out}\n`);
}
