// Writing a model emitted in 'skeleton' mode with its external data filled in by the caller,
// one tensor at a time: the importer converts checkpoint tensors straight into the data file,
// so no more than one chunk of weights is ever in memory.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeModel } from './proto.ts';
import { makeDirs } from '../../src/io/outdir.ts';
import type { Emitted, ExternalChunk } from './emit.ts';
import { atomicWrite, type WrittenModel } from './write.ts';

const PROTOBUF_LIMIT = 2 ** 31 - 1;

/**
 * `fill(chunk, write)` must write exactly chunk.length bytes of the tensor chunk.name through
 * `write(bytes, at)` (at = byte offset within the tensor), in any order and any piece sizes.
 */
export type FillChunk = (chunk: ExternalChunk, write: (bytes: Uint8Array, at: number) => void) => void | Promise<void>;

/** Write `<dir>/<name>.onnx` and its external data (each via temp file + rename). */
export async function writeModelStreaming(dir: string, name: string, em: Emitted, fill: FillChunk): Promise<WrittenModel> {
  await makeDirs(dir); // level by level: Node's recursive mkdir spins forever on procfs
  const bytes = encodeModel(em.model);
  if (bytes.byteLength > PROTOBUF_LIMIT) throw new Error(`model '${name}' is ${bytes.byteLength} bytes, over protobuf's 2 GiB limit`);
  let dataPath: string | undefined;
  if (em.external.length) {
    dataPath = path.join(dir, em.externalFile);
    await atomicWrite(dataPath, async (fh) => {
      const fd = fh.fd;
      for (const c of em.external) {
        let written = 0;
        const write = (b: Uint8Array, at: number) => {
          if (at < 0 || at + b.byteLength > c.length) throw new Error(`tensor '${c.name}': write of ${b.byteLength} bytes at ${at} is outside its ${c.length} bytes`);
          let done = 0;
          while (done < b.byteLength) done += fs.writeSync(fd, b, done, b.byteLength - done, c.offset + at + done);
          written += b.byteLength;
        };
        if (c.bytes) write(c.bytes, 0);
        else await fill(c, write);
        if (written !== c.length) throw new Error(`tensor '${c.name}': ${written} bytes written, ${c.length} expected`);
      }
      await fh.truncate(em.externalBytes);
    });
  }
  const onnxPath = path.join(dir, `${name}.onnx`);
  await atomicWrite(onnxPath, async (fh) => {
    await fh.write(bytes);
  });
  return { onnxPath, dataPath, onnxBytes: bytes.byteLength, dataBytes: em.externalBytes };
}
