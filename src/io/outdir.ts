// One output discipline for every command that writes: nothing a user made is ever deleted or
// overwritten behind their back, failures and interrupts leave the previous good state, and no
// path can make a command hang.
//
// - Overlap: an output that is, contains, or lies inside any input path is refused before
//   anything is written (symlinks resolved, so `--out link-to-input` is caught too).
// - Folders are made one level at a time (never `mkdir -p`: Node's recursive mkdir retries
//   ENOENT forever on procfs), each failure named in the user's terms (permission, read-only
//   file system, a file in the way); levels we made are removed again if the command fails.
// - Whole-folder outputs (`writeOutputDir`) are filled in a sibling staging folder and renamed
//   into place. A marker file (`.unifusion-output.json`) lists every file we wrote, so a later
//   run recognises its own outputs: it may replace them (and drops the stale ones), but a
//   folder holding anything we did not write is refused unless `force`, and even then only our
//   own files are replaced or removed; a file of the user's under a name we would write stops
//   the command.
// - Run folders (`openRunDir`, for training) are updated in place, file by file, each file
//   written to a temp name and renamed, and recorded in the marker.
// - Single files (`writeOutputFile`): temp file + rename; an existing file is replaced only when
//   it is recognisably ours or with `force`.
// - Ctrl-C / SIGTERM while a staging folder or temp file exists removes it (we made it) and then
//   lets the signal end the process as usual.
import { randomBytes } from 'node:crypto';
import { constants as fsc, promises as fs, rmSync, type Stats } from 'node:fs';
import * as path from 'node:path';

export const MARKER = '.unifusion-output.json';

/** Refused or failed output, in the user's terms (flag, path, reason). */
export class OutputError extends Error {
  override name = 'OutputError';
}

/** A path the command reads, and the argument the user gave it with (for messages). */
export interface InputPath {
  path: string;
  /** e.g. '<checkpoint>', '--inputs', '--dataset' */
  what: string;
}

export interface OutputTarget {
  /** the output path as the user gave it */
  out: string;
  /** what the output argument is called in messages (default '--out') */
  flag?: string;
  /** every path the command reads: the output may not be, contain or lie inside one */
  inputs?: readonly InputPath[];
  /** allow writing into a non-empty folder that holds files we did not write (they are kept) */
  force?: boolean;
  /** the command, recorded in the marker ('compile', 'import-hf', ...) */
  command: string;
}

interface Marker {
  producer: 'unifusion';
  command: string;
  /** files we wrote, relative to the folder, '/'-separated, sorted */
  files: string[];
  written: string;
}

/**
 * A path as a user wants to read it in a message: relative to the working directory when it lies
 * inside it, else absolute (never '../../../tmp/x', which is hard to read and easy to misjudge).
 */
export function displayPath(p: string): string {
  const abs = path.resolve(p);
  const r = path.relative(process.cwd(), abs);
  if (r === '') return '.';
  return r.startsWith('..') || path.isAbsolute(r) ? abs : r;
}
const show = displayPath;

