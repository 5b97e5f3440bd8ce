import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DTYPES, DTYPE_INFO, type DType } from '../src/ir/dtype.ts';
import { type HostTensor, allocStorage, numel } from '../src/io/host.ts';
import {
  MAX_HEADER_BYTES,
  SafetensorsError,
  SafetensorsFile,
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  writeSafetensors,
} from '../src/io/safetensors.ts';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-safetensors-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

let fileCounter = 0;
function tmpPath(stem = 'f'): string {
  return path.join(dir, `${stem}-${fileCounter++}.safetensors`);
}

// Deterministic PRNG (mulberry32) so failures reproduce.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random tensor with non-zero elements (bool: random 0/1). */
function randomTensor(dtype: DType, shape: number[], seed: number): HostTensor {
  const r = rng(seed);
  const n = numel(shape);
  const data = allocStorage(dtype, n);
  for (let i = 0; i < n; i++) {
    const u = r();
    switch (dtype) {
      case 'f32': (data as Float32Array)[i] = Math.fround((u - 0.5) * 200) || 1.5; break;
      case 'f64': (data as Float64Array)[i] = (u - 0.5) * 1e10 || 2.5; break;
      case 'f16': case 'bf16': (data as Uint16Array)[i] = 1 + Math.floor(u * 0xfffe); break;
      case 'i32': (data as Int32Array)[i] = (Math.floor(u * 2 ** 32) | 0) || 7; break;
      case 'i64': (data as BigInt64Array)[i] = (BigInt(Math.floor(u * 2 ** 52)) << 11n) - 2n ** 62n || 3n; break;
      case 'bool': (data as Uint8Array)[i] = u < 0.5 ? 1 : 0; break;
    }
  }
  return { dtype, shape, data } as HostTensor;
}

function expectSameTensor(got: HostTensor | undefined, want: HostTensor): void {
  expect(got).toBeDefined();
  expect(got!.dtype).toBe(want.dtype);
  expect(got!.shape).toEqual(want.shape);
  expect(Object.prototype.toString.call(got!.data)).toBe(Object.prototype.toString.call(want.data));
  expect(Array.from(got!.data as ArrayLike<number | bigint>)).toEqual(Array.from(want.data as ArrayLike<number | bigint>));
}

const SHAPES: number[][] = [[2, 3], [1, 5, 1], [], [1], [4, 0]];

describe('round trip', () => {
  for (const dtype of DTYPES) {
    it(`${dtype}: file and in-memory, shapes ${SHAPES.map((s) => `[${s}]`).join(' ')}`, () => {
      const tensors = new Map<string, HostTensor>();
      SHAPES.forEach((shape, i) => tensors.set(`t${i}`, randomTensor(dtype, shape, 100 * i + dtype.length)));
      const p = tmpPath(dtype);
      writeSafetensors(p, tensors);
      const back = readSafetensors(p);
      const mem = parseSafetensors(fs.readFileSync(p));
      for (const [name, t] of tensors) {
        expectSameTensor(back.tensors.get(name), t);
        expectSameTensor(mem.tensors.get(name), t);
      }
      expect([...back.tensors.keys()]).toEqual([...tensors.keys()].sort());
      expect(back.metadata).toEqual({});
    });
  }

  it('all dtypes mixed in one file, awkward sizes (odd byte counts before 8-byte tensors)', () => {
    const tensors: Record<string, HostTensor> = {};
    DTYPES.forEach((d, i) => { tensors[`m.${i}.${d}`] = randomTensor(d, [3, 1], 7 + i); });
    const back = parseSafetensors(serializeSafetensors(tensors));
    for (const [name, t] of Object.entries(tensors)) expectSameTensor(back.tensors.get(name), t);
  });

  it('odd names: integer-like, unicode, "__proto__", empty', () => {
    const names = ['10', '2', 'a', 'é.weight', '__proto__', '', 'x"y\\z'];
    const tensors = new Map(names.map((n, i) => [n, randomTensor('f32', [2], i)] as const));
    const bytes = serializeSafetensors(tensors);
    const back = parseSafetensors(bytes);
    expect([...back.tensors.keys()]).toEqual([...names].sort());
    for (const [n, t] of tensors) expectSameTensor(back.tensors.get(n), t);
    // Data is laid out in the same (sorted) order as the names, integer-like keys included.
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))))) as Record<string, { data_offsets: number[] }>;
    expect([...names].sort().map((n) => header[n]!.data_offsets[0])).toEqual([0, 8, 16, 24, 32, 40, 48]);
  });
});

