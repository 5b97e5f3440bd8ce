#!/usr/bin/env node
// `npm run build` (also npm's `prepare`, so `npm ci` and `npm pack` build): the library and CLI as
// JavaScript + .d.ts + source maps (tsc -p tsconfig.build.json), then the browser page bundled with
// esbuild into dist/web (src/web/bundle.ts, from the JavaScript just built). Everything goes into a
// staging folder that replaces dist/ only when complete, and only a dist/ this script made (its
// marker file) is ever replaced.
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const MARKER = '.unifusion-build.json';
const stage = path.join(root, `.dist.stage-${process.pid}`);

function fail(msg) {
  process.stderr.write(`build: ${msg}\n`);
  process.exit(1);
}

if (existsSync(dist) && !existsSync(path.join(dist, MARKER)) && (await fs.readdir(dist)).length > 0)
  fail(`'${dist}' exists and was not made by this build (no ${MARKER}); move it away first`);

let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  fail('typescript is not installed (it is a devDependency: run npm install in the repository first)');
}

const cleanup = () => fs.rm(stage, { recursive: true, force: true });
process.on('SIGINT', () => cleanup().then(() => process.exit(130)));
process.on('SIGTERM', () => cleanup().then(() => process.exit(143)));
try {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', stage], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) throw new Error(`tsc failed (exit ${r.status ?? r.signal})`);
  const t1 = performance.now();
  const { buildWebPage } = await import(pathToFileURL(path.join(stage, 'src', 'web', 'bundle.js')).href);
  const web = await buildWebPage(path.join(stage, 'web'));
  const t2 = performance.now();
  await fs.writeFile(path.join(stage, MARKER), JSON.stringify({ producer: 'unifusion scripts/build.mjs', built: new Date().toISOString() }, null, 2) + '\n');
  if (existsSync(dist)) {
    const old = path.join(root, `.dist.old-${process.pid}`);
    await fs.rename(dist, old);
    await fs.rename(stage, dist);
    await fs.rm(old, { recursive: true, force: true });
  } else await fs.rename(stage, dist);
  // stderr: `npm pack --json` owns stdout
  process.stderr.write(`build: dist/ (tsc ${((t1 - t0) / 1000).toFixed(1)} s, web page ${((t2 - t1) / 1000).toFixed(1)} s: ${web.files.length} files, ${(web.bytes / 2 ** 20).toFixed(1)} MiB)\n`);
} catch (e) {
  await cleanup();
  fail(e instanceof Error ? e.message : String(e));
}
