// The embedding gradient (gather's adjoint) in onnxruntime with 2 intra-op threads: repeated
// indices must not lose updates, and the result must not depend on thread timing. ScatterND(add),
// the lowering this replaced, failed both (ORT 1.30 CPU: up to 35 % off, a different result on
// every run), which made every multi-threaded VLM training run a different, wrongly trained model.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { input, trace } from '../src/dsl/index.ts';
import { applyOp } from '../src/dsl/tensor.ts';
import { evaluate } from '../src/ir/evaluate.ts';
import { Rng } from '../src/ir/init.ts';
import { emitModel } from '../codegen/onnx/emit.ts';
import { encodeModel } from '../codegen/onnx/proto.ts';
import { fromOrt, randomRef, toOrt } from './helpers/harness.ts';

describe('gather_grad with repeated indices under 2 onnxruntime threads', () => {
  it('equals the float64 reference on every run, bit-identically across runs', async () => {
    // the shapes VLM's step: 32 x 80 token ids over a 480-row table, few distinct ids
    const graph = trace('embedding_grad', () => {
      const g = input('g', 'f32', [32, 80, 96]);
      const ids = input('ids', 'i64', [32, 80]);
      return { dw: applyOp('gather_grad', { axis: 0, shape: [480, 96] }, [g, ids]) };
    });
    const rng = new Rng(7);
    const feeds = { g: randomRef('f32', [32, 80, 96], rng), ids: randomRef('i64', [32, 80], rng, { lo: -6, hi: 12 }) };
    const want = evaluate(graph, feeds).dw!;
    const session = await ort.InferenceSession.create(encodeModel(emitModel(graph).model), { executionProviders: ['cpu'], intraOpNumThreads: 2, graphOptimizationLevel: 'all' });
    try {
      const runs: Float64Array[] = [];
      for (let r = 0; r < 6; r++) {
        const res = await session.run({ g: toOrt(feeds.g), ids: toOrt(feeds.ids) });
        runs.push(fromOrt(res.dw!, 'f32').data);
      }
      let scale = 0;
      for (const v of want.data) scale = Math.max(scale, Math.abs(v));
      expect(scale).toBeGreaterThan(1); // ~140 repeats per id: the sums are large
      for (const got of runs) {
        let err = 0;
        for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i]! - want.data[i]!));
        expect(err / scale).toBeLessThan(1e-5);
        expect(Buffer.from(got.buffer).equals(Buffer.from(runs[0]!.buffer))).toBe(true);
      }
    } finally {
      await session.release();
    }
  });
});
