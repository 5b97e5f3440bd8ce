// The compile pipeline as a flat list of named steps.
import type { Graph } from '../ir/graph.ts';
import { cse } from './cse.ts';
import { dce } from './dce.ts';
import { fold } from './fold.ts';
import { runPasses, type Pass, type PassOptions } from './pass.ts';
import { simplify } from './simplify.ts';
import { verify } from './verify.ts';
import { infer } from './infer.ts';

export const DEFAULT_PIPELINE: readonly Pass[] = [verify, infer, simplify, fold, simplify, cse, dce, verify];

export function optimize(g: Graph, opts: PassOptions & { passes?: readonly Pass[] } = {}): Graph {
  return runPasses(g, opts.passes ?? DEFAULT_PIPELINE, opts);
}

export { verify, infer, simplify, fold, cse, dce, runPasses };
