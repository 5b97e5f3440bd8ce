// `unifusion run` and `unifusion inspect`, end to end through bin/unifusion.mjs in a child process.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DTYPE_INFO, f16BitsToF32, f32ToF16Bits, type DType } from '../src/ir/dtype.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../src/io/host.ts';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { encodeModel, type ModelProto, type TensorProto, type ValueInfoProto } from '../codegen/onnx/proto.ts';
import type { ModelInfo } from '../src/cli/inspect.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'unifusion.mjs');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.UNIFUSION_DEBUG; // the no-stack-trace behaviour is part of what is tested
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

function vi(name: string, dtype: DType, shape: (number | string)[]): ValueInfoProto {
  const dim = shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return { name, type: { tensorType: { elemType: DTYPE_INFO[dtype].onnx, shape: { dim } } } };
}

const W = [1, 2, 3, 4, 5, 6]; // [3, 2]

/** f32 MatMul with an initializer, f16 Add, i64 -> bool comparison. */
function runModel(): ModelProto {
  return {
    irVersion: 11,
    opsetImport: [{ domain: '', version: 23 }],
    graph: {
      name: 'cli_run',
      node: [
        { opType: 'MatMul', input: ['x', 'W'], output: ['proj'] },
        { opType: 'Add', input: ['h', 'h'], output: ['h2'] },
        { opType: 'Greater', input: ['ids', 'zero'], output: ['pos'] },
      ],
      input: [vi('x', 'f32', ['batch', 3]), vi('h', 'f16', ['batch', 4]), vi('ids', 'i64', ['batch', 'seq'])],
      output: [vi('proj', 'f32', ['batch', 2]), vi('h2', 'f16', ['batch', 4]), vi('pos', 'bool', ['batch', 'seq'])],
      initializer: [
        { name: 'W', dims: [3, 2], dataType: 1, rawData: new Uint8Array(Float32Array.from(W).buffer) },
        { name: 'zero', dims: [], dataType: 7, rawData: new Uint8Array(new BigInt64Array([0n]).buffer) },
      ],
    },
  };
}

function external(name: string, dims: number[], location: string, offset: number, length?: number): TensorProto {
  return {
    name,
    dims,
    dataType: 1,
    dataLocation: 1,
    externalData: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      ...(length === undefined ? [] : [{ key: 'length', value: String(length) }]),
    ],
  };
}

/** For inspect: a repeated op, a custom-domain op, external initializers (one without 'length'), an initializer-as-input. */
function inspectModelProto(): ModelProto {
  return {
    irVersion: 10,
    producerName: 'cli-test',
    producerVersion: '1.2',
    opsetImport: [{ domain: '', version: 21 }, { domain: 'com.microsoft', version: 1 }],
    graph: {
      name: 'tower',
      node: [
        { opType: 'MatMul', input: ['x', 'W1'], output: ['t1'] },
        { opType: 'Relu', input: ['t1'], output: ['t2'] },
        { opType: 'MatMul', input: ['t2', 'W2'], output: ['t3'] },
        { opType: 'Add', input: ['t3', 'bias'], output: ['t4'] },
        { opType: 'MatMul', input: ['t4', 'W3'], output: ['t5'] },
        { opType: 'Gelu', domain: 'com.microsoft', input: ['t5'], output: ['y'] },
      ],
      input: [vi('x', 'f32', ['batch', 'seq', 8]), vi('bias', 'f32', [16])],
      output: [vi('y', 'f32', ['batch', 'seq', 4])],
      initializer: [
        external('W1', [8, 16], 'tower.bin', 0, 512),
        external('W2', [16, 16], 'tower.bin', 512), // length omitted: 16*16*4 bytes
        external('W3', [16, 4], 'tower.bin', 1536, 256),
        { name: 'bias', dims: [16], dataType: 1, rawData: new Uint8Array(64) },
      ],
    },
  };
}

