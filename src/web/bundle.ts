// The browser page (examples/web) as static files: index.html, app.js (esbuild bundle of main.ts
// with onnxruntime-web inside) and the one onnxruntime-web wasm binary its default build loads
// (JSEP: wasm and WebGPU execution providers). `npm run build` writes them to dist/web, so an
// installed package serves them without onnxruntime-web or the page sources; from a checkout,
// serve-web bundles them in memory.
import * as esbuild from 'esbuild';
import { promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../layout.ts';

/** The wasm binary of onnxruntime-web's default (JSEP) build, as its bundle names it. */
export const ORT_WASM = 'ort-wasm-simd-threaded.jsep.wasm';

export const PAGE_SOURCES = path.join(PACKAGE_ROOT, 'examples', 'web');

/** A page file: bytes in memory, or a file on disk to stream. */
export type PageFile = { bytes: Uint8Array } | { file: string };

const SHIMS = path.join(PACKAGE_ROOT, 'src', 'web', 'shims');

/** Named imports of the stubbed modules in the page's import graph. */
const STUB_EXPORTS: Record<string, string[]> = { module: ['findSourceMap', 'SourceMap'] };

/**
 * The page runs runtime/pipeline and runtime/vlm themselves (no second implementation): their
 * Node imports resolve to browser shims (src/web/shims: an in-memory read-only fs the page fills,
 * onnxruntime-web behind onnxruntime-node's API, sha256, promisify, path-browserify), and the
 * Node-only modules the page never calls (sharp, cli-progress, zlib, ...) to stubs that throw
 * naming the call. onnxruntime-web's own node:* imports (behind its Node check) stay external.
 */
function nodeShims(): esbuild.Plugin {
  const req = createRequire(path.join(PACKAGE_ROOT, 'package.json'));
  const mapped: Record<string, string> = {
    fs: path.join(SHIMS, 'fs.ts'),
    'fs/promises': path.join(SHIMS, 'fs.ts'),
    crypto: path.join(SHIMS, 'crypto.ts'),
    util: path.join(SHIMS, 'util.ts'),
    url: path.join(SHIMS, 'url.ts'),
    path: req.resolve('path-browserify'),
    'onnxruntime-node': path.join(SHIMS, 'ort.ts'),
  };
  const stubbed = new Set(['sharp', 'cli-progress']);
  return {
    name: 'unifusion-node-shims',
    setup(b) {
      b.onResolve({ filter: /^(node:[\w/]+|fs|path|crypto|util|url|os|zlib|sharp|cli-progress|onnxruntime-node)$/ }, (a) => {
        if (/[\\/]node_modules[\\/]onnxruntime-web[\\/]/.test(a.importer)) return undefined;
        const name = a.path.replace(/^node:/, '');
        if (mapped[name]) return { path: mapped[name] };
        if (a.path.startsWith('node:') || stubbed.has(name) || name === 'os' || name === 'zlib') return { path: name, namespace: 'unavailable' };
        return undefined;
      });
      // ESM with the names runtime/ imports (an unknown one is a bundle error naming it)
      b.onLoad({ filter: /.*/, namespace: 'unavailable' }, (a) => ({
        contents: [
          `import stub from ${JSON.stringify(path.join(SHIMS, 'unavailable.cjs'))};`,
          `const s = stub(${JSON.stringify(a.path)});`,
          'export default s;',
          ...(STUB_EXPORTS[a.path] ?? []).map((n) => `export const ${n} = s.${n};`),
        ].join('\n'),
        loader: 'js',
        resolveDir: SHIMS,
      }));
    },
  };
}

/** Bundle the page in memory: name -> contents. */
export async function bundleWebPage(): Promise<Map<string, PageFile>> {
  const entry = path.join(PAGE_SOURCES, 'main.ts');
  let ortDir: string;
  try {
    ortDir = path.dirname(createRequire(path.join(PACKAGE_ROOT, 'package.json')).resolve(`onnxruntime-web/${ORT_WASM}`));
  } catch {
    throw new Error(`onnxruntime-web is not installed in ${PACKAGE_ROOT} (a devDependency: the page is bundled from a checkout; installed packages ship it prebuilt in dist/web)`);
  }
  const r = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'silent',
    outfile: 'app.js',
    // onnxruntime-web's bundle references node:* modules only behind a Node check
    external: ['node:*'],
    plugins: [nodeShims()],
    // runtime/ reads process.env (log level) and warns on process.stderr; no `versions.node`, so
    // onnxruntime-web (emscripten) still knows it is not in Node
    banner: { js: 'globalThis.process??={env:{},versions:{},cwd:()=>"/",stderr:{write:(s)=>console.warn(String(s).trimEnd())}};' },
  }).catch((e: unknown) => {
    const errs = (e as { errors?: esbuild.Message[] }).errors;
    throw new Error(`cannot bundle the web page (${entry}): ${errs?.map((m) => `${m.location ? `${m.location.file}:${m.location.line}: ` : ''}${m.text}`).join('; ') ?? String(e)}`);
  });
  const files = new Map<string, PageFile>();
  files.set('index.html', { bytes: await fs.readFile(path.join(PAGE_SOURCES, 'index.html')) });
  for (const o of r.outputFiles) files.set(path.basename(o.path), { bytes: o.contents });
  files.set(ORT_WASM, { file: path.join(ortDir, ORT_WASM) });
  return files;
}

/** Write the bundled page into `outDir` (an empty folder the caller made). */
export async function buildWebPage(outDir: string): Promise<{ files: string[]; bytes: number }> {
  const files = await bundleWebPage();
  await fs.mkdir(outDir);
  let bytes = 0;
  for (const [name, f] of files) {
    const dest = path.join(outDir, name);
    if ('bytes' in f) await fs.writeFile(dest, f.bytes);
    else await fs.copyFile(f.file, dest);
    bytes += (await fs.stat(dest)).size;
  }
  return { files: [...files.keys()].sort(), bytes };
}
