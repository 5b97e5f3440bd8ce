// The `unifusion` command line: one program.command(...) block per command. Command modules are
// imported when their command runs, so e.g. `inspect` never loads onnxruntime's native addon.
import { Command, CommanderError } from 'commander';

export async function main(argv: string[]): Promise<void> {
  const program = new Command('unifusion')
    .description('Model-graph compiler and runtime: TS DSL -> typed IR -> ONNX')
    // Let errors reach the catch below instead of commander calling process.exit itself.
    .exitOverride()
    .showHelpAfterError(false);

  program
    .command('compile')
    .description('trace a graph file (default export: defineGraph) and write DIR/<name>.onnx + DIR/manifest.json')
    .argument('<graph>', 'graph .ts file')
    .option('--preset <name>', 'preset of the graph file (default: its first)')
    .requiredOption('--out <dir>', 'output folder')
    .option('--weights <mode>', 'auto | embed | external | skeleton | inputs', 'auto')
    .option('--debug', 'print the graph after every compiler pass')
    .action(async (graph: string, opts: { preset?: string; out: string; weights: 'auto'; debug?: boolean }) => {
      const { compileCommand } = await import('./compile.ts');
      await compileCommand(graph, opts);
    });

  program
    .command('demo')
    .description("UniFusion's tiny preset end to end: train the rectified-flow step (frozen tiny VLM in the graph -> LAP -> refiner -> DiT), compile the forward with the trained weights, check it against the float64 reference, sample every training prompt")
    .option('--out <dir>', 'output folder', 'out/demo')
    .option('--steps <n>', 'training steps', '500')
    .option('--sample-steps <n>', 'Euler steps of the sampler', '20')
    .option('--device <ep>', 'onnxruntime execution provider', 'cpu')
    .action(async (opts: { out: string; steps: string; sampleSteps: string; device: string }) => {
      const { demoCommand } = await import('./demo.ts');
      await demoCommand({ out: opts.out, device: opts.device, steps: Number(opts.steps), sampleSteps: Number(opts.sampleSteps) });
    });

  program
    .command('run')
    .description('run an ONNX model on the tensors of a safetensors file and save every output by name')
    .argument('<model>', 'model .onnx file (external data is resolved next to it)')
    .requiredOption('--inputs <file>', 'safetensors file with one tensor per model input')
    .requiredOption('--out <file>', 'safetensors file to write the outputs to (written only on success)')
    .option('--device <ep>', 'onnxruntime execution provider: cpu, cuda, webgpu, ...', 'cpu')
    .action(async (model: string, opts: { inputs: string; out: string; device: string }) => {
      const { runCommand } = await import('./run.ts');
      await runCommand(model, opts);
    });

  program
    .command('inspect')
    .description('describe an ONNX model: I/O, opsets, op histogram, parameters, external data')
    .argument('<model>', 'model .onnx file (external data files are not read)')
    .option('--json', 'print JSON instead of text')
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
    .option('--resume', 'continue from the latest checkpoint in DIR/checkpoints')
    .option('--lr <x>', 'peak learning rate (linear warmup, cosine decay to --min-lr)')
    .option('--warmup <n>', 'warmup iterations')
    .option('--min-lr <x>', 'cosine floor (default 0.1 * lr)')
    .option('--seed <n>', 'data order and noise seed')
    .option('--checkpoint-every <k>', 'checkpoint every K iterations (and at the end)')
    .option('--keep <n>', 'checkpoints kept')
    .option('--max-rejections <m>', 'consecutive non-finite steps before the run stops', '5')
    .option('--device <ep>', 'onnxruntime execution provider: cpu, webgpu, ...', 'cpu')
    .option('--no-progress', 'no progress bar')
    .action(async (file: string, opts: import('./train.ts').TrainCommandOptions & { progress: boolean }) => {
      const { trainCommand } = await import('./train.ts');
      await trainCommand(file, { ...opts, progress: opts.progress ? undefined : false });
    });

  program
    .command('import-hf')
    .description('import a Hugging Face checkpoint folder (config.json + safetensors, sharded or not; or a diffusers AutoencoderKL) as ONNX with external-data weights in DIR')
    .argument('<dir>', 'checkpoint folder')
    .requiredOption('--out <dir>', 'output folder (written as a whole: on error nothing is left there)')
    .option('--taps <spec>', 'hidden states to output: every:K[:offset] | list:a,b,c | last | penultimate (default every:3)')
    .option('--dtype <dtype>', 'weight and compute dtype of the graph: f32 | f16 | bf16 (checkpoint floats are converted)')
    .option('--force', 'replace a non-empty output folder')
    .action(async (dir: string, opts: { out: string; taps?: string; dtype?: 'f32' | 'f16' | 'bf16'; force?: boolean }) => {
      const { importHfCommand } = await import('./import-hf.ts');
      await importHfCommand(dir, opts);
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
    .action(async (opts: import('./encode.ts').EncodeCommandOptions) => {
      const { encodeCommand } = await import('./encode.ts');
      await encodeCommand(opts);
    });

  try {
    await program.parseAsync(argv);
  } catch (e) {
    process.exitCode = reportError(e);
  }
}

/** Print a thrown error the way a CLI user wants it; returns the exit code. */
function reportError(e: unknown): number {
  // commander has already printed its own message (or the help/version text).
  if (e instanceof CommanderError) return e.exitCode;
  const debug = Boolean(process.env.UNIFUSION_DEBUG);
  const message = e instanceof Error ? (debug ? (e.stack ?? e.message) : e.message) : String(e);
  process.stderr.write(`error: ${message}\n`);
  return 1;
}