let tmp: string;
let modelPath: string;
let inputsPath: string;
let feeds: Record<string, HostTensor>;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-cli-'));
  modelPath = path.join(tmp, 'model.onnx');
  fs.writeFileSync(modelPath, encodeModel(runModel()));
  feeds = {
    x: fromFloat64('f32', [2, 3], [1, 0, 0, 1, 1, 1]),
    h: fromFloat64('f16', [2, 4], [0.5, -1, 2, 3.25, 0, 1e-3, -7, 100]),
    ids: fromFloat64('i64', [2, 5], [-2, -1, 0, 1, 2, 3, 0, 0, -9, 9]),
  };
  inputsPath = path.join(tmp, 'in.safetensors');
  writeSafetensors(inputsPath, feeds);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('run', () => {
  it('writes every output by name and prints a summary', async () => {
    const out = path.join(tmp, 'sub', 'out.safetensors');
    const r = await cli('run', modelPath, '--inputs', inputsPath, '--out', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/inputs: +x f32\[2, 3\]; h f16\[2, 4\]; ids i64\[2, 5\]/);
    expect(r.stdout).toMatch(/outputs: +proj f32\[2, 2\]; h2 f16\[2, 4\]; pos bool\[2, 5\]/);
    expect(r.stdout).toMatch(/time: +load \d+ ms, run \d+ ms, write \d+ ms/);

    const got = readSafetensors(out).tensors;
    expect([...got.keys()].sort()).toEqual(['h2', 'pos', 'proj']);
    expect(got.get('proj')!.shape).toEqual([2, 2]);
    expect([...toFloat64(got.get('proj')!)]).toEqual([1, 2, 9, 12]);
    expect(got.get('h2')!.dtype).toBe('f16');
    expect([...(got.get('h2')!.data as Uint16Array)]).toEqual([...(feeds.h!.data as Uint16Array)].map((b) => f32ToF16Bits(2 * f16BitsToF32(b))));
    expect(got.get('pos')).toEqual({ dtype: 'bool', shape: [2, 5], data: new Uint8Array([0, 0, 0, 1, 1, 1, 0, 0, 0, 1]) });
  });

  /** Each failure: non-zero exit, `error: ` + a message matching `pattern`, no stack, and no OUT. */
  async function fails(args: { model?: string; inputs?: string }, pattern: RegExp) {
    const out = path.join(tmp, `fail-${Math.random().toString(36).slice(2)}.safetensors`);
    const r = await cli('run', args.model ?? modelPath, '--inputs', args.inputs ?? inputsPath, '--out', out);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error: /);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(fs.existsSync(out)).toBe(false);
    // no temp file left behind either
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith(path.basename(out)))).toEqual([]);
  }

  function inputsWith(name: string, tensors: Record<string, HostTensor>): string {
    const p = path.join(tmp, name);
    writeSafetensors(p, tensors);
    return p;
  }

  it('missing model', () => fails({ model: path.join(tmp, 'absent.onnx') }, /model file '.*absent\.onnx' does not exist/));

  it('model that is not ONNX', () => {
    const p = path.join(tmp, 'garbage.onnx');
    fs.writeFileSync(p, 'not a model');
    return fails({ model: p }, /cannot load model '.*garbage\.onnx'/);
  });

  it('missing inputs file', () => fails({ inputs: path.join(tmp, 'absent.safetensors') }, /inputs file '.*absent\.safetensors' does not exist/));

  it('hostile inputs file (absurd header length)', () => {
    const p = path.join(tmp, 'hostile.safetensors');
    const b = new Uint8Array(16).fill(0xff);
    fs.writeFileSync(p, b);
    return fails({ inputs: p }, /hostile\.safetensors: header length \d+ exceeds/);
  });

  it('hostile inputs file (offsets past the end)', () => {
    const p = path.join(tmp, 'hostile2.safetensors');
    const header = new TextEncoder().encode(JSON.stringify({ x: { dtype: 'F32', shape: [1000000], data_offsets: [0, 4000000] } }));
    const b = new Uint8Array(8 + header.length + 4);
    new DataView(b.buffer).setBigUint64(0, BigInt(header.length), true);
    b.set(header, 8);
    fs.writeFileSync(p, b);
    return fails({ inputs: p }, /hostile2\.safetensors: tensor "x": .*run past the end/);
  });

  it('missing input tensor', () => fails({ inputs: inputsWith('noh.safetensors', { x: feeds.x!, ids: feeds.ids! }) }, /noh\.safetensors': missing input 'h'/));

  it('wrong dtype', () =>
    fails(
      { inputs: inputsWith('dtype.safetensors', { ...feeds, ids: fromFloat64('i32', [2, 5], new Array(10).fill(1)) }) },
      /dtype\.safetensors': input 'ids': dtype mismatch: expected i64, given i32/,
    ));

  it('wrong rank', () =>
    fails(
      { inputs: inputsWith('rank.safetensors', { ...feeds, x: fromFloat64('f32', [2, 3, 1], new Array(6).fill(1)) }) },
      /rank\.safetensors': input 'x': rank mismatch: expected rank 2 \[batch, 3\], given rank 3/,
    ));

  it('inconsistent symbolic dim', () =>
    fails(
      { inputs: inputsWith('batch.safetensors', { ...feeds, h: fromFloat64('f16', [3, 4], new Array(12).fill(1)) }) },
      /input 'h': symbolic dim 'batch' is 3 at axis 0, but 2 in input 'x' \(axis 0\)/,
    ));

  it('extra tensor in the inputs file', () =>
    fails({ inputs: inputsWith('extra.safetensors', { ...feeds, y: feeds.x! }) }, /unknown input 'y'/));

  it('keeps an existing OUT untouched on failure', async () => {
    const out = path.join(tmp, 'keep.safetensors');
    fs.writeFileSync(out, 'previous');
    const r = await cli('run', path.join(tmp, 'absent.onnx'), '--inputs', inputsPath, '--out', out);
    expect(r.code).not.toBe(0);
    expect(fs.readFileSync(out, 'utf8')).toBe('previous');
  });
});

