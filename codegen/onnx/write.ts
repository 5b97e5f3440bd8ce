// Writing an emitted model to disk: the .onnx and its external data, each via
// a temp file + rename so that a failure never leaves a half-written model.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { encodeModel } from './proto.ts';
import { makeDirs } from '../../src/io/outdir.ts';
import type { Emitted } from './emit.ts';

const PROTOBUF_LIMIT = 2 ** 31 - 1;

export async function atomicWrite(file: string, write: (fh: fs.FileHandle) => Promise<void>): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const fh = await fs.open(tmp, 'w');
  try {
    await write(fh);
    await fh.sync();
    await fh.close();
    await fs.rename(tmp, file);
  } catch (e) {
    await fh.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

export interface WrittenModel {
  onnxPath: string;
  dataPath?: string;
  onnxBytes: number;
  dataBytes: number;
}

/** Write `<dir>/<name>.onnx` (+ its external data file). */
export async function writeModel(dir: string, name: string, em: Emitted): Promise<WrittenModel> {
  await makeDirs(dir); // level by level: Node's recursive mkdir spins forever on procfs
  const bytes = encodeModel(em.model);
  if (bytes.byteLength > PROTOBUF_LIMIT) throw new Error(`model '${name}' is ${bytes.byteLength} bytes, over protobuf's 2 GiB limit: emit with weights 'external'`);
  const onnxPath = path.join(dir, `${name}.onnx`);
  let dataPath: string | undefined;
  if (em.external.length) {
    dataPath = path.join(dir, em.externalFile);
    await atomicWrite(dataPath, async (fh) => {
      for (const c of em.external) if (c.bytes) await fh.write(c.bytes, 0, c.bytes.byteLength, c.offset);
      // skeleton mode: a sparse file of the right size (no disk blocks until written)
      await fh.truncate(em.externalBytes);
    });
  }
  await atomicWrite(onnxPath, async (fh) => {
    await fh.write(bytes);
  });
  return { onnxPath, dataPath, onnxBytes: bytes.byteLength, dataBytes: em.externalBytes };
}
