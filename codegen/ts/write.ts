// Writing a bindings file next to its ONNX model under the shared output discipline: an atomic
// file, and an existing file replaced only when unifusion generated it (its first line says so).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { writeOutputFile, type InputPath } from '../../src/io/outdir.ts';
import type { Manifest } from '../../src/compiler.ts';
import { GENERATED_MARK, generateBindings, specFromManifest, type BindingsSpec } from './bindings.ts';

async function generatedByUs(file: string): Promise<boolean> {
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(GENERATED_MARK.length);
    await fh.read(buf, 0, buf.length, 0);
    return buf.toString('utf8') === GENERATED_MARK;
  } finally {
    await fh.close();
  }
}

/** Write `<dir>/<file>` (default `<graph name>.ts`); returns its path. */
export async function writeBindings(dir: string, spec: BindingsSpec, opts: { file?: string; command?: string; inputs?: readonly InputPath[]; force?: boolean } = {}): Promise<string> {
  const text = generateBindings(spec);
  const out = path.join(dir, opts.file ?? `${spec.name}.ts`);
  return writeOutputFile({ out, flag: '--bindings', command: opts.command ?? 'compile', inputs: opts.inputs, force: opts.force, isOurs: generatedByUs }, text);
}

/** Bindings for a `compile` output folder (its manifest.json), written into that folder. */
export async function writeManifestBindings(dir: string, opts: { command?: string; force?: boolean } = {}): Promise<string> {
  const manifest = JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;
  return writeBindings(dir, specFromManifest(manifest), { command: opts.command ?? 'compile', force: opts.force });
}
