// Type-checking a user's graph or train file before its output is written: esbuild (graph files)
// and tsx (train files) strip types without checking them, so a file with type errors would
// otherwise compile, and a typo'd option would be silently ignored.
//
// - The TypeScript compiler is the one ts-morph bundles (a runtime dependency; `typescript`
//   itself is only a devDependency). Its lib .d.ts files come from ts-morph's in-memory copies.
// - Imports of 'unifusion' and 'unifusion/dsl' resolve to this package's sources, wherever the
//   user's file lives (the same mapping the graph-file bundler uses).
// - Compiler options: those of the nearest tsconfig.json above the file, if any (the user's own
//   strictness), else strict ES2022 modules; always noEmit, skipLibCheck, no DOM lib unless the
//   user's tsconfig asks for it, and Node's types only when the user's code refers to Node.
// - Only the user's files are reported: the entry and every file it reaches that is not part of
//   this package (whose own sources `npm run typecheck` covers).
// - startTypecheck() runs the check in a worker thread, so it overlaps the trace and compile
//   instead of adding to them (measured in the report of issue 8; --no-typecheck skips it).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { displayFile } from '../dsl/site.ts';

const PKG_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = path.join(PKG_ROOT, 'src');
/** folders of this package whose files `tsc -p .` checks (and node_modules): never reported here */
const OWN_DIRS = ['src', 'graphs', 'codegen', 'runtime', 'examples', 'test', 'bench', 'bin', 'node_modules'].map((d) => path.join(PKG_ROOT, d) + path.sep);

export interface TypecheckResult {
  /** 'file:line:col - error TSnnnn: message', the user's paths */
  errors: string[];
  /** files in the program (the user's and ours) */
  files: number;
  ms: number;
  /** the checker itself could not run (reported as a warning; the command goes on unchecked) */
  failure?: string;
  /** every source file of the program (the user's and ours), for the cache of passed checks */
  inputs?: string[];
  /** true when a passed check of the same files was reused (nothing changed since) */
  cached?: boolean;
}

const MAX_SHOWN = 12;

function isReported(file: string, entry: string): boolean {
  const abs = path.resolve(file);
  if (abs === entry) return true;
  return !OWN_DIRS.some((d) => abs.startsWith(d)) && !abs.includes(`${path.sep}node_modules${path.sep}`);
}

