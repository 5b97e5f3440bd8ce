// Importing a user's TypeScript file (graph or train definition) from plain Node: esbuild bundles
// it with its own imports, but every import of this package ('unifusion', 'unifusion/dsl', ...,
// or a relative path into the package's code) stays external and points at the modules the CLI
// itself runs, from src/ under tsx or from dist/ when installed, so the file and the CLI share
// one DSL instance (one tracing context).
import * as esbuild from 'esbuild';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ENTRY_POINTS, packageModule, resolveEntry } from '../layout.ts';
import { displayFile, registerSourceMap } from '../dsl/site.ts';

/** The esbuild plugin that maps this package's imports to the running tree and keeps them external. */
export function unifusionExternals(): esbuild.Plugin {
  return {
    name: 'unifusion-external',
    setup(build) {
      build.onResolve({ filter: /^unifusion(\/.*)?$/ }, (args) => {
        const file = resolveEntry(args.path);
        if (!file) return { errors: [{ text: `unknown unifusion entry '${args.path}' (use ${Object.keys(ENTRY_POINTS).map((k) => `'${k}'`).join(', ')})` }] };
        return { path: pathToFileURL(file).href, external: true };
      });
      build.onResolve({ filter: /^\./ }, (args) => {
        // the entry file itself is bundled even when it is package code (e.g. graphs/unifusion.ts)
        if (args.kind === 'entry-point') return undefined;
        const mod = packageModule(path.resolve(args.resolveDir, args.path));
        return mod ? { path: pathToFileURL(mod).href, external: true } : undefined;
      });
    },
  };
}

export class UserModuleError extends Error {
  override name = 'UserModuleError';
}

/**
 * Bundle `file` (TypeScript or JavaScript) and import it. `what` names the file in errors
 * ('graph file', 'train file'); build errors carry file:line relative to the working directory.
 */
export async function importUserModule(file: string, what: string): Promise<Record<string, unknown>> {
  return bundleAndImport(file, 'module', (errors, e) => {
    const msg = errors?.map((m) => `${m.location ? `${displayFile(m.location.file)}:${m.location.line}: ` : ''}${m.text}`).join('\n') ?? String(e);
    return new UserModuleError(`cannot build ${what} '${file}':\n${msg}`);
  });
}

/**
 * The one bundle-and-import path of user files (graph files too: load-graph.ts): esbuild is told a
 * temp file is its output, so the inline map's sources resolve to the user's file; the map is
 * registered for DSL sites, the temp file removed after the import. `buildError` and `importError`
 * turn esbuild's messages and a throwing top level into the caller's own errors.
 */
export async function bundleAndImport(
  file: string,
  tag: string,
  buildError: (errors: esbuild.Message[] | undefined, e: unknown) => Error,
  importError: (e: unknown) => unknown = (e) => e,
): Promise<Record<string, unknown>> {
  const abs = path.resolve(file);
  const tmp = path.join(os.tmpdir(), `unifusion-${tag}-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
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
      plugins: [unifusionExternals()],
    });
  } catch (e) {
    throw buildError((e as { errors?: esbuild.Message[] }).errors, e);
  }
  const code = result.outputFiles[0]!.text;
  const inline = /\/\/# sourceMappingURL=data:application\/json;base64,([A-Za-z0-9+/=]+)\s*$/.exec(code);
  if (inline) registerSourceMap(tmp, JSON.parse(Buffer.from(inline[1]!, 'base64').toString('utf8')));
  await fs.writeFile(tmp, code);
  try {
    return (await import(pathToFileURL(tmp).href)) as Record<string, unknown>;
  } catch (e) {
    throw importError(e);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
