#!/usr/bin/env node
// CLI entry: runs the TypeScript sources directly through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
// Stack traces (UNIFUSION_DEBUG) then point at .ts lines, not tsx's transpiled output.
process.setSourceMapsEnabled(true);
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
