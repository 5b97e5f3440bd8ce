import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Correctness tests, not timed tests: generous per-test limits so a loaded 2-core
// machine (CI, or several jobs at once) cannot turn slowness into failures.
const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  // the package's entry points as a user imports them ('unifusion/runtime' in generated bindings),
  // resolved to the sources (package.json "exports" points at dist/)
  resolve: {
    alias: [
      { find: /^unifusion$/, replacement: src('./src/index.ts') },
      { find: /^unifusion\/dsl$/, replacement: src('./src/dsl/index.ts') },
      { find: /^unifusion\/graphs$/, replacement: src('./graphs/index.ts') },
      { find: /^unifusion\/runtime$/, replacement: src('./runtime/index.ts') },
    ],
  },
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
