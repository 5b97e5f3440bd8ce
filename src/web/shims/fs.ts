// node:fs for the browser bundle: a read-only in-memory file system that the page fills with the
// pipeline folder's files (fetched from serve-web) before calling runtime/ code. This is what
// lets the page run runtime/pipeline and runtime/vlm unchanged (Pipeline.load, VlmPackage.load
// read their folders through node:fs) instead of a second implementation of them. Only reads
// exist; anything that would write fails with an error naming the call.
const files = new Map<string, Uint8Array>();

const norm = (p: string | URL): string => {
  const s = String(p).replace(/\/+/g, '/');
  return s.length > 1 && s.endsWith('/') ? s.slice(0, -1) : s;
};

/** Add files (absolute '/'-separated paths) to the in-memory file system. */
export function mount(entries: Iterable<[string, Uint8Array]>): void {
  for (const [p, b] of entries) files.set(norm(p), b);
}

export function unmountAll(): void {
  files.clear();
}

function enoent(p: string, call: string): Error {
  return Object.assign(new Error(`ENOENT: no such file or directory, ${call} '${p}'`), { code: 'ENOENT', path: p });
}

const isDir = (p: string) => {
  const pre = p === '/' ? '/' : `${p}/`;
  for (const k of files.keys()) if (k.startsWith(pre)) return true;
  return false;
};

class Stats {
  constructor(
    readonly size: number,
    private readonly dir: boolean,
  ) {}
  readonly blocks = 1;
  isFile(): boolean {
    return !this.dir;
  }
  isDirectory(): boolean {
    return this.dir;
  }
}

function bytesOf(p: string, call: string): Uint8Array {
  const b = files.get(norm(p));
  if (!b) throw enoent(p, call);
  return b;
}

/** Bytes as Node's readFile gives them: callers do `buf.toString('utf8')` (a Buffer's decode). */
class FileBytes extends Uint8Array {
  override toString(encoding?: string): string {
    if (encoding !== undefined && !/^utf-?8$/i.test(encoding)) throw new Error(`toString('${encoding}'): only utf8 in the browser bundle`);
    return new TextDecoder().decode(this);
  }
}

const text = (b: Uint8Array, enc?: unknown): Uint8Array | string => {
  const e = typeof enc === 'string' ? enc : enc && typeof enc === 'object' ? (enc as { encoding?: string }).encoding : undefined;
  if (e === undefined || e === null) return new FileBytes(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength);
  if (!/^utf-?8$/i.test(e)) throw new Error(`readFile(..., '${e}'): only utf8 in the browser bundle`);
  return new TextDecoder().decode(b);
};

export const constants = { F_OK: 0, R_OK: 4, W_OK: 2, X_OK: 1 };

export function existsSync(p: string): boolean {
  const n = norm(p);
  return files.has(n) || isDir(n);
}

export function statSync(p: string): Stats {
  const n = norm(p);
  const b = files.get(n);
  if (b) return new Stats(b.byteLength, false);
  if (isDir(n)) return new Stats(0, true);
  throw enoent(p, 'stat');
}

export function readFileSync(p: string, enc?: unknown): Uint8Array | string {
  return text(bytesOf(p, 'open'), enc);
}

export function realpathSync(p: string): string {
  statSync(p);
  return norm(p);
}

// file descriptors: safetensors reads headers and tensors through open / fstat / read
const fds = new Map<number, Uint8Array>();
let nextFd = 100;
export function openSync(p: string, flags: string | number = 'r'): number {
  if (flags !== 'r' && flags !== 0) throw new Error(`the browser's file system is read-only: open('${p}', '${flags}')`);
  const fd = nextFd++;
  fds.set(fd, bytesOf(p, 'open'));
  return fd;
}
const fdBytes = (fd: number) => {
  const b = fds.get(fd);
  if (!b) throw Object.assign(new Error(`EBADF: bad file descriptor ${fd}`), { code: 'EBADF' });
  return b;
};
export function fstatSync(fd: number): Stats {
  return new Stats(fdBytes(fd).byteLength, false);
}
export function readSync(fd: number, buf: Uint8Array, offset: number, length: number, position: number | bigint | null): number {
  const b = fdBytes(fd);
  const pos = Number(position ?? 0);
  const n = Math.max(0, Math.min(length, b.byteLength - pos));
  buf.set(b.subarray(pos, pos + n), offset);
  return n;
}
export function closeSync(fd: number): void {
  fds.delete(fd);
}

type Cb<T> = (err: Error | null, v?: T) => void;
const cb = <T>(f: () => T, done: Cb<T>) => queueMicrotask(() => {
  let v: T;
  try {
    v = f();
  } catch (e) {
    done(e as Error);
    return;
  }
  done(null, v);
});
export const open = (p: string, flags: string | Cb<number>, done?: Cb<number>) => (typeof flags === 'function' ? cb(() => openSync(p), flags) : cb(() => openSync(p, flags), done!));
export const fstat = (fd: number, done: Cb<Stats>) => cb(() => fstatSync(fd), done);
export const close = (fd: number, done: Cb<void>) => cb(() => closeSync(fd), done);
export const read = (fd: number, buf: Uint8Array, off: number, len: number, pos: number | null, done: (e: Error | null, n?: number, b?: Uint8Array) => void) =>
  cb(() => readSync(fd, buf, off, len, pos), (e, n) => done(e, n, buf));

export function readdirSync(p: string): string[] {
  const n = norm(p);
  const pre = n === '/' ? '/' : `${n}/`;
  const names = new Set<string>();
  for (const k of files.keys()) if (k.startsWith(pre)) names.add(k.slice(pre.length).split('/')[0]!);
  if (!names.size && !files.has(n)) throw enoent(p, 'scandir');
  return [...names].sort();
}

export function createReadStream(p: string): never {
  throw new Error(`createReadStream('${p}') is not available in the browser (the page loads pipelines with verify: false; serve-web checked the hashes)`);
}

const asyncOf = <A extends unknown[], R>(f: (...a: A) => R) => async (...a: A): Promise<R> => f(...a);
export const promises = {
  readFile: asyncOf(readFileSync),
  stat: asyncOf(statSync),
  lstat: asyncOf(statSync),
  access: asyncOf((p: string) => void statSync(p)),
  readdir: asyncOf(readdirSync),
  realpath: asyncOf(realpathSync),
};

export default { mount, existsSync, statSync, readFileSync, realpathSync, openSync, fstatSync, readSync, closeSync, open, fstat, close, read, readdirSync, createReadStream, promises, constants };
