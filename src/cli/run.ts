// `unifusion run <model.onnx> --inputs IN.safetensors --out OUT.safetensors [--device cpu] [--force]`:
// run any ONNX model on tensors from a safetensors file and save every output by name.
// OUT is checked before the run (not the model, its external data or the inputs file; a file
// there only if an earlier `run` wrote it, or with --force) and written atomically after a
// successful one, so a failure never leaves one (src/io/outdir.ts).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { HostTensor } from '../io/host.ts';
import { preflightOutputFile, writeOutputFile, type OutputFileOptions } from '../io/outdir.ts';
import { readSafetensors, SafetensorsError, SafetensorsFile, writeSafetensors } from '../io/safetensors.ts';
import { decodeModel } from '../../codegen/onnx/proto.ts';
import { externalRefs } from '../../codegen/onnx/external.ts';
import { RuntimeInputError, Session } from '../../runtime/session.ts';
import { UsageError } from './errors.ts';

export interface RunCommandOptions {
  inputs: string;
  out: string;
  device?: string;
  quiet?: boolean;
  /** replace an existing OUT that `run` did not write */
  force?: boolean;
}

/** The metadata `run` writes into OUT; an existing OUT carrying it may be replaced. */
const PRODUCER = 'unifusion run';

async function isRunOutput(file: string): Promise<boolean> {
  try {
    const f = SafetensorsFile.openSync(file);
    try {
      return f.metadata.producer === PRODUCER;
    } finally {
      f.close();
    }
  } catch {
    return false;
  }
}

/** The model file and every external data file it names: --out may not be, contain or lie in any. */
async function modelFiles(model: string): Promise<string[]> {
  const files = [model];
  try {
    const refs = externalRefs(decodeModel(await fs.readFile(model)));
    for (const loc of new Set(refs.map((r) => r.location))) files.push(path.join(path.dirname(model), loc));
  } catch {
    /* Session.load reports an unreadable model */
  }
  return files;
}

export interface RunSummary {
  inputs: Record<string, HostTensor>;
  outputs: Record<string, HostTensor>;
  timesMs: { load: number; run: number; write: number };
}

export async function runCommand(model: string, opts: RunCommandOptions): Promise<RunSummary> {
  const device = opts.device ?? 'cpu';
  const t0 = performance.now();
  const target: OutputFileOptions = {
    out: opts.out,
    inputs: [...(await modelFiles(model)).map((p, i) => ({ path: p, what: i === 0 ? '<model>' : "(the model's external data)" })), { path: opts.inputs, what: '--inputs' }],
    force: opts.force,
    command: 'run',
    isOurs: isRunOutput,
  };
  await preflightOutputFile(target);
  const feeds = await readInputs(opts.inputs);
  const session = await Session.load(model, { device });
  const t1 = performance.now();
  let outputs: Record<string, HostTensor>;
  try {
    outputs = await session.run(feeds);
  } catch (e) {
    // The runtime names the tensor; add which file it came from.
    if (e instanceof RuntimeInputError) throw new RuntimeInputError(e.tensor, `inputs file '${opts.inputs}': ${e.message}`);
    throw e;
  } finally {
    await session.release();
  }
  const t2 = performance.now();
  // The run accepted the feeds, so they are exactly the model's inputs: list them in its order.
  const inputs = Object.fromEntries(session.inputs.map((m) => [m.name, feeds[m.name]!]));
  // streamed into the temp file (no second copy of the outputs in memory)
  await writeOutputFile(target, async (tmp) => writeSafetensors(tmp, outputs, { producer: PRODUCER, model: path.basename(model), device }));
  const t3 = performance.now();
  const summary = { inputs, outputs, timesMs: { load: t1 - t0, run: t2 - t1, write: t3 - t2 } };
  if (!opts.quiet) process.stdout.write(formatSummary(model, device, opts.out, summary));
  return summary;
}

async function readInputs(file: string): Promise<Record<string, HostTensor>> {
  // Checked here because readSafetensors would surface a bare ENOENT without saying what the file was for.
  let st;
  try {
    st = await fs.stat(file);
  } catch {
    throw new UsageError(`inputs file '${file}' does not exist`);
  }
  if (!st.isFile()) throw new UsageError(`inputs file '${file}' is not a file`);
  try {
    return Object.fromEntries(readSafetensors(file).tensors);
  } catch (e) {
    // SafetensorsError messages already name the file (and the tensor, where one is involved).
    if (e instanceof SafetensorsError) throw e;
    throw new UsageError(`cannot read inputs file '${file}': ${e instanceof Error ? e.message : String(e)}`);
  }
}

function formatSummary(model: string, device: string, out: string, s: RunSummary): string {
  const list = (ts: Record<string, HostTensor>) =>
    Object.entries(ts).map(([n, t]) => `${n} ${t.dtype}[${t.shape.join(', ')}]`).join('; ') || 'none';
  const ms = (v: number) => `${v.toFixed(0)} ms`;
  return [
    `ran ${model} on ${device}`,
    `  inputs:  ${list(s.inputs)}`,
    `  outputs: ${list(s.outputs)}`,
    `  time:    load ${ms(s.timesMs.load)}, run ${ms(s.timesMs.run)}, write ${ms(s.timesMs.write)}`,
    `  -> ${out}`,
  ].join('\n') + '\n';
}
