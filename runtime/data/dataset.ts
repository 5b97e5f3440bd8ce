// Image datasets as a folder of JSONL files, one example per line:
//   text-to-image  {"image": "cat.png", "caption": "a cat on a mat"}
//   editing        {"source": "a.png" | "sources": ["a.png", "b.png"], "instruction": "make it red", "target": "b.png"}
// Either kind may carry "answer": the VLM's answer (the target image's description, e.g. the
// canonical caption) to teacher-force, so that training conditions are those of inference-time
// VERIFI rewriting that produced this answer (runtime/vlm condition() with an answer).
// Paths are relative to the dataset folder (absolute ones are taken as they are). Every image row
// also serves the reconstruction task (the image in the VLM prompt, no text, the image as target).
// Invalid rows are reported with file and line, then skipped or fatal (the caller's choice).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export interface ImageRow {
  kind: 'image';
  image: string;
  caption: string;
  /** the VLM's answer to teacher-force (rewrite conditions) */
  answer?: string;
  file: string;
  line: number;
}

export interface EditRow {
  kind: 'edit';
  sources: string[];
  instruction: string;
  target: string;
  /** the VLM's answer to teacher-force (rewrite conditions) */
  answer?: string;
  file: string;
  line: number;
}

export type DatasetRow = ImageRow | EditRow;

export interface RowProblem {
  file: string;
  line: number;
  message: string;
}

export class DatasetError extends Error {
  override name = 'DatasetError';
  constructor(
    message: string,
    readonly problems: RowProblem[] = [],
  ) {
    super(message);
  }
}

export interface Dataset {
  dir: string;
  rows: DatasetRow[];
  /** rows left out (with skip) */
  skipped: RowProblem[];
  files: string[];
}

export const formatProblem = (p: RowProblem) => `${p.file}:${p.line}: ${p.message}`;

export function problemList(ps: readonly RowProblem[], max = 10): string {
  return ps.slice(0, max).map(formatProblem).join('\n') + (ps.length > max ? `\n... and ${ps.length - max} more` : '');
}

const isStr = (v: unknown): v is string => typeof v === 'string';

/** Parse one line into a row, or say what is wrong with it. */
export function parseRow(text: string, file: string, line: number): DatasetRow | string {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    return `not valid JSON (${(e as Error).message})`;
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) return 'a row must be a JSON object';
  const o = j as Record<string, unknown>;
  if ('answer' in o && !isStr(o.answer)) return "'answer' (the VLM's answer to teacher-force) must be a string";
  const answer = isStr(o.answer) ? { answer: o.answer } : {};
  const hasEdit = 'target' in o || 'instruction' in o || 'source' in o || 'sources' in o;
  if (hasEdit) {
    if ('image' in o) return "a row is either {image, caption} or {source(s), instruction, target}, not both";
    if ('source' in o && 'sources' in o) return "give 'source' or 'sources', not both";
    const sources = 'sources' in o ? o.sources : 'source' in o ? [o.source] : undefined;
    if (!Array.isArray(sources) || sources.length === 0) return "an edit row needs 'source' (a path) or 'sources' (a non-empty list of paths)";
    if (!sources.every((s) => isStr(s) && s !== '')) return "'sources' must be non-empty path strings";
    if (!isStr(o.instruction)) return "an edit row needs 'instruction' (a string)";
    if (!isStr(o.target) || o.target === '') return "an edit row needs 'target' (an image path)";
    return { kind: 'edit', sources: sources as string[], instruction: o.instruction, target: o.target, ...answer, file, line };
  }
  if (!('image' in o)) return "a row needs 'image' and 'caption' (text-to-image) or 'source(s)', 'instruction' and 'target' (editing)";
  if (!isStr(o.image) || o.image === '') return "'image' must be a non-empty path string";
  if (!isStr(o.caption)) return "'caption' must be a string";
  return { kind: 'image', image: o.image, caption: o.caption, ...answer, file, line };
}

/** The images a row reads. */
export function rowImages(r: DatasetRow): string[] {
  return r.kind === 'image' ? [r.image] : [...r.sources, r.target];
}

/**
 * Read every *.jsonl file of `dir` (sorted by name); check each row's structure and that its
 * image files exist. `invalid: 'error'` (default) throws a DatasetError listing every problem;
 * 'skip' leaves those rows out and reports them in `skipped`.
 */
export async function loadDataset(dir: string, opts: { invalid?: 'error' | 'skip' } = {}): Promise<Dataset> {
  let entries: string[];
  try {
    entries = (await fs.readdir(dir)).filter((f) => f.endsWith('.jsonl')).sort();
  } catch {
    throw new DatasetError(`--dataset '${dir}': not a readable folder`);
  }
  if (entries.length === 0) throw new DatasetError(`--dataset '${dir}' holds no .jsonl file (one JSON row per line: {"image": ..., "caption": ...})`);
  const rows: DatasetRow[] = [];
  const problems: RowProblem[] = [];
  const exists = new Map<string, Promise<boolean>>();
  const check = (p: string) => {
    let e = exists.get(p);
    if (!e) exists.set(p, (e = fs.stat(p).then((s) => s.isFile(), () => false)));
    return e;
  };
  for (const name of entries) {
    const file = path.join(dir, name);
    const text = await fs.readFile(file, 'utf8');
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]!.trim();
      if (l === '') continue;
      const r = parseRow(l, name, i + 1);
      if (typeof r === 'string') {
        problems.push({ file: name, line: i + 1, message: r });
        continue;
      }
      const missing: string[] = [];
      for (const im of rowImages(r)) if (!(await check(resolveImage(dir, im)))) missing.push(im);
      if (missing.length) problems.push({ file: name, line: i + 1, message: `image file${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')} not found` });
      else rows.push(r);
    }
  }
  if (problems.length && opts.invalid !== 'skip')
    throw new DatasetError(`--dataset '${dir}': ${problems.length} invalid row(s) (pass --skip-invalid to leave them out):\n${problemList(problems)}`, problems);
  if (rows.length === 0) throw new DatasetError(`--dataset '${dir}': no valid row${problems.length ? `:\n${problemList(problems)}` : ''}`, problems);
  return { dir, rows, skipped: problems, files: entries };
}

export function resolveImage(dir: string, p: string): string {
  return path.isAbsolute(p) ? p : path.join(dir, p);
}
