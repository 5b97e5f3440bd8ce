// infer: re-run every op's shape/dtype rule bottom-up. Types are inferred as
// nodes are built; this step re-derives them after rewrites and reports any
// node whose type moved (which verify would then reject).
import { shapeEq } from '../ir/dims.ts';
import { rebuild, type Pass } from './pass.ts';

export const infer: Pass = {
  name: 'infer',
  run(g) {
    const { graph, map } = rebuild(g);
    let moved = 0;
    for (const [a, b] of map) if (a.dtype !== b.dtype || !shapeEq(a.shape, b.shape)) moved++;
    return { graph, changed: moved > 0, note: moved ? `${moved} node types re-derived` : undefined };
  },
};
