// Loading a user's graph file: esbuild bundles it (TypeScript, their own
// imports) but leaves this package's code external (unifusionExternals: src/ or dist/,
// whichever the CLI runs from), so the file and the CLI share one DSL instance. Type checking is
// separate (typecheck.ts): esbuild only strips types.
//
// The bundle is written to a temp file with its source map inline, and esbuild is told that file
// is its output: the map's sources are then relative to the temp file, so stack traces (and the
// file:line in every DSL error) resolve to the user's real file, shown relative to the cwd.
import { constants as fsConstants, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { GRAPH_DEFINITION, type GraphDefinition } from '../dsl/define.ts';
import { displayFile } from '../dsl/site.ts';
import { asDSLError } from '../dsl/trace.ts';
import type { Graph } from '../ir/graph.ts';
import { bundleAndImport } from './user-module.ts';

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
  const mod = await bundleAndImport(
    file,
    'graph',
    // esbuild reports locations relative to its working directory (the cwd)
    (errors, e) => new GraphFileError(`cannot build graph file '${file}':\n${errors?.map((m) => `  ${m.location ? `${displayFile(m.location.file)}:${m.location.line}:${m.location.column + 1}: ` : ''}${m.text}`).join('\n') ?? String(e)}`),
    // top-level code of the graph file threw
    (e) => asDSLError(e, path.basename(file)),
  );
  const def = mod.default as Partial<LoadedDefinition> | undefined;
  if (!def || typeof def !== 'object' || !(GRAPH_DEFINITION in def)) throw new GraphFileError(`graph file '${file}' must default-export defineGraph({...})`);
  return def as LoadedDefinition;
}
