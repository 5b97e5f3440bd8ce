// Symbolic dimensions. A dim is a number or a polynomial over named symbols
// (batch, seq, ...), kept in a canonical form so that equal sizes compare equal
// whichever way they were built: (seq*2)/2 == seq, batch*seq == seq*batch.
// Exact division only; an inexact floor-division becomes an opaque atom.

export class SymDim {
  /** monomial ("a*b", sorted atoms; "" is the constant term) -> integer coefficient */
  readonly terms: ReadonlyMap<string, number>;
  readonly key: string;
  private constructor(terms: Map<string, number>) {
    for (const [m, c] of [...terms]) if (c === 0) terms.delete(m);
    this.terms = new Map([...terms].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    this.key = renderTerms(this.terms);
  }
  static sym(name: string): SymDim {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`symbolic dim name '${name}' must be an identifier`);
    return new SymDim(new Map([[name, 1]]));
  }
  /** Internal: build from terms; collapses to a number when constant. */
  static of(terms: Map<string, number>): Dim {
    const s = new SymDim(terms);
    if (s.terms.size === 0) return 0;
    if (s.terms.size === 1 && s.terms.has('')) return s.terms.get('')!;
    return s;
  }
  toString(): string {
    return this.key;
  }
  /** Symbols (and opaque atoms) this dim depends on. */
  atoms(): string[] {
    const out = new Set<string>();
    for (const m of this.terms.keys()) for (const a of splitMono(m)) out.add(a);
    return [...out];
  }
}

export type Dim = number | SymDim;
export type Shape = readonly Dim[];

/** Atoms of a monomial key ("batch*(seq/2)" -> ["batch", "(seq/2)"]). */
export function splitMono(m: string): string[] {
  if (m === '') return [];
  // atoms may be parenthesised opaque atoms containing '*'; split at depth 0
  const out: string[] = [];
  let depth = 0, start = 0;
  for (let i = 0; i < m.length; i++) {
    const ch = m[i];
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (ch === '*' && depth === 0) {
      out.push(m.slice(start, i));
      start = i + 1;
    }
  }
  out.push(m.slice(start));
  return out;
}

function joinMono(atoms: string[]): string {
  return [...atoms].sort().join('*');
}

function renderTerms(terms: ReadonlyMap<string, number>): string {
  if (terms.size === 0) return '0';
  const parts: string[] = [];
  for (const [m, c] of terms) {
    if (m === '') parts.push(String(c));
    else if (c === 1) parts.push(m);
    else if (c === -1) parts.push(`-${m}`);
    else parts.push(`${m}*${c}`);
  }
  return parts.join('+').replace(/\+-/g, '-');
}

function termsOf(d: Dim): Map<string, number> {
  if (typeof d === 'number') return new Map(d === 0 ? [] : [['', d]]);
  return new Map(d.terms);
}

export const sym = SymDim.sym;

export function isStatic(d: Dim): d is number {
  return typeof d === 'number';
}

export function dimEq(a: Dim, b: Dim): boolean {
  if (typeof a === 'number' || typeof b === 'number') return a === b;
  return a.key === b.key;
}

export function shapeEq(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => dimEq(d, b[i]!));
}

export function dimAdd(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  const t = termsOf(a);
  for (const [m, c] of termsOf(b)) t.set(m, (t.get(m) ?? 0) + c);
  return SymDim.of(t);
}

export function dimSub(a: Dim, b: Dim): Dim {
  return dimAdd(a, dimMul(b, -1));
}

export function dimMul(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a * b;
  const t = new Map<string, number>();
  for (const [ma, ca] of termsOf(a))
    for (const [mb, cb] of termsOf(b)) {
      const m = joinMono([...splitMono(ma), ...splitMono(mb)]);
      t.set(m, (t.get(m) ?? 0) + ca * cb);
    }
  return SymDim.of(t);
}