function errnoOf(e: unknown): string | undefined {
  const c = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** An OS error (it carries an errno code) becomes an OutputError in words; anything else is rethrown as it is. */
function fsErrorOr(e: unknown, action: string, p: string): unknown {
  return e instanceof OutputError || !errnoOf(e) ? e : describeFsError(e, action, p);
}

/** An OS error in words, with the path it was about. */
export function describeFsError(e: unknown, action: string, p: string): OutputError {
  const code = errnoOf(e);
  const why: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'the file system is read-only',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    ENOTDIR: 'a path component is a file, not a folder',
    EISDIR: 'it is a folder',
    EEXIST: 'it already exists',
    ENOENT: 'a parent folder does not exist or cannot hold new entries',
    ENAMETOOLONG: 'the name is too long',
    ELOOP: 'too many symbolic links',
    EXDEV: 'it is on another file system',
    EBUSY: 'it is busy',
  };
  const abs = path.resolve(p);
  const virtual = ['/proc', '/sys', '/dev'].find((v) => abs === v || abs.startsWith(`${v}/`));
  const reason = virtual
    ? `it is under ${virtual}, a virtual file system that cannot hold outputs`
    : code && why[code]
      ? why[code]
      : e instanceof Error
        ? e.message
        : String(e);
  return new OutputError(`cannot ${action} '${show(p)}': ${reason}`);
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/**
 * The canonical absolute form of `p`, existing or not: the deepest existing ancestor resolved
 * through symlinks, the rest appended. Never throws for missing paths.
 */
export async function canonicalPath(p: string): Promise<string> {
  let cur = path.resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      const real = await fs.realpath(cur);
      return rest.length ? path.join(real, ...rest.reverse()) : real;
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return path.resolve(p);
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/** a is b or lies inside b (both canonical). */
export function isInside(a: string, b: string): boolean {
  const r = path.relative(b, a);
  return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
}

/** Refuse an output that is, contains or lies inside an input. */
export async function checkOverlap(t: Pick<OutputTarget, 'out' | 'flag' | 'inputs'>): Promise<void> {
  const flag = t.flag ?? '--out';
  const out = await canonicalPath(t.out);
  for (const inp of t.inputs ?? []) {
    const ip = await canonicalPath(inp.path);
    if (out === ip) throw new OutputError(`${flag} '${t.out}' is the input ${inp.what} '${inp.path}': writing there would destroy it; choose another output path`);
    if (isInside(out, ip)) throw new OutputError(`${flag} '${t.out}' lies inside the input ${inp.what} '${inp.path}'; choose an output path outside it`);
    if (isInside(ip, out)) throw new OutputError(`${flag} '${t.out}' contains the input ${inp.what} '${inp.path}'; choose an output path that does not hold the inputs`);
  }
}

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await fs.lstat(p);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return null;
    throw describeFsError(e, 'read', p);
  }
}

/**
 * Make `dir` and its missing ancestors one level at a time. Returns the folders it made,
 * outermost first, so a failed command can remove exactly those (removeMadeDirs).
 */
export async function makeDirs(dir: string, flag = '--out'): Promise<string[]> {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let cur = abs;
  for (;;) {
    const st = await lstatOrNull(cur);
    if (st) {
      if (st.isSymbolicLink()) {
        const target = await fs.stat(cur).catch(() => null);
        if (!target?.isDirectory()) throw new OutputError(`${flag}: '${show(cur)}' is a symbolic link that does not lead to a folder`);
      } else if (!st.isDirectory()) throw new OutputError(`${flag}: '${show(cur)}' is a file, not a folder`);
      break;
    }
    const parent = path.dirname(cur);
    if (parent === cur) break;
    missing.push(cur);
    cur = parent;
  }
  const made: string[] = [];
  for (const d of missing.reverse()) {
    try {
      await fs.mkdir(d);
    } catch (e) {
      await removeMadeDirs(made);
      throw describeFsError(e, 'create the folder', d);
    }
    made.push(d);
  }
  return made;
}

const VIRTUAL_FS = ['/proc', '/sys', '/dev'];

/**
 * Without creating anything: could `target` (a folder, existing or not, with its missing
 * parents) be made and written into? Fails at once for a file in the way, a virtual file system
 * (/proc, /sys, /dev), a read-only or immutable folder, or one without write permission, so a
 * command can refuse before its expensive part instead of after it.
 */
