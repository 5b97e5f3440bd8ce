// Bad inputs to every command, run as a user runs them: `node bin/unifusion.mjs ...` in a child
// process. Each row asserts that the command
//   - exits non-zero (not killed) within its time bound (no hang: /proc outputs once spun forever),
//   - prints `error: ...` matching the row's message (which names the file, tensor or argument),
//   - prints no stack trace and none of onnxruntime's own log lines,
//   - leaves every pre-existing file byte-identical (the fixtures and the row's own folder are
//     hashed before and after; nothing added, nothing removed: no partial output, no temp files).
//
// HOW TO ADD A ROW (other commands included): append to ROWS below, or push onto it from your own
// test file before the suite runs is not possible (vitest isolates files), so add it here:
//   {
//     cmd: 'mycommand',                             // for grouping and the report
//     name: 'what is wrong',                        // one line: the bad input
//     args: (f, dir) => ['mycommand', f.model, '--out', path.join(dir, 'o')],
//     expect: /the message: names the flag, file or tensor/,
//     setup: (f, dir) => { ... },                   // optional: make the bad input in `dir` (the row's own folder)
//     watch: (f, dir) => [extra paths to hash],     // optional: besides FX (all fixtures) and `dir`
//     skip: () => 'why' | undefined,                // optional: skip where the machine cannot make the case
//     timeoutMs: 30_000,                            // optional time bound (default 45 s: a loaded 2-core CI)
//     cwd: (f, dir) => dir,                         // optional working directory (default: the repo root)
//   }
// Fixtures (`f`) are made once in beforeAll: compiled models, inputs files, a tiny HF checkpoint,
// a trained run folder; see `Fixtures`. Rows must not modify them (the hash check enforces it).
//
// UNIFUSION_BAD_INPUT_REPORT=file.md writes the table of cases and the messages they produced.
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileCommand } from '../src/cli/compile.ts';
import { trainCommand } from '../src/cli/train.ts';
import { fromFloat64, type HostTensor } from '../src/io/host.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'unifusion.mjs');
const rel = (p: string) => path.relative(ROOT, p);

interface Fixtures {
  root: string;
  /** test/graphs/good.ts compiled (preset small, embedded weights): x f32[batch, 8] -> y */
  model: string;
  /** good inputs for `model` */
  inputs: string;
  /** test/graphs/tokens.ts compiled: input_ids -> embed_tokens (256 rows), latents [b, 4, 2h, 2w] -> dit patchify */
  tokens: string;
  /** good.ts preset wide compiled with --weights skeleton (its weights are external, never written) */
  skeleton: string;
  /** a model with external data (good.ts wide, --weights external) */
  external: string;
  /** a tiny qwen2 checkpoint folder (test/fixtures/vlm-text/qwen2) */
  ckpt: string;
  /** examples/train-mlp.ts trained 4 steps (checkpoints at 2 and 4) */
  run: string;
  /** a graph file with type errors, outside the repo */
  typeErrors: string;
  /** user graph files outside the repo that misuse the DSL */
  dtypeTypo: string;
  optionTypo: string;
  jsError: string;
  notTensor: string;
  topLevelThrow: string;
  trainTypeErrors: string;
  /** the tiny InternVL fixture imported (taps 1..3), and one imported with taps 1, 2 only */
  vlm: string;
  vlm12: string;
  /** a pixel-space pipeline (random-weight DiT over taps 1..3, the VLM above, 16x16, patch 4) */
  pipe: string;
  /** a PNG for --image */
  png: string;
}

interface Row {
  cmd: string;
  name: string;
  args: (f: Fixtures, dir: string) => string[];
  expect: RegExp;
  setup?: (f: Fixtures, dir: string) => void;
  teardown?: (f: Fixtures, dir: string) => void;
  watch?: (f: Fixtures, dir: string) => string[];
  skip?: () => string | undefined;
  timeoutMs?: number;
  cwd?: (f: Fixtures, dir: string) => string;
}

const f = {} as Fixtures;

const feeds = {
  good: (): Record<string, HostTensor> => ({ x: fromFloat64('f32', [2, 8], Array.from({ length: 16 }, (_, i) => Math.sin(i))) }),
};

/** Can this machine make a folder immutable (root ignores mode bits)? */
let chattrWorks: boolean | undefined;
function canChattr(): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  if (chattrWorks === undefined) {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'chattr-probe-'));
    try {
      execFileSync('chattr', ['+i', d], { stdio: 'ignore' });
      execFileSync('chattr', ['-i', d], { stdio: 'ignore' });
      chattrWorks = true;
    } catch {
      chattrWorks = false;
    }
    fs.rmSync(d, { recursive: true, force: true });
  }
  return chattrWorks ? undefined : 'cannot make a read-only folder here (running as root and chattr +i is not supported by this file system)';
}
/** A folder the command cannot write into: mode 555, or immutable when running as root. */
function readOnly(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  if (process.getuid?.() === 0) execFileSync('chattr', ['+i', dir]);
  else fs.chmodSync(dir, 0o555);
}
function writable(dir: string): void {
  if (!fs.existsSync(dir)) return;
  if (process.getuid?.() === 0) execFileSync('chattr', ['-i', dir]);
  else fs.chmodSync(dir, 0o755);
}
const roRow = { skip: canChattr, teardown: (_f: Fixtures, dir: string) => writable(path.join(dir, 'ro')) };

const copyRun = (dir: string) => fs.cpSync(f.run, path.join(dir, 'run'), { recursive: true });
const writeTensors = (file: string, t: Record<string, HostTensor>) => writeSafetensors(file, t);

