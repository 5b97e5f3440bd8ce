// The fusion pass: runs a target's rules in order, each over the whole graph.
// Per rule: walk nodes users-first (so the largest pattern wins), match, check,
// claim the match's internal nodes, then rebuild the graph with each accepted
// root replaced by its fused node. A match whose intermediate values are used
// outside it is declined (fusing would compute them twice). Every decline is
// recorded with its reason and the root's site for `compile --debug`.
import { Builder, Graph } from '../../ir/graph.ts';
import { NB } from '../../ir/nb.ts';
import { OpError, type Node } from '../../ir/node.ts';
import type { OpKind } from '../../ir/params.ts';
import type { Target } from '../../ir/target.ts';
import type { Pass } from '../pass.ts';
import { compilePatterns, describe, makeMatch, matchNode, type FusionRule, type Match, type RewriteCtx } from './rule.ts';
import { RULES } from './rules.ts';
import { TARGET_TABLE } from './targets.ts';

export interface RuleReport {
  rule: string;
  fused: { at: string; pattern: string }[];
  declined: { at: string; pattern: string; reason: string }[];
}

export interface FusionReport {
  target: Target;
  rules: RuleReport[];
}

function where(n: Node): string {
  return `${describe(n)}${n.site ? ` at ${n.site}` : ''}`;
}

function usersOf(g: Graph): Map<Node, Node[]> {
  const users = new Map<Node, Node[]>();
  for (const n of g.nodes()) for (const i of new Set(n.inputs)) (users.get(i) ?? users.set(i, []).get(i)!).push(n);
  return users;
}

/**
 * One rule over the graph; returns the new graph and what happened. `into`: build the new graph
 * in this builder (a trace's, so that the untouched nodes come back as the same nodes: the train
 * step fuses its forward this way before autodiff, and its params and inputs keep their identity).
 */
export function applyRule(g: Graph, rule: FusionRule, report: RuleReport, into?: Builder): { graph: Graph; fused: number } {
  const patterns = compilePatterns(rule);
  const loose = new Set<OpKind>(rule.loose ?? []);
  const nodes = g.nodes();
  const users = usersOf(g);
  const outputs = new Set(g.outputs.map((o) => o.node));
  // Phase 1: per root (users first), the first pattern that matches and passes its check. Roots
  // inside an accepted candidate are skipped, so the largest pattern wins.
  const claimed = new Set<Node>();
  const cands = new Map<Node, { m: Match<string>; internal: Node[]; extra: Map<Node, (cx: RewriteCtx) => Node> }>();
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    if (n.inputs.length === 0) continue;
    // a node inside an accepted candidate is a root of its own only if something else needs it too
    if (claimed.has(n) && !outputs.has(n) && (users.get(n) ?? []).every((u) => claimed.has(u) || cands.has(u))) continue;
    const declines: { pattern: string; reason: string }[] = [];
    const tryMatch = (m: Match<string>, internal: Node[]): boolean => {
      let reason: string | undefined;
      try {
        reason = rule.check(m);
      } catch (e) {
        if (!(e instanceof OpError)) throw e;
        reason = e.message;
      }
      if (reason) {
        declines.push({ pattern: m.pattern, reason });
        return false;
      }
      cands.set(n, { m, internal, extra: new Map((rule.alsoReplace?.(m) ?? []).map((e) => [e.node, e.rewrite])) });
      for (const x of internal) claimed.add(x);
      return true;
    };
    let done = false;
    if (rule.matchAt) {
      const m = rule.matchAt(n);
      if (m) done = tryMatch(m, []);
    }
    for (const p of patterns) {
      if (done) break;
      if (p.root.op !== n.op) continue;
      const env = matchNode(p.root, n, loose, (x) => p.vars.has(x));
      if (!env) continue;
      const internal = [...env].filter(([pn]) => !p.vars.has(pn) && pn !== p.root && !pn.is('constant')).map(([, gn]) => gn);
      done = tryMatch(makeMatch(p, n, env), internal);
    }
    if (!done) for (const d of declines) report.declined.push({ at: where(n), ...d });
  }
  // Phase 2: an intermediate may be shared by several candidates (CSE merges the common parts of
  // two norms of one x, say), but one that something outside every candidate still needs would
  // have to be computed twice: drop such candidates until none is left.
  for (let changed = true; changed; ) {
    changed = false;
    const covered = new Set<Node>();
    for (const [root, c] of cands) for (const x of [root, ...c.internal]) covered.add(x);
    for (const [root, c] of cands) {
      // (an intermediate that is itself the root of a candidate is provided by that fused node)
      const leak = c.internal.find((x) => !cands.has(x) && !c.extra.has(x) && (outputs.has(x) || (users.get(x) ?? []).some((u) => !covered.has(u))));
      if (!leak) continue;
      cands.delete(root);
      report.declined.push({ at: where(root), pattern: c.m.pattern, reason: `intermediate ${describe(leak)} is also used outside the pattern` });
      changed = true;
      break;
    }
  }
  const accepted = new Map([...cands].map(([k, c]) => [k, c.m]));
  const extras = new Map<Node, (cx: RewriteCtx) => Node>();
  for (const c of cands.values()) for (const [k, f] of c.extra) extras.set(k, f);
  if (accepted.size === 0) return { graph: g, fused: 0 };

  const b = into ?? new Builder();
  const nb = new NB(b);
  const map = new Map<Node, Node>();
  // a second output may need an operand that comes later in node order (add-rms-norm's sum needs
  // the weight): rebuild such an operand's plain subgraph on demand (interning makes it the same node)
  const ensure = (old: Node): Node => {
    const r = map.get(old);
    if (r) return r;
    if (accepted.has(old) || extras.has(old)) throw new Error(`rule ${rule.name}: operand ${describe(old)} is itself being rewritten`);
    const built = b.apply(old.op, old.params as never, old.inputs.map(ensure), old.site, old.scope);
    map.set(old, built);
    return built;
  };
  const ctxAt = (n: Node): RewriteCtx => ({
    nb,
    map: ensure,
    fuse: (kind, params, fins) => b.apply(kind, params, fins, n.site, n.scope),
  });
  for (const n of nodes) {
    if (map.has(n)) continue; // built on demand already
    const ins = n.inputs.map((i) => map.get(i)!);
    const m = accepted.get(n);
    const extra = extras.get(n);
    if (!m && extra) {
      map.set(n, extra(ctxAt(n)));
      continue;
    }
    if (!m) {
      map.set(n, b.apply(n.op, n.params as never, ins, n.site, n.scope));
      continue;
    }
    const cx: RewriteCtx = {
      nb,
      map: (old) => {
        const r = map.get(old);
        if (!r) throw new Error(`rule ${rule.name}: node ${describe(old)} is not upstream of the root`);
        return r;
      },
      // the fused node takes the root's site and module path (scope): it stands where the pattern's result stood
      fuse: (kind, params, fins) => b.apply(kind, params, fins, n.site, n.scope),
    };
    const out = rule.rewrite(m, cx);
    if (out.dtype !== n.dtype || out.rank !== n.rank) throw new OpError(`rule ${rule.name}: rewrite of ${describe(n)} gave ${describe(out)}`);
    map.set(n, out);
    report.fused.push({ at: where(n), pattern: m.pattern });
  }
  const graph = new Graph(g.name, g.inputs.map((i) => map.get(i) as Node<'input'>), g.outputs.map((o) => ({ name: o.name, node: map.get(o.node)! })));
  return { graph, fused: accepted.size };
}