export async function probeWritable(target: string, flag = '--out', given: string = target): Promise<void> {
  const abs = path.resolve(target);
  const who = `${flag} '${given}'`;
  let cur = abs;
  for (;;) {
    const st = await lstatOrNull(cur);
    if (st) {
      let dirOk = st.isDirectory();
      if (st.isSymbolicLink()) dirOk = (await fs.stat(cur).catch(() => null))?.isDirectory() ?? false;
      if (!dirOk) throw new OutputError(`${who}: '${show(cur)}' is ${st.isSymbolicLink() ? 'a symbolic link that does not lead to a folder' : 'a file, not a folder'}`);
      const real = await fs.realpath(cur).catch(() => cur);
      const virtual = VIRTUAL_FS.find((v) => real === v || real.startsWith(`${v}/`));
      if (virtual) throw new OutputError(`${who}: ${real === virtual ? `'${virtual}' is` : `'${show(cur)}' is on ${virtual},`} a virtual file system that cannot hold outputs; choose a folder on a disk`);
      try {
        await fs.access(cur, fsc.W_OK);
      } catch (e) {
        const why = describeFsError(e, 'x', cur).message.replace(/^cannot x '[^']*': /, '');
        throw new OutputError(`${who}: cannot ${cur === abs ? 'write into' : 'create folders in'} '${show(cur)}': ${why}`);
      }
      return;
    }
    const parent = path.dirname(cur);
    if (parent === cur) return;
    cur = parent;
  }
}

/** Remove folders made by makeDirs (innermost first), only while they are empty. */
export async function removeMadeDirs(made: readonly string[]): Promise<void> {
  for (const d of [...made].reverse()) await fs.rmdir(d).catch(() => {});
}

// ---------------------------------------------------------------------------------------------
// Cleanup on interrupt: only paths this process created
// ---------------------------------------------------------------------------------------------

const temporaries = new Set<string>();
let handlersInstalled = false;

function onSignal(sig: NodeJS.Signals): void {
  for (const p of temporaries) rmSync(p, { recursive: true, force: true });
  temporaries.clear();
  uninstall();
  // with our listener gone, re-raising gives the default action (exit with 128 + signal)
  process.kill(process.pid, sig);
}

function install(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function uninstall(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

function track(p: string): void {
  temporaries.add(p);
  install();
}

function untrack(p: string): void {
  temporaries.delete(p);
  if (temporaries.size === 0) uninstall();
}

/** A sibling name no one else uses: `.<base>.<tag>-<pid>-<random>`. */
function siblingName(target: string, tag: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${tag}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

// ---------------------------------------------------------------------------------------------
// Markers
// ---------------------------------------------------------------------------------------------

async function readMarker(dir: string): Promise<Marker | null> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, MARKER), 'utf8');
  } catch {
    return null;
  }
  try {
    const m = JSON.parse(text) as Partial<Marker>;
    if (m.producer !== 'unifusion' || !Array.isArray(m.files) || !m.files.every((f) => typeof f === 'string')) return null;
    // a tampered marker must not let us reach outside the folder
    if (m.files.some((f) => f === '' || path.isAbsolute(f) || f.split('/').includes('..'))) return null;
    return m as Marker;
  } catch {
    return null;
  }
}

