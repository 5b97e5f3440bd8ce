// The `unifusion` command line: one program.command(...) block per command. Command modules are
// imported when their command runs, so e.g. `inspect` never loads onnxruntime's native addon.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { reportError } from './errors.ts';
import { setVerbose } from '../../runtime/log.ts';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

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
    .option('--debug', 'print the graph after every compiler pass')
    .option('--force', 'write into a non-empty folder that holds files unifusion did not write (they are kept)')
    .option('--no-typecheck', 'skip the TypeScript type check of the graph file (faster; type errors then surface at trace time or not at all)')
    .addHelpText('after', examples('unifusion compile examples/transformer.ts --preset tiny --out out/tiny', 'unifusion compile graphs/unifusion.ts --preset unifusion-8b --weights skeleton --out out/uf8b'))
    .action(async (graph: string, opts: { preset?: string; out: string; weights: 'auto'; debug?: boolean; force?: boolean; typecheck: boolean }) => {
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
    .option('--force', 'write into a non-empty folder that holds files unifusion did not write (they are kept)')
    .addHelpText('after', examples('unifusion demo', 'unifusion demo --steps 100 --sample-steps 8 --out out/quick-demo'))
    .action(async (opts: { out: string; steps: string; sampleSteps: string; device: string; force?: boolean }) => {
      const { demoCommand } = await import('./demo.ts');
      await demoCommand({ out: opts.out, device: opts.device, steps: opts.steps, sampleSteps: opts.sampleSteps, force: opts.force });
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
    .option('--force', 'write into a non-empty folder that holds files unifusion did not write (they are kept)')
    .option('--no-typecheck', 'skip the TypeScript type check of the train file')
    .addHelpText('after', examples('unifusion train examples/train-mlp.ts --steps 400 --out out/mlp', 'unifusion train examples/train-mlp.ts --steps 800 --out out/mlp --resume'))
    .action(async (file: string, opts: import('./train.ts').TrainCommandOptions & { progress: boolean; typecheck: boolean }) => {
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
    .option('--force', 'write into a non-empty folder that holds files unifusion did not write (they are kept; only our own earlier outputs are replaced)')
    .addHelpText('after', examples('unifusion import-hf path/to/Qwen2.5-7B --out out/qwen --taps every:3', 'unifusion import-hf path/to/FLUX.1-dev/vae --out out/vae'))
    .action(async (dir: string, opts: { out: string; taps?: string; dtype?: 'f32' | 'f16' | 'bf16'; force?: boolean }) => {
      const { importHfCommand } = await import('./import-hf.ts');
      await importHfCommand(dir, opts);
    });

  try {
    await program.parseAsync(argv);
  } catch (e) {
    process.exitCode = reportError(e, { verbose: Boolean(program.opts().verbose) });
  }
}
