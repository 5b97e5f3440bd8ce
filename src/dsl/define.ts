// A graph file's default export: a name, presets (configs by name) and a build
// function that traces the graph for one config. The CLI's `compile` loads it.
import type { Graph } from '../ir/graph.ts';
import { trace } from './trace.ts';
import type { Tensor } from './tensor.ts';

export interface GraphDefinition<C> {
  name: string;
  description?: string;
  presets: Record<string, C>;
  defaultPreset?: string;
  /** Trace the graph for `cfg`; return its named outputs. */
  build(cfg: C): Record<string, Tensor>;
  seed?: number;
}

export const GRAPH_DEFINITION = Symbol.for('unifusion.graph-definition');

/** What defineGraph returns. Named (and exported) so that declaration files of graph modules can say it. */
export type DefinedGraph<C> = GraphDefinition<C> & { [GRAPH_DEFINITION]: true; trace(preset?: string): Graph };

export function defineGraph<C>(def: GraphDefinition<C>): DefinedGraph<C> {
  return Object.assign(def, {
    [GRAPH_DEFINITION]: true as const,
    trace(preset?: string): Graph {
      const name = preset ?? def.defaultPreset ?? Object.keys(def.presets)[0]!;
      const cfg = def.presets[name];
      if (cfg === undefined) throw new Error(`graph '${def.name}': unknown preset '${name}' (known: ${Object.keys(def.presets).join(', ')})`);
      return trace(def.name, () => def.build(cfg), { seed: def.seed });
    },
  });
}