describe('inspect', () => {
  let towerPath: string;
  beforeAll(() => {
    const dir = path.join(tmp, 'tower');
    fs.mkdirSync(dir);
    towerPath = path.join(dir, 'tower.onnx');
    fs.writeFileSync(towerPath, encodeModel(inspectModelProto()));
    // Sparse and unwritten: inspect must take its size from stat, not from reading it.
    fs.writeFileSync(path.join(dir, 'tower.bin'), '');
    fs.truncateSync(path.join(dir, 'tower.bin'), 1792);
  });

  it('prints I/O, opsets, op histogram, parameters and external data', async () => {
    const r = await cli('inspect', towerPath);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const o = r.stdout;
    expect(o).toMatch(/graph: +tower/);
    expect(o).toMatch(/IR version: +10 +\(producer: cli-test 1\.2\)/);
    expect(o).toMatch(/opsets: +ai\.onnx 21, com\.microsoft 1/);
    expect(o).toMatch(/inputs: +x f32\[batch, seq, 8\]/);
    expect(o).not.toMatch(/bias f32/); // an initializer listed as a graph input is a weight, not an input
    expect(o).toMatch(/outputs: +y f32\[batch, seq, 4\]/);
    expect(o).toMatch(/6 nodes, 4 op types\n +MatMul +3\n +Add +1\n +Relu +1\n +com\.microsoft\.Gelu +1\n/);
    expect(o).toMatch(/initializers: +4/);
    expect(o).toMatch(/parameters: +464\n/); // 8*16 + 16*16 + 16*4 + 16
    expect(o).toMatch(/external data: 1,792 bytes referenced in 1 file\n +tower\.bin: 3 tensors, 1,792 bytes \(1,792 bytes on disk\)/);
  });

  it('--json prints the same facts as JSON', async () => {
    const r = await cli('inspect', towerPath, '--json');
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout) as ModelInfo;
    expect(info.graphName).toBe('tower');
    expect(info.irVersion).toBe(10);
    expect(info.opsets).toEqual([{ domain: '', version: 21 }, { domain: 'com.microsoft', version: 1 }]);
    expect(info.inputs).toEqual([{ name: 'x', dtype: 'f32', shape: ['batch', 'seq', 8] }]);
    expect(info.outputs).toEqual([{ name: 'y', dtype: 'f32', shape: ['batch', 'seq', 4] }]);
    expect(info.ops).toEqual([
      { op: 'MatMul', count: 3 },
      { op: 'Add', count: 1 },
      { op: 'Relu', count: 1 },
      { op: 'com.microsoft.Gelu', count: 1 },
    ]);
    expect(info.initializers).toBe(4);
    expect(info.parameters).toBe(464);
    expect(info.externalData).toEqual([{ location: 'tower.bin', tensors: 3, bytes: 1792, fileBytes: 1792 }]);
    expect(info.externalBytes).toBe(1792);
  });

  it('reports a missing external data file without failing', async () => {
    const dir = path.join(tmp, 'orphan');
    fs.mkdirSync(dir);
    const p = path.join(dir, 'tower.onnx');
    fs.writeFileSync(p, encodeModel(inspectModelProto()));
    const r = await cli('inspect', p);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/tower\.bin: 3 tensors, 1,792 bytes \(MISSING\)/);
  });

  it('inspects the run model (embedded weights, bool output)', async () => {
    const r = await cli('inspect', modelPath, '--json');
    const info = JSON.parse(r.stdout) as ModelInfo;
    expect(info.parameters).toBe(7);
    expect(info.externalData).toEqual([]);
    expect(info.outputs.map((v) => `${v.name}:${v.dtype}`)).toEqual(['proj:f32', 'h2:f16', 'pos:bool']);
  });

  it('missing file', async () => {
    const r = await cli('inspect', path.join(tmp, 'absent.onnx'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error: model file '.*absent\.onnx' does not exist\n$/);
  });

  it('not an ONNX file', async () => {
    const p = path.join(tmp, 'text.onnx');
    fs.writeFileSync(p, 'hello, this is text');
    const r = await cli('inspect', p);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error: '.*text\.onnx' is not an ONNX model/);
  });

  it('empty file', async () => {
    const p = path.join(tmp, 'empty.onnx');
    fs.writeFileSync(p, '');
    const r = await cli('inspect', p);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error: '.*empty\.onnx' is not an ONNX model \(no graph/);
  });
});

