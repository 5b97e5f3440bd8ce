// graphs/unifusion.ts `prediction: 'x0'`: the network's output is x0_hat and the model returns
// v = (x_t - x0_hat) / max(t, X0_T_MIN), on the tiny preset, checked in the float64 interpreter.
import { describe, expect, it } from 'vitest';
import { input, trace } from '../../src/dsl/index.ts';
import { evaluate } from '../../src/ir/evaluate.ts';
import { Rng } from '../../src/ir/init.ts';
import { ref } from '../../src/ir/ref.ts';
import { PRESETS } from '../../graphs/presets.ts';
import { conditionFeatures, conditionInputs, UniFusion, X0_T_MIN } from '../../graphs/unifusion.ts';

describe('x0 prediction', () => {
  it('returns (x_t - x0_hat) / max(t, X0_T_MIN) of the network output', () => {
    const cfg = { ...PRESETS.tiny!, prediction: 'x0' as const };
    const B = 3, S = 4, C = cfg.dit.channels, H = 8;
    const g = trace('x0', () => {
      const m = new UniFusion(cfg);
      const t: Record<string, ReturnType<typeof input>> = {};
      for (const [name, s] of Object.entries(conditionInputs(cfg))) t[name] = input(name, s.dtype, s.shape.map((d) => (typeof d === 'number' ? d : d.key === 'batch' ? B : S)));
      const x = input('latents', 'f32', [B, C, H, H]);
      const ts = input('timestep', 'f32', [B]);
      const f = conditionFeatures(cfg, t);
      return { v: m.forward(f, x, ts), net: m.network(f, x, ts) };
    }, { seed: 3 });
    const rng = new Rng(4, 'x0');
    const feeds: Record<string, ReturnType<typeof ref>> = {};
    for (const i of g.inputs) {
      const shape = i.shape.map((d) => d as number);
      const n = shape.reduce((a, d) => a * d, 1);
      feeds[i.params.name] = i.dtype === 'bool' ? ref('bool', shape, Float64Array.from({ length: n }, (_, k) => (k % S < 3 ? 1 : 0))) : ref(i.dtype, shape, Float64Array.from({ length: n }, () => rng.normal()));
    }
    feeds.timestep = ref('f32', [B], Float64Array.from([0.01, 0.5, 1]));
    // random params: adaLN-zero would start the network at output 0, which tests nothing
    const params = new Map(g.params().map((p) => [p.params.name, ref(p.dtype, [...p.params.shape], Float64Array.from({ length: p.params.shape.reduce((a, d) => a * d, 1) }, () => 0.2 * rng.normal()))] as const));
    const out = evaluate(g, feeds, { params });
    expect(Math.max(...Array.from(out.net!.data, Math.abs))).toBeGreaterThan(0.1);
    const x = feeds.latents!.data, net = out.net!.data, v = out.v!.data;
    const per = C * H * H;
    for (let i = 0; i < v.length; i++) {
      const t = Math.max([0.01, 0.5, 1][Math.floor(i / per)]!, X0_T_MIN);
      expect(v[i]!).toBeCloseTo((x[i]! - net[i]!) / t, 4);
    }
  });
});
