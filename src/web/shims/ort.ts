// onnxruntime-node for the browser bundle: onnxruntime-web under the same API, so runtime/session.ts
// (and the VLM's KV-cache loop, runtime/vlm/generate.ts) run unchanged on wasm / WebGPU. The one
// difference bridged here: Session.load passes a file path, which onnxruntime-node reads from disk;
// here the path names a file of the page's in-memory file system (shims/fs.ts), handed over as bytes
// together with the external-data files the model references.
import * as web from 'onnxruntime-web';
import { decodeModel } from '../../../codegen/onnx/proto.ts';
import { externalRefs } from '../../../codegen/onnx/external.ts';
import { readFileSync } from './fs.ts';

export * from 'onnxruntime-web';

/** The execution providers the page chose (shims are configured by the page before loading). */
export const pageProviders: { list: string[] } = { list: ['wasm'] };

type Options = web.InferenceSession.SessionOptions;

async function create(model: string | Uint8Array | ArrayBuffer, options: Options = {}): Promise<web.InferenceSession> {
  // runtime/ asks for its Node device ('cpu' unless told); in the page that is the page's choice
  const eps = (options.executionProviders ?? []).map((e) => (typeof e === 'string' ? e : e.name));
  const executionProviders = eps.length === 0 || eps.every((e) => e === 'cpu') ? pageProviders.list : eps;
  const opts: Options = { ...options, executionProviders };
  if (typeof model !== 'string') return web.InferenceSession.create(model instanceof ArrayBuffer ? new Uint8Array(model) : model, opts);
  const bytes = readFileSync(model) as Uint8Array;
  const locations = [...new Set(externalRefs(decodeModel(bytes)).map((r) => r.location))];
  if (locations.length) opts.externalData = locations.map((loc) => ({ path: loc, data: readFileSync(`${model.slice(0, model.lastIndexOf('/'))}/${loc}`) as Uint8Array }));
  return web.InferenceSession.create(bytes, opts);
}

// the class itself (instanceof, types) stays onnxruntime-web's; only create() resolves paths
export const InferenceSession = new Proxy(web.InferenceSession, {
  get(t, k, r) {
    return k === 'create' ? create : Reflect.get(t, k, r);
  },
}) as typeof web.InferenceSession;