describe('run: what onnxruntime says, and when', () => {
  it("onnxruntime's own log lines appear only with --verbose; NaN in an input is a warning naming it", async () => {
    const quiet = await cli('run', modelPath, '--inputs', inputsPath, '--out', path.join(tmp, 'q.safetensors'), '--device', 'cuda');
    expect(quiet.code).toBe(1);
    expect(quiet.stderr).toMatch(/^error: cannot load model '.*' on device 'cuda': the CUDA execution provider is not available/);
    expect(quiet.stderr).not.toMatch(/onnxruntime:|provider_bridge/);
    const loud = await cli('--verbose', 'run', modelPath, '--inputs', inputsPath, '--out', path.join(tmp, 'q.safetensors'), '--device', 'cuda');
    expect(loud.code).toBe(1);
    expect(loud.stderr).toMatch(/\[E:onnxruntime/);

    const nanIn = path.join(tmp, 'nan.safetensors');
    writeSafetensors(nanIn, { ...feeds, x: fromFloat64('f32', [2, 3], [1, NaN, 0, 1, Infinity, 1]) });
    const r = await cli('run', modelPath, '--inputs', nanIn, '--out', path.join(tmp, 'nan-out.safetensors'));
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^warning: input 'x' f32\[2, 3\] holds 1 NaN and 1 inf of 6 values \(first at \[0, 1\]\)\nwarning: output 'proj' f32\[2, 2\] holds 2 NaN and 2 inf of 4 values \(first at \[0, 0\]\)\n$/);
  });

  it('a second run may replace its own output file, not a file of the user', async () => {
    const out = path.join(tmp, 'again.safetensors');
    expect((await cli('run', modelPath, '--inputs', inputsPath, '--out', out)).code).toBe(0);
    expect((await cli('run', modelPath, '--inputs', inputsPath, '--out', out)).code).toBe(0);
    fs.writeFileSync(out, 'mine');
    const r = await cli('run', modelPath, '--inputs', inputsPath, '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/already exists and was not written by unifusion; pass --force to replace it/);
    expect(fs.readFileSync(out, 'utf8')).toBe('mine');
    expect((await cli('run', modelPath, '--inputs', inputsPath, '--out', out, '--force')).code).toBe(0);
    expect(readSafetensors(out).tensors.has('proj')).toBe(true);
  });
});

describe('inspect shows metadata_props', () => {
  it('of a compiled model', async () => {
    const { compileCommand } = await import('../src/cli/compile.ts');
    const out = path.join(tmp, 'compiled');
    await compileCommand('test/graphs/good.ts', { out, quiet: true, typecheck: false });
    const r = await cli('inspect', path.join(out, 'mlp.onnx'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/metadata:\n +producer +unifusion\n +graph +mlp\n +preset +small\n +weights +embed\n +param_count +144\n/);
  });
});
