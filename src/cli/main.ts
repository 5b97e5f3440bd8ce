// The `unifusion` command line: one program.command(...) block per command. Command modules are
// imported when their command runs, so e.g. `inspect` never loads onnxruntime's native addon.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../layout.ts';
import { Command } from 'commander';
import { reportError } from './errors.ts';
import { setVerbose } from '../../runtime/log.ts';

const VERSION = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** `Example(s):` lines appended to a command's --help. */
const examples = (...lines: string[]) => `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;

export async function main(argv: string[]): Promise<void> {
  const program = new Command('unifusion')
    .description('Model-graph compiler and runtime: TS DSL -> typed IR -> ONNX')
    .version(VERSION, '-V, --version', 'print the unifusion version')
    .option('--verbose', "show onnxruntime's own log lines and stack traces of errors")
    // Let errors reach the catch below instead of commander calling process.exit itself.
    .exitOverride()
    .showHelpAfterError(false)
    .addHelpText('after', examples('unifusion demo', 'unifusion compile examples/transformer.ts --preset tiny --out out/tiny', 'unifusion compile --help'));
  program.hook('preAction', () => setVerbose(Boolean(program.opts().verbose)));

  program
    .command('compile')
    .description('trace a graph file (default export: defineGraph) and write DIR/<name>.onnx + DIR/manifest.json')
    .argument('<graph>', 'graph .ts file')
    .option('--preset <name>', 'preset of the graph file (default: its first)')
    .requiredOption('--out <dir>', 'output folder')
    .option('--weights <mode>', 'auto | embed | external | skeleton | inputs', 'auto')
    .option('--debug', 'print the graph after every compiler pass, and what each fusion rule fused or declined (and why)')
    .option('--target <ep>', 'execution provider to fuse for: cpu | cuda | webgpu | portable (standard ops only)', 'cpu')
    .option('--cuda-ops <dir>', 'also write CUDA sources (kernels, C launchers, ORT custom-op glue, CMakeLists, harness) of the graph\'s ai.unifusion ops to DIR')
    .option('--params <file...>', 'bake trained weights in: safetensors files or `train` run folders (frozen params from its step graph; later sources win)')
    .option('--ema', 'with --params: use the EMA weights (default: when present)')
    .option('--no-ema', 'with --params: use the raw weights even when EMA weights are present')
    .option('--allow-unused-params', 'with --params: ignore tensors that are not params of this graph')
    .option('--force', 'write into a non-empty folder that holds files unifusion did not write (they are kept)')
    .option('--no-typecheck', 'skip the TypeScript type check of the graph file (faster; type errors then surface at trace time or not at all)')
    .option('--bindings', 'also write typed TypeScript bindings DIR/<name>.ts (class with load/run, feed and fetch types)')
    .addHelpText('after', examples('unifusion compile examples/transformer.ts --preset tiny --out out/tiny', 'unifusion compile graphs/unifusion.ts --preset unifusion-8b --weights skeleton --out out/uf8b', 'unifusion compile graphs/unifusion.ts --preset tiny --params run/ --out dit', 'unifusion compile graphs/unifusion.ts --preset tiny --target cuda --cuda-ops out/uf-cuda --out out/uf'))
    .action(async (graph: string, opts: { preset?: string; out: string; weights: 'auto'; debug?: boolean; target?: string; cudaOps?: string; params?: string[]; ema?: boolean; allowUnusedParams?: boolean; force?: boolean; typecheck: boolean; bindings?: boolean }) => {
      const { compileCommand } = await import('./compile.ts');
      await compileCommand(graph, opts);
    });

  program
    .command('demo')
    .description("the main job (= npm start): the shipped shapes-world UniFusion (tiny in-project InternVL -> LAP -> refiner -> pixel DiT) samples held-out prompts, named scenes with / without VERIFI rewriting, edits and reconstructions; scores every sample, writes PNG grids and an offline report.html; the last line is `prompt adherence: NN.N%`")
    .option('--out <dir>', 'output folder', 'out/demo')
    .option('--pipeline <dir>', 'pipeline folder (default: examples/shapes/pipeline)')
    .option('--training <dir>', "the pipeline's training logs and recipe.json (default: pipeline-training beside it)")
    .option('--n <n>', 'held-out text-to-image prompts', '200')
    .option('--edits <n>', 'edits of held-out scenes', '100')
    .option('--recon <n>', 'reconstructions', '50')
    .option('--seeds <n>', 'seeds per named scene (each with and without rewriting)', '4')
    .option('--steps <n>', "sampler steps (default: the pipeline's)")
    .option('--guidance <g>', "CFG scale (default: the pipeline's)")
    .option('--train', 'first regenerate the data and retrain the VLM and UniFusion from scratch with the shipped recipe (about 40-55 min on 2 cores), then run the demo on that pipeline')
    .option('--train-out <dir>', 'with --train: a new or empty folder for the runs, pipeline/ and pipeline-training/', 'out/shapes-train')
    .option('--force', 'write into a non-empty folder that holds files unifusion did not write (they are kept)')
    .addHelpText('after', examples('unifusion demo', 'unifusion demo --n 20 --edits 10 --recon 5 --seeds 1 --out out/quick-demo', 'unifusion demo --train --train-out out/my-shapes'))
    .action(async (opts: { out: string; pipeline?: string; training?: string; n: string; edits: string; recon: string; seeds: string; steps?: string; guidance?: string; train?: boolean; trainOut?: string; force?: boolean }) => {
      const { demoCommand } = await import('./demo.ts');
      await demoCommand(opts);
    });

  program
    .command('run')
    .description('run an ONNX model on the tensors of a safetensors file and save every output by name')
    .argument('<model>', 'model .onnx file (external data is resolved next to it)')
    .requiredOption('--inputs <file>', 'safetensors file with one tensor per model input')
    .requiredOption('--out <file>', 'safetensors file to write the outputs to (written only on success)')
    .option('--device <ep>', 'onnxruntime execution provider: cpu, cuda, webgpu, ...', 'cpu')
    .option('--force', 'replace an existing --out file that unifusion did not write')
    .addHelpText('after', examples('unifusion run out/tiny/transformer.onnx --inputs in.safetensors --out out.safetensors', 'unifusion run model.onnx --inputs in.safetensors --out out.safetensors --device cuda'))
    .action(async (model: string, opts: { inputs: string; out: string; device: string; force?: boolean }) => {
      const { runCommand } = await import('./run.ts');
      await runCommand(model, opts);
    });

  program
    .command('inspect')
    .description('describe an ONNX model: I/O, opsets, op histogram, parameters, external data')
    .argument('<model>', 'model .onnx file (external data files are not read)')
    .option('--json', 'print JSON instead of text')
    .addHelpText('after', examples('unifusion inspect out/tiny/transformer.onnx', 'unifusion inspect out/qwen/qwen2-encoder.onnx --json'))
    .action(async (model: string, opts: { json?: boolean }) => {
      const { inspectCommand } = await import('./inspect.ts');
      await inspectCommand(model, opts);
    });

  program
    .command('train')
    .description('train a step graph file (default export: defineTrainStep) with AdamW in onnxruntime; checkpoints, metrics and params go to DIR')
    .argument('<train-graph>', 'train definition .ts file')
    .option('--steps <n>', 'total iterations (counting those before a resume)')
    .requiredOption('--out <dir>', 'output folder: checkpoints/, metrics.jsonl, params.safetensors, the step graph')
    .option('--resume', 'continue from the latest checkpoint in DIR/checkpoints (an error when there is none); the lr schedule continues where it was')
    .option('--lr <x>', 'peak learning rate (linear warmup, cosine decay to --min-lr)')
    .option('--warmup <n>', 'warmup iterations')
    .option('--min-lr <x>', 'cosine floor (default 0.1 * lr)')
    .option('--seed <n>', 'data order and noise seed')
    .option('--checkpoint-every <k>', 'checkpoint every K iterations (and at the end)')
    .option('--keep <n>', 'checkpoints kept')
    .option('--max-rejections <m>', 'consecutive non-finite steps before the run stops', '5')
    .option('--device <ep>', 'onnxruntime execution provider: cpu, webgpu, ...', 'cpu')
    .option('--no-progress', 'no progress bar')
    .option('--bindings', 'also write typed TypeScript bindings DIR/train-step.ts (a step() that carries the optimizer state)')
    .option('--force', 'write into a non-empty folder that holds files unifusion did not write (they are kept)')
    .option('--no-typecheck', 'skip the TypeScript type check of the train file')
    // image datasets (runtime/data): <train-graph> is then a graph file whose preset is a UniFusion config
    .option('--dataset <dir>', 'train a UniFusion preset on this image dataset folder (JSONL rows {image, caption} / {source(s), instruction, target})')
    .option('--preset <name>', 'with --dataset: the UniFusion preset of the graph file')
    .option('--vlm <dir>', 'with --dataset: the VLM package that encodes the captions')
    .option('--system-prompt <text>', "with --dataset --vlm: VERIFI system prompt of the teacher-forced rows (those with an 'answer'); recorded for assembly")
    .option('--conditions <file>', 'with --dataset: precomputed conditions (safetensors rows, metadata "prompts")')
    .option('--vae <dir>', 'with --dataset: VAE folder (import-hf); omit for pixel space')
    .option('--pixel-shift <x>', 'with --dataset, pixel space: latent = (rgb - shift) * scale')
    .option('--pixel-scale <x>', 'with --dataset, pixel space scale')
    .option('--size <WxH>', 'with --dataset: training size (images resized to cover, centre-cropped)')
    .option('--buckets', 'with --dataset: aspect-ratio buckets of about --size pixels instead of one size')
    .option('--batch <n>', 'with --dataset: batch size', '8')
    .option('--ema <decay>', 'with --dataset: keep an EMA of the weights in the step graph')
    .option('--clip-norm <x>', 'with --dataset: gradient norm clip', '1')
    .option('--weight-decay <x>', 'with --dataset: AdamW weight decay')
    .option('--cond-dropout <p>', 'with --dataset: probability of training on the dropped (empty-prompt) condition, for CFG', '0.1')
    .option('--task-mix <w>', 'with --dataset: t2i,recon,edit weights', '85,5,10')
    .option('--t-dist <d>', 'with --dataset: logit-normal[:mean,std] | uniform', 'logit-normal:0,1')
    .option('--sample-every <k>', 'with --dataset: a fixed-seed sample grid every K steps (and at the end)')
    .option('--sample-prompts <text...>', 'with --dataset: captions for the sample grids (default: the first 4)')
    .option('--sample-steps <n>', 'with --dataset: Euler steps of the sample grids', '20')
    .option('--sample-guidance <g>', 'with --dataset: CFG scale of the sample grids', '3')
    .option('--skip-invalid', 'with --dataset: leave invalid rows out (reported by line) instead of stopping')
    .addHelpText('after', examples('unifusion train examples/train-mlp.ts --steps 400 --out out/mlp', 'unifusion train examples/train-mlp.ts --steps 800 --out out/mlp --resume', 'unifusion train graphs/unifusion.ts --preset tiny-pixel --dataset data/ --vlm out/vlm --size 48x48 --steps 2000 --out run'))
    .action(async (file: string, opts: import('./train.ts').TrainCommandOptions & { progress: boolean; typecheck: boolean; dataset?: string }) => {
      if (opts.dataset) {
        const { trainImagesCommand } = await import('./train-images.ts');
        await trainImagesCommand(file, opts as unknown as import('./train-images.ts').TrainImagesOptions);
        return;
      }
      const { trainCommand } = await import('./train.ts');
      await trainCommand(file, { ...opts, progress: opts.progress ? undefined : false, typecheck: opts.typecheck });
    });

  program
    .command('import-hf')
    .description('import a Hugging Face checkpoint folder (config.json + safetensors, sharded or not; or a diffusers AutoencoderKL) as ONNX with external-data weights in DIR')
    .argument('<dir>', 'checkpoint folder')
    .requiredOption('--out <dir>', 'output folder (written as a whole: on error nothing is left there)')
    .option('--taps <spec>', 'hidden states to output: every:K[:offset] | list:a,b,c | last | penultimate (default every:3)')
    .option('--dtype <dtype>', 'weight and compute dtype of the graph: f32 | f16 | bf16 (checkpoint floats are converted)')
    .option('--target <ep>', 'execution provider to fuse the graphs for: cpu | cuda | webgpu | portable (standard ops only)', 'cpu')
    .option('--force', 'write into a non-empty folder that holds files unifusion did not write (they are kept; only our own earlier outputs are replaced)')
    .addHelpText('after', examples('unifusion import-hf path/to/Qwen2.5-7B --out out/qwen --taps every:3', 'unifusion import-hf path/to/FLUX.1-dev/vae --out out/vae'))
    .action(async (dir: string, opts: { out: string; taps?: string; dtype?: 'f32' | 'f16' | 'bf16'; target?: string; force?: boolean }) => {
      const { importHfCommand } = await import('./import-hf.ts');
      await importHfCommand(dir, opts);
    });

  program
    .command('serve-web')
    .description('serve the browser page (examples/web: onnxruntime-web, wasm or WebGPU) for a compiled pipeline on localhost')
    .option('--pipeline <dir>', "a pipeline folder (pipeline.json, `unifusion assemble`) or a 'compile' output folder of a denoiser step (default: the built-in tiny DiT step, compiled in memory)")
    .option('--port <n>', 'port (0: any free one)', '8080')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .addHelpText('after', examples('unifusion serve-web', 'unifusion compile examples/web/tiny-pipeline.ts --out out/web && unifusion serve-web --pipeline out/web --port 0'))
    .action(async (opts: { pipeline?: string; port: string; host: string }) => {
      const { serveWebCommand } = await import('./serve-web.ts');
      const server = await serveWebCommand(opts);
      await new Promise<void>((resolve) => {
        const stop = () => void server.close().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });

  // ---- diffusion: assemble / sample / edit (runtime/pipeline, runtime/sampler)
  const samplingOptions = (c: Command) =>
    c
      .requiredOption('--pipeline <dir>', 'pipeline folder (pipeline.json; `unifusion assemble`)')
      .option('--prompt <text>', 'the prompt')
      .option('--prompts <file>', 'prompts, one per line (a batch)')
      .option('--negative-prompt <text>', 'true CFG against this prompt')
      .option('--steps <n>', 'sampling steps (default: the pipeline\'s)')
      .option('--guidance <g>', 'CFG scale (1 = none)')
      .option('--true-cfg', 'unconditional branch = the encoded negative (or empty) prompt instead of the dropped condition')
      .option('--cfg-norm', 'rescale the guided velocity to the conditional norm per token')
      .option('--cfg-truncation <r>', 'guidance only while 1 - sigma < r (Lumina-2)')
      .option('--shift <s>', 'static schedule shift')
      .option('--dynamic-shift', 'resolution-dependent shift (the pipeline\'s constants, else FLUX\'s)')
      .option('--sampler <name>', 'euler | heun')
      .option('--seed <n>', 'seed of image 0; image k gets seed + k')
      .option('--num-images <n>', 'images per prompt')
      .option('--size <WxH>', 'image size (a multiple of the VAE factor x patch)')
      .option('--rewrite', 'VERIFI: let the VLM rewrite the prompt')
      .option('--no-rewrite', 'condition on the prompt as given')
      .option('--system-prompt <text>', 'VERIFI system prompt')
      .option('--condition <file>', 'precomputed conditions (safetensors, one row per prompt) instead of the VLM')
      .option('--batch-size <n>', 'images per DiT call (cond + uncond count as one)')
      .option('--vlm-batch <n>', 'prompts per VLM batch when encoding / rewriting (default: all at once)')
      .option('--device <ep>', 'onnxruntime execution provider', 'cpu')
      .option('--no-verify', 'skip the sha256 check of the pipeline files (presence is still checked)')
      .option('--no-grid', 'no grid.png')
      .option('--no-progress', 'no progress bar')
      .option('--force', 'write into a folder that holds files unifusion did not write (they are kept)')
      .requiredOption('--out <dir>', 'output folder: PNGs with metadata, JSON sidecars, grid.png, samples.json');

  samplingOptions(
    program
      .command('sample')
      .description('text-to-image with a pipeline folder: VLM condition -> flow sampler with CFG -> VAE decode -> PNGs')
      .option('--init-image <png>', 'img2img: start from this image, noised to --strength')
      .option('--strength <x>', 'img2img strength in (0, 1] (default 0.8)')
      .option('--init-latents <file>', "start from these latents (safetensors 'latents' [N, C, h, w], N = prompts x images) instead of seeded noise")
      .addHelpText('after', examples('unifusion sample --pipeline pipe --prompt "a red circle at the center" --num-images 4 --seed 7 --out samples', 'unifusion sample --pipeline pipe --prompts prompts.txt --sampler heun --guidance 4 --cfg-norm --out samples')),
  ).action(async (opts: import('./sample.ts').SampleCommandOptions) => {
    const { sampleCommand } = await import('./sample.ts');
    await sampleCommand(opts);
  });

  samplingOptions(
    program
      .command('edit')
      .description('edit / multi-reference / reconstruction: the --image files go into the VLM prompt (no VAE reference tokens); no --prompt = reconstruction')
      .option('--image <png...>', 'input image(s), in prompt order')
      .addHelpText('after', examples('unifusion edit --pipeline pipe --image a.png --prompt "make the red circle blue" --out edits', 'unifusion edit --pipeline pipe --image a.png --out recon')),
  ).action(async (opts: import('./sample.ts').SampleCommandOptions & { image?: string[] }) => {
    const { editCommand } = await import('./edit.ts');
    await editCommand(opts);
  });

  program
    .command('assemble')
    .description('build a pipeline folder from an import-hf VLM, a trained DiT (run folder or compiled .onnx) and an imported VAE (or pixel space)')
    .option('--vlm <dir>', 'VLM package folder (import-hf output); omit to feed conditions directly')
    .requiredOption('--dit <run-or-onnx>', 'image-training run folder, or a DiT .onnx with its manifest.json (`compile --params`)')
    .option('--vae <dir>', 'VAE folder (import-hf output); omit for pixel space')
    .requiredOption('--out <dir>', 'pipeline folder to write')
    .option('--name <name>', 'pipeline name (default: the folder name)')
    .option('--null-condition <file>', 'the dropped condition for CFG (safetensors; default: the run\'s)')
    .option('--pixel-shift <x>', 'pixel space: latent = (rgb - shift) * scale (per channel: a,b,c)')
    .option('--pixel-scale <x>', 'pixel space scale')
    .option('--ema', 'run folders: use the EMA weights (default: when present)')
    .option('--no-ema', 'run folders: use the raw weights')
    .option('--size <WxH>', 'default image size')
    .option('--steps <n>', 'default steps')
    .option('--guidance <g>', 'default CFG scale')
    .option('--sampler <name>', 'default sampler: euler | heun')
    .option('--shift <s>', 'default static shift')
    .option('--dynamic-shift <which>', 'default to the dynamic shift: flux | krea2')
    .option('--cfg-norm', 'default to CFG normalisation')
    .option('--system-prompt <text>', 'default VERIFI system prompt')
    .option('--rewrite', 'rewrite prompts by default')
    .option('--keep-template', "keep the chat template's fixed tokens in conditions of prompts that are not rewritten")
    .option('--no-split', 'run folders: do not also write the split condition-token / per-step DiT graphs')
    .option('--force', 'write into a folder that holds files unifusion did not write (they are kept)')
    .option('--bindings', 'also write typed TypeScript bindings of the DiT, dit/<name>.ts')
    .addHelpText('after', examples('unifusion assemble --vlm out/vlm --dit run/ --vae out/vae --out pipe', 'unifusion assemble --vlm out/vlm --dit run/ --out pipe   # pixel space'))
    .action(async (opts: import('./assemble.ts').AssembleCommandOptions) => {
      const { assembleCommand } = await import('./assemble.ts');
      await assembleCommand(opts);
    });

  program
    .command('rewrite')
    .description("VERIFI's rewrite: the VLM package (import-hf output) rewrites the prompt (printed as it is generated); --out writes the UniFusion condition as safetensors")
    .argument('<prompt>', 'the prompt')
    .requiredOption('--model <dir>', 'VLM package folder (unifusion import-hf output)')
    .option('--image <file...>', 'image(s) in the prompt (PNG / JPEG / WebP), in order')
    .option('--system-prompt <text>', "the rewriting system prompt (default: unifusion's own)")
    .option('--max-new-tokens <n>', 'most tokens to generate')
    .option('--temperature <t>', 'sampling temperature (0: greedy)')
    .option('--top-p <p>', 'nucleus sampling mass, (0, 1]')
    .option('--top-k <k>', 'keep the k most likely tokens (0: off)')
    .option('--seed <n>', 'sampling seed')
    .option('--no-rewrite', "condition on the prompt's own tokens (template prefix/suffix dropped) instead of generating")
    .option('--keep-template', 'with --no-rewrite: keep the chat template tokens in the condition')
    .option('--truncate', 'cut a prompt longer than the context instead of refusing it')
    .option('--template-var <key=value...>', 'chat template variable(s), e.g. enable_thinking=false (values are JSON, else strings)')
    .option('--out <file>', 'write the condition (hidden_states.<i>, condition_mask) as safetensors')
    .option('--force', 'replace an existing --out file')
    .option('--device <ep>', 'onnxruntime execution provider', 'cpu')
    .option('--threads <n>', 'onnxruntime intra-op threads')
    .addHelpText('after', examples('unifusion rewrite --model out/internvl3 "a red circle on a blue square" --seed 1', 'unifusion rewrite --model out/internvl3 "make the circle green" --image in.png --out cond.safetensors', 'unifusion rewrite --model out/qwen3 "a cat" --no-rewrite --template-var enable_thinking=false --out cond.safetensors'))
    .action(async (prompt: string, opts: import('./rewrite.ts').RewriteCommandOptions) => {
      const { rewriteCommand } = await import('./rewrite.ts');
      await rewriteCommand(prompt, opts);
    });

  program
    .command('encode')
    .description('run the frozen VLM once over a dataset (JSONL of captions / instructions + images) and write the condition tensors as sharded safetensors with an index (the training feature cache)')
    .requiredOption('--model <dir>', 'VLM package folder (unifusion import-hf output)')
    .requiredOption('--dataset <path>', 'a .jsonl file or a folder of them')
    .requiredOption('--out <dir>', 'output folder (shards + index.json)')
    .option('--rewrite', 'condition on VERIFI rewrites (default)')
    .option('--no-rewrite', "condition on each caption's own tokens")
    .option('--system-prompt <text>', 'the rewriting system prompt')
    .option('--max-new-tokens <n>', 'most tokens per rewrite')
    .option('--temperature <t>', 'sampling temperature (0: greedy)')
    .option('--top-p <p>', 'nucleus sampling mass, (0, 1]')
    .option('--top-k <k>', 'keep the k most likely tokens (0: off)')
    .option('--seed <n>', 'base seed (record k samples with seed + k)')
    .option('--batch-size <n>', 'prompts per VLM batch', '8')
    .option('--shard-records <n>', 'records per shard at most', '256')
    .option('--keep-template', 'without rewrite: keep the chat template tokens in the condition')
    .option('--truncate', 'cut prompts longer than the context instead of failing')
    .option('--template-var <key=value...>', 'chat template variable(s) (values are JSON, else strings)')
    .option('--resume', 'continue an interrupted encode in --out')
    .option('--force', 'write into a folder holding files unifusion did not write (they are kept)')
    .option('--device <ep>', 'onnxruntime execution provider', 'cpu')
    .option('--threads <n>', 'onnxruntime intra-op threads')
    .option('--no-progress', 'no progress bar')
    .addHelpText('after', examples('unifusion encode --model out/internvl3 --dataset data/captions.jsonl --out cache', 'unifusion encode --model out/internvl3 --dataset data/ --out cache --no-rewrite --batch-size 16', 'unifusion encode --model out/internvl3 --dataset data/ --out cache --resume'))
    .action(async (opts: import('./encode.ts').EncodeCommandOptions) => {
      const { encodeCommand } = await import('./encode.ts');
      await encodeCommand(opts);
    });

  try {
    await program.parseAsync(argv);
  } catch (e) {
    process.exitCode = reportError(e, { verbose: Boolean(program.opts().verbose) });
  }
}
