// `unifusion serve-web [--pipeline DIR] [--port N] [--host H]`: the browser page on localhost.
// Without --pipeline it serves the built-in tiny DiT step (examples/web/tiny-pipeline.ts), compiled
// in memory; nothing is written anywhere.
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
    const m = pipeline.manifest;
    process.stdout.write(
      `serving ${server.url}\n  pipeline: ${opts.pipeline ? path.relative(process.cwd(), pipeline.label) || '.' : pipeline.label}: ${m.name}, ${m.paramCount.toLocaleString('en-US')} params, ${pipeline.info.channels} latent channels\n  Ctrl-C to stop\n`,
    );
  }
  return server;
}
