// How every command reports a failure: one line (or a few) naming the file, tensor or argument
// that is wrong, no stack trace, exit code 1. Commands throw; main.ts calls reportError once.
//
// - Errors of our own classes (OutputError, DSLError, GraphFileError, SessionError, HfError,
//   TrainerError, CheckpointError, SafetensorsError, UsageError, ...) already say what is wrong
//   in the user's terms: their message is printed as is.
// - TypeError / ReferenceError reaching this point are bugs in unifusion, not bad input: they are
//   labelled as such (user graph code has its own wrapper that names the user's file:line).
// - UNIFUSION_DEBUG=1 (or --verbose) adds the stack for any error.
import { CommanderError } from 'commander';

/** A command-line argument that is wrong: the message names the flag and what was given. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** `--flag value` as a number of a given kind, or a UsageError naming the flag. */
export function parseNumberFlag(flag: string, v: string | number | undefined, kind: 'int' | 'posint' | 'float' | 'posfloat'): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : v.trim() === '' ? NaN : Number(v);
  const ok =
    kind === 'float' ? Number.isFinite(n) && n >= 0 : kind === 'posfloat' ? Number.isFinite(n) && n > 0 : Number.isSafeInteger(n) && (kind === 'int' ? n >= 0 : n >= 1);
  const what = { int: 'a non-negative integer', posint: 'a positive integer', float: 'a non-negative number', posfloat: 'a positive number' }[kind];
  if (!ok) throw new UsageError(`${flag} must be ${what}, got '${v}'`);
  return n;
}

/** One of a fixed set of values, or a UsageError listing them. */
export function parseChoiceFlag<T extends string>(flag: string, v: string | undefined, choices: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`${flag} must be one of ${choices.join(', ')}, got '${v}'`);
  return v as T;
}

const INTERNAL = [TypeError, ReferenceError];

/** Print a thrown error the way a CLI user wants it; returns the exit code. */
export function reportError(e: unknown, opts: { verbose?: boolean } = {}): number {
  // commander has already printed its own message (or the help/version text).
  if (e instanceof CommanderError) return e.exitCode;
  const debug = Boolean(process.env.UNIFUSION_DEBUG) || Boolean(opts.verbose);
  let message = e instanceof Error ? (debug ? (e.stack ?? e.message) : e.message) : String(e);
  if (INTERNAL.some((c) => e instanceof c && e.constructor === c))
    message = `internal error (a bug in unifusion, not in your input; please report it with the command you ran): ${message}${debug ? '' : '\n(set UNIFUSION_DEBUG=1 for the stack trace)'}`;
  process.stderr.write(`error: ${message}\n`);
  return 1;
}
