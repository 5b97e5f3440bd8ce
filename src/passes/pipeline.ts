// The compile pipeline as a flat list of named steps.
import type { Graph } from '../ir/graph.ts';
import { cse } from './cse.ts';
import { dce } from './dce.ts';
import { fold } from './fold.ts';
import { runPasses, type Pass, type PassOptions } from './pass.ts';
import { simplify } from './simplify.ts';
import { verify } from './verify.ts';
import { infer } from './infer.ts';
import type { Target } from '../ir/target.ts';
import { fusionPass, type FusionReport } from './fusion/fuse.ts';

export const DEFAULT_PIPELINE: readonly Pass[] = [verify, infer, simplify, fold, simplify, cse, dce, verify];

/**
 * The compile pipeline for an execution-provider target: the default steps, then fusion as a
 * late step (autodiff and the optimisations above run on the unfused IR, so training graphs fuse
 * too), then the clean-up the rewrites need (merged reshapes, shared tables, verify).
 */
export function pipelineFor(target: Target, opts: { onReport?: (r: FusionReport) => void; rules?: readonly string[] } = {}): Pass[] {
  return [...DEFAULT_PIPELINE, fusionPass(target, opts), fold, simplify, cse, dce, verify];
}

export function optimize(g: Graph, opts: PassOptions & { passes?: readonly Pass[] } = {}): Graph {
  return runPasses(g, opts.passes ?? DEFAULT_PIPELINE, opts);
}

export { verify, infer, simplify, fold, cse, dce, runPasses };
