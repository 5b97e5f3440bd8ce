// cse: rebuilding through a fresh Builder interns structurally equal nodes
// (same op, params and inputs), so duplicates left by rewrites merge.
import { rebuild, type Pass } from './pass.ts';

export const cse: Pass = {
  name: 'cse',
  run(g) {
    const before = g.nodes().length;
    const { graph } = rebuild(g);
    const after = graph.nodes().length;
    return { graph, changed: after < before, note: after < before ? `merged ${before - after} nodes` : undefined };
  },
};
