// `unifusion run <model.onnx> --inputs IN.safetensors --out OUT.safetensors [--device cpu]`:
// run any ONNX model on tensors from a safetensors file and save every output by name.
// OUT is written atomically and only after a successful run, so a failure never leaves one.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { HostTensor } from '../io/host.ts';
import { readSafetensors, SafetensorsError, writeSafetensors } from '../io/safetensors.ts';
import { RuntimeInputError, Session } from '../../runtime/session.ts';

export interface RunCommandOptions {
  inputs: string;
  out: string;
  device?: string;
  quiet?: boolean;
}

export interface RunSummary {
  inputs: Record<string, HostTensor>;
  outputs: Record<string, HostTensor>;
  timesMs: { load: number; run: number; write: number };
}

export async function runCommand(model: string, opts: RunCommandOptions): Promise<RunSummary> {
  const device = opts.device ?? 'cpu';
  const t0 = performance.now();
  const feeds = await readInputs(opts.inputs);
  const session = await Session.load(model, { device });
  const t1 = performance.now();
  let outputs: Record<string, HostTensor>;
  try {
    outputs = await session.run(feeds);
  } catch (e) {
    // The runtime names the tensor; add which file it came from.
    if (e instanceof RuntimeInputError) throw new Error(`inputs file '${opts.inputs}': ${e.message}`);
    throw e;
  } finally {
    await session.release();
  }
  const t2 = performance.now();
  // The run accepted the feeds, so they are exactly the model's inputs: list them in its order.
  const inputs = Object.fromEntries(session.inputs.map((m) => [m.name, feeds[m.name]!]));
  try {
    await fs.mkdir(path.dirname(path.resolve(opts.out)), { recursive: true });
    writeSafetensors(opts.out, outputs, { model: path.basename(model), device });
  } catch (e) {
    throw new Error(`cannot write '${opts.out}': ${e instanceof Error ? e.message : String(e)}`);
  }
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
    throw new Error(`inputs file '${file}' does not exist`);
  }
  if (!st.isFile()) throw new Error(`inputs file '${file}' is not a file`);
  try {
    return Object.fromEntries(readSafetensors(file).tensors);
  } catch (e) {
    // SafetensorsError messages already name the file (and the tensor, where one is involved).
    if (e instanceof SafetensorsError) throw e;
    throw new Error(`cannot read inputs file '${file}': ${e instanceof Error ? e.message : String(e)}`);
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
