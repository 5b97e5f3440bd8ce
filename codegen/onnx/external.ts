// Validation of a model's external-data references before anything reads them:
// a location must be a relative path that stays inside the model's folder
// (no "..", no absolute path, no symlink out), and offset+length must lie
// inside the file. A hostile .onnx must not make us read arbitrary files.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type onnxProto from 'onnx-proto';

export class ExternalDataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExternalDataError';
  }
}

export interface ExternalRef {
  tensor: string;
  location: string;
  offset: number;
  length: number | undefined;
}

function tensorsOf(model: onnxProto.onnx.IModelProto): onnxProto.onnx.ITensorProto[] {
  const out: onnxProto.onnx.ITensorProto[] = [];
  const visitGraph = (g: onnxProto.onnx.IGraphProto | null | undefined) => {
    if (!g) return;
    out.push(...(g.initializer ?? []));
    for (const n of g.node ?? [])
      for (const a of n.attribute ?? []) {
        if (a.t) out.push(a.t);
        out.push(...(a.tensors ?? []));
        visitGraph(a.g);
        for (const sg of a.graphs ?? []) visitGraph(sg);
      }
  };
  visitGraph(model.graph);
  return out;
}

export function externalRefs(model: onnxProto.onnx.IModelProto): ExternalRef[] {
  const refs: ExternalRef[] = [];
  for (const t of tensorsOf(model)) {
    if (t.dataLocation !== 1) continue;
    const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const num = (k: string): number | undefined => {
      const v = kv.get(k);
      if (v === undefined) return undefined;
      if (!/^\d+$/.test(v)) throw new ExternalDataError(`tensor '${t.name}': external data ${k} '${v}' is not a non-negative integer`);
      return Number(v);
    };
    refs.push({ tensor: t.name ?? '', location: kv.get('location') ?? '', offset: num('offset') ?? 0, length: num('length') });
  }
  return refs;
}

/** Throws ExternalDataError naming the tensor and location of the first bad reference. */
export function checkExternalData(modelPath: string, model: onnxProto.onnx.IModelProto): ExternalRef[] {
  const dir = fs.realpathSync(path.dirname(path.resolve(modelPath)));
  const refs = externalRefs(model);
  const sizes = new Map<string, number>();
  for (const r of refs) {
    const where = `${modelPath}: tensor '${r.tensor}': external data location '${r.location}'`;
    if (!r.location) throw new ExternalDataError(`${modelPath}: tensor '${r.tensor}': external data has no location`);
    if (path.isAbsolute(r.location) || /^[A-Za-z]:/.test(r.location) || r.location.includes('\0'))
      throw new ExternalDataError(`${where} is absolute; it must be a file inside the model's folder`);
    const target = path.resolve(dir, r.location);
    if (!target.startsWith(dir + path.sep)) throw new ExternalDataError(`${where} escapes the model's folder`);
    let real: string;
    try {
      real = fs.realpathSync(target);
    } catch {
      throw new ExternalDataError(`${where} does not exist`);
    }
    if (!real.startsWith(dir + path.sep)) throw new ExternalDataError(`${where} resolves (through a link) outside the model's folder`);
    let size = sizes.get(real);
    if (size === undefined) sizes.set(real, (size = fs.statSync(real).size));
    const end = r.offset + (r.length ?? 0);
    if (end > size) throw new ExternalDataError(`${where}: bytes ${r.offset}..${end} lie past the end of the ${size}-byte file`);
  }
  return refs;
}
