#!/usr/bin/env node
// CLI entry. Installed from a package, it runs the build in dist/ with plain Node. In a checkout
// (src/ present and tsx installed) it runs the TypeScript sources through tsx, so edits take
// effect without a build; UNIFUSION_FROM=dist forces the build (how the tests check it).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'src', 'cli', 'main.js');
const source = join(root, 'src', 'cli', 'main.ts');

function hasTsx() {
  try {
    createRequire(import.meta.url).resolve('tsx/esm/api');
    return true;
  } catch {
    return false;
  }
}

// Stack traces (UNIFUSION_DEBUG) then point at .ts lines, not the emitted JavaScript.
process.setSourceMapsEnabled(true);
let main;
if (process.env.UNIFUSION_FROM !== 'dist' && existsSync(source) && hasTsx()) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
} else if (existsSync(built)) {
  ({ main } = await import('../dist/src/cli/main.js'));
} else {
  process.stderr.write(`error: unifusion is not built (no ${built}); run 'npm run build' in ${root}\n`);
  process.exit(1);
}
await main(process.argv);