const ROWS: Row[] = [
  // ---------------------------------------------------------------------------------- general
  { cmd: 'general', name: 'unknown command', args: () => ['compil', 'x.ts'], expect: /unknown command 'compil'/ },
  { cmd: 'general', name: 'unknown option', args: (_f, d) => ['compile', 'test/graphs/good.ts', '--out', path.join(d, 'o'), '--frobnicate'], expect: /unknown option '--frobnicate'/ },
  { cmd: 'general', name: 'missing required --out', args: () => ['compile', 'test/graphs/good.ts'], expect: /required option '--out <dir>' not specified/ },

  // ---------------------------------------------------------------------------------- compile
  { cmd: 'compile', name: 'graph file does not exist', args: (_f, d) => ['compile', 'test/graphs/nope.ts', '--out', path.join(d, 'o')], expect: /graph file 'test\/graphs\/nope\.ts' does not exist/ },
  { cmd: 'compile', name: 'graph path is a folder', args: (_f, d) => ['compile', 'test/graphs', '--out', path.join(d, 'o')], expect: /graph file 'test\/graphs' is not a file/ },
  { cmd: 'compile', name: 'syntax error', args: (_f, d) => ['compile', 'test/graphs/syntax-error.ts', '--out', path.join(d, 'o')], expect: /cannot build graph file 'test\/graphs\/syntax-error\.ts':\n\s+test\/graphs\/syntax-error\.ts:1:\d+: Unexpected ";"/ },
  { cmd: 'compile', name: 'no default export', args: (_f, d) => ['compile', 'test/graphs/no-default.ts', '--out', path.join(d, 'o')], expect: /graph file 'test\/graphs\/no-default\.ts' must default-export defineGraph/ },
  { cmd: 'compile', name: 'unknown preset', args: (_f, d) => ['compile', 'test/graphs/good.ts', '--preset', 'huge', '--out', path.join(d, 'o')], expect: /unknown preset 'huge' \(known: small, wide\)/ },
  { cmd: 'compile', name: 'unknown --weights mode', args: (_f, d) => ['compile', 'test/graphs/good.ts', '--weights', 'cloud', '--out', path.join(d, 'o')], expect: /--weights must be one of auto, embed, external, skeleton, inputs, got 'cloud'/ },
  { cmd: 'compile', name: 'TypeScript type errors (esbuild alone would compile it)', args: (f, d) => ['compile', f.typeErrors, '--out', path.join(d, 'o')], expect: /graph file '.*typed\.ts' has 3 type errors.*\n\s+.*typed\.ts:8:26 - error TS2345: Argument of type '"f16x"'.*\n\s+.*typed\.ts:9:\d+ - error TS2322.*\n\s+.*typed\.ts:11:\d+ - error TS2353: .*'bais'/, timeoutMs: 90_000 },
  { cmd: 'compile', name: "dtype typo 'f16x' (--no-typecheck)", args: (f, d) => ['compile', f.dtypeTypo, '--out', path.join(d, 'o'), '--no-typecheck'], expect: /dtype\.ts:7: input 'a': unknown dtype 'f16x' \(known: f32, f16, bf16, f64, i64, i32, bool\); did you mean 'f16'\?/ },
  { cmd: 'compile', name: "option typo 'bais' (--no-typecheck)", args: (f, d) => ['compile', f.optionTypo, '--out', path.join(d, 'o'), '--no-typecheck'], expect: /option\.ts:3: Linear: unknown option 'bais' \(known: bias, dtype, std\); did you mean 'bias'\?/ },
  { cmd: 'compile', name: 'JavaScript TypeError in graph code', args: (f, d) => ['compile', f.jsError, '--out', path.join(d, 'o'), '--no-typecheck'], expect: /jserror\.ts:9: while tracing graph 'jserror': TypeError: Cannot read properties of undefined/ },
  { cmd: 'compile', name: 'build returns a non-tensor output', args: (f, d) => ['compile', f.notTensor, '--out', path.join(d, 'o'), '--no-typecheck'], expect: /graph 'nottensor': output 'y' is not a Tensor/ },
  { cmd: 'compile', name: 'graph file throws at import', args: (f, d) => ['compile', f.topLevelThrow, '--out', path.join(d, 'o'), '--no-typecheck'], expect: /toplevel\.ts:3: while tracing graph 'toplevel\.ts': TypeError/ },
  { cmd: 'compile', name: 'shape error', args: (_f, d) => ['compile', 'test/graphs/shape-error.ts', '--out', path.join(d, 'o'), '--no-typecheck'], expect: /^error: test\/graphs\/shape-error\.ts:9: matmul\(f32\[2, 3\], f32\[4, 5\]\): matmul inner dims differ/ },
  { cmd: 'compile', name: '--out under /proc', args: () => ['compile', 'test/graphs/good.ts', '--out', '/proc/unifusion-x', '--no-typecheck'], expect: /--out '\/proc\/unifusion-x': '\/proc' is a virtual file system that cannot hold outputs/, timeoutMs: 20_000 },
  { cmd: 'compile', name: '--out deep under /proc', args: () => ['compile', 'test/graphs/good.ts', '--out', '/proc/self/unifusion/x', '--no-typecheck'], expect: /--out '\/proc\/self\/unifusion\/x': .* is on \/proc, a virtual file system/, timeoutMs: 20_000 },
  { cmd: 'compile', name: '--out under /sys', args: () => ['compile', 'test/graphs/good.ts', '--out', '/sys/unifusion-x', '--no-typecheck'], expect: /--out '\/sys\/unifusion-x': '\/sys' is a virtual file system/, timeoutMs: 20_000 },
  { cmd: 'compile', name: '--out is a file', setup: (_f, d) => fs.writeFileSync(path.join(d, 'file'), 'mine'), args: (_f, d) => ['compile', 'test/graphs/good.ts', '--out', path.join(d, 'file'), '--no-typecheck'], expect: /--out '.*file' is a file, not a folder/ },
  { cmd: 'compile', name: '--out below a file', setup: (_f, d) => fs.writeFileSync(path.join(d, 'file'), 'mine'), args: (_f, d) => ['compile', 'test/graphs/good.ts', '--out', path.join(d, 'file', 'sub'), '--no-typecheck'], expect: /--out '.*file\/sub': '.*file' is a file, not a folder/ },
  { cmd: 'compile', name: '--out in a read-only folder', ...roRow, setup: (_f, d) => readOnly(path.join(d, 'ro')), args: (_f, d) => ['compile', 'test/graphs/good.ts', '--out', path.join(d, 'ro', 'a', 'b'), '--no-typecheck'], expect: /--out '.*ro\/a\/b': cannot create folders in '.*ro': (operation not permitted|permission denied)/ },
  { cmd: 'compile', name: '--out is a read-only folder', ...roRow, setup: (_f, d) => readOnly(path.join(d, 'ro')), args: (_f, d) => ['compile', 'test/graphs/good.ts', '--out', path.join(d, 'ro'), '--no-typecheck'], expect: /--out '.*ro': cannot write into '.*ro': (operation not permitted|permission denied)/ },
  {
    cmd: 'compile',
    name: "--out holds another model's files",
    setup: (_f, d) => (fs.mkdirSync(path.join(d, 'other')), fs.writeFileSync(path.join(d, 'other', 'model.onnx'), 'x'), fs.writeFileSync(path.join(d, 'other', 'model.onnx.data'), 'y')),
    args: (_f, d) => ['compile', 'test/graphs/good.ts', '--out', path.join(d, 'other'), '--no-typecheck'],
    expect: /--out '.*other' already holds files unifusion did not write \('model\.onnx', 'model\.onnx\.data'\); choose an empty or new folder, or pass --force/,
  },
  {
    cmd: 'compile',
    name: '--force, but a user file has the name of an output',
    setup: (_f, d) => (fs.mkdirSync(path.join(d, 'other')), fs.writeFileSync(path.join(d, 'other', 'mlp.onnx'), 'the user model')),
    args: (_f, d) => ['compile', 'test/graphs/good.ts', '--out', path.join(d, 'other'), '--force', '--no-typecheck'],
    expect: /--out: '.*other\/mlp\.onnx' exists and was not written by unifusion; it is kept, and nothing was written/,
  },
  { cmd: 'compile', name: '--out is the graph file', setup: (_f, d) => fs.copyFileSync(path.join(ROOT, 'test/graphs/good.ts'), path.join(d, 'g.ts')), args: (_f, d) => ['compile', path.join(d, 'g.ts'), '--out', path.join(d, 'g.ts'), '--no-typecheck'], expect: /--out '.*g\.ts' is the input <graph> '.*g\.ts'/ },
  { cmd: 'compile', name: "--out is the graph file's folder", setup: (_f, d) => fs.copyFileSync(path.join(ROOT, 'test/graphs/good.ts'), path.join(d, 'g.ts')), args: (_f, d) => ['compile', path.join(d, 'g.ts'), '--out', d, '--force', '--no-typecheck'], expect: /--out '.*' contains the input <graph> '.*g\.ts'; choose an output path that does not hold the inputs/ },
  { cmd: 'compile', name: '--out inside the graph file path', setup: (_f, d) => fs.copyFileSync(path.join(ROOT, 'test/graphs/good.ts'), path.join(d, 'g.ts')), args: (_f, d) => ['compile', path.join(d, 'g.ts'), '--out', path.join(d, 'g.ts', 'o'), '--no-typecheck'], expect: /--out '.*g\.ts\/o' lies inside the input <graph>/ },
  {
    cmd: 'compile',
    name: "--out is a symlink to the graph file's folder",
    setup: (_f, d) => (fs.mkdirSync(path.join(d, 'src')), fs.copyFileSync(path.join(ROOT, 'test/graphs/good.ts'), path.join(d, 'src', 'g.ts')), fs.symlinkSync(path.join(d, 'src'), path.join(d, 'link'))),
    args: (_f, d) => ['compile', path.join(d, 'src', 'g.ts'), '--out', path.join(d, 'link'), '--force', '--no-typecheck'],
    expect: /--out '.*link' contains the input <graph>/,
  },

  // ---------------------------------------------------------------------------------- run
  { cmd: 'run', name: 'model file does not exist', args: (f, d) => ['run', path.join(d, 'nope.onnx'), '--inputs', f.inputs, '--out', path.join(d, 'o.safetensors')], expect: /model file '.*nope\.onnx' does not exist/ },
  { cmd: 'run', name: 'model is not ONNX', setup: (_f, d) => fs.writeFileSync(path.join(d, 'm.onnx'), 'hello, not a model'), args: (f, d) => ['run', path.join(d, 'm.onnx'), '--inputs', f.inputs, '--out', path.join(d, 'o.safetensors')], expect: /cannot load model '.*m\.onnx' on device 'cpu': not an ONNX model/ },
  { cmd: 'run', name: 'model path is a folder', setup: (_f, d) => fs.mkdirSync(path.join(d, 'm.onnx')), args: (f, d) => ['run', path.join(d, 'm.onnx'), '--inputs', f.inputs, '--out', path.join(d, 'o.safetensors')], expect: /model path '.*m\.onnx' is not a file/ },
  { cmd: 'run', name: 'inputs file does not exist', args: (f, d) => ['run', f.model, '--inputs', path.join(d, 'in.safetensors'), '--out', path.join(d, 'o.safetensors')], expect: /inputs file '.*in\.safetensors' does not exist/ },
  { cmd: 'run', name: 'inputs file is not safetensors', setup: (_f, d) => fs.writeFileSync(path.join(d, 'in.safetensors'), 'not tensors'), args: (f, d) => ['run', f.model, '--inputs', path.join(d, 'in.safetensors'), '--out', path.join(d, 'o.safetensors')], expect: /in\.safetensors/ },
  { cmd: 'run', name: 'an input is missing', setup: (_f, d) => writeTensors(path.join(d, 'in.safetensors'), { other: fromFloat64('f32', [1], [1]) }), args: (f, d) => ['run', f.model, '--inputs', path.join(d, 'in.safetensors'), '--out', path.join(d, 'o.safetensors')], expect: /inputs file '.*in\.safetensors': unknown input 'other': the model's inputs are 'x'/ },
  { cmd: 'run', name: 'input with the wrong dtype', setup: (_f, d) => writeTensors(path.join(d, 'in.safetensors'), { x: fromFloat64('f64', [2, 8], new Float64Array(16)) }), args: (f, d) => ['run', f.model, '--inputs', path.join(d, 'in.safetensors'), '--out', path.join(d, 'o.safetensors')], expect: /input 'x': dtype mismatch: expected f32, given f64/ },
  { cmd: 'run', name: 'input with the wrong rank', setup: (_f, d) => writeTensors(path.join(d, 'in.safetensors'), { x: fromFloat64('f32', [8], new Float64Array(8)) }), args: (f, d) => ['run', f.model, '--inputs', path.join(d, 'in.safetensors'), '--out', path.join(d, 'o.safetensors')], expect: /input 'x': rank mismatch: expected rank 2 \[batch, 8\], given rank 1 f32\[8\]/ },
  { cmd: 'run', name: 'input with a wrong static dim', setup: (_f, d) => writeTensors(path.join(d, 'in.safetensors'), { x: fromFloat64('f32', [2, 7], new Float64Array(14)) }), args: (f, d) => ['run', f.model, '--inputs', path.join(d, 'in.safetensors'), '--out', path.join(d, 'o.safetensors')], expect: /input 'x': dim 1 mismatch: expected 8, given 7/ },
  {
    cmd: 'run',
    name: 'token id outside the vocabulary',
    setup: (_f, d) => writeTensors(path.join(d, 'in.safetensors'), { input_ids: fromFloat64('i64', [1, 3], [3, 1672, 5]), latents: fromFloat64('f32', [1, 4, 4, 4], new Float64Array(64).fill(0.5)) }),
    args: (f, d) => ['run', f.tokens, '--inputs', path.join(d, 'in.safetensors'), '--out', path.join(d, 'o.safetensors')],
    expect: /input 'input_ids' holds 1672 at \[0, 1\], but the vocabulary of 'embed_tokens' has 256 entries \('embed_tokens\.weight' is \[256, 8\]\), so its values must lie in 0\.\.255 \(Gather node 'embed_tokens\/Gather_0', in module 'embed_tokens', made at test\/graphs\/tokens\.ts:25\)/,
  },
  {
    cmd: 'run',
    name: 'odd latent size that the 2x2 patchify cannot split',
    setup: (_f, d) => writeTensors(path.join(d, 'in.safetensors'), { input_ids: fromFloat64('i64', [1, 2], [3, 4]), latents: fromFloat64('f32', [1, 4, 9, 8], new Float64Array(288).fill(0.5)) }),
    args: (f, d) => ['run', f.tokens, '--inputs', path.join(d, 'in.safetensors'), '--out', path.join(d, 'o.safetensors')],
    expect: /input 'latents': dim 2 is 9, but the model declares it as h\*2, so it must be a multiple of 2/,
  },
  { cmd: 'run', name: 'model compiled with --weights skeleton', args: (f, d) => ['run', f.skeleton, '--inputs', f.inputs, '--out', path.join(d, 'o.safetensors')], expect: /model '.*mlp\.onnx' was compiled with --weights skeleton: its weights were never written, so every output would be wrong; compile it with --weights embed or --weights external .*import-hf/ },
  { cmd: 'run', name: '--device cuda without the CUDA execution provider', args: (f, d) => ['run', f.model, '--inputs', f.inputs, '--out', path.join(d, 'o.safetensors'), '--device', 'cuda'], expect: /the CUDA execution provider is not available .*npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12/ },
  { cmd: 'run', name: 'unknown --device', args: (f, d) => ['run', f.model, '--inputs', f.inputs, '--out', path.join(d, 'o.safetensors'), '--device', 'tpu'], expect: /unknown device 'tpu'; onnxruntime-node here offers: cpu/ },
  { cmd: 'run', name: '--out is the model file', args: (f) => ['run', f.model, '--inputs', f.inputs, '--out', f.model, '--force'], expect: /--out '.*mlp\.onnx' is the input <model>/ },
  { cmd: 'run', name: '--out is the inputs file', args: (f) => ['run', f.model, '--inputs', f.inputs, '--out', f.inputs, '--force'], expect: /--out '.*inputs\.safetensors' is the input --inputs/ },
  { cmd: 'run', name: "--out is the model's external data", args: (f) => ['run', f.external, '--inputs', f.inputs, '--out', path.join(path.dirname(f.external), 'mlp.onnx.data'), '--force'], expect: /--out '.*mlp\.onnx\.data' is the input \(the model's external data\)/ },
  { cmd: 'run', name: '--out is a folder', args: (f, d) => ['run', f.model, '--inputs', f.inputs, '--out', d], expect: /--out '.*' is a folder; give a file path/ },
  { cmd: 'run', name: '--out is a file unifusion did not write', setup: (_f, d) => fs.writeFileSync(path.join(d, 'o.safetensors'), 'precious'), args: (f, d) => ['run', f.model, '--inputs', f.inputs, '--out', path.join(d, 'o.safetensors')], expect: /--out '.*o\.safetensors' already exists and was not written by unifusion; pass --force to replace it/ },
  { cmd: 'run', name: '--out under /proc', args: (f) => ['run', f.model, '--inputs', f.inputs, '--out', '/proc/unifusion-x/o.safetensors'], expect: /--out '\/proc\/unifusion-x\/o\.safetensors': '\/proc' is a virtual file system/, timeoutMs: 20_000 },
  { cmd: 'run', name: '--out in a read-only folder', ...roRow, setup: (_f, d) => readOnly(path.join(d, 'ro')), args: (f, d) => ['run', f.model, '--inputs', f.inputs, '--out', path.join(d, 'ro', 'o.safetensors')], expect: /--out '.*ro\/o\.safetensors': cannot write into '.*ro': (operation not permitted|permission denied)/ },
  {
    cmd: 'run',
    name: 'external data file missing',
    setup: (f, d) => fs.copyFileSync(f.external, path.join(d, 'mlp.onnx')),
    args: (f, d) => ['run', path.join(d, 'mlp.onnx'), '--inputs', f.inputs, '--out', path.join(d, 'o.safetensors')],
    expect: /mlp\.onnx: tensor '.*': external data location 'mlp\.onnx\.data' does not exist/,
  },

  // ---------------------------------------------------------------------------------- inspect
  { cmd: 'inspect', name: 'model file does not exist', args: (_f, d) => ['inspect', path.join(d, 'nope.onnx')], expect: /model file '.*nope\.onnx' does not exist/ },
  { cmd: 'inspect', name: 'model is not ONNX', setup: (_f, d) => fs.writeFileSync(path.join(d, 'm.onnx'), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])), args: (_f, d) => ['inspect', path.join(d, 'm.onnx')], expect: /'.*m\.onnx' is not an ONNX model/ },
  { cmd: 'inspect', name: 'model path is a folder', args: (_f, d) => ['inspect', d], expect: /model path '.*' is not a file/ },

  // ---------------------------------------------------------------------------------- train
  { cmd: 'train', name: 'train file does not exist', args: (_f, d) => ['train', 'examples/nope.ts', '--steps', '2', '--out', path.join(d, 'o')], expect: /train file 'examples\/nope\.ts' does not exist/ },
  { cmd: 'train', name: 'not a train definition', args: (_f, d) => ['train', 'examples/transformer.ts', '--steps', '2', '--out', path.join(d, 'o'), '--no-typecheck'], expect: /train file 'examples\/transformer\.ts' must default-export defineTrainStep/ },
  { cmd: 'train', name: '--steps 0', args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '0', '--out', path.join(d, 'o')], expect: /--steps must be a positive integer, got '0'/ },
  { cmd: 'train', name: '--steps abc', args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', 'abc', '--out', path.join(d, 'o')], expect: /--steps must be a positive integer, got 'abc'/ },
  { cmd: 'train', name: '--lr -1', args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '2', '--lr', '-1', '--out', path.join(d, 'o')], expect: /--lr must be a non-negative number, got '-1'/ },
  { cmd: 'train', name: '--min-lr above --lr', args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '2', '--lr', '0.001', '--min-lr', '0.01', '--out', path.join(d, 'o'), '--no-typecheck'], expect: /--min-lr 0\.01 is above the peak --lr 0\.001/ },
  { cmd: 'train', name: '--resume into a folder that does not exist', args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '8', '--out', path.join(d, 'o'), '--resume'], expect: /--resume: '.*o' does not exist; run without --resume to start a new run/ },
  { cmd: 'train', name: '--resume into a folder without checkpoints', setup: (_f, d) => fs.mkdirSync(path.join(d, 'o')), args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '8', '--out', path.join(d, 'o'), '--resume'], expect: /--resume: '.*o' holds no checkpoint to resume from \(no checkpoints\/ folder\); run without --resume/ },
  { cmd: 'train', name: 'an earlier run without --resume', setup: (_f, d) => copyRun(d), args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '8', '--out', path.join(d, 'run')], expect: /--out '.*run' holds an earlier run \('checkpoints\/step-000000002\.safetensors', .*\); pass --resume to continue it/ },
  { cmd: 'train', name: 'resume with a different --lr', setup: (_f, d) => copyRun(d), args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '8', '--lr', '0.5', '--out', path.join(d, 'run'), '--resume', '--no-typecheck'], expect: /--lr 0\.5 differs from the resumed run's 0\.01 \(recorded in .*step-000000004\.safetensors\): a resumed run keeps its learning-rate schedule/ },
  { cmd: 'train', name: 'resume with a different --seed', setup: (_f, d) => copyRun(d), args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '8', '--seed', '7', '--out', path.join(d, 'run'), '--resume', '--no-typecheck'], expect: /cannot resume from '.*step-000000004\.safetensors': it was trained with seed 0, the trainer was given seed 7/ },
  {
    cmd: 'train',
    name: 'latest checkpoint truncated',
    setup: (_f, d) => (copyRun(d), fs.truncateSync(path.join(d, 'run', 'checkpoints', 'step-000000004.safetensors'), 100)),
    args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '8', '--out', path.join(d, 'run'), '--resume', '--no-typecheck'],
    expect: /checkpoint '.*step-000000004\.safetensors' is unreadable \(truncated or corrupt\)/,
  },
  { cmd: 'train', name: 'type errors in the train file', args: (f, d) => ['train', f.trainTypeErrors, '--steps', '2', '--out', path.join(d, 'o')], expect: /train file '.*train-typed\.ts' has 1 type error .*\n\s+.*train-typed\.ts:\d+:\d+ - error TS2322/, timeoutMs: 90_000 },
  { cmd: 'train', name: '--out under /proc', args: () => ['train', 'examples/train-mlp.ts', '--steps', '2', '--out', '/proc/unifusion-x'], expect: /--out '\/proc\/unifusion-x': '\/proc' is a virtual file system/, timeoutMs: 20_000 },
  { cmd: 'train', name: '--out holds files unifusion did not write', setup: (_f, d) => (fs.mkdirSync(path.join(d, 'o')), fs.writeFileSync(path.join(d, 'o', 'notes.txt'), 'x')), args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '2', '--out', path.join(d, 'o')], expect: /--out '.*o' already holds files unifusion did not write \('notes\.txt'\)/ },
  { cmd: 'train', name: '--out is the train file', setup: (_f, d) => fs.copyFileSync(path.join(ROOT, 'examples/train-mlp.ts'), path.join(d, 't.ts')), args: (_f, d) => ['train', path.join(d, 't.ts'), '--steps', '2', '--out', path.join(d, 't.ts')], expect: /--out '.*t\.ts' is the input <train-graph>/ },
  { cmd: 'train', name: "--out is the train file's folder", args: () => ['train', 'examples/train-mlp.ts', '--steps', '2', '--out', 'examples', '--force'], expect: /--out 'examples' contains the input <train-graph> 'examples\/train-mlp\.ts'/ },
  { cmd: 'train', name: '--out in a read-only folder', ...roRow, setup: (_f, d) => readOnly(path.join(d, 'ro')), args: (_f, d) => ['train', 'examples/train-mlp.ts', '--steps', '2', '--out', path.join(d, 'ro', 'run')], expect: /--out '.*ro\/run': cannot create folders in '.*ro': (operation not permitted|permission denied)/ },

  // ---------------------------------------------------------------------------------- import-hf
  { cmd: 'import-hf', name: 'checkpoint folder does not exist', args: (_f, d) => ['import-hf', path.join(d, 'nope'), '--out', path.join(d, 'o')], expect: /nope\/config\.json: not found/ },
  { cmd: 'import-hf', name: '--out is the checkpoint (with --force)', setup: (f, d) => fs.cpSync(f.ckpt, path.join(d, 'ck'), { recursive: true }), args: (_f, d) => ['import-hf', path.join(d, 'ck'), '--out', path.join(d, 'ck'), '--force'], expect: /--out '.*ck' is the input <checkpoint> '.*ck': writing there would destroy it/ },
  { cmd: 'import-hf', name: "--out is the checkpoint's parent (with --force)", setup: (f, d) => fs.cpSync(f.ckpt, path.join(d, 'ck'), { recursive: true }), args: (_f, d) => ['import-hf', path.join(d, 'ck'), '--out', d, '--force'], expect: /--out '.*' contains the input <checkpoint> '.*ck'/ },
  { cmd: 'import-hf', name: '--out inside the checkpoint', setup: (f, d) => fs.cpSync(f.ckpt, path.join(d, 'ck'), { recursive: true }), args: (_f, d) => ['import-hf', path.join(d, 'ck'), '--out', path.join(d, 'ck', 'onnx')], expect: /--out '.*ck\/onnx' lies inside the input <checkpoint>/ },
  {
    cmd: 'import-hf',
    name: 'config.json declares more layers than the checkpoint holds',
    setup: (f, d) => {
      fs.cpSync(f.ckpt, path.join(d, 'ck'), { recursive: true });
      const c = JSON.parse(fs.readFileSync(path.join(d, 'ck', 'config.json'), 'utf8'));
      const types = Array.isArray(c.layer_types) ? { layer_types: [...c.layer_types, c.layer_types[0], c.layer_types[0]] } : {};
      fs.writeFileSync(path.join(d, 'ck', 'config.json'), JSON.stringify({ ...c, num_hidden_layers: 6, ...types }));
    },
    args: (_f, d) => ['import-hf', path.join(d, 'ck'), '--out', path.join(d, 'o'), '--taps', 'list:1,2'],
    expect: /ck\/config\.json declares layers the checkpoint in .*ck does not hold \(layers 4\.\.5\): missing 'model\.layers\.4\..*'.*every declared layer is checked, tapped or not/,
  },
  {
    cmd: 'import-hf',
    name: 'unknown architecture',
    setup: (_f, d) => (fs.mkdirSync(path.join(d, 'ck')), fs.writeFileSync(path.join(d, 'ck', 'config.json'), JSON.stringify({ model_type: 'mamba' }))),
    args: (_f, d) => ['import-hf', path.join(d, 'ck'), '--out', path.join(d, 'o')],
    expect: /ck\/config\.json: unsupported architecture \(model_type 'mamba'\); supported: /,
  },
  { cmd: 'import-hf', name: 'bad --taps', args: (f, d) => ['import-hf', f.ckpt, '--out', path.join(d, 'o'), '--taps', 'every:0'], expect: /tap spec 'every:0'/ },
  { cmd: 'import-hf', name: 'bad --dtype', args: (f, d) => ['import-hf', f.ckpt, '--out', path.join(d, 'o'), '--dtype', 'f8'], expect: /--dtype must be f32, f16 or bf16, got 'f8'/ },
  {
    cmd: 'import-hf',
    name: 'truncated weights file',
    setup: (f, d) => (fs.cpSync(f.ckpt, path.join(d, 'ck'), { recursive: true }), fs.truncateSync(path.join(d, 'ck', 'model.safetensors'), 5000)),
    args: (_f, d) => ['import-hf', path.join(d, 'ck'), '--out', path.join(d, 'o')],
    expect: /model\.safetensors/,
  },
  { cmd: 'import-hf', name: '--out under /proc', args: (f) => ['import-hf', f.ckpt, '--out', '/proc/unifusion-x'], expect: /--out '\/proc\/unifusion-x': '\/proc' is a virtual file system/, timeoutMs: 20_000 },
  { cmd: 'import-hf', name: '--out holds files unifusion did not write', setup: (_f, d) => (fs.mkdirSync(path.join(d, 'o')), fs.writeFileSync(path.join(d, 'o', 'keep.txt'), 'x')), args: (f, d) => ['import-hf', f.ckpt, '--out', path.join(d, 'o')], expect: /--out '.*o' already holds files unifusion did not write \('keep\.txt'\)/ },
  { cmd: 'import-hf', name: '--out is a file', setup: (_f, d) => fs.writeFileSync(path.join(d, 'o'), 'x'), args: (f, d) => ['import-hf', f.ckpt, '--out', path.join(d, 'o')], expect: /--out '.*o' is a file, not a folder/ },

  // ------------------------------------------------------------ sample / edit / assemble / train --dataset --vlm
  { cmd: 'sample', name: '--steps 0', args: (f, d) => ['sample', '--pipeline', f.pipe, '--prompt', 'a cat', '--steps', '0', '--out', path.join(d, 'o')], expect: /--steps must be a positive integer, got '0'/ },
  { cmd: 'sample', name: '--guidance -1', args: (f, d) => ['sample', '--pipeline', f.pipe, '--prompt', 'a cat', '--guidance', '-1', '--out', path.join(d, 'o')], expect: /--guidance must be a non-negative number, got '-1'/ },
  { cmd: 'sample', name: '--guidance abc', args: (f, d) => ['sample', '--pipeline', f.pipe, '--prompt', 'a cat', '--guidance', 'abc', '--out', path.join(d, 'o')], expect: /--guidance must be a non-negative number, got 'abc'/ },
  { cmd: 'sample', name: '--size the patchify cannot split', args: (f, d) => ['sample', '--pipeline', f.pipe, '--prompt', 'a cat', '--size', '18x16', '--out', path.join(d, 'o')], expect: /--size 18x16: the width 18 is not a multiple of 4 .*try 16 or 20/ },
  { cmd: 'sample', name: 'no prompt', args: (f, d) => ['sample', '--pipeline', f.pipe, '--out', path.join(d, 'o')], expect: /give --prompt "\.\.\." or --prompts FILE\.txt/ },
  { cmd: 'sample', name: '--vlm-batch 0', args: (f, d) => ['sample', '--pipeline', f.pipe, '--prompt', 'a cat', '--vlm-batch', '0', '--out', path.join(d, 'o')], expect: /--vlm-batch must be a positive integer, got '0'/ },
  { cmd: 'sample', name: 'not a pipeline folder', args: (f, d) => ['sample', '--pipeline', f.vlm, '--prompt', 'a cat', '--out', path.join(d, 'o')], expect: /--pipeline '.*vlm': no pipeline\.json there/ },
  {
    cmd: 'sample',
    name: 'a missing pipeline part',
    setup: (f, d) => (fs.cpSync(f.pipe, path.join(d, 'p'), { recursive: true }), fs.rmSync(path.join(d, 'p', 'vlm', 'config.json'))),
    args: (_f, d) => ['sample', '--pipeline', path.join(d, 'p'), '--prompt', 'a cat', '--out', path.join(d, 'o')],
    expect: /pipeline '.*p' is incomplete: missing part file 'vlm\/config\.json'/,
  },
  {
    cmd: 'sample',
    name: 'a pipeline file changed since assembly',
    setup: (f, d) => (fs.cpSync(f.pipe, path.join(d, 'p'), { recursive: true }), fs.appendFileSync(path.join(d, 'p', 'vlm', 'tokenizer_config.json'), ' ')),
    args: (_f, d) => ['sample', '--pipeline', path.join(d, 'p'), '--prompt', 'a cat', '--out', path.join(d, 'o')],
    expect: /'vlm\/tokenizer_config\.json' does not match the sha256 in pipeline\.json/,
  },
  { cmd: 'sample', name: '--out in a read-only folder', ...roRow, setup: (_f, d) => readOnly(path.join(d, 'ro')), args: (f, d) => ['sample', '--pipeline', f.pipe, '--prompt', 'a cat', '--guidance', '1', '--out', path.join(d, 'ro', 's')], expect: /--out '.*ro\/s': cannot create folders in '.*ro': (operation not permitted|permission denied)/ },
  { cmd: 'sample', name: '--out inside the pipeline', args: (f) => ['sample', '--pipeline', f.pipe, '--prompt', 'a cat', '--out', path.join(f.pipe, 'samples')], expect: /--out '.*pipe\/samples' lies inside the input --pipeline/ },
  { cmd: 'edit', name: 'no --image', args: (f, d) => ['edit', '--pipeline', f.pipe, '--prompt', 'make it red', '--out', path.join(d, 'o')], expect: /edit needs at least one --image/ },
  { cmd: 'edit', name: '--image is not an image', setup: (_f, d) => fs.writeFileSync(path.join(d, 'x.png'), 'text'), args: (f, d) => ['edit', '--pipeline', f.pipe, '--image', path.join(d, 'x.png'), '--out', path.join(d, 'o')], expect: /--image '.*x\.png': cannot read the image \(.*not a readable PNG, JPEG or WebP/ },
  { cmd: 'assemble', name: '--vlm lacks a tap the DiT takes', args: (f, d) => ['assemble', '--vlm', f.vlm12, '--dit', path.join(path.dirname(f.pipe), 'dit', 'unifusion.onnx'), '--out', path.join(d, 'o')], expect: /--vlm '.*vlm12' does not emit hidden_states\.3, which the DiT takes .*--taps list:1,2,3/ },
  { cmd: 'assemble', name: '--steps 0', args: (f, d) => ['assemble', '--vlm', f.vlm, '--dit', path.join(path.dirname(f.pipe), 'dit', 'unifusion.onnx'), '--steps', '0', '--out', path.join(d, 'o')], expect: /--steps must be a positive integer, got '0'/ },
  {
    cmd: 'train',
    name: '--dataset --vlm is not a VLM package',
    setup: (f, d) => (fs.mkdirSync(path.join(d, 'ds')), fs.copyFileSync(f.png, path.join(d, 'ds', 'a.png')), fs.writeFileSync(path.join(d, 'ds', 'rows.jsonl'), '{"image": "a.png", "caption": "x"}\n')),
    args: (f, d) => ['train', 'graphs/unifusion.ts', '--preset', 'tiny-pixel', '--dataset', path.join(d, 'ds'), '--vlm', f.ckpt, '--size', '16x16', '--steps', '1', '--out', path.join(d, 'run'), '--no-typecheck'],
    expect: /--vlm: .*qwen2 is not a VLM package: no manifest\.json/,
  },

  // ---------------------------------------------------------------------------------- demo
  { cmd: 'demo', name: '--n 0', args: (_f, d) => ['demo', '--n', '0', '--out', path.join(d, 'o')], expect: /demo: --n must be an integer >= 1, got 0/ },
  { cmd: 'demo', name: '--steps 0', args: (_f, d) => ['demo', '--steps', '0', '--out', path.join(d, 'o')], expect: /demo: --steps must be an integer >= 1, got 0/ },
  { cmd: 'demo', name: '--pipeline without pipeline.json', args: (_f, d) => ['demo', '--pipeline', d, '--out', path.join(d, 'o')], expect: /demo: --pipeline '.*' has no pipeline\.json/ },
  { cmd: 'demo', name: '--out under /proc', args: () => ['demo', '--out', '/proc/unifusion-x'], expect: /--out '\/proc\/unifusion-x': '\/proc' is a virtual file system/, timeoutMs: 20_000 },
  {
    cmd: 'demo',
    name: '--out/train holds files the demo did not write (it used to rm -rf them)',
    setup: (_f, d) => (fs.mkdirSync(path.join(d, 'o', 'train'), { recursive: true }), fs.writeFileSync(path.join(d, 'o', 'train', 'my-notes.txt'), 'keep me')),
    args: (_f, d) => ['demo', '--out', path.join(d, 'o')],
    expect: /--out '.*o' already holds files unifusion did not write \('train'\)/,
  },
  { cmd: 'demo', name: '--out in a read-only folder', ...roRow, setup: (_f, d) => readOnly(path.join(d, 'ro')), args: (_f, d) => ['demo', '--out', path.join(d, 'ro', 'demo')], expect: /--out '.*ro\/demo': cannot create folders in '.*ro': (operation not permitted|permission denied)/ },
];

