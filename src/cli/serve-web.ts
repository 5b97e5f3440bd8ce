// `unifusion serve-web [--pipeline DIR] [--port N] [--host H]`: the browser page on localhost.
// --pipeline takes a pipeline folder (pipeline.json: the page runs runtime/pipeline + runtime/vlm on
// onnxruntime-web) or a compiled denoiser step folder. Without --pipeline it serves the built-in
// tiny DiT step (examples/web/tiny-pipeline.ts), compiled in memory; nothing is written anywhere.
import * as path from 'node:path';
import { UsageError } from './errors.ts';
import { builtinPipeline, pageFiles, pipelineFromDir, serveWeb, type WebServer } from '../web/serve.ts';

export interface ServeWebOptions {
  pipeline?: string;
  port?: string | number;
  host?: string;
  quiet?: boolean;
}

export async function serveWebCommand(opts: ServeWebOptions): Promise<WebServer> {
  const port = opts.port === undefined ? 8080 : Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be an integer in 0..65535, got '${opts.port}'`);
  const pipeline = opts.pipeline ? await pipelineFromDir(path.resolve(opts.pipeline)) : builtinPipeline();
  const server = await serveWeb({ pipeline, page: await pageFiles(), port, host: opts.host });
  if (!opts.quiet) {
    const where = opts.pipeline ? path.relative(process.cwd(), pipeline.label) || '.' : pipeline.label;
    let what: string;
    if (pipeline.kind === 'folder') {
      const j = pipeline.json;
      what = `pipeline ${j.name} (${pipeline.files.size} files, sha256 checked): ${j.parts.vlm ? `VLM ${j.parts.vlm.dir}` : 'no VLM (the page will say it cannot encode prompts)'}, ${j.parts.vae ? 'VAE' : 'pixel space'}`;
    } else {
      const m = pipeline.manifest;
      what = `denoiser step ${m.name}, ${m.paramCount.toLocaleString('en-US')} params, ${pipeline.info.channels} latent channels`;
    }
    process.stdout.write(`serving ${server.url}\n  pipeline: ${where}: ${what}\n  Ctrl-C to stop\n`);
  }
  return server;
}
