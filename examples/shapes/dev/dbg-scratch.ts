import * as fs from 'node:fs';
import { readSafetensors } from '../../../src/io/safetensors.ts';
import { trace } from '../../../src/dsl/index.ts';
import { compileGraph } from '../../../src/compiler.ts';
import { encodeModel } from '../../../codegen/onnx/proto.ts';
import { Session } from '../../../runtime/session.ts';
import { Rng } from '../../../src/ir/init.ts';
import { uniFusionForward } from '../../../graphs/unifusion.ts';
import { conditionBatch, shapesUniFusionConfig, TAPS, toLatent, VLM_HIDDEN } from '../unifusion.ts';
const { tensors: params } = readSafetensors('out/shapes-uf-run/checkpoints/step-000000500.safetensors');
const g = trace('x', () => ({ velocity: uniFusionForward(shapesUniFusionConfig()).velocity }), { seed: 5 });
const s = await Session.load(encodeModel(compileGraph(g, { paramValues: params, weights: 'embed' }).emitted.model));
const { tensors } = readSafetensors('out/shapes-cache/cache.safetensors');
const off = tensors.get('offsets')!.data as BigInt64Array;
const rows = fs.readFileSync('out/shapes-cache/rows.jsonl', 'utf8').trim().split('\n').slice(0, 8).map((l) => JSON.parse(l));
const conds = rows.map((_, i) => { const a = Number(off[i]), b = Number(off[i + 1]); return { n: b - a, taps: TAPS.map((k) => (tensors.get(`hidden_states.${k}`)!.data as Float32Array).subarray(a * VLM_HIDDEN, b * VLM_HIDDEN)) }; });
const n = 3 * 48 * 48, B = 8;
const x0 = new Float32Array(B * n); rows.forEach((r, i) => toLatent(r.target, x0, i * n));
const rng = new Rng(1, 'dbg');
const eps = Float32Array.from({ length: B * n }, () => rng.normal());
for (const t of [0.1, 0.5, 0.9, 1.0]) {
  const xt = x0.map((v, i) => (1 - t) * v + t * eps[i]!);
  const v = (await s.run({ ...conditionBatch(conds), latents: { dtype: 'f32', shape: [B, 3, 48, 48], data: xt }, timestep: { dtype: 'f32', shape: [B], data: new Float32Array(B).fill(t) } })).velocity!.data as Float32Array;
  let l = 0, l0 = 0; for (let i = 0; i < B * n; i++) { l += (v[i]! - (eps[i]! - x0[i]!)) ** 2; l0 += (eps[i]! - x0[i]!) ** 2; }
  console.log('t', t, 'loss', (l / B / n).toFixed(4), 'zero-pred loss', (l0 / B / n).toFixed(4), 'v mean abs', (v.reduce((a, b) => a + Math.abs(b), 0) / v.length).toFixed(3));
}
