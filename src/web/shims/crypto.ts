// node:crypto for the browser bundle: createHash('sha256') (pipelineHash, the image metadata's
// pipeline_hash) through @noble/hashes' audited pure-JS SHA-256, synchronous as Node's is (Web
// Crypto's digest is async only).
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

export function createHash(algorithm: string) {
  if (algorithm !== 'sha256') throw new Error(`createHash('${algorithm}'): only sha256 exists in the browser bundle`);
  const h = sha256.create();
  const api = {
    update(data: Uint8Array | string) {
      h.update(typeof data === 'string' ? new TextEncoder().encode(data) : data);
      return api;
    },
    digest(enc?: string) {
      const d = h.digest();
      if (enc === 'hex') return bytesToHex(d);
      if (enc === undefined) return d;
      throw new Error(`digest('${enc}'): only 'hex' or bytes in the browser bundle`);
    },
  };
  return api;
}

export function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}

export default { createHash, randomBytes };
