// Where in the user's code an op was written: the first stack frame outside this package's
// compiler sources (src/), as 'file:line' relative to the working directory (absolute when the
// file lies outside it), so the path printed is one the user can open.
//
// Two ways to get it:
// - userSite(): from a formatted stack (Node, tsx or vitest apply source maps while formatting).
//   About 100 µs; used when an error is thrown.
// - captureSite(): from V8's structured call sites, mapped through Node's source-map cache.
//   About 15 µs; used for every IR node a trace makes (ONNX doc_strings), where formatting
//   whole stacks would add a second to an 8B-parameter trace. Where no source map is registered
//   with Node (vitest's own transform), the generated position is the best it can give.
import { findSourceMap, SourceMap } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SRC_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const COMPILER_DIRS = ['train', 'autodiff', 'passes', 'cli'].map((d) => path.join(SRC_DIR, d) + path.sep);

/** A file name or file:// URL as a path the user can open from the working directory. */
export function displayFile(file: string): string {
  let f = file;
  if (f.startsWith('file://')) f = fileURLToPath(f);
  const abs = path.resolve(f);
  const rel = path.relative(process.cwd(), abs);
  return rel === '' || rel.startsWith('..') || path.isAbsolute(rel) ? abs : rel;
}

function isOurs(file: string): boolean {
  if (file.startsWith('node:') || file.includes('node_modules')) return true;
  const f = file.startsWith('file://') ? fileURLToPath(file) : file;
  return path.resolve(f).startsWith(SRC_DIR + path.sep);
}

// Source maps of code this package generated and imported (bundled graph files), by file URL:
// Node's own cache only holds them when source maps are enabled process-wide.
const registered = new Map<string, SourceMap>();
const urlOf = (file: string) => (file.startsWith('file://') ? file : pathToFileURL(path.resolve(file)).href);

/** Register the source map of a generated module (its payload: the parsed JSON). */
export function registerSourceMap(file: string, payload: unknown): void {
  registered.set(urlOf(file), new SourceMap(payload as ConstructorParameters<typeof SourceMap>[0]));
}

/** The original 'file:line' of a generated position (1-based line and column), or the position itself. */
function mapped(file: string, line: number, col: number): string {
  const sm = registered.get(urlOf(file)) ?? findSourceMap(file);
  const entry = sm?.findEntry(line - 1, col - 1) as { originalSource?: string; originalLine?: number } | undefined;
  if (entry?.originalSource && entry.originalLine !== undefined) return `${displayFile(resolveSource(file, entry.originalSource))}:${entry.originalLine + 1}`;
  return `${displayFile(file)}:${line}`;
}

/** The first user frame of a formatted stack (`err.stack`), as 'file:line'. */
export function siteFromStack(stack: string | undefined): string | undefined {
  for (const line of (stack ?? '').split('\n').slice(1)) {
    const m = /\(?((?:file:\/\/)?[^()\s]+?):(\d+):(\d+)\)?\s*$/.exec(line.trim());
    if (!m) continue;
    const file = m[1]!;
    if (!file.includes('/') || isOurs(file)) continue;
    // a bundle whose frames were not mapped while formatting (no process-wide source maps)
    if (registered.has(urlOf(file))) return mapped(file, Number(m[2]), Number(m[3]));
    return `${displayFile(file)}:${m[2]}`;
  }
  return undefined;
}

export function userSite(): string | undefined {
  return siteFromStack(new Error().stack);
}

const structured = (_e: Error, cs: NodeJS.CallSite[]) => cs;

// Per file name seen in a stack: is it ours, the compiler's own (gradients, optimizer), or the user's?
// And per position: its mapped 'file:line'. A trace asks for thousands of sites over a few files.
const kinds = new Map<string, 'ours' | 'compiler' | 'user'>();
const positions = new Map<string, string>();
function kindOf(file: string): 'ours' | 'compiler' | 'user' {
  let k = kinds.get(file);
  if (k === undefined) {
    const abs = file.startsWith('file://') ? fileURLToPath(file) : file;
    k = COMPILER_DIRS.some((d) => abs.startsWith(d)) ? 'compiler' : isOurs(file) ? 'ours' : 'user';
    kinds.set(file, k);
  }
  return k;
}

/** userSite() from structured call sites (see the header): cheap enough for every node. */
export function captureSite(): string | undefined {
  // Collecting frames is what costs (a few µs each): most DSL calls reach the user's frame within
  // ten, so look there first and go deeper only when those ten were all ours.
  const near = siteWithin(10);
  return near === DEEPER ? (siteWithin(40) as string | undefined) : near;
}

const DEEPER = Symbol('deeper');

function siteWithin(limit: number): string | undefined | typeof DEEPER {
  const prevPrepare = Error.prepareStackTrace;
  const prevLimit = Error.stackTraceLimit;
  let sites: NodeJS.CallSite[];
  try {
    Error.stackTraceLimit = limit;
    Error.prepareStackTrace = structured;
    const holder: { stack?: NodeJS.CallSite[] } = {};
    Error.captureStackTrace(holder, captureSite);
    sites = holder.stack ?? [];
  } finally {
    Error.prepareStackTrace = prevPrepare;
    Error.stackTraceLimit = prevLimit;
  }
  if (sites.length >= limit - 1 && limit < 40 && sites.every((cs) => { const f = cs.getFileName(); return !f || kindOf(f) === 'ours'; })) return DEEPER;
  for (const cs of sites) {
    const file = cs.getFileName();
    if (!file) continue;
    const kind = kindOf(file);
    // made by the compiler itself (gradients, the optimizer step): no line of the user's made it
    if (kind === 'compiler') return undefined;
    if (kind === 'ours') continue;
    const line = cs.getLineNumber() ?? 0, col = cs.getColumnNumber() ?? 0;
    const key = `${file}:${line}:${col}`;
    let at = positions.get(key);
    if (at === undefined) positions.set(key, (at = mapped(file, line, col)));
    return at;
  }
  return undefined;
}

/** A source map's source, resolved against the generated file it belongs to. */
function resolveSource(generated: string, source: string): string {
  if (source.startsWith('file://') || path.isAbsolute(source)) return source;
  const base = generated.startsWith('file://') ? fileURLToPath(generated) : generated;
  return path.resolve(path.dirname(base), source);
}