/** Exact division when provable; otherwise an opaque floor atom "(a/b)". */
export function dimDiv(a: Dim, b: Dim): Dim {
  if (typeof b === 'number') {
    if (b === 0) throw new Error(`division of dim ${dimStr(a)} by zero`);
    if (typeof a === 'number') return Math.floor(a / b);
    // reduce by the gcd first so that (h*4)/8 and h/2 get the same canonical form
    const bn: number = b;
    let g = Math.abs(bn);
    for (const c of a.terms.values()) g = gcd(g, Math.abs(c));
    const t = new Map<string, number>();
    for (const [m, c] of a.terms) t.set(m, c / g);
    if (g === Math.abs(bn)) return SymDim.of(new Map([...t].map(([m, c]) => [m, bn < 0 ? -c : c])));
    a = SymDim.of(t);
    b = bn / g;
  } else {
    // divide by a single-monomial symbolic divisor that divides every term
    if (b.terms.size === 1) {
      const [[mb, cb]] = [...b.terms] as [[string, number]];
      const bAtoms = splitMono(mb);
      const t = new Map<string, number>();
      let exact = true;
      for (const [m, c] of termsOf(a)) {
        const atoms = splitMono(m);
        for (const x of bAtoms) {
          const i = atoms.indexOf(x);
          if (i < 0) { exact = false; break; }
          atoms.splice(i, 1);
        }
        if (!exact || c % cb !== 0) { exact = false; break; }
        t.set(joinMono(atoms), c / cb);
      }
      if (exact) return SymDim.of(t);
    }
  }
  return SymDim.of(new Map([[`(${dimStr(a)}/${dimStr(b)})`, 1]]));
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

export function dimProd(dims: readonly Dim[]): Dim {
  return dims.reduce<Dim>((acc, d) => dimMul(acc, d), 1);
}

export function dimStr(d: Dim): string {
  return typeof d === 'number' ? String(d) : d.key;
}

export function shapeStr(s: Shape): string {
  return `[${s.map(dimStr).join(', ')}]`;
}

/** Value of a dim given symbol values; opaque atoms are evaluated recursively. */
export function evalDim(d: Dim, env: ReadonlyMap<string, number> | Record<string, number>): number {
  if (typeof d === 'number') return d;
  const get = (name: string): number => {
    const v = env instanceof Map ? env.get(name) : (env as Record<string, number>)[name];
    if (v === undefined) throw new Error(`no value for symbolic dim '${name}'`);
    return v;
  };
  let total = 0;
  for (const [m, c] of d.terms) {
    let p = c;
    for (const atom of splitMono(m)) p *= atom.startsWith('(') ? evalOpaque(atom, env) : get(atom);
    total += p;
  }
  return total;
}

/** "(A/B)" -> the dividend and divisor renderings. */
export function splitOpaque(atom: string): [string, string] {
  const inner = atom.slice(1, -1);
  let depth = 0;
  for (let i = inner.length - 1; i >= 0; i--) {
    const ch = inner[i];
    if (ch === ')') depth++;
    else if (ch === '(') depth--;
    else if (ch === '/' && depth === 0) return [inner.slice(0, i), inner.slice(i + 1)];
  }
  throw new Error(`malformed opaque dim ${atom}`);
}

function evalOpaque(atom: string, env: ReadonlyMap<string, number> | Record<string, number>): number {
  const [a, b] = splitOpaque(atom);
  return Math.floor(evalExpr(a, env) / evalExpr(b, env));
}

function evalExpr(s: string, env: ReadonlyMap<string, number> | Record<string, number>): number {
  return evalDim(parseDim(s), env);
}

/** Parse the rendering of a dim back ("batch*seq*2+1"); used by manifests and the CLI. */
export function parseDim(s: string): Dim {
  s = s.trim();
  if (/^-?\d+$/.test(s)) return Number(s);
  const terms: string[] = [];
  let depth = 0, start = 0;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if ((ch === '+' || ch === '-') && depth === 0 && i > start) {
      terms.push(s.slice(start, i));
      start = ch === '-' ? i : i + 1;
    }
  }
  terms.push(s.slice(start));
  let acc: Dim = 0;
  for (let term of terms) {
    let sign = 1;
    if (term.startsWith('-')) { sign = -1; term = term.slice(1); }
    let prod: Dim = sign;
    for (const atom of splitMono(term)) {
      if (/^\d+$/.test(atom)) prod = dimMul(prod, Number(atom));
      else if (atom.startsWith('(')) prod = dimMul(prod, SymDim.of(new Map([[atom, 1]])));
      else prod = dimMul(prod, sym(atom));
    }
    acc = dimAdd(acc, prod);
  }
  return acc;
}