async function writeMarker(dir: string, command: string, files: Iterable<string>): Promise<void> {
  const m: Marker = { producer: 'unifusion', command, files: [...new Set(files)].sort(), written: new Date().toISOString() };
  const tmp = path.join(dir, `${MARKER}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fs.writeFile(tmp, JSON.stringify(m, null, 2) + '\n');
  await fs.rename(tmp, path.join(dir, MARKER));
}

/** Every file under `dir`, relative, '/'-separated (symlinks listed as files, not followed). */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    const entries = await fs.readdir(path.join(dir, rel), { withFileTypes: true });
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else out.push(r);
    }
  };
  await walk('');
  return out.sort();
}

/** Folders under `dir` (relative), deepest first. */
async function listDirs(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true }))
      if (e.isDirectory()) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        await walk(r);
        out.push(r);
      }
  };
  await walk('');
  return out;
}

// Temp and staging names this module (and writeSafetensors) make: '.<name>.tmp-<pid>-<hex>',
// '<name>.tmp-<pid>-<hex>', '.<name>.stage-...', '.<name>.old-...'. One whose process is gone was
// left by a killed run of ours.
const TEMP_NAME = /\.(?:tmp|stage|old)-(\d+)-[0-9a-f]{8,12}(?:\.tmp-\d+-[0-9a-f]{8,12})?$/;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoOf(e) === 'EPERM';
  }
}

/** A temp file or staging folder left by a killed unifusion process (its pid is gone). */
export function isStaleTemp(name: string): boolean {
  const m = TEMP_NAME.exec(path.basename(name));
  return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
}

/**
 * What is in a folder, as far as ownership goes. Without our marker, any entry makes it foreign
 * (only the top level is read: `--out ~` must not walk a home folder). With it, every file must be
 * listed in the marker (empty folders hold nothing to lose and do not count).
 */
export async function ownedFolder(dir: string): Promise<{ exists: boolean; empty: boolean; ours: boolean; foreign: string[]; marker: Marker | null }> {
  const st = await lstatOrNull(dir);
  if (!st) return { exists: false, empty: true, ours: true, foreign: [], marker: null };
  if (!st.isDirectory()) throw new OutputError(`'${show(dir)}' is ${st.isSymbolicLink() ? 'a symbolic link' : 'a file'}, not a folder`);
  let top: string[];
  try {
    top = (await fs.readdir(dir)).sort();
  } catch (e) {
    throw describeFsError(e, 'read the folder', dir);
  }
  if (top.length === 0) return { exists: true, empty: true, ours: true, foreign: [], marker: null };
  const marker = await readMarker(dir);
  if (!marker) return { exists: true, empty: false, ours: false, foreign: top, marker: null };
  const mine = new Set(marker.files);
  const foreign = (await listFiles(dir)).filter((f) => f !== MARKER && !mine.has(f) && !isStaleTemp(f));
  return { exists: true, empty: false, ours: foreign.length === 0, foreign, marker };
}

function foreignList(foreign: readonly string[]): string {
  const shown = foreign.slice(0, 5).map((f) => `'${f}'`).join(', ');
  return foreign.length > 5 ? `${shown} and ${foreign.length - 5} more` : shown;
}

// ---------------------------------------------------------------------------------------------
// Whole-folder outputs
// ---------------------------------------------------------------------------------------------

export interface WrittenDir<T> {
  result: T;
  /** the output folder, absolute */
  dir: string;
  /** files written, relative */
  files: string[];
}

/**
 * Fill a fresh staging folder next to `out` with `fill(stage)`, then put it in place:
 * - `out` missing or empty, or holding only files of an earlier run of ours: it becomes exactly
 *   the new output (our stale files are dropped);
 * - `out` holding files we did not write: refused, unless `force`: then our new files are moved
 *   in beside the user's, our stale ones removed, and a user's file under a name we write stops
 *   the command before anything changes.
 * On any error (and on Ctrl-C) the staging folder is removed and `out` is as it was.
 */
async function checkOutputDir(t: OutputTarget): Promise<Awaited<ReturnType<typeof ownedFolder>>> {
  const flag = t.flag ?? '--out';
  await checkOverlap(t);
  const out = path.resolve(t.out);
  const before = await ownedFolder(out).catch((e: unknown) => {
    throw e instanceof OutputError ? new OutputError(`${flag} ${e.message}`) : e;
  });
  if (before.exists && !before.ours && !t.force)
    throw new OutputError(
      `${flag} '${t.out}' already holds files unifusion did not write (${foreignList(before.foreign)}); choose an empty or new folder, or pass --force to add the outputs beside them (they are kept)`,
    );
  return before;
}

/**
 * Every check writeOutputDir makes before it writes (overlap with inputs, ownership, a folder
 * that can be created and written), without writing: call it before long work (compiling,
 * training, reading a checkpoint) so a bad --out fails in a second, not after the work.
 */
export async function preflightOutputDir(t: OutputTarget): Promise<void> {
  const flag = t.flag ?? '--out';
  const before = await checkOutputDir(t);
  const out = path.resolve(t.out);
  // the staging folder is made beside DIR, and with --force files are moved into DIR itself
  await probeWritable(before.exists ? path.dirname(out) : out, flag, t.out);
  if (before.exists) await probeWritable(out, flag, t.out);
}

export async function writeOutputDir<T>(t: OutputTarget, fill: (stage: string) => Promise<T>): Promise<WrittenDir<T>> {
  const flag = t.flag ?? '--out';
  const before = await checkOutputDir(t);
  const out = path.resolve(t.out);
  const made = await makeDirs(path.dirname(out), flag);
  const stage = siblingName(out, 'stage');
  try {
    await fs.mkdir(stage);
  } catch (e) {
    await removeMadeDirs(made);
    throw describeFsError(e, 'create a staging folder next to', out);
  }
  track(stage);
  try {
    const result = await fill(stage);
    const files = (await listFiles(stage)).filter((f) => f !== MARKER);
    await writeMarker(stage, t.command, files);
    if (!before.exists || before.empty) {
      if (before.exists) await fs.rmdir(out); // empty: nothing of anyone's is lost
      await fs.rename(stage, out);
    } else if (before.ours) {
      // every entry in `out` is ours: swap whole folders, then drop the old one
      const old = siblingName(out, 'old');
      await fs.rename(out, old);
      track(old);
      try {
        await fs.rename(stage, out);
      } catch (e) {
        await fs.rename(old, out);
        untrack(old);
        throw e;
      }
      untrack(stage);
      await fs.rm(old, { recursive: true, force: true });
      untrack(old);
    } else {
      await mergeInto(out, stage, files, before.marker, t.command, flag);
    }
    untrack(stage);
    await fs.rm(stage, { recursive: true, force: true });
    return { result, dir: out, files };
  } catch (e) {
    await fs.rm(stage, { recursive: true, force: true });
    untrack(stage);
    await removeMadeDirs(made);
    throw fsErrorOr(e, 'write', out);
  }
}

/** --force into a folder with the user's files: ours in, our stale ones out, theirs untouched. */
async function mergeInto(out: string, stage: string, files: readonly string[], marker: Marker | null, command: string, flag: string): Promise<void> {
  const mine = new Set(marker?.files ?? []);
  for (const f of files) {
    const dest = path.join(out, f);
    const st = await lstatOrNull(dest);
    if (st && (!mine.has(f) || st.isDirectory())) throw new OutputError(`${flag}: '${show(dest)}' exists and was not written by unifusion; it is kept, and nothing was written (remove or rename it, or choose another folder)`);
    // a parent path component that is a user's file would also block us
    for (let d = path.dirname(f); d !== '.'; d = path.dirname(d)) {
      const ds = await lstatOrNull(path.join(out, d));
      if (ds && !ds.isDirectory()) throw new OutputError(`${flag}: '${show(path.join(out, d))}' is a file of yours where unifusion needs a folder; nothing was written`);
    }
  }
  for (const f of files) {
    const dest = path.join(out, f);
    await makeDirs(path.dirname(dest), flag);
    await fs.rename(path.join(stage, f), dest);
  }
  const now = new Set(files);
  for (const f of mine) if (!now.has(f)) await fs.rm(path.join(out, f), { force: true });
  // folders that only held our stale files
  for (const d of await listDirs(out)) await fs.rmdir(path.join(out, d)).catch(() => {});
  await writeMarker(out, command, files);
}

// ---------------------------------------------------------------------------------------------
// Run folders (updated in place)
// ---------------------------------------------------------------------------------------------

export interface RunDirOptions extends OutputTarget {
  /** continue a run in a folder of ours; without it, a folder with earlier outputs is refused */
  resume?: boolean;
}

/** A folder a long-running command (training) writes into as it goes, one atomic file at a time. */
export class RunDir {
  private readonly filesAtOpen: number;
  private constructor(
    readonly dir: string,
    private readonly command: string,
    private readonly files: Set<string>,
    private readonly made: readonly string[] = [],
  ) {
    this.filesAtOpen = files.size;
  }

  static async open(t: RunDirOptions): Promise<RunDir> {
    const flag = t.flag ?? '--out';
    await checkOverlap(t);
    const dir = path.resolve(t.out);
    const st = await ownedFolder(dir).catch((e: unknown) => {
      throw e instanceof OutputError ? new OutputError(`${flag} ${e.message}`) : e;
    });
    RunDir.checkState(t, st);
    const made = await makeDirs(dir, flag);
    const rd = new RunDir(dir, t.command, new Set(st.marker?.files ?? []), made);
    // an existing marker is left as it is until a file is written (a run that fails at once changes nothing)
    if (!st.marker) await rd.flush();
    // what killed runs of ours left behind (listed files are ours; nothing else is touched)
    if (st.marker) for (const f of await listFiles(dir)) if (isStaleTemp(f)) await fs.rm(path.join(dir, f), { force: true });
    return rd;
  }

  /** RunDir.open's checks (overlap, ownership, --resume, writable) without creating anything. */
  static async preflight(t: RunDirOptions): Promise<void> {
    const flag = t.flag ?? '--out';
    await checkOverlap(t);
    const st = await ownedFolder(path.resolve(t.out)).catch((e: unknown) => {
      throw e instanceof OutputError ? new OutputError(`${flag} ${e.message}`) : e;
    });
    RunDir.checkState(t, st);
    await probeWritable(t.out, flag, t.out);
  }

  private static checkState(t: RunDirOptions, st: Awaited<ReturnType<typeof ownedFolder>>): void {
    const flag = t.flag ?? '--out';
    if (st.exists && !st.empty) {
      if (!st.ours && !t.force)
        throw new OutputError(`${flag} '${t.out}' already holds files unifusion did not write (${foreignList(st.foreign)}); choose an empty or new folder, or pass --force to write beside them (they are kept)`);
      if (st.ours && !t.resume && st.marker && st.marker.files.length)
        throw new OutputError(`${flag} '${t.out}' holds an earlier run (${foreignList(st.marker.files)}); pass --resume to continue it, or choose a new folder`);
    }
  }

  /**
   * Undo open() when the run wrote nothing (it failed before its first file): the marker goes,
   * and the folders open() made. A folder that existed before keeps what it had.
   */
  async discardIfUnused(): Promise<void> {
    if (this.files.size !== this.filesAtOpen) return;
    if (this.filesAtOpen === 0) {
      await fs.rm(path.join(this.dir, MARKER), { force: true });
      await removeMadeDirs(this.made);
    }
  }

  /** Files this run folder's marker lists. */
  get written(): string[] {
    return [...this.files].sort();
  }

  private async flush(): Promise<void> {
    await writeMarker(this.dir, this.command, this.files);
  }

  /** Absolute path of a file in the folder (relative, '/'-separated, inside it). */
  resolve(rel: string): string {
    const abs = path.resolve(this.dir, rel);
    if (!isInside(abs, this.dir) || abs === this.dir) throw new OutputError(`'${rel}' is not a file inside the run folder`);
    return abs;
  }

  /** Write `rel` atomically (temp file in the same folder + rename) and record it. */
  async writeFile(rel: string, data: Uint8Array | string | ((tmp: string) => Promise<void>)): Promise<string> {
    const dest = this.resolve(rel);
    const key = path.relative(this.dir, dest).split(path.sep).join('/');
    const existing = await lstatOrNull(dest);
    if (existing && !this.files.has(key)) throw new OutputError(`'${show(dest)}' exists and was not written by unifusion; it is kept (remove or rename it)`);
    await makeDirs(path.dirname(dest));
    await writeAtomic(dest, data);
    if (!this.files.has(key)) {
      this.files.add(key);
      await this.flush();
    }
    return dest;
  }

  /** Whether the marker lists `rel` as ours. */
  owns(rel: string): boolean {
    return this.files.has(this.keyOf(this.resolve(rel)));
  }

  private keyOf(abs: string): string {
    return path.relative(this.dir, abs).split(path.sep).join('/');
  }

  /**
   * Record a file this run creates or appends to in place (a metrics log), before it is touched:
   * refused when a file of the user's is already there. Returns its absolute path.
   */
  async claim(rel: string): Promise<string> {
    const dest = this.resolve(rel);
    const key = this.keyOf(dest);
    if (!this.files.has(key)) {
      if (await lstatOrNull(dest)) throw new OutputError(`'${show(dest)}' exists and was not written by unifusion; it is kept (remove or rename it)`);
      await makeDirs(path.dirname(dest));
      this.files.add(key);
      await this.flush();
    }
    return dest;
  }

  /** Remove a file this run wrote (e.g. a rotated checkpoint); files not ours are refused. */
  async remove(rel: string): Promise<void> {
    const dest = this.resolve(rel);
    const key = path.relative(this.dir, dest).split(path.sep).join('/');
    if (!this.files.has(key)) throw new OutputError(`refusing to remove '${show(dest)}': unifusion did not write it`);
    await fs.rm(dest, { force: true });
    this.files.delete(key);
    await this.flush();
  }
}

// ---------------------------------------------------------------------------------------------
// Single files
// ---------------------------------------------------------------------------------------------

/** Make a rename durable (best effort: not every file system lets a folder be fsynced). */
async function syncDir(dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(dir, 'r');
    await fh.sync();
  } catch {
    /* best effort */
  } finally {
    await fh?.close().catch(() => {});
  }
}

async function writeAtomic(dest: string, data: Uint8Array | string | ((tmp: string) => Promise<void>)): Promise<void> {
  const tmp = siblingName(dest, 'tmp');
  track(tmp);
  try {
    if (typeof data === 'function') await data(tmp);
    else {
      const fh = await fs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await fs.rename(tmp, dest);
    await syncDir(path.dirname(dest));
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw fsErrorOr(e, 'write', dest);
  } finally {
    untrack(tmp);
  }
}

export interface OutputFileOptions extends OutputTarget {
  /** an existing file at `out` may be replaced when this says it is ours (e.g. our metadata in it) */
  isOurs?: (file: string) => boolean | Promise<boolean>;
}

/**
 * Write one file: overlap check, parent folders made level by level, temp file + rename. An
 * existing file is replaced only if `isOurs` recognises it or with `force`; a folder there is
 * refused. `write` gets the temp path to write (or returns bytes).
 */
async function checkOutputFile(t: OutputFileOptions): Promise<void> {
  const flag = t.flag ?? '--out';
  await checkOverlap(t);
  const dest = path.resolve(t.out);
  const st = await lstatOrNull(dest);
  if (st?.isDirectory()) throw new OutputError(`${flag} '${t.out}' is a folder; give a file path`);
  if (st && !t.force && !(await t.isOurs?.(dest))) throw new OutputError(`${flag} '${t.out}' already exists and was not written by unifusion; pass --force to replace it, or choose another path`);
}

/** writeOutputFile's checks without writing (see preflightOutputDir). */
export async function preflightOutputFile(t: OutputFileOptions): Promise<void> {
  await checkOutputFile(t);
  await probeWritable(path.dirname(path.resolve(t.out)), t.flag ?? '--out', t.out);
}

export async function writeOutputFile(t: OutputFileOptions, write: Uint8Array | string | ((tmp: string) => Promise<void>)): Promise<string> {
  const flag = t.flag ?? '--out';
  await checkOutputFile(t);
  const dest = path.resolve(t.out);
  const made = await makeDirs(path.dirname(dest), flag);
  try {
    await writeAtomic(dest, write);
  } catch (e) {
    await removeMadeDirs(made);
    throw e;
  }
  return dest;
}
