// Where this package's own code lives, whether it runs from its sources (a checkout, under tsx) or
// from its build (dist/, plain Node, as installed from npm). User graph and train files must import
// the very modules the CLI runs (one DSL instance, one tracing context), and paths to files that
// ship with the package differ by tree and extension.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** True when this module is the compiled dist/src/layout.js (rewriteRelativeImportExtensions keeps the tree). */
export const FROM_BUILD = import.meta.url.endsWith('.js');

/** The tree the running code is in: the package root (sources) or <root>/dist (build). */
export const CODE_ROOT = path.resolve(HERE, '..');

/** The package root (where package.json is). */
export const PACKAGE_ROOT = FROM_BUILD ? path.resolve(CODE_ROOT, '..') : CODE_ROOT;

/** Folders of library code: anything a user file imports from these is the running package's module. */
export const CODE_DIRS = ['src', 'graphs', 'runtime', 'codegen', 'examples'] as const;

/**
 * The public entry points, by import specifier, as source paths. package.json's "exports" maps the
 * same specifiers to dist/<path>.js (test/package.test.ts checks that the two agree).
 */
export const ENTRY_POINTS: Readonly<Record<string, string>> = {
  unifusion: 'src/index.ts',
  'unifusion/dsl': 'src/dsl/index.ts',
  'unifusion/graphs': 'graphs/index.ts',
  'unifusion/runtime': 'runtime/index.ts',
};

/** Absolute path of a shipped code file given by its source path ('examples/x.ts' -> <root>/dist/examples/x.js when built). */
export function codeFile(sourcePath: string): string {
  const rel = FROM_BUILD ? sourcePath.replace(/\.ts$/, '.js') : sourcePath;
  return path.join(CODE_ROOT, rel);
}

/** The file an entry specifier ('unifusion', 'unifusion/dsl', ...) loads in this tree, or undefined. */
export function resolveEntry(specifier: string): string | undefined {
  const src = ENTRY_POINTS[specifier];
  return src === undefined ? undefined : codeFile(src);
}

/**
 * The running tree's module for a file of this package's library code, or undefined when `file` is
 * not package code. From the build, a checkout's source file (<root>/graphs/dit.ts) maps to its
 * compiled twin (<root>/dist/graphs/dit.js): one instance of every module either way.
 */
export function packageModule(file: string): string | undefined {
  const abs = path.resolve(file);
  const under = (root: string) => CODE_DIRS.some((d) => abs.startsWith(path.join(root, d) + path.sep));
  if (under(CODE_ROOT)) return abs;
  if (FROM_BUILD && under(PACKAGE_ROOT) && /\.ts$/.test(abs)) return path.join(CODE_ROOT, path.relative(PACKAGE_ROOT, abs)).replace(/\.ts$/, '.js');
  return undefined;
}