// --------------------------------------------------------------------------------------------

/** path -> sha256 of every file (and symlink target) under the given roots; folders as entries. */
function snapshot(roots: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string) => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      return;
    }
    if (st.isSymbolicLink()) out[p] = `link:${fs.readlinkSync(p)}`;
    else if (st.isDirectory()) {
      out[`${p}/`] = 'dir';
      for (const e of fs.readdirSync(p)) walk(path.join(p, e));
    } else out[p] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  };
  for (const r of roots) walk(r);
  return out;
}

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  pid: number | undefined;
}

function cli(args: string[], cwd: string, timeoutMs: number): Promise<Ran> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.UNIFUSION_DEBUG; // the no-stack-trace behaviour is part of what is tested
    delete env.UNIFUSION_VERBOSE;
    const t0 = performance.now();
    const child = execFile(process.execPath, [BIN, ...args], { cwd, env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
      resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, signal: e?.signal ?? null, stdout, stderr, ms: performance.now() - t0, pid: child.pid });
    });
  });
}

const report: { cmd: string; name: string; line: string; message: string; ms: number }[] = [];

beforeAll(async () => {
  f.root = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-bad-inputs-'));
  const fx = (p: string) => path.join(f.root, 'fixtures', p);
  fs.mkdirSync(fx(''), { recursive: true });
  await compileCommand('test/graphs/good.ts', { out: fx('model'), preset: 'small', quiet: true, typecheck: false });
  f.model = fx('model/mlp.onnx');
  f.inputs = fx('inputs.safetensors');
  writeSafetensors(f.inputs, feeds.good());
  // through the CLI: under vitest's module transform the bundle's line numbers would be vitest's, not the file's
  const made = await cli(['compile', 'test/graphs/tokens.ts', '--out', fx('tokens'), '--no-typecheck'], ROOT, 120_000);
  if (made.code !== 0) throw new Error(`compiling the tokens fixture failed: ${made.stderr}`);
  f.tokens = fx('tokens/tokens.onnx');
  await compileCommand('test/graphs/good.ts', { out: fx('skeleton'), preset: 'wide', weights: 'skeleton', quiet: true, typecheck: false });
  f.skeleton = fx('skeleton/mlp.onnx');
  await compileCommand('test/graphs/good.ts', { out: fx('external'), preset: 'wide', weights: 'external', quiet: true, typecheck: false });
  f.external = fx('external/mlp.onnx');
  fs.cpSync(path.join(ROOT, 'test/fixtures/vlm-text/qwen2'), fx('qwen2'), { recursive: true });
  fs.rmSync(fx('qwen2/io.safetensors'));
  f.ckpt = fx('qwen2');
  await trainCommand('examples/train-mlp.ts', { steps: 4, checkpointEvery: 2, keep: 3, seed: 0, out: fx('run'), quiet: true, progress: false, typecheck: false, intraOpThreads: 1 });
  f.run = fx('run');
  {
    // the diffusion commands' fixtures: a VLM package, a DiT over its taps, a pipeline
    const { importHf } = await import('../src/cli/import-hf.ts');
    const { assemble } = await import('../runtime/pipeline/index.ts');
    const { compileGraph, writeCompiled } = await import('../src/compiler.ts');
    const { PRESETS, VLMS } = await import('../graphs/presets.ts');
    const { ditGraph, randomParams } = await import('./helpers/pipeline-fixtures.ts');
    const { encodePng } = await import('../runtime/images/png.ts');
    await importHf(path.join(ROOT, 'test/fixtures/vlm-gen/internvl'), { out: fx('vlm'), taps: 'list:1,2,3' });
    await importHf(path.join(ROOT, 'test/fixtures/vlm-gen/internvl'), { out: fx('vlm12'), taps: 'list:1,2' });
    f.vlm = fx('vlm');
    f.vlm12 = fx('vlm12');
    const g = ditGraph({ ...PRESETS['tiny-pixel']!, vlm: { ...VLMS.tiny, layers: 3 }, taps: [1, 2, 3] });
    await writeCompiled(fx('dit'), compileGraph(g, { paramValues: randomParams([g], 3) }));
    await assemble({ vlm: f.vlm, dit: fx('dit/unifusion.onnx'), out: fx('pipe'), size: [16, 16], scheduler: { steps: 2 } });
    f.pipe = fx('pipe');
    f.png = fx('a.png');
    fs.writeFileSync(f.png, encodePng({ width: 8, height: 8, data: Uint8Array.from({ length: 192 }, (_, i) => (i * 41) & 255) }));
  }

  const user = (name: string, text: string) => {
    const p = fx(`user/${name}`);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
    return p;
  };
  f.typeErrors = user(
    'typed.ts',
    [
      "import { defineGraph, input, Linear } from 'unifusion/dsl';",
      '',
      'export default defineGraph({',
      "  name: 'typed',",
      '  presets: { only: { w: 3 } },',
      '  build(cfg) {',
      '    // three type errors',
      "    const a = input('a', 'f16x', [2, cfg.w]);",
      "    const n: number = 'x';",
      '    void n;',
      '    return { y: new Linear(3, 3, { bais: false }).forward(a) };',
      '  },',
      '});',
      '',
    ].join('\n'),
  );
  const oneGraph = (name: string, body: string) => `import { defineGraph, input, Linear } from 'unifusion/dsl';\n\nexport default defineGraph({\n  name: '${name}',\n  presets: { only: {} },\n  build(): any {\n${body}\n  },\n});\n`;
  f.dtypeTypo = user('dtype.ts', oneGraph('dtype', "    const a = input('a', 'f16x' as any, [2, 3]);\n    return { y: a };"));
  f.optionTypo = user('option.ts', "import { defineGraph, input, Linear } from 'unifusion/dsl';\n\nconst lin = new Linear(3, 3, { bais: false } as any);\nexport default defineGraph({ name: 'option', presets: { only: {} }, build() { return { y: lin.forward(input('a', 'f32', [2, 3])) }; } });\n");
  f.jsError = user('jserror.ts', oneGraph('jserror', "    const a = input('a', 'f32', [2, 3]);\n    const cfg: any = {};\n    return { y: a.mul(cfg.scale.value) };"));
  f.notTensor = user('nottensor.ts', oneGraph('nottensor', "    return { y: 42 };"));
  f.topLevelThrow = user('toplevel.ts', "import { defineGraph } from 'unifusion/dsl';\nconst cfg: any = undefined;\nconst width = cfg.width;\nexport default defineGraph({ name: 'x', presets: { a: {} }, build() { return {} as any; } });\nvoid width;\n");
  f.trainTypeErrors = user(
    'train-typed.ts',
    fs.readFileSync(path.join(ROOT, 'examples/train-mlp.ts'), 'utf8')
      .replaceAll("'../src/", `'${path.join(ROOT, 'src')}/`)
      .replace('const BATCH = 32;', "const BATCH: number = 'thirty-two';"),
  );
}, 240_000);

