// Text form of a graph, one line per node, for debug dumps and golden tests:
//   %7 = matmul(%5, %6) : f32[batch, seq, 64]
import { typeStr, type Node } from './node.ts';
import type { Graph } from './graph.ts';
import { paramsKey } from './node.ts';

export function printGraph(g: Graph): string {
  const ids = new Map<Node, number>();
  const lines: string[] = [`graph ${g.name}(${g.inputs.map((i) => `${i.params.name}: ${typeStr(i.type)}`).join(', ')}) {`];
  for (const n of g.nodes()) {
    const id = ids.size;
    ids.set(n, id);
    let detail: string;
    if (n.is('input')) detail = `input '${n.params.name}'`;
    else if (n.is('param')) detail = `param '${n.params.name}'${n.params.frozen ? ' frozen' : ''}`;
    else if (n.is('constant')) detail = n.params.value.data.length <= 8 ? `constant [${Array.from(n.params.value.data).join(', ')}]` : `constant <${n.params.value.data.length} values>`;
    else {
      const p = paramsKey(n.params);
      detail = `${n.op}(${n.inputs.map((i) => `%${ids.get(i)}`).join(', ')})${p === '{}' ? '' : ` ${p}`}`;
    }
    lines.push(`  %${id} = ${detail} : ${typeStr(n.type)}${n.site ? `  @${n.site}` : ''}`);
  }
  lines.push(`  return ${g.outputs.map((o) => `${o.name}=%${ids.get(o.node)}`).join(', ')}`, '}');
  return lines.join('\n');
}
