// Compile the generation (and InternVL vision) graphs of a test/fixtures/vlm-gen checkpoint in
// memory and load them as sessions: what import-hf + VlmPackage do on disk, without the disk.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGenerationGraph, internvlVisionGraph, type GenerationGraph } from '../../graphs/vlm/generation.ts';
import { compileGraph } from '../../src/compiler.ts';
import { encodeModel } from '../../codegen/onnx/proto.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import type { HostTensor } from '../../src/io/host.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { Session } from '../../runtime/session.ts';

export const GEN_FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'vlm-gen');

export interface GenFixture {
  dir: string;
  config: Record<string, unknown>;
  weights: Map<string, HostTensor>;
  io: Map<string, HostTensor>;
  meta: Record<string, string>;
}

const cache = new Map<string, GenFixture>();
export function genFixture(name: string): GenFixture {
  let f = cache.get(name);
  if (!f) {
    const dir = path.join(GEN_FIXTURES, name);
    const io = readSafetensors(path.join(dir, 'generate.safetensors'));
    f = { dir, config: JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>, weights: readSafetensors(path.join(dir, 'model.safetensors')).tensors, io: io.tensors, meta: io.metadata };
    cache.set(name, f);
  }
  return f;
}

export function io(f: GenFixture, name: string): HostTensor {
  const t = f.io.get(name);
  if (!t) throw new Error(`generate.safetensors has no '${name}'`);
  return t;
}

function paramValues(graph: Graph, names: (n: string) => string[], weights: Map<string, HostTensor>): Map<string, HostTensor> {
  const pv = new Map<string, HostTensor>();
  for (const p of graph.params()) {
    const c = names(p.params.name).find((n) => weights.has(n));
    if (!c) throw new Error(`checkpoint has none of ${names(p.params.name).join(', ')}`);
    pv.set(p.params.name, weights.get(c)!);
  }
  return pv;
}

export async function sessionOf(graph: Graph, pv: Map<string, HostTensor>): Promise<Session> {
  const c = compileGraph(graph, { weights: 'embed', paramValues: pv });
  return Session.load(encodeModel(c.emitted.model));
}

export async function generationSession(f: GenFixture, opts: { taps?: string; logits?: 'last' | 'all' } = {}): Promise<{ g: GenerationGraph; session: Session }> {
  const g = buildGenerationGraph(f.config, opts);
  const graph = g.trace();
  return { g, session: await sessionOf(graph, paramValues(graph, g.checkpointNames, f.weights)) };
}

export async function visionSession(f: GenFixture): Promise<Session> {
  const v = internvlVisionGraph(f.config);
  const graph = v.trace();
  return sessionOf(graph, paramValues(graph, v.checkpointNames, f.weights));
}

/** Row b of an i64 [B, S] tensor as numbers, optionally only where mask is 1. */
export function rowOf(t: HostTensor, b: number, mask?: HostTensor): number[] {
  const S = t.shape[1]!;
  const out: number[] = [];
  for (let s = 0; s < S; s++) if (!mask || Number(mask.data[b * S + s]) !== 0) out.push(Number(t.data[b * S + s]));
  return out;
}
