// runtime/session.ts: metadata, correctness across dtypes, and every feed check, on small
// models built directly as ModelProtos (no DSL).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DTYPE_INFO, f16BitsToF32, f32ToF16Bits, type DType } from '../src/ir/dtype.ts';
import { fromFloat64, toFloat64, type HostTensor } from '../src/io/host.ts';
import { encodeModel, onnx, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from '../codegen/onnx/proto.ts';
import { RuntimeInputError, Session, SessionError, formatShape } from '../runtime/session.ts';

type D = number | string | null;

/** `shape` undefined: no shape at all (rank unknown). null dims: neither dim_value nor dim_param. */
function vi(name: string, dtype: DType, shape?: D[]): ValueInfoProto {
  const dims = shape?.map((d) => (typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {}));
  return { name, type: { tensorType: { elemType: DTYPE_INFO[dtype].onnx, ...(dims ? { shape: { dim: dims } } : {}) } } };
}

function f32Init(name: string, dims: number[], values: number[]): TensorProto {
  return { name, dims, dataType: 1, rawData: new Uint8Array(Float32Array.from(values).buffer) };
}

function model(nodes: NodeProto[], inputs: ValueInfoProto[], outputs: ValueInfoProto[], initializer: TensorProto[] = []): ModelProto {
  return {
    irVersion: 11,
    opsetImport: [{ domain: '', version: 23 }],
    producerName: 'unifusion-test',
    graph: { name: 'mixed', node: nodes, input: inputs, output: outputs, initializer },
  };
}

const W = [1, 2, 3, 4, 5, 6]; // [3, 2]

/** Several dtypes and shape kinds in one graph. */
function mixedModel(): ModelProto {
  return model(
    [
      { opType: 'Add', input: ['a', 'b'], output: ['sum'] },
      { opType: 'MatMul', input: ['a', 'W'], output: ['proj'] },
      { opType: 'Add', input: ['h', 'h'], output: ['h2'] },
      { opType: 'Greater', input: ['ids', 'zero'], output: ['pos'] },
      { opType: 'Not', input: ['mask'], output: ['nmask'] },
      { opType: 'Neg', input: ['d'], output: ['negd'] },
      { opType: 'Mul', input: ['k', 'k'], output: ['k2'] },
      { opType: 'Identity', input: ['u'], output: ['u_out'] },
    ],
    [
      vi('a', 'f32', ['batch', 3]),
      vi('b', 'f32', ['batch', 3]),
      vi('h', 'f16', ['batch', null]),
      vi('ids', 'i64', ['batch', 'seq']),
      vi('mask', 'bool', ['batch', 'seq']),
      vi('d', 'f64', []),
      vi('k', 'i32', [2]),
      vi('u', 'f32'),
    ],
    [
      vi('sum', 'f32', ['batch', 3]),
      vi('proj', 'f32', ['batch', 2]),
      vi('h2', 'f16', ['batch', null]),
      vi('pos', 'bool', ['batch', 'seq']),
      vi('nmask', 'bool', ['batch', 'seq']),
      vi('negd', 'f64', []),
      vi('k2', 'i32', [2]),
      vi('u_out', 'f32'),
    ],
    [f32Init('W', [3, 2], W), { name: 'zero', dims: [], dataType: 7, rawData: new Uint8Array(new BigInt64Array([0n]).buffer) }],
  );
}

function goodFeeds(batch = 2, seq = 3): Record<string, HostTensor> {
  const n = (k: number, f: (i: number) => number) => Array.from({ length: k }, (_, i) => f(i));
  return {
    a: fromFloat64('f32', [batch, 3], n(batch * 3, (i) => i + 0.5)),
    b: fromFloat64('f32', [batch, 3], n(batch * 3, (i) => -2 * i)),
    h: fromFloat64('f16', [batch, 4], n(batch * 4, (i) => i / 4 - 1)),
    ids: fromFloat64('i64', [batch, seq], n(batch * seq, (i) => (i % 3) - 1)),
    mask: fromFloat64('bool', [batch, seq], n(batch * seq, (i) => i % 2)),
    d: fromFloat64('f64', [], [Math.PI]),
    k: fromFloat64('i32', [2], [7, -3]),
    u: fromFloat64('f32', [1, 2, 1], [9, 8]),
  };
}

let tmp: string;
let mixed: Session;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-runtime-'));
  mixed = await Session.load(encodeModel(mixedModel()));
});
afterAll(async () => {
  await mixed.release();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('metadata', () => {
  it('reports dtypes and shapes with symbolic, unnamed, scalar and undeclared dims', () => {
    const shapes = Object.fromEntries(mixed.inputs.map((m) => [m.name, [m.dtype, m.shape]]));
    expect(shapes).toEqual({
      a: ['f32', ['batch', 3]],
      b: ['f32', ['batch', 3]],
      h: ['f16', ['batch', null]],
      ids: ['i64', ['batch', 'seq']],
      mask: ['bool', ['batch', 'seq']],
      d: ['f64', []], // a true scalar, told apart from "no shape" via the proto
      k: ['i32', [2]],
      u: ['f32', null],
    });
    expect(mixed.outputs.map((m) => m.name)).toEqual(['sum', 'proj', 'h2', 'pos', 'nmask', 'negd', 'k2', 'u_out']);
    expect(mixed.outputs.find((m) => m.name === 'pos')).toMatchObject({ dtype: 'bool', shape: ['batch', 'seq'] });
    expect(formatShape(['batch', null, 3])).toBe('[batch, ?, 3]');
    expect(formatShape(null)).toBe('[rank unknown]');
  });
});

describe('run', () => {
  it('computes every output correctly across f32, f16, i64, bool, f64, i32', async () => {
    const feeds = goodFeeds();
    const out = await mixed.run(feeds);
    expect(Object.keys(out).sort()).toEqual(['h2', 'k2', 'negd', 'nmask', 'pos', 'proj', 'sum', 'u_out']);

    const a = toFloat64(feeds.a!), b = toFloat64(feeds.b!);
    expect(out.sum!.dtype).toBe('f32');
    expect(out.sum!.shape).toEqual([2, 3]);
    expect([...toFloat64(out.sum!)]).toEqual([...a].map((v, i) => Math.fround(v + b[i]!)));

    const proj = toFloat64(out.proj!);
    expect(out.proj!.shape).toEqual([2, 2]);
    for (let r = 0; r < 2; r++)
      for (let c = 0; c < 2; c++) {
        let s = 0;
        for (let k = 0; k < 3; k++) s += a[r * 3 + k]! * W[k * 2 + c]!;
        expect(proj[r * 2 + c]).toBeCloseTo(s, 4);
      }

    expect(out.h2!.dtype).toBe('f16');
    expect(out.h2!.data).toBeInstanceOf(Uint16Array);
    const h = feeds.h!.data as Uint16Array;
    expect([...(out.h2!.data as Uint16Array)]).toEqual([...h].map((x) => f32ToF16Bits(2 * f16BitsToF32(x))));

    expect(out.pos!.dtype).toBe('bool');
    expect(out.pos!.data).toBeInstanceOf(Uint8Array);
    expect([...(out.pos!.data as Uint8Array)]).toEqual([...(feeds.ids!.data as BigInt64Array)].map((v) => (v > 0n ? 1 : 0)));
    expect([...(out.nmask!.data as Uint8Array)]).toEqual([...(feeds.mask!.data as Uint8Array)].map((v) => 1 - v));

    expect(out.negd).toEqual({ dtype: 'f64', shape: [], data: new Float64Array([-Math.PI]) });
    expect(out.k2).toEqual({ dtype: 'i32', shape: [2], data: new Int32Array([49, 9]) });
    expect(out.u_out!.shape).toEqual([1, 2, 1]);
  });

  it('returns only the requested fetches', async () => {
    const out = await mixed.run(goodFeeds(1, 5), ['pos', 'negd']);
    expect(Object.keys(out).sort()).toEqual(['negd', 'pos']);
    expect(out.pos!.shape).toEqual([1, 5]);
  });

  it('accepts feeds that are views into a larger buffer', async () => {
    const feeds = goodFeeds();
    const big = new Float32Array(16).map((_, i) => i);
    feeds.a = { dtype: 'f32', shape: [2, 3], data: big.subarray(5, 11) };
    const out = await mixed.run(feeds, ['sum']);
    const b = toFloat64(feeds.b!);
    expect([...toFloat64(out.sum!)]).toEqual([5, 6, 7, 8, 9, 10].map((v, i) => v + b[i]!));
  });
});

describe('feed validation (before onnxruntime)', () => {
  async function rejects(mutate: (f: Record<string, HostTensor>) => void, pattern: RegExp, tensor: string, fetches?: string[]) {
    const feeds = goodFeeds();
    mutate(feeds);
    const err = await mixed.run(feeds, fetches).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RuntimeInputError);
    expect((err as RuntimeInputError).message).toMatch(pattern);
    expect((err as RuntimeInputError).tensor).toBe(tensor);
  }

  it('missing input', () => rejects((f) => delete f.ids, /missing input 'ids'/, 'ids'));
  it('several missing inputs are all named', () =>
    rejects(
      (f) => {
        delete f.a;
        delete f.k;
      },
      /missing inputs 'a', 'k'/,
      'a',
    ));
  it('unknown input name', () => rejects((f) => (f.idz = f.ids!), /unknown input 'idz'.*'ids'/, 'idz'));
  it('dtype mismatch says expected and given', () =>
    rejects((f) => (f.h = fromFloat64('f32', [2, 4], new Array(8).fill(1))), /input 'h': dtype mismatch: expected f16, given f32/, 'h'));
  it('bf16 feed is refused with the reason', () =>
    rejects((f) => (f.h = fromFloat64('bf16', [2, 4], new Array(8).fill(1))), /expected f16, given bf16 \(bf16 cannot be passed to onnxruntime-node/, 'h'));
  it('rank mismatch', () =>
    rejects((f) => (f.a = fromFloat64('f32', [6], new Array(6).fill(1))), /input 'a': rank mismatch: expected rank 2 \[batch, 3\], given rank 1 f32\[6\]/, 'a'));
  it('rank mismatch on a scalar input', () => rejects((f) => (f.d = fromFloat64('f64', [1], [1])), /input 'd': rank mismatch: expected rank 0/, 'd'));
  it('static dim mismatch', () =>
    rejects((f) => (f.a = fromFloat64('f32', [2, 4], new Array(8).fill(1))), /input 'a': dim 1 mismatch: expected 3, given 4/, 'a'));
  it('symbolic dim conflict across inputs names both', () =>
    rejects(
      (f) => (f.b = fromFloat64('f32', [5, 3], new Array(15).fill(1))),
      /input 'b': symbolic dim 'batch' is 5 at axis 0, but 2 in input 'a' \(axis 0\)/,
      'b',
    ));
  it('symbolic dim conflict on a second symbol', () =>
    rejects((f) => (f.mask = fromFloat64('bool', [2, 4], new Array(8).fill(0))), /input 'mask': symbolic dim 'seq' is 4 at axis 1, but 3 in input 'ids'/, 'mask'));
  it('unnamed dims accept any size', async () => {
    const f = goodFeeds();
    f.h = fromFloat64('f16', [2, 7], new Array(14).fill(0.5));
    expect((await mixed.run(f, ['h2'])).h2!.shape).toEqual([2, 7]);
  });
  it('element count disagreeing with the shape', () =>
    rejects((f) => (f.k = { dtype: 'i32', shape: [2], data: new Int32Array(3) }), /input 'k': shape \[2\] needs 2 elements, data has 3/, 'k'));
  it('storage of the wrong kind for the dtype', () =>
    rejects((f) => (f.k = { dtype: 'i32', shape: [2], data: new Float32Array(2) } as unknown as HostTensor), /input 'k': i32 data must be a Int32Array, given Float32Array/, 'k'));
  it('unknown fetch', () => rejects(() => {}, /unknown output 'nope'/, 'nope', ['nope']));
});

describe('loading', () => {
  it('resolves external data next to the model file, not the working directory', async () => {
    const dir = path.join(tmp, 'ext');
    fs.mkdirSync(dir);
    const w = Float32Array.from(W);
    fs.writeFileSync(path.join(dir, 'weights.bin'), new Uint8Array(w.buffer));
    const m = model(
      [{ opType: 'MatMul', input: ['x', 'W'], output: ['y'] }],
      [vi('x', 'f32', ['n', 3])],
      [vi('y', 'f32', ['n', 2])],
      [
        {
          name: 'W',
          dims: [3, 2],
          dataType: 1,
          dataLocation: 1,
          externalData: [
            { key: 'location', value: 'weights.bin' },
            { key: 'offset', value: '0' },
            { key: 'length', value: String(w.byteLength) },
          ],
        },
      ],
    );
    fs.writeFileSync(path.join(dir, 'm.onnx'), encodeModel(m));
    expect(process.cwd()).not.toBe(dir);
    const s = await Session.load(path.join(dir, 'm.onnx'));
    try {
      const out = await s.run({ x: fromFloat64('f32', [1, 3], [1, 1, 1]) });
      expect([...toFloat64(out.y!)]).toEqual([9, 12]);
    } finally {
      await s.release();
    }
  });

  it('names the tensor when a model has bf16 graph I/O', async () => {
    const m = model([{ opType: 'Identity', input: ['x'], output: ['y'] }], [vi('x', 'bf16', [2])], [vi('y', 'bf16', [2])]);
    const p = path.join(tmp, 'bf16.onnx');
    fs.writeFileSync(p, encodeModel(m));
    await expect(Session.load(p)).rejects.toThrow(/input 'x', output 'y' has dtype bf16, which onnxruntime-node cannot exchange/);
  });

  it('missing model file', async () => {
    await expect(Session.load(path.join(tmp, 'nope.onnx'))).rejects.toThrow(/model file '.*nope\.onnx' does not exist/);
  });

  it('not an ONNX file', async () => {
    const p = path.join(tmp, 'junk.onnx');
    fs.writeFileSync(p, 'definitely not a protobuf \x00\xff');
    const err = await Session.load(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SessionError);
    expect((err as Error).message).toMatch(/cannot load model '.*junk\.onnx' on device 'cpu'/);
  });

  it('unknown device is reported with the device name', async () => {
    await expect(Session.load(encodeModel(mixedModel()), { device: 'no-such-ep' })).rejects.toThrow(/on device 'no-such-ep'/);
  });

  it('passes options through and refuses to run after release', async () => {
    const s = await Session.load(encodeModel(mixedModel()), { intraOpThreads: 1, graphOptimization: 'disabled' });
    expect((await s.run(goodFeeds(), ['k2'])).k2!.data).toEqual(new Int32Array([49, 9]));
    await s.release();
    await s.release();
    await expect(s.run(goodFeeds())).rejects.toThrow(/has been released/);
  });
});

// Keep the proto import honest: the mixed model must be a valid message.
it('mixed model round-trips through the proto codec', () => {
  expect(onnx.ModelProto.verify(mixedModel())).toBeNull();
});
