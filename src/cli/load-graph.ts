// Loading a user's graph file: esbuild bundles it (TypeScript, their own
// imports) but leaves this package's compiler sources external, so the file
// and the CLI share one DSL instance (one tracing context). Type checking is
// separate (typecheck.ts): esbuild only strips types.
//
// The bundle is written to a temp file with its source map inline, and esbuild is told that file
// is its output: the map's sources are then relative to the temp file, so stack traces (and the
// file:line in every DSL error) resolve to the user's real file, shown relative to the cwd.
import * as esbuild from 'esbuild';
import { constants as fsConstants, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GRAPH_DEFINITION, type GraphDefinition } from '../dsl/define.ts';
import { displayFile, registerSourceMap } from '../dsl/site.ts';
import { asDSLError } from '../dsl/trace.ts';
import type { Graph } from '../ir/graph.ts';

const PKG_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = path.join(PKG_ROOT, 'src');

export type LoadedDefinition = GraphDefinition<unknown> & { trace(preset?: string): Graph };

export class GraphFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraphFileError';
  }
}

export async function loadGraphFile(file: string): Promise<LoadedDefinition> {
  const abs = path.resolve(file);
  let st;
  try {
    st = await fs.stat(abs);
    await fs.access(abs, fsConstants.R_OK);
  } catch {
    throw new GraphFileError(`graph file '${file}' does not exist or is not readable`);
  }
  if (!st.isFile()) throw new GraphFileError(`graph file '${file}' is not a file`);
  const tmp = path.join(os.tmpdir(), `unifusion-graph-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  let result: esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  try {
    result = await esbuild.build({
      entryPoints: [abs],
      outfile: tmp,
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      write: false,
      sourcemap: 'inline',
      logLevel: 'silent',
      plugins: [
        {
          name: 'unifusion-external',
          setup(build) {
            build.onResolve({ filter: /^unifusion(\/.*)?$/ }, (args) => {
              const sub = args.path === 'unifusion' ? 'index.ts' : args.path === 'unifusion/dsl' ? 'dsl/index.ts' : null;
              if (!sub) return { errors: [{ text: `unknown unifusion entry '${args.path}' (use 'unifusion' or 'unifusion/dsl')` }] };
              return { path: pathToFileURL(path.join(SRC, sub)).href, external: true };
            });
            build.onResolve({ filter: /^\./ }, (args) => {
              const p = path.resolve(args.resolveDir, args.path);
              if (p.startsWith(SRC + path.sep)) return { path: pathToFileURL(p).href, external: true };
              return undefined;
            });
          },
        },
      ],
    });
  } catch (e) {
    // esbuild reports locations relative to its working directory (the cwd)
    const msg =
      (e as { errors?: esbuild.Message[] }).errors?.map((m) => `  ${m.location ? `${displayFile(m.location.file)}:${m.location.line}:${m.location.column + 1}: ` : ''}${m.text}`).join('\n') ?? String(e);
    throw new GraphFileError(`cannot build graph file '${file}':\n${msg}`);
  }
  const code = result.outputFiles[0]!.text;
  const inline = /\/\/# sourceMappingURL=data:application\/json;base64,([A-Za-z0-9+/=]+)\s*$/.exec(code);
  if (inline) registerSourceMap(tmp, JSON.parse(Buffer.from(inline[1]!, 'base64').toString('utf8')));
  await fs.writeFile(tmp, code);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(tmp).href)) as { default?: unknown };
  } catch (e) {
    // top-level code of the graph file threw
    throw asDSLError(e, path.basename(file));
  } finally {
    await fs.rm(tmp, { force: true });
  }
  const def = mod.default as Partial<LoadedDefinition> | undefined;
  if (!def || typeof def !== 'object' || !(GRAPH_DEFINITION in def)) throw new GraphFileError(`graph file '${file}' must default-export defineGraph({...})`);
  return def as LoadedDefinition;
}
