// Loading a user's graph file: esbuild bundles it (TypeScript, their own
// imports) but leaves this package's code external (unifusionExternals: src/ or dist/,
// whichever the CLI runs from), so the file and the CLI share one DSL instance.
import * as esbuild from 'esbuild';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { GRAPH_DEFINITION, type GraphDefinition } from '../dsl/define.ts';
import type { Graph } from '../ir/graph.ts';
import { unifusionExternals } from './user-module.ts';

export type LoadedDefinition = GraphDefinition<unknown> & { trace(preset?: string): Graph };

export class GraphFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraphFileError';
  }
}

export async function loadGraphFile(file: string): Promise<LoadedDefinition> {
  const abs = path.resolve(file);
  try {
    await fs.access(abs);
  } catch {
    throw new GraphFileError(`graph file '${file}' does not exist or is not readable`);
  }
  let result: esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  try {
    result = await esbuild.build({
      entryPoints: [abs],
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      write: false,
      sourcemap: 'inline',
      sourceRoot: process.cwd() + path.sep, // map sources are cwd-relative; the bundle runs from the temp folder
      logLevel: 'silent',
      plugins: [unifusionExternals()],
    });
  } catch (e) {
    const msg = (e as { errors?: esbuild.Message[] }).errors?.map((m) => `${m.location ? `${path.relative(process.cwd(), m.location.file)}:${m.location.line}: ` : ''}${m.text}`).join('\n') ?? String(e);
    throw new GraphFileError(`cannot build graph file '${file}':\n${msg}`);
  }
  const code = result.outputFiles[0]!.text;
  const tmp = path.join(os.tmpdir(), `unifusion-graph-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  await fs.writeFile(tmp, code);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(tmp).href)) as { default?: unknown };
  } finally {
    await fs.rm(tmp, { force: true });
  }
  const def = mod.default as Partial<LoadedDefinition> | undefined;
  if (!def || typeof def !== 'object' || !(GRAPH_DEFINITION in def)) throw new GraphFileError(`graph file '${file}' must default-export defineGraph({...})`);
  return def as LoadedDefinition;
}
