// Where in the user's code an op was written: the first stack frame outside
// this package's compiler sources (src/). Only computed when an error is thrown.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// From the build (dist/src), source-mapped frames name the original <root>/src files.
const SRC_DIRS = path.basename(path.dirname(SRC_DIR)) === 'dist' ? [SRC_DIR, path.resolve(SRC_DIR, '../../src')] : [SRC_DIR];

export function userSite(): string | undefined {
  const stack = new Error().stack?.split('\n').slice(1) ?? [];
  for (const line of stack) {
    const m = /\(?((?:file:\/\/)?[^()\s]+?):(\d+):(\d+)\)?\s*$/.exec(line.trim());
    if (!m) continue;
    let file = m[1]!;
    if (file.startsWith('file://')) file = fileURLToPath(file);
    if (file.startsWith('node:') || file.includes('node_modules')) continue;
    if (SRC_DIRS.some((d) => path.resolve(file).startsWith(d + path.sep))) continue;
    return `${path.relative(process.cwd(), file) || file}:${m[2]}`;
  }
  return undefined;
}
