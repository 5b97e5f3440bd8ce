// serve-web: the browser page and one pipeline folder on a local HTTP server, with the headers that
// give onnxruntime-web its threaded wasm (cross-origin isolation), and nothing else: the only
// files served are the page's and those the pipeline's manifest names.
import { createReadStream, promises as fs } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { compileGraph } from '../compiler.ts';
import { encodeModel } from '../../codegen/onnx/proto.ts';
import { checkDenoiserManifest, type DenoiserInfo, type DenoiserManifest } from '../../examples/web/pipeline.ts';
import tinyPipeline from '../../examples/web/tiny-pipeline.ts';
import { CODE_ROOT, FROM_BUILD } from '../layout.ts';
import { parsePipelineJson, PIPELINE_FILE, verifyPipelineFiles, type PipelineJson } from '../../runtime/pipeline/format.ts';
import { bundleWebPage, type PageFile } from './bundle.ts';

/** A compiled denoiser step (examples/web/pipeline.ts) or a pipeline.json folder (examples/web/folder.ts). */
export type PipelineSource = StepSource | FolderSource;

export interface StepSource {
  kind: 'step';
  /** what to print: the folder, or the built-in graph */
  label: string;
  manifest: DenoiserManifest;
  info: DenoiserInfo;
  files: Map<string, PageFile>;
}

export interface FolderSource {
  kind: 'folder';
  label: string;
  json: PipelineJson;
  /** pipeline.json and every file it lists, by their '/'-separated names */
  files: Map<string, PageFile>;
}

/**
 * `--pipeline DIR`: a pipeline folder (pipeline.json, `unifusion assemble`; every part's sha256 is
 * checked here, once, so the page loads without hashing), else a `compile` output folder that
 * meets the page's denoiser contract.
 */
export async function pipelineFromDir(dir: string): Promise<PipelineSource> {
  if (await fs.stat(path.join(dir, PIPELINE_FILE)).then((s) => s.isFile(), () => false)) return pipelineFolder(dir);
  return stepFromDir(dir);
}

async function pipelineFolder(dir: string): Promise<FolderSource> {
  const file = path.join(dir, PIPELINE_FILE);
  const bytes = await fs.readFile(file);
  const json = parsePipelineJson(bytes.toString('utf8'), file);
  await verifyPipelineFiles(dir, json, { hashes: true });
  const files = new Map<string, PageFile>([[PIPELINE_FILE, { bytes: new Uint8Array(bytes) }]]);
  // the names pipeline.json hashes (verifyPipelineFiles found each a file in the folder), no others
  const root = await fs.realpath(dir);
  for (const name of Object.keys(json.files)) {
    if (name.split('/').some((s) => s === '' || s === '.' || s === '..') || path.isAbsolute(name)) throw new Error(`${file}: file name '${name}' must be a relative path inside the folder`);
    const abs = path.join(dir, ...name.split('/'));
    // a link out of the folder would serve whatever it points at
    const real = await fs.realpath(abs);
    if (real !== root && !real.startsWith(root + path.sep)) throw new Error(`${file}: '${name}' resolves outside the pipeline folder (${real}); serve-web serves only the folder's own files`);
    files.set(name, { file: abs });
  }
  return { kind: 'folder', label: dir, json, files };
}