afterAll(() => {
  const out = process.env.UNIFUSION_BAD_INPUT_REPORT;
  if (out) {
    const lines = ['| command | bad input | message (first line) |', '| --- | --- | --- |'];
    for (const r of report) lines.push(`| ${r.cmd} | ${r.name} | \`${r.message.replaceAll('|', '\\|')}\` |`);
    fs.writeFileSync(out, lines.join('\n') + '\n');
  }
  if (f.root) fs.rmSync(f.root, { recursive: true, force: true });
});

describe('bad inputs: a clear error, exit != 0, no hang, no stack trace, nothing written or lost', () => {
  it('has at least 60 cases across every command', () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(60);
    expect(new Set(ROWS.map((r) => r.cmd))).toEqual(new Set(['general', 'compile', 'run', 'inspect', 'train', 'import-hf', 'demo', 'sample', 'edit', 'assemble']));
  });

  // One child per core (at least two): each is a CPU-bound node process.
  describe.concurrent.each(ROWS.map((r) => [`${r.cmd}: ${r.name}`, r] as const))('%s', (_label, row) => {
    it('fails clearly and leaves everything as it was', async (ctx) => {
      const why = row.skip?.();
      if (why) {
        ctx.skip();
        return;
      }
      await slot();
      try {
        const dir = fs.mkdtempSync(path.join(f.root, 'case-'));
        row.setup?.(f, dir);
        const watched = [path.join(f.root, 'fixtures'), dir, ...(row.watch?.(f, dir) ?? [])];
        const before = snapshot(watched);
        const limit = row.timeoutMs ?? 45_000;
        const args = row.args(f, dir);
        const r = await cli(args, row.cwd?.(f, dir) ?? ROOT, limit);
        try {
          const shown = `unifusion ${args.map((a) => (a.startsWith(f.root) ? `<tmp>${a.slice(f.root.length)}` : a)).join(' ')}`;
          expect(r.signal, `${shown}: killed (${r.signal}) after ${r.ms.toFixed(0)} ms: it hung`).toBeNull();
          expect(r.code, `${shown}: exit code\n${r.stderr}`).not.toBe(0);
          expect(r.code).not.toBeNull();
          expect(r.stderr, shown).toMatch(/^error: /);
          expect(r.stderr, shown).toMatch(row.expect);
          expect(r.stderr, `${shown}: a stack trace`).not.toMatch(/^\s+at .+(:\d+:\d+\)?|\(native\)|<anonymous>)$/m);
          expect(r.stderr, `${shown}: onnxruntime's own log lines`).not.toMatch(/\[[EWIV]:onnxruntime|onnxruntime_src|\.cc:\d+/);
          expect(snapshot(watched), `${shown}: files changed`).toEqual(before);
          if (r.pid !== undefined) expect(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(`unifusion-graph-${r.pid}-`)), 'temp bundle left behind').toEqual([]);
          report.push({ cmd: row.cmd, name: row.name, line: shown, message: r.stderr.trim().split('\n')[0]!.replace(/^error: /, '').replaceAll(f.root, '<tmp>'), ms: r.ms });
        } finally {
          row.teardown?.(f, dir);
        }
      } finally {
        release();
      }
    }, 180_000);
  });
});

// a semaphore for the child processes
const SLOTS = Math.max(2, os.availableParallelism?.() ?? 2);
let running = 0;
const waiting: (() => void)[] = [];
function slot(): Promise<void> {
  if (running < SLOTS) {
    running++;
    return Promise.resolve();
  }
  return new Promise((r) => waiting.push(() => (running++, r())));
}
function release(): void {
  running--;
  waiting.shift()?.();
}