describe('SafetensorsFile (lazy)', () => {
  const tensors = {
    'enc.w': randomTensor('f32', [4, 3], 1),
    'enc.b': randomTensor('bf16', [3], 2),
    'flag': randomTensor('bool', [5], 3),
    'ids': randomTensor('i64', [2, 2], 4),
  };

  it('exposes names, info and metadata; reads one tensor without touching the others', () => {
    const p = tmpPath('lazy');
    writeSafetensors(p, tensors, { format: 'pt' });
    // Corrupt a different tensor's bytes (BOOL value 7): a lazy read of 'ids' must not notice.
    const f0 = SafetensorsFile.openSync(p);
    const flagInfo = f0.info('flag');
    f0.close();
    const fd = fs.openSync(p, 'r+');
    fs.writeSync(fd, new Uint8Array([7]), 0, 1, flagInfo.offset + 2);
    fs.closeSync(fd);

    const f = SafetensorsFile.openSync(p);
    try {
      expect(f.names()).toEqual(['enc.b', 'enc.w', 'flag', 'ids']);
      expect(f.metadata).toEqual({ format: 'pt' });
      expect(f.info('enc.w')).toMatchObject({ dtype: 'f32', shape: [4, 3], byteLength: 48 });
      const ids = f.info('ids');
      expect(ids).toMatchObject({ dtype: 'i64', shape: [2, 2], byteLength: 32 });
      // offset is absolute in the file and lands on the tensor's bytes.
      const raw = fs.readFileSync(p) // a Buffer: its .slice() would share the pool, so copy via Uint8Array below
        .subarray(ids.offset, ids.offset + ids.byteLength);
      expect(Array.from(new BigInt64Array(new Uint8Array(raw).buffer))).toEqual(Array.from(tensors.ids.data as BigInt64Array));
      expectSameTensor(f.read('ids'), tensors.ids);
      expectSameTensor(f.read('enc.b'), tensors['enc.b']);
      expect(() => f.read('flag')).toThrow(/tensor "flag": BOOL element 2 is 7/);
      expect(() => f.readAll()).toThrow(SafetensorsError);
      expect(() => f.read('nope')).toThrow(/tensor "nope": no such tensor/);
    } finally {
      f.close();
    }
    f.close(); // idempotent
    expect(() => f.read('ids')).toThrow(/file is closed/);
  });

  it('async open gives the same view', async () => {
    const p = tmpPath('async');
    writeSafetensors(p, tensors);
    const f = await SafetensorsFile.open(p);
    try {
      expect(f.names()).toEqual(['enc.b', 'enc.w', 'flag', 'ids']);
      const all = f.readAll();
      for (const [n, t] of Object.entries(tensors)) expectSameTensor(all.get(n), t);
    } finally {
      f.close();
    }
  });

  it('info() returns a copy that cannot corrupt the file view', () => {
    const f = SafetensorsFile.openSync((() => { const p = tmpPath(); writeSafetensors(p, tensors); return p; })());
    f.info('enc.w').shape.push(99);
    expect(f.info('enc.w').shape).toEqual([4, 3]);
    f.close();
  });
});

describe('metadata', () => {
  it('round trips strings, including unicode, quotes, empty and a "__proto__" key', () => {
    const metadata = Object.fromEntries([
      ['format', 'pt'],
      ['note', 'héllo "wörld"\n\u{1f600}'],
      ['empty', ''],
      ['__proto__', 'not a prototype'],
    ]) as Record<string, string>;
    const p = tmpPath('meta');
    writeSafetensors(p, { w: randomTensor('f16', [2], 9) }, metadata);
    const back = readSafetensors(p).metadata;
    expect(Object.keys(back).sort()).toEqual(Object.keys(metadata).sort());
    for (const k of Object.keys(metadata)) expect(Object.getOwnPropertyDescriptor(back, k)?.value).toBe(metadata[k]);
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
  });

  it('parseSafetensors copies: tensors do not alias the input (even a pooled Buffer)', () => {
    const t = randomTensor('f32', [4], 5);
    const buf = Buffer.from(serializeSafetensors({ t }));
    const back = parseSafetensors(buf).tensors.get('t')!;
    buf.fill(0xaa);
    expectSameTensor(back, t);
  });

  it('a file with only metadata and no tensors is valid', () => {
    const back = parseSafetensors(serializeSafetensors({}, { a: 'b' }));
    expect(back.tensors.size).toBe(0);
    expect(back.metadata).toEqual({ a: 'b' });
  });
});