/** A `compile` output folder that meets the page's denoiser contract. */
async function stepFromDir(dir: string): Promise<StepSource> {
  const manifestPath = path.join(dir, 'manifest.json');
  let text: string;
  try {
    text = await fs.readFile(manifestPath, 'utf8');
  } catch {
    throw new Error(`--pipeline '${dir}': neither a pipeline.json (a pipeline folder, \`unifusion assemble\`) nor a readable manifest.json (a folder written by 'unifusion compile', e.g. of examples/web/tiny-pipeline.ts)`);
  }
  let manifest: DenoiserManifest;
  try {
    manifest = JSON.parse(text) as DenoiserManifest;
  } catch (e) {
    throw new Error(`${manifestPath}: not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const info = checkDenoiserManifest(manifest, manifestPath);
  const files = new Map<string, PageFile>([['manifest.json', { bytes: new TextEncoder().encode(text) }]]);
  for (const name of [manifest.onnx, manifest.externalData].filter((n): n is string => typeof n === 'string')) {
    // names from the manifest, but never a path out of the folder
    if (name !== path.basename(name) || name.startsWith('.')) throw new Error(`${manifestPath}: file name '${name}' must be a plain name inside the folder`);
    const file = path.join(dir, name);
    const st = await fs.stat(file).catch(() => null);
    if (!st?.isFile()) throw new Error(`${manifestPath} names '${name}', which is not a file in '${dir}'`);
    files.set(name, { file });
  }
  return { kind: 'step', label: dir, manifest, info, files };
}

/** The built-in pipeline: examples/web/tiny-pipeline.ts compiled in memory. */
export function builtinPipeline(): StepSource {
  const compiled = compileGraph(tinyPipeline.trace(), { weights: 'embed', preset: tinyPipeline.defaultPreset });
  const manifest = compiled.manifest as DenoiserManifest;
  const files = new Map<string, PageFile>([
    ['manifest.json', { bytes: new TextEncoder().encode(JSON.stringify(compiled.manifest, null, 2) + '\n') }],
    [manifest.onnx, { bytes: encodeModel(compiled.emitted.model) }],
  ]);
  return { kind: 'step', label: `built-in ${manifest.name} (examples/web/tiny-pipeline.ts)`, manifest, info: checkDenoiserManifest(manifest), files };
}

/** The page's files: dist/web when running from the build, else bundled now from examples/web. */
export async function pageFiles(): Promise<Map<string, PageFile>> {
  if (!FROM_BUILD) return bundleWebPage();
  const dir = path.join(CODE_ROOT, 'web');
  const names = await fs.readdir(dir).catch(() => {
    throw new Error(`the built page is missing (${dir}); rebuild the package (npm run build)`);
  });
  return new Map(names.map((n) => [n, { file: path.join(dir, n) }]));
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
};

export interface WebServer {
  url: string;
  close(): Promise<void>;
}

export interface ServeOptions {
  pipeline: PipelineSource;
  page: Map<string, PageFile>;
  host?: string;
  /** 0: any free port */
  port?: number;
}

export async function serveWeb(opts: ServeOptions): Promise<WebServer> {
  const routes = new Map<string, PageFile>();
  for (const [n, f] of opts.page) routes.set(`/${n}`, f);
  routes.set('/', opts.page.get('index.html') ?? { bytes: new Uint8Array() });
  for (const [n, f] of opts.pipeline.files) routes.set(`/pipeline/${n}`, f);

  const server = http.createServer((req, res) => {
    const headers = {
      // crossOriginIsolated: SharedArrayBuffer, so onnxruntime-web can run its wasm threads
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cache-Control': 'no-store',
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, Allow: 'GET, HEAD' }).end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const f = routes.get(decodeURIComponent(url.pathname));
    if (!f) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' }).end(`not found: ${url.pathname}\n`);
      return;
    }
    const type = MIME[path.extname(url.pathname === '/' ? 'index.html' : url.pathname)] ?? 'application/octet-stream';
    if ('bytes' in f) {
      res.writeHead(200, { ...headers, 'Content-Type': type, 'Content-Length': f.bytes.byteLength });
      res.end(req.method === 'HEAD' ? undefined : f.bytes);
      return;
    }
    fs.stat(f.file).then(
      (st) => {
        res.writeHead(200, { ...headers, 'Content-Type': type, 'Content-Length': st.size });
        if (req.method === 'HEAD') res.end();
        else createReadStream(f.file).on('error', () => res.destroy()).pipe(res);
      },
      () => res.writeHead(500, headers).end(),
    );
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(e.code === 'EADDRINUSE' ? `port ${opts.port} on ${host} is in use (--port 0 picks a free one)` : `cannot listen on ${host}:${opts.port}: ${e.message}`)),
    );
    server.listen(opts.port ?? 8080, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shownHost}:${addr.port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
