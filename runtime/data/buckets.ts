// Training sizes: one fixed size (every image resized to cover it and centre-cropped), or aspect
// buckets of about the same pixel count (each image goes to the bucket nearest its aspect ratio,
// then is resized and centre-cropped to it, so wide images stay wide; a batch is one bucket).

export interface Bucket {
  width: number;
  height: number;
}

/** Aspect ratios (w / h) offered by bucketing: square, 4:3, 3:2, 16:9 and their portraits. */
export const BUCKET_ASPECTS = [1, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16];

/** Buckets of ~width x height pixels, sides multiples of `multiple`, distinct. */
export function aspectBuckets(width: number, height: number, multiple: number, aspects: readonly number[] = BUCKET_ASPECTS): Bucket[] {
  const area = width * height;
  const out: Bucket[] = [];
  for (const a of aspects) {
    const w = Math.max(multiple, Math.round(Math.sqrt(area * a) / multiple) * multiple);
    const h = Math.max(multiple, Math.round(Math.sqrt(area / a) / multiple) * multiple);
    if (!out.some((b) => b.width === w && b.height === h)) out.push({ width: w, height: h });
  }
  return out;
}

/** Index of the bucket whose aspect ratio is nearest (in log ratio) to a width x height image. */
export function assignBucket(buckets: readonly Bucket[], width: number, height: number): number {
  const r = Math.log(width / height);
  let best = 0, bestD = Infinity;
  buckets.forEach((b, i) => {
    const d = Math.abs(Math.log(b.width / b.height) - r);
    if (d < bestD - 1e-12) (best = i), (bestD = d);
  });
  return best;
}
