import { defineGraph, input } from 'unifusion/dsl';

export default defineGraph({
  name: 'broken',
  presets: { only: {} },
  build() {
    const a = input('a', 'f32', [2, 3]);
    const b = input('b', 'f32', [4, 5]);
    return { y: a.matmul(b) }; // line 9: inner dims 3 vs 4
  },
});
