// The page's second loader: a pipeline folder (pipeline.json; `unifusion assemble`), run by the
// runtime's own code -- runtime/pipeline's Pipeline.load / generate (scheduler defaults, CFG with
// the stored null condition, the flow solver, VAE or pixel-space decode) and, through
// Pipeline.encoder(), runtime/vlm's VlmPackage (tokenizer.json via @huggingface/tokenizers, the chat
// template via @huggingface/jinja, the encoder / KV-cache generation graph). The bundle maps their
// Node imports to browser shims (src/web/bundle.ts): the folder's files are fetched into an
// in-memory file system first, onnxruntime-node is onnxruntime-web. So the browser computes what
// `unifusion sample` computes, not a copy of it. No DOM here; main.ts draws.
import { mount } from '../../src/web/shims/fs.ts';
import { pageProviders } from '../../src/web/shims/ort.ts';
import { parsePipelineJson, PIPELINE_FILE, type PipelineJson } from '../../runtime/pipeline/format.ts';
import { Pipeline, type GenerateResult } from '../../runtime/pipeline/pipeline.ts';

/** Where the folder lives in the page's in-memory file system. */
export const MOUNT = '/pipeline';

export interface FolderRequest {
  prompt: string;
  seed: number;
  steps?: number;
  /** image width = height in pixels (default: the pipeline's default size) */
  size?: number;
  guidance?: number;
  rewrite?: boolean;
}

export interface LoadedFolder {
  pipeline: Pipeline;
  json: PipelineJson;
  bytes: number;
}

export type Fetcher = (file: string) => Promise<Uint8Array>;

/**
 * Fetch pipeline.json and every file it lists into the in-memory file system, then load it as
 * Node does (hash check off: serve-web checked every sha256 before serving). `providers`: the
 * execution providers runtime/ sessions get (the page's wasm / WebGPU choice).
 */
export async function loadFolder(fetchFile: Fetcher, providers: string[], onFile?: (done: number, total: number, name: string) => void): Promise<LoadedFolder> {
  pageProviders.list = providers;
  const jsonBytes = await fetchFile(PIPELINE_FILE);
  const json = parsePipelineJson(new TextDecoder().decode(jsonBytes), `pipeline/${PIPELINE_FILE}`);
  if (!json.parts.vlm)
    throw new Error(
      `pipeline '${json.name}' has no VLM (pipeline.json parts.vlm is null): the page turns prompts into conditions with the pipeline's VLM package; assemble it with --vlm DIR (or use \`unifusion sample --condition FILE\` in Node)`,
    );
  const names = Object.keys(json.files).sort();
  // a few requests at a time: small files do not wait behind the weights
  const got = new Map<string, Uint8Array>();
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const name = names[next++]!;
      got.set(name, await fetchFile(name));
      onFile?.(got.size, names.length, name);
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, names.length) }, worker));
  const entries: [string, Uint8Array][] = [[`${MOUNT}/${PIPELINE_FILE}`, jsonBytes], ...names.map((n): [string, Uint8Array] => [`${MOUNT}/${n}`, got.get(n)!])];
  const bytes = entries.reduce((a, [, b]) => a + b.byteLength, 0);
  mount(entries);
  const pipeline = await Pipeline.load(MOUNT, { verify: false });
  // open the VLM now, so a broken package is a load error, not a first-run one
  await pipeline.encoder();
  return { pipeline, json, bytes };
}

/** One image, as `unifusion sample --prompt P --seed S` would make it (progress: false). */
export async function generateFolder(
  f: LoadedFolder,
  req: FolderRequest,
  onStep?: (done: number, total: number) => void | Promise<void>,
  /** the rewritten prompt as the VLM writes it (VERIFI), piece by piece */
  onRewriteText?: (text: string) => void,
): Promise<GenerateResult> {
  const size = req.size;
  return f.pipeline.generate({
    prompts: [req.prompt],
    seed: req.seed,
    ...(req.steps !== undefined ? { steps: req.steps } : {}),
    ...(size !== undefined ? { width: size, height: size } : {}),
    ...(req.guidance !== undefined ? { guidance: req.guidance } : {}),
    ...(req.rewrite !== undefined ? { rewrite: req.rewrite } : {}),
    progress: false,
    ...(onRewriteText ? { vlm: { onToken: (_row: number, text: string) => onRewriteText(text) } } : {}),
    onStep: async (s) => {
      await onStep?.(s.step + 1, s.steps);
    },
  });
}

/** RGB bytes -> canvas RGBA. */
export function rgbToRgba(rgb: ArrayLike<number>, width: number, height: number): Uint8ClampedArray {
  const out = new Uint8ClampedArray(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    out[p * 4] = rgb[p * 3]!;
    out[p * 4 + 1] = rgb[p * 3 + 1]!;
    out[p * 4 + 2] = rgb[p * 3 + 2]!;
    out[p * 4 + 3] = 255;
  }
  return out;
}