const NODE_RE = /from\s+['"]node:|from\s+['"](fs|path|os|url|crypto|child_process|worker_threads)['"]|\bprocess\.|\bBuffer\b|\brequire\(/;
const RELATIVE_IMPORT_RE = /(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g;

/**
 * Does the user's code mention Node (imports of node:*, process, Buffer, require)? Then Node's
 * types are loaded (they are a third of the program otherwise). A textual scan of the entry and
 * the user's files it imports by relative path, before the program is made.
 */
function mentionsNode(entry: string): boolean {
  const seen = new Set<string>();
  const visit = (f: string): boolean => {
    if (seen.has(f) || seen.size > 200 || (f !== entry && !isReported(f, entry))) return false;
    seen.add(f);
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      return false;
    }
    if (NODE_RE.test(text)) return true;
    for (const m of text.matchAll(RELATIVE_IMPORT_RE)) {
      const base = path.resolve(path.dirname(f), m[1]!);
      const cand = [base, `${base}.ts`, base.replace(/\.js$/, '.ts'), path.join(base, 'index.ts')].find((c) => fs.existsSync(c) && fs.statSync(c).isFile());
      if (cand && visit(cand)) return true;
    }
    return false;
  };
  return visit(entry);
}

/** Type-check `file` (synchronously, in this thread). */
export async function typecheckFile(file: string): Promise<TypecheckResult> {
  const t0 = performance.now();
  const { Project, ts } = await import('ts-morph');
  const entry = path.resolve(file);

  // The user's own compiler options, when a tsconfig.json sits above the file.
  let options: import('ts-morph').ts.CompilerOptions = {};
  // (this package's own tsconfig is for its sources: files of users inside a checkout get the defaults)
  const found = ts.findConfigFile(path.dirname(entry), (f) => ts.sys.fileExists(f));
  const configPath = found && path.resolve(found) !== path.join(PKG_ROOT, 'tsconfig.json') ? found : undefined;
  if (configPath) {
    const read = ts.readConfigFile(configPath, (f) => ts.sys.readFile(f));
    if (!read.error) options = ts.parseJsonConfigFileContent(read.config, ts.sys, path.dirname(configPath), undefined, configPath).options;
  } else {
    options = { strict: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler, esModuleInterop: true, resolveJsonModule: true };
  }
  const userTypes = options.types;
  options = {
    ...options,
    noEmit: true,
    skipLibCheck: true,
    // this package's sources import each other with .ts extensions
    allowImportingTsExtensions: true,
    lib: options.lib ?? ['lib.es2022.d.ts'],
    paths: { ...options.paths, unifusion: [path.join(SRC, 'index.ts')], 'unifusion/dsl': [path.join(SRC, 'dsl', 'index.ts')] },
    typeRoots: [...(options.typeRoots ?? []), path.join(PKG_ROOT, 'node_modules', '@types')],
  };
  if (options.moduleResolution === undefined || options.moduleResolution === ts.ModuleResolutionKind.Classic) options.moduleResolution = ts.ModuleResolutionKind.Bundler;
  if (options.module === undefined || options.module === ts.ModuleKind.CommonJS) options.module = ts.ModuleKind.ESNext;

  const haveNodeTypes = fs.existsSync(path.join(PKG_ROOT, 'node_modules', '@types', 'node'));
  const types = userTypes ?? (haveNodeTypes && mentionsNode(entry) ? ['node'] : []);
  const project = new Project({ compilerOptions: { ...options, types }, skipAddingFilesFromTsConfig: true });
  project.addSourceFileAtPath(entry);
  const program = project.getProgram().compilerObject;
  const userFiles = program.getSourceFiles().map((s) => s.fileName).filter((f) => isReported(f, entry));

  const errors: string[] = [];
  for (const f of userFiles) {
    const sf = program.getSourceFile(f);
    if (!sf) continue;
    const diags = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
    for (const d of diags) {
      if (d.category !== ts.DiagnosticCategory.Error) continue;
      const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n    ');
      let where = displayFile(f);
      if (d.file && d.start !== undefined) {
        const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
        where = `${displayFile(d.file.fileName)}:${line + 1}:${character + 1}`;
      }
      errors.push(`${where} - error TS${d.code}: ${msg}`);
    }
  }
  const inputs = program.getSourceFiles().map((sf) => sf.fileName).filter((f) => !f.includes('/lib.') || fs.existsSync(f));
  return { errors, files: program.getSourceFiles().length, ms: performance.now() - t0, inputs: configPath ? [...inputs, path.resolve(configPath)] : inputs };
}

// ---------------------------------------------------------------------------------------------
// Passed checks are remembered (node_modules/.cache/unifusion/typecheck/, else the temp folder):
// the same entry whose program files all have the sizes and mtimes they had then needs no check
// again (a second compile with another preset, a resumed training). Only passes are cached.
// ---------------------------------------------------------------------------------------------

interface CacheEntry {
  key: string;
  files: [string, number, number][];
}

function cacheDir(): string {
  const inPkg = path.join(PKG_ROOT, 'node_modules', '.cache', 'unifusion', 'typecheck');
  return fs.existsSync(path.join(PKG_ROOT, 'node_modules')) ? inPkg : path.join(os.tmpdir(), 'unifusion-typecheck-cache');
}

function cacheKey(entry: string): string {
  const version = (p: string) => {
    try {
      return (JSON.parse(fs.readFileSync(p, 'utf8')) as { version?: string }).version ?? '';
    } catch {
      return '';
    }
  };
  return `${version(path.join(PKG_ROOT, 'package.json'))}|${version(path.join(PKG_ROOT, 'node_modules', 'ts-morph', 'package.json'))}|${entry}`;
}

function cacheFile(entry: string): string {
  return path.join(cacheDir(), `${createHash('sha256').update(entry).digest('hex').slice(0, 32)}.json`);
}

/** The tsconfig.json the checker would use (found without loading TypeScript). */
function nearestConfig(entry: string): string | undefined {
  for (let d = path.dirname(entry); ; d = path.dirname(d)) {
    const c = path.join(d, 'tsconfig.json');
    if (fs.existsSync(c)) return c === path.join(PKG_ROOT, 'tsconfig.json') ? undefined : c;
    if (path.dirname(d) === d) return undefined;
  }
}

function cachedPass(entry: string): boolean {
  try {
    const c = JSON.parse(fs.readFileSync(cacheFile(entry), 'utf8')) as CacheEntry;
    if (c.key !== cacheKey(entry)) return false;
    const config = nearestConfig(entry);
    if (config && !c.files.some(([f]) => f === config)) return false;
    return c.files.every(([f, mtime, size]) => {
      const st = fs.statSync(f, { throwIfNoEntry: false });
      return st !== undefined && st.mtimeMs === mtime && st.size === size;
    });
  } catch {
    return false;
  }
}

function rememberPass(entry: string, inputs: readonly string[]): void {
  try {
    const files = inputs.flatMap((f): [string, number, number][] => {
      const st = fs.statSync(f, { throwIfNoEntry: false });
      return st ? [[f, st.mtimeMs, st.size]] : [];
    });
    const dir = cacheDir();
    fs.mkdirSync(dir, { recursive: true });
    const tmp = path.join(dir, `.${process.pid}-${Math.random().toString(36).slice(2)}.tmp`);
    fs.writeFileSync(tmp, JSON.stringify({ key: cacheKey(entry), files } satisfies CacheEntry));
    fs.renameSync(tmp, cacheFile(entry));
  } catch {
    /* a cache that cannot be written only costs the next check */
  }
}

/** A running type check (see startTypecheck). */
export interface TypecheckHandle {
  readonly file: string;
  /** the result; never rejects (a checker that cannot run reports that as its only error) */
  readonly result: Promise<TypecheckResult>;
  /** stop the check (the command failed for another reason) */
  cancel(): void;
}

/** Start type-checking `file` in a worker thread; falls back to this thread if no worker can start. */
export function startTypecheck(file: string): TypecheckHandle {
  const entry = path.resolve(file);
  if (cachedPass(entry)) return { file, result: Promise.resolve({ errors: [], files: 0, ms: 0, cached: true }), cancel: () => {} };
  let worker: Worker | undefined;
  const inThread = () =>
    typecheckFile(file).catch((e: unknown): TypecheckResult => ({ errors: [], files: 0, ms: 0, failure: e instanceof Error ? e.message : String(e) }));
  const result = new Promise<TypecheckResult>((resolve) => {
    try {
      worker = new Worker(new URL('./typecheck-worker.mjs', import.meta.url), { workerData: { module: new URL('./typecheck.ts', import.meta.url).href, file } });
    } catch {
      resolve(inThread());
      return;
    }
    let settled = false;
    worker.once('message', (m: TypecheckResult) => {
      settled = true;
      resolve(m);
      void worker?.terminate();
    });
    worker.once('error', () => {
      if (!settled) (settled = true), resolve(inThread());
    });
    worker.once('exit', () => {
      if (!settled) (settled = true), resolve({ errors: [], files: 0, ms: 0 });
    });
  });
  return {
    file,
    result: result.then((r) => {
      if (!r.errors.length && !r.failure && r.inputs) rememberPass(entry, r.inputs);
      return r;
    }),
    cancel: () => void worker?.terminate(),
  };
}

/** The error a failed type check becomes: the user's file:line:col of each error, first MAX_SHOWN of them. */
export function typeErrorMessage(what: string, file: string, r: TypecheckResult): string {
  const shown = r.errors.slice(0, MAX_SHOWN);
  const more = r.errors.length > shown.length ? `\n  ... and ${r.errors.length - shown.length} more` : '';
  return `${what} '${file}' has ${r.errors.length} type error${r.errors.length === 1 ? '' : 's'} (pass --no-typecheck to run it anyway):\n  ${shown.join('\n  ')}${more}`;
}

/** A graph or train file whose type check failed. */
export class TypecheckError extends Error {
  override name = 'TypecheckError';
}

/**
 * Run `work` (loading, tracing, compiling: everything before outputs are written) while `check`
 * runs beside it; then require the check to pass. When `work` fails and the check found type
 * errors, the type errors are reported instead: they are the likelier cause (a typo'd dtype or
 * option shows up as both). No check (--no-typecheck): just `work`.
 */
export async function withTypecheck<T>(check: TypecheckHandle | undefined, what: string, work: () => Promise<T>, opts: { primary?: (e: unknown) => boolean } = {}): Promise<T> {
  if (!check) return work();
  let value: T;
  try {
    value = await work();
  } catch (e) {
    // a file that is missing, does not parse or exports the wrong thing: that is the message
    if (opts.primary?.(e)) {
      check.cancel();
      throw e;
    }
    const r = await check.result;
    if (r.errors.length) throw new TypecheckError(typeErrorMessage(what, check.file, r));
    throw e;
  }
  const r = await check.result;
  if (r.errors.length) throw new TypecheckError(typeErrorMessage(what, check.file, r));
  if (r.failure) process.stderr.write(`warning: ${what} '${check.file}' was not type-checked: the checker failed (${r.failure})\n`);
  return value;
}
