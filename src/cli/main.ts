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
    .option('--bindings', 'also write typed TypeScript bindings DIR/<name>.ts (class with load/run, feed and fetch types)')
    .action(async (graph: string, opts: { preset?: string; out: string; weights: 'auto'; debug?: boolean; bindings?: boolean }) => {
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
    .option('--bindings', 'also write typed TypeScript bindings DIR/train-step.ts (a step() that carries the optimizer state)')
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
    .command('serve-web')
    .description('serve the browser page (examples/web: onnxruntime-web, wasm or WebGPU) for a compiled pipeline on localhost')
    .option('--pipeline <dir>', "a 'compile' output folder of a denoiser step (default: the built-in tiny DiT step, compiled in memory)")
    .option('--port <n>', 'port (0: any free one)', '8080')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .action(async (opts: { pipeline?: string; port: string; host: string }) => {
      const { serveWebCommand } = await import('./serve-web.ts');
      const server = await serveWebCommand(opts);
      await new Promise<void>((resolve) => {
        const stop = () => void server.close().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
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
