import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { dim, input, trace, Linear, Module, TransformerBlock, range, type Tensor } from '../src/dsl/index.ts';
import { emitModel } from '../codegen/onnx/emit.ts';
import { encodeModel, decodeModel } from '../codegen/onnx/proto.ts';
import { writeModel } from '../codegen/onnx/write.ts';
import { compileGraph, writeCompiled } from '../src/compiler.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import { Rng } from '../src/ir/init.ts';
import { compare, dumpModel, randomRef } from './helpers/harness.ts';
import { toFloat64 } from '../src/io/host.ts';

class Net extends Module {
  a = new Linear(16, 32);
  b = new Linear(32, 8);
  forward(x: Tensor) {
    return this.b.forward(this.a.forward(x).tanh());
  }
}
const build = () => trace('net', () => ({ y: new Net().forward(input('x', 'f32', [dim('batch'), 16])) }), { seed: 3 });

function tmpdir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-emit-'));
}

describe('ONNX emission', () => {
  it('is byte-identical for identical input, and differs with the seed', () => {
    const a = encodeModel(emitModel(build()).model);
    const b = encodeModel(emitModel(build()).model);
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBe(0);
    const c = encodeModel(emitModel(trace('net', () => ({ y: new Net().forward(input('x', 'f32', [dim('batch'), 16])) }), { seed: 4 })).model);
    expect(Buffer.compare(Buffer.from(a), Buffer.from(c))).not.toBe(0);
  });

  it('sets opset 23, IR version 11 and symbolic dims as dim_param', () => {
    const m = decodeModel(encodeModel(emitModel(build()).model));
    expect(Number(m.irVersion)).toBe(11);
    expect(m.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 23]]);
    expect(m.graph!.input![0]!.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue))).toEqual(['batch', 16]);
    expect(m.graph!.output![0]!.name).toBe('y');
  });

  it('writes external data with a relative location inside the folder, and ORT loads it', async () => {
    const dir = tmpdir();
    const g = build();
    const em = emitModel(g, { weights: 'external', externalThreshold: 0 });
    const w = await writeModel(dir, 'net', em);
    expect(fs.readdirSync(dir).sort()).toEqual(['net.onnx', 'net.onnx.data']);
    const m = decodeModel(fs.readFileSync(w.onnxPath));
    const locs = new Set(m.graph!.initializer!.flatMap((t) => t.externalData!.filter((e) => e.key === 'location').map((e) => e.value)));
    expect([...locs]).toEqual(['net.onnx.data']);
    expect(fs.statSync(w.dataPath!).size).toBe(em.externalBytes);
    const feeds = { x: randomRef('f32', [3, 16], new Rng(1)) };
    const s = await ort.InferenceSession.create(w.onnxPath);
    const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from(feeds.x.data), [3, 16]) });
    const want = evaluate(g, feeds).y!;
    expect(compare({ dtype: 'f32', shape: [...out.y!.dims], data: Float64Array.from(out.y!.data as Float32Array) }, want)).toBeNull();
    await s.release();
    fs.rmSync(dir, { recursive: true });
  });

  it('refuses external file names that leave the output folder', () => {
    for (const bad of ['../x.data', 'sub/x.data', '/abs/x.data', '..', '']) expect(() => emitModel(build(), { weights: 'external', externalFile: bad })).toThrow(/plain file name/);
  });

  it('inputs mode turns parameters into graph inputs', () => {
    const m = emitModel(build(), { weights: 'inputs' }).model;
    expect(m.graph!.input!.map((i) => i.name)).toEqual(['x', 'a.weight', 'a.bias', 'b.weight', 'b.bias']);
    expect(m.graph!.initializer!.every((t) => !t.name!.includes('.'))).toBe(true);
  });

  it('skeleton mode compiles an 8B-parameter-class stack without materialising weights', async () => {
    class Stack extends Module {
      layers = Array.from({ length: 32 }, () => new TransformerBlock({ hidden: 4096, heads: 32, kvHeads: 8, intermediate: 14336, rope: { theta: 5e5 } }));
    }
    const before = process.memoryUsage().rss;
    const g = trace('stack', () => {
      let h = input('h', 'bf16', [dim('batch'), dim('seq'), 4096]).cast('f32');
      const positions = [range(dim('seq'))];
      for (const l of new Stack().layers) h = l.forward(h, { positions, causal: true });
      return { y: h };
    });
    const c = compileGraph(g, { weights: 'skeleton' });
    expect(c.manifest.paramCount).toBeGreaterThan(6.9e9);
    expect(c.emitted.external.every((x) => x.bytes === null)).toBe(true);
    expect(c.emitted.externalBytes).toBeGreaterThan(27e9);
    expect(process.memoryUsage().rss - before).toBeLessThan(1.5e9);
    const dir = tmpdir();
    const w = await writeCompiled(dir, c);
    // the data file is sparse: its size is declared, its blocks are not written
    const st = fs.statSync(path.join(dir, 'stack.onnx.data'));
    expect(st.size).toBe(c.emitted.externalBytes);
    expect(st.blocks * 512).toBeLessThan(1e6);
    expect(JSON.parse(fs.readFileSync(w.manifestPath, 'utf8')).paramCount).toBe(c.manifest.paramCount);
    fs.rmSync(dir, { recursive: true });
  });

  it('graph outputs that are inputs, params or repeated nodes get valid names', async () => {
    const g = trace('names', () => {
      const x = input('x', 'f32', [2]);
      const lin = new Linear(2, 2);
      const y = x.exp();
      return { same: x, y, y2: y, w: lin.weight.t };
    });
    const em = emitModel(g);
    const bytes = encodeModel(em.model);
    dumpModel('names', bytes);
    const s = await ort.InferenceSession.create(bytes);
    const out = await s.run({ x: new ort.Tensor('float32', Float32Array.of(1, 2), [2]) });
    expect(Array.from(out.same!.data as Float32Array)).toEqual([1, 2]);
    expect(Array.from(out.y2!.data as Float32Array)).toEqual(Array.from(out.y!.data as Float32Array));
    expect(out.w!.dims).toEqual([2, 2]);
    await s.release();
  });

  it('param values can be supplied (import, checkpoints) and are checked', () => {
    const g = build();
    const p = g.params().find((n) => n.params.name === 'a.bias')!;
    const vals = new Map([['a.bias', { dtype: 'f32' as const, shape: [32], data: new Float32Array(32).fill(0.5) }]]);
    const m = emitModel(g, { paramValues: vals }).model;
    const t = m.graph!.initializer!.find((i) => i.name === 'a.bias')!;
    expect(Array.from(toFloat64({ dtype: 'f32', shape: [32], data: new Float32Array(new Uint8Array(t.rawData!).buffer) }).slice(0, 2))).toEqual([0.5, 0.5]);
    expect(p.params.shape).toEqual([32]);
    const bad = new Map([['a.bias', { dtype: 'f32' as const, shape: [31], data: new Float32Array(31) }]]);
    expect(() => emitModel(g, { paramValues: bad })).toThrow(/param 'a.bias': value has shape \[31\]/);
  });
});
