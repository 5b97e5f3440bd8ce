// Argument checks at the DSL's entry points, so that misuse (a typo'd dtype, an option name that
// does not exist, a shape that is not one) is a DSLError naming the user's file:line instead of
// a JavaScript TypeError from deep inside the compiler, or an option silently ignored.
// TypeScript catches most of these in a type-checked graph file; these hold with --no-typecheck
// and for plain-JS callers.
import { DTYPES, isDType, type DType } from '../ir/dtype.ts';
import { SymDim, type Dim } from '../ir/dims.ts';
import { DSLError } from './trace.ts';
import { userSite } from './site.ts';

function fail(msg: string): never {
  throw new DSLError(msg, userSite());
}

/** The closest of `known` to `s` (edit distance <= 2), for "did you mean". */
function closest(s: string, known: readonly string[]): string | undefined {
  const dist = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0]![j] = j;
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    return d[a.length]![b.length]!;
  };
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const dd = dist(s.toLowerCase(), k.toLowerCase());
    if (dd < bestD) (best = k), (bestD = dd);
  }
  return best;
}

const suggest = (s: string, known: readonly string[]) => {
  const c = closest(s, known);
  return c ? `; did you mean '${c}'?` : '';
};

/** A dtype name, or a DSLError listing the known ones. */
export function checkDType(what: string, d: unknown): DType {
  if (isDType(d)) return d;
  fail(`${what}: unknown dtype ${typeof d === 'string' ? `'${d}'` : String(d)} (known: ${DTYPES.join(', ')})${typeof d === 'string' ? suggest(d, DTYPES) : ''}`);
}

/** One of `choices`, or a DSLError listing them. */
export function checkChoice<T extends string>(what: string, v: unknown, choices: readonly T[]): T {
  if (typeof v === 'string' && (choices as readonly string[]).includes(v)) return v as T;
  fail(`${what} must be one of ${choices.map((c) => `'${c}'`).join(', ')}, got ${typeof v === 'string' ? `'${v}'` : String(v)}${typeof v === 'string' ? suggest(v, choices) : ''}`);
}

/** Every key of `opts` is one of `known`; an unknown one (a typo) is a DSLError, not silently ignored. */
export function checkOptions(what: string, opts: object | undefined, known: readonly string[]): void {
  if (opts === undefined || opts === null) return;
  if (typeof opts !== 'object') fail(`${what}: options must be an object, got ${typeof opts}`);
  for (const k of Object.keys(opts)) if (!known.includes(k)) fail(`${what}: unknown option '${k}' (known: ${known.join(', ')})${suggest(k, known)}`);
}

/** A shape: an array of non-negative integers or symbolic dims (dim('batch')). */
export function checkShape(what: string, shape: unknown): readonly Dim[] {
  if (!Array.isArray(shape)) fail(`${what}: shape must be an array of sizes, got ${typeof shape === 'string' ? `'${shape}'` : String(shape)}`);
  shape.forEach((d, i) => {
    if (d instanceof SymDim) return;
    if (typeof d === 'number' && Number.isInteger(d) && d >= 0) return;
    const hint = typeof d === 'string' ? ` (use dim('${d}') for a symbolic size)` : '';
    fail(`${what}: shape [${shape.map(String).join(', ')}] axis ${i} is ${typeof d === 'string' ? `'${d}'` : String(d)}, not a non-negative integer or a dim()${hint}`);
  });
  return shape as readonly Dim[];
}

/** A positive integer (layer sizes, head counts). */
export function checkPositiveInt(what: string, v: unknown): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1) return v;
  fail(`${what} must be a positive integer, got ${typeof v === 'string' ? `'${v}'` : String(v)}`);
}
