// A user graph file used by the CLI tests: imports the DSL by package name.
import { defineGraph, dim, input, Linear, gelu } from 'unifusion/dsl';

export default defineGraph({
  name: 'mlp',
  presets: { small: { width: 8, depth: 2 }, wide: { width: 32, depth: 1 } },
  build(cfg) {
    const x = input('x', 'f32', [dim('batch'), cfg.width]);
    let h = x;
    for (let i = 0; i < cfg.depth; i++) h = gelu(new Linear(cfg.width, cfg.width).named(`layers.${i}`).forward(h));
    return { y: h };
  },
});
