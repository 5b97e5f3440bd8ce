import { defineConfig } from 'vitest/config';

// Correctness tests, not timed tests: generous per-test limits so a loaded 2-core
// machine (CI, or several jobs at once) cannot turn slowness into failures.
export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
