// A train definition for `unifusion train`: an MLP fits a synthetic regression task,
//   y = sin(x0) + x1 * x2 - 0.5 * x3^2 + noise,   x ~ N(0, 1)^4,
// with fresh batches drawn from the trainer's seeded Rng (so a resumed run sees the same batches).
//   npx unifusion train examples/train-mlp.ts --steps 400 --out out/train-mlp
//   npx unifusion train examples/train-mlp.ts --steps 800 --out out/train-mlp --resume
import { Linear, Module, silu, type Tensor } from '../src/dsl/index.ts';
import { defineTrainStep } from '../src/cli/train.ts';
import { fromFloat64 } from '../src/io/host.ts';

const BATCH = 32;
const FEATURES = 4;

class MLP extends Module {
  fc1 = new Linear(FEATURES, 64);
  fc2 = new Linear(64, 64);
  out = new Linear(64, 1);
  forward(x: Tensor): Tensor {
    return this.out.forward(silu(this.fc2.forward(silu(this.fc1.forward(x)))));
  }
}

/** The target function (exported for tests and plots). */
export function target(x: ArrayLike<number>): number {
  return Math.sin(x[0]!) + x[1]! * x[2]! - 0.5 * x[3]! ** 2;
}

const model = new MLP();

export default defineTrainStep({
  name: 'mlp-regression',
  description: 'MLP 4 -> 64 -> 64 -> 1 on y = sin(x0) + x1*x2 - 0.5*x3^2 + N(0, 0.05^2)',
  batch: { x: { dtype: 'f32', shape: [BATCH, FEATURES] }, y: { dtype: 'f32', shape: [BATCH, 1] } },
  loss: (b) => model.forward(b.x!).sub(b.y!).square().mean(),
  data: (_step, rng) => {
    const xs = Float64Array.from({ length: BATCH * FEATURES }, () => rng.normal());
    const ys = Float64Array.from({ length: BATCH }, (_, i) => target(xs.subarray(i * FEATURES, (i + 1) * FEATURES)) + 0.05 * rng.normal());
    return { x: fromFloat64('f32', [BATCH, FEATURES], xs), y: fromFloat64('f32', [BATCH, 1], ys) };
  },
  optimizer: { clipNorm: 1, weightDecay: 0.01 },
  seed: 1,
  defaults: { steps: 400, lr: 1e-2, warmup: 20, minLr: 1e-4, checkpointEvery: 100, keep: 2 },
});
