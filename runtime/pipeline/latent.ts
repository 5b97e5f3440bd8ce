// Pixels <-> the DiT's latent space: through an imported VAE's encoder / decoder graphs, or in
// pixel space by the affine latent = (rgb - shift) * scale (rgb in [-1, 1], per channel when arrays).
import * as path from 'node:path';
import { fromFloat64, toFloat64 } from '../../src/io/host.ts';
import { Session } from '../session.ts';
import { crop, resizeBicubic } from '../tiling.ts';
import type { RgbImage } from '../images/png.ts';
import { perChannel, PipelineError, type LatentFormat } from './format.ts';

export interface CodecOptions {
  device?: string;
  intraOpThreads?: number;
}

export class LatentCodec {
  private sessions = new Map<'encoder' | 'decoder', Promise<Session>>();
  /** vae: the decoder / encoder .onnx paths (absent for pixel space) */
  constructor(
    readonly format: LatentFormat,
    private readonly vae: { decoder: string; encoder?: string } | null,
    private readonly opts: CodecOptions = {},
  ) {
    if (format.kind === 'vae' && !vae) throw new PipelineError('a VAE latent format needs the VAE graphs');
  }

  private session(part: 'encoder' | 'decoder'): Promise<Session> {
    let s = this.sessions.get(part);
    if (!s) {
      const file = part === 'decoder' ? this.vae?.decoder : this.vae?.encoder;
      if (!file) throw new PipelineError(`no VAE ${part}: ${part === 'encoder' ? 'encoding images needs the VAE encoder graph' : 'decoding needs the VAE decoder'}`);
      s = Session.load(file, this.opts);
      this.sessions.set(part, s);
    }
    return s;
  }

  /** the VAE decoder graph (undefined in pixel space) */
  get decoderPath(): string | undefined {
    return this.vae?.decoder;
  }

  /** [h, w] of the latent of a width x height image. */
  latentSize(width: number, height: number): [number, number] {
    const f = this.format.factor;
    if (width % f || height % f) throw new PipelineError(`image ${width}x${height} is not a multiple of the VAE factor ${f}`);
    return [height / f, width / f];
  }

  /** Latents [B, C, h, w] -> RGB images. */
  async decode(latents: Float64Array, shape: readonly number[]): Promise<RgbImage[]> {
    const [B, C, h, w] = shape as [number, number, number, number];
    const l = this.format;
    let px: Float64Array, H: number, W: number;
    if (l.kind === 'pixel') {
      px = new Float64Array(latents.length);
      for (let b = 0; b < B; b++)
        for (let c = 0; c < C; c++) {
          const s = perChannel(l.scale, c), t = perChannel(l.shift, c), o = (b * C + c) * h * w;
          for (let i = 0; i < h * w; i++) px[o + i] = latents[o + i]! / s + t;
        }
      (H = h), (W = w);
    } else {
      const dec = await this.session('decoder');
      const img = (await dec.run({ latent: fromFloat64('f32', [...shape], latents) }, ['image'])).image!;
      if (img.shape[1] !== 3) throw new PipelineError(`the VAE decoder returned ${img.shape[1]} channels; RGB output needs 3`);
      px = toFloat64(img);
      [H, W] = img.shape.slice(2) as [number, number];
    }
    return Array.from({ length: B }, (_, b) => tensorToRgb(px.subarray(b * 3 * H * W, (b + 1) * 3 * H * W), W, H));
  }

  /** RGB images (resized to cover and centre-cropped to width x height) -> latents [B, C, h, w]. */
  async encode(images: readonly RgbImage[], width: number, height: number, batch = 16): Promise<Float64Array> {
    const [h, w] = this.latentSize(width, height);
    const n = 3 * height * width;
    const px = new Float64Array(images.length * n);
    images.forEach((im, b) => px.set(rgbToTensor(fitImage(im, width, height)), b * n));
    const l = this.format;
    if (l.kind === 'pixel') {
      for (let b = 0; b < images.length; b++)
        for (let c = 0; c < 3; c++) {
          const s = perChannel(l.scale, c), t = perChannel(l.shift, c), o = (b * 3 + c) * h * w;
          for (let i = 0; i < h * w; i++) px[o + i] = (px[o + i]! - t) * s;
        }
      return px;
    }
    const enc = await this.session('encoder');
    const per = l.channels * h * w;
    const out = new Float64Array(images.length * per);
    for (let from = 0; from < images.length; from += batch) {
      const to = Math.min(images.length, from + batch);
      const r = (await enc.run({ image: fromFloat64('f32', [to - from, 3, height, width], px.subarray(from * n, to * n)) }, ['latent'])).latent!;
      out.set(toFloat64(r), from * per);
    }
    return out;
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) await (await s.catch(() => undefined))?.release();
    this.sessions.clear();
  }
}

/** The codec of an import-hf VAE folder (manifest.json), or pixel space. */
export async function codecFromVaeDir(dir: string | undefined, patch: number, pixel: { shift?: number | number[]; scale?: number | number[] } = {}, opts: CodecOptions = {}): Promise<LatentCodec> {
  if (!dir) return new LatentCodec({ kind: 'pixel', channels: 3, patch, factor: 1, shift: pixel.shift ?? 0, scale: pixel.scale ?? 1 }, null, opts);
  const { promises: fs } = await import('node:fs');
  let m: { format?: string; factor: number; latentShift: number | number[]; latentScale: number | number[]; config: { latentChannels: number }; graphs: { encoder: { onnx: string }; decoder: { onnx: string } } };
  try {
    m = JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8'));
  } catch {
    throw new PipelineError(`--vae '${dir}': no readable manifest.json (import the VAE with \`unifusion import-hf\`)`);
  }
  if (m.format !== 'unifusion-vae') throw new PipelineError(`--vae '${dir}': manifest.json is not a unifusion VAE`);
  return new LatentCodec(
    { kind: 'vae', channels: m.config.latentChannels, patch, factor: m.factor, shift: m.latentShift, scale: m.latentScale },
    { decoder: path.join(dir, m.graphs.decoder.onnx), encoder: path.join(dir, m.graphs.encoder.onnx) },
    opts,
  );
}

/** [3, H, W] in [-1, 1] -> 8-bit RGB (diffusers' (x / 2 + 0.5).clamp(0, 1), rounded). */
export function tensorToRgb(px: ArrayLike<number>, width: number, height: number): RgbImage {
  const n = width * height;
  const data = new Uint8Array(n * 3);
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < n; i++) {
      const v = Math.min(1, Math.max(0, px[c * n + i]! / 2 + 0.5));
      data[i * 3 + c] = Math.round(v * 255);
    }
  return { width, height, data };
}

/** 8-bit RGB -> [3, H, W] in [-1, 1]. */
export function rgbToTensor(img: RgbImage): Float64Array {
  const n = img.width * img.height;
  const out = new Float64Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[c * n + i] = (img.data[i * 3 + c]! / 255) * 2 - 1;
  return out;
}

/** Resize to cover width x height (Pillow-exact bicubic) and centre-crop. */
export function fitImage(img: RgbImage, width: number, height: number): RgbImage {
  if (img.width === width && img.height === height) return img;
  const k = Math.max(width / img.width, height / img.height);
  const rw = Math.max(width, Math.round(img.width * k)), rh = Math.max(height, Math.round(img.height * k));
  const r = resizeBicubic(img, rw, rh);
  return crop(r, Math.floor((rw - width) / 2), Math.floor((rh - height) / 2), width, height);
}