describe('writer', () => {
  it('is byte-deterministic regardless of insertion order, and file bytes equal serialize()', () => {
    const a = randomTensor('f32', [2, 2], 1), b = randomTensor('i32', [3], 2), c = randomTensor('bool', [1], 3);
    const one = serializeSafetensors({ a, b, c }, { x: '1', y: '2' });
    const two = serializeSafetensors(new Map([['c', c], ['a', a], ['b', b]]), { y: '2', x: '1' });
    expect(Buffer.from(two).equals(Buffer.from(one))).toBe(true);
    const p = tmpPath('det');
    writeSafetensors(p, { c, b, a }, { y: '2', x: '1' });
    expect(fs.readFileSync(p).equals(Buffer.from(one))).toBe(true);
  });

  it('writes the reference layout: metadata first, sorted names, header space-padded to 8', () => {
    const t: HostTensor = { dtype: 'f32', shape: [1], data: new Float32Array([1]) };
    const bytes = serializeSafetensors({ x: t }, { k: 'v' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const json = '{"__metadata__":{"k":"v"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expect(new TextDecoder().decode(bytes.subarray(8, 8 + n))).toBe(json.padEnd(n, ' '));
    expect(Array.from(bytes.subarray(8 + n))).toEqual([0, 0, 0x80, 0x3f]);
    expect(bytes.byteLength).toBe(8 + n + 4);
  });

  it('writes atomically: no temp files left, existing file replaced', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'atomic-'));
    const p = path.join(sub, 'model.safetensors');
    writeSafetensors(p, { a: randomTensor('f32', [8], 1) });
    writeSafetensors(p, { b: randomTensor('f64', [2], 2) });
    expect(fs.readdirSync(sub)).toEqual(['model.safetensors']);
    expect([...readSafetensors(p).tensors.keys()]).toEqual(['b']);
  });

  it('a failed rename removes the temp file and leaves the target as it was', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'fail-'));
    const p = path.join(sub, 'model.safetensors');
    fs.mkdirSync(p); // renaming a file over a directory fails after the data is written
    expect(() => writeSafetensors(p, { a: randomTensor('f32', [8], 1) })).toThrow();
    expect(fs.readdirSync(sub)).toEqual(['model.safetensors']);
    expect(fs.statSync(p).isDirectory()).toBe(true);
  });

  it('invalid input fails before anything is written, naming the tensor', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'invalid-'));
    const p = path.join(sub, 'model.safetensors');
    const good = randomTensor('f32', [2], 1);
    const cases: [Record<string, HostTensor>, RegExp][] = [
      [{ good, bad: { dtype: 'f32', shape: [3], data: new Float32Array(2) } }, /tensor "bad": data has 2 elements but shape \[3\] needs 3/],
      [{ good, bad: { dtype: 'f32', shape: [2], data: new Int32Array(2) } as unknown as HostTensor }, /tensor "bad": f32 data must be a Float32Array, got Int32Array/],
      [{ bad: { dtype: 'bool', shape: [2], data: new Uint8Array([1, 2]) } }, /tensor "bad": bool element 1 is 2/],
      [{ bad: { dtype: 'f32', shape: [-2], data: new Float32Array(2) } }, /tensor "bad": shape dim 0 is -2/],
      [{ bad: { dtype: 'u8', shape: [2], data: new Uint8Array(2) } as unknown as HostTensor }, /tensor "bad": unknown dtype "u8"/],
      [{ __metadata__: good }, /tensor "__metadata__": name is reserved/],
    ];
    for (const [tensors, re] of cases) {
      let err: unknown;
      try { writeSafetensors(p, tensors); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toContain(p);
      expect((err as Error).message).toMatch(re);
    }
    expect(() => writeSafetensors(p, { good }, { k: 5 as unknown as string })).toThrow(/metadata value for key "k" must be a string/);
    expect(fs.readdirSync(sub)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

/** Assemble a file image from a header (object or raw text) and a data buffer size. */
function image(header: unknown, dataBytes: number, opts: { headerLength?: bigint } = {}): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, opts.headerLength ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  return out;
}

const F32x2 = (begin: number, end = begin + 8) => ({ dtype: 'F32', shape: [2], data_offsets: [begin, end] });

const valid = serializeSafetensors({ a: randomTensor('f32', [4], 1), b: randomTensor('i64', [2], 2) });

interface Hostile {
  what: string;
  bytes: Uint8Array;
  detail: RegExp;
  tensor?: string;
}

const HOSTILE: Hostile[] = [
  { what: 'empty file', bytes: new Uint8Array(0), detail: /0 bytes, shorter than the 8-byte header length prefix/ },
  { what: 'file < 8 bytes', bytes: new Uint8Array([1, 0, 0]), detail: /3 bytes, shorter than the 8-byte/ },
  { what: 'header length past EOF', bytes: image('{}', 0, { headerLength: 1000n }), detail: /header length 1000 runs past the end of the file/ },
  { what: 'huge header length', bytes: image('{}', 0, { headerLength: 2n ** 63n + 5n }), detail: new RegExp(`header length 9223372036854775813 exceeds the ${MAX_HEADER_BYTES}-byte limit`) },
  { what: 'header just over the cap', bytes: image('{}', 0, { headerLength: BigInt(MAX_HEADER_BYTES + 1) }), detail: /exceeds the 100000000-byte limit/ },
  { what: 'non-JSON header', bytes: image('{"a": nope', 0), detail: /header is not valid JSON/ },
  { what: 'empty header', bytes: image('', 0), detail: /header is not valid JSON/ },
  { what: 'non-UTF-8 header', bytes: (() => { const b = image('{"a":1}', 0); b[10] = 0xff; return b; })(), detail: /header is not valid UTF-8/ },
  { what: 'header JSON is an array', bytes: image([1, 2], 0), detail: /header JSON must be an object, got an array/ },
  { what: 'header JSON is null', bytes: image('null', 0), detail: /header JSON must be an object, got null/ },
  { what: 'header JSON is a number', bytes: image('42', 0), detail: /header JSON must be an object, got 42/ },
  { what: 'entry not an object', bytes: image({ a: 5 }, 0), tensor: 'a', detail: /entry must be an object, got 5/ },
  { what: 'offsets past EOF', bytes: image({ a: F32x2(0) }, 4), tensor: 'a', detail: /data_offsets \[0, 8\] run past the end of the data buffer \(4 bytes/ },
  { what: 'overlapping offsets', bytes: image({ a: F32x2(0), b: F32x2(4) }, 12), tensor: 'b', detail: /data_offsets \[4, 12\] overlap tensor "a" \(which ends at 8\)/ },
  { what: 'identical offsets', bytes: image({ a: F32x2(0), b: F32x2(0) }, 8), tensor: 'b', detail: /overlap tensor "a"/ },
  { what: 'gap between tensors', bytes: image({ a: F32x2(0), b: F32x2(12) }, 20), tensor: 'b', detail: /gap of 4 bytes after tensor "a"/ },
  { what: 'gap at start', bytes: image({ a: F32x2(4) }, 12), tensor: 'a', detail: /gap of 4 bytes at the start of the data buffer/ },
  { what: 'trailing bytes', bytes: image({ a: F32x2(0) }, 11), detail: /3 trailing bytes after the last tensor/ },
  { what: 'data but no tensors', bytes: image({}, 2), detail: /2 trailing bytes/ },
  { what: 'unknown dtype', bytes: image({ a: { ...F32x2(0), dtype: 'F33' } }, 8), tensor: 'a', detail: /unknown dtype "F33" \(supported: F32, F16, BF16/ },
  { what: 'unsupported dtype F8_E4M3', bytes: image({ a: { dtype: 'F8_E4M3', shape: [8], data_offsets: [0, 8] } }, 8), tensor: 'a', detail: /unsupported dtype "F8_E4M3"/ },
  { what: 'unsupported dtype U8', bytes: image({ a: { dtype: 'U8', shape: [8], data_offsets: [0, 8] } }, 8), tensor: 'a', detail: /unsupported dtype "U8"/ },
  { what: 'dtype not a string', bytes: image({ a: { ...F32x2(0), dtype: 4 } }, 8), tensor: 'a', detail: /"dtype" must be a string, got 4/ },
  { what: 'byte length does not match shape', bytes: image({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), tensor: 'a', detail: /span 8 bytes but F32 shape \[3\] needs 12/ },
  { what: 'truncated file (cut in data)', bytes: valid.subarray(0, valid.byteLength - 3), tensor: 'b', detail: /run past the end of the data buffer/ },
  { what: 'truncated file (cut in header)', bytes: valid.subarray(0, 20), detail: /runs past the end of the file/ },
  { what: 'negative dim', bytes: image({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8), tensor: 'a', detail: /shape dim 0 is -2, not a non-negative integer/ },
  { what: 'fractional dim', bytes: image({ a: { dtype: 'F32', shape: [2, 0.5], data_offsets: [0, 4] } }, 4), tensor: 'a', detail: /shape dim 1 is 0.5/ },
  { what: 'string dim', bytes: image({ a: { dtype: 'F32', shape: ['2'], data_offsets: [0, 8] } }, 8), tensor: 'a', detail: /shape dim 0 is "2"/ },
  { what: 'shape not an array', bytes: image({ a: { dtype: 'F32', shape: 2, data_offsets: [0, 8] } }, 8), tensor: 'a', detail: /"shape" must be an array, got 2/ },
  { what: 'element count overflow', bytes: image({ a: { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, 8), tensor: 'a', detail: /has too many elements/ },
  { what: 'byte count overflow', bytes: image({ a: { dtype: 'F64', shape: [2 ** 51], data_offsets: [0, 8] } }, 8), tensor: 'a', detail: /is too large/ },
  { what: 'non-integer offsets', bytes: image({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8.5] } }, 8), tensor: 'a', detail: /data_offsets \[0, 8.5\] must be non-negative integers/ },
  { what: 'negative offsets', bytes: image({ a: { dtype: 'F32', shape: [2], data_offsets: [-8, 0] } }, 8), tensor: 'a', detail: /data_offsets \[-8, 0\] must be non-negative integers/ },
  { what: 'offsets beyond 2^53', bytes: image('{"a":{"dtype":"F32","shape":[2],"data_offsets":[9007199254740993,9007199254741001]}}', 8), tensor: 'a', detail: /must be non-negative integers/ },
  { what: 'end before begin', bytes: image({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, 8), tensor: 'a', detail: /data_offsets \[8, 0\]: end is before begin/ },
  { what: 'missing data_offsets', bytes: image({ a: { dtype: 'F32', shape: [2] } }, 8), tensor: 'a', detail: /missing "data_offsets"/ },
  { what: 'missing dtype', bytes: image({ a: { shape: [2], data_offsets: [0, 8] } }, 8), tensor: 'a', detail: /missing "dtype"/ },
  { what: 'missing shape', bytes: image({ a: { dtype: 'F32', data_offsets: [0, 8] } }, 8), tensor: 'a', detail: /missing "shape"/ },
  { what: 'data_offsets wrong arity', bytes: image({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8, 16] } }, 8), tensor: 'a', detail: /"data_offsets" must be \[begin, end\], got an array of length 3/ },
  { what: 'metadata not an object', bytes: image({ __metadata__: 'x' }, 0), detail: /"__metadata__" must be an object of strings/ },
  { what: 'metadata value not a string', bytes: image({ __metadata__: { epoch: 3 } }, 0), detail: /"__metadata__" value for key "epoch" must be a string, got 3/ },
];

describe('hostile files', () => {
  for (const h of HOSTILE) {
    it(`${h.what}`, async () => {
      const p = tmpPath('hostile');
      fs.writeFileSync(p, h.bytes);
      const check = (err: unknown, label: string): void => {
        expect(err).toBeInstanceOf(SafetensorsError);
        const msg = (err as Error).message;
        expect(msg).toContain(label);
        expect(msg).toMatch(h.detail);
        if (h.tensor !== undefined) expect(msg).toContain(`tensor ${JSON.stringify(h.tensor)}`);
        expect((err as SafetensorsError).file).toBe(label);
        expect((err as SafetensorsError).tensor).toBe(h.tensor);
      };
      let err: unknown;
      try { SafetensorsFile.openSync(p).close(); } catch (e) { err = e; }
      check(err, p);
      err = undefined;
      try { (await SafetensorsFile.open(p)).close(); } catch (e) { err = e; }
      check(err, p);
      err = undefined;
      try { parseSafetensors(h.bytes, p); } catch (e) { err = e; }
      check(err, p);
    });
  }

  it('in-memory errors are labeled <buffer> by default', () => {
    expect(() => parseSafetensors(new Uint8Array(3))).toThrow(/^<buffer>: file is 3 bytes/);
  });

  it('a file truncated after open fails the read, naming file and tensor', () => {
    const p = tmpPath('shrink');
    writeSafetensors(p, { a: randomTensor('f32', [4], 1), b: randomTensor('f32', [4], 2) });
    const f = SafetensorsFile.openSync(p);
    try {
      fs.truncateSync(p, f.info('b').offset + 4);
      expect(() => f.read('b')).toThrow(new RegExp(`${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: tensor "b": unexpected end of file`));
    } finally {
      f.close();
    }
  });

  it('a missing file surfaces the OS error (ENOENT), not a SafetensorsError', () => {
    expect(() => SafetensorsFile.openSync(path.join(dir, 'does-not-exist'))).toThrow(/ENOENT/);
  });
});

describe('dtype table sanity', () => {
  it('every DType has a distinct safetensors name', () => {
    const names = DTYPES.map((d) => DTYPE_INFO[d].safetensors);
    expect(new Set(names).size).toBe(names.length);
  });
});