/** Run `rules` (names of RULES) in order; a rule re-runs while it still fuses (nested sections). */
export function fuseGraph(g: Graph, rules: readonly string[], target: Target, into?: Builder): { graph: Graph; report: FusionReport } {
  const report: FusionReport = { target, rules: [] };
  for (const name of rules) {
    const rule = RULES[name];
    if (!rule) throw new OpError(`fusion: unknown rule '${name}' (known: ${Object.keys(RULES).join(', ')})`);
    const r: RuleReport = { rule: name, fused: [], declined: [] };
    for (let pass = 0; pass < 4; pass++) {
      const { graph, fused } = applyRule(g, rule, r, into);
      g = graph;
      if (fused === 0) break;
    }
    // a root declined in one pass and seen again in the next is reported once
    const seen = new Set<string>();
    r.declined = r.declined.filter((d) => !seen.has(d.at + d.reason) && (seen.add(d.at + d.reason), true));
    report.rules.push(r);
  }
  return { graph: g, report };
}

/** The fusion step of a target's pipeline; `onReport` receives what each rule fused and declined. */
export function fusionPass(target: Target, opts: { rules?: readonly string[]; onReport?: (r: FusionReport) => void } = {}): Pass {
  return {
    name: `fuse[${target}]`,
    run(g) {
      const { graph, report } = fuseGraph(g, opts.rules ?? TARGET_TABLE[target].rules, target);
      opts.onReport?.(report);
      const hits = report.rules.filter((r) => r.fused.length).map((r) => `${r.rule}×${r.fused.length}`);
      const declined = report.rules.reduce((a, r) => a + r.declined.length, 0);
      return { graph, changed: hits.length > 0, note: [hits.join(' '), declined ? `${declined} declined` : ''].filter(Boolean).join('; ') || undefined };
    },
  };
}

/** Text of a report, one line per fusion and per decline (compile --debug). */
export function formatReport(r: FusionReport): string {
  const lines = [`fusion for target '${r.target}':`];
  for (const rr of r.rules) {
    lines.push(`  ${rr.rule}: ${rr.fused.length} fused, ${rr.declined.length} declined`);
    for (const f of rr.fused) lines.push(`    fused    ${f.at} (${f.pattern})`);
    for (const d of rr.declined) lines.push(`    declined ${d.at} (${d.pattern}): ${d.reason}`);
  }
  return lines.join('\n');
}
