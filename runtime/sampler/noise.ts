// Seeded starting points. Every image has its own generator, Rng(seed_i, 'noise'), so image i of a
// run is the same whatever the batch size, the number of prompts or the position in the batch
// (a user who liked image 3 of seed 7 gets it back alone with seed 10 = 7 + 3).
import { Rng } from '../../src/ir/init.ts';

/** Standard normal noise for images with these seeds, each of `perImage` values, concatenated. */
export function seededNoise(seeds: readonly number[], perImage: number): Float64Array {
  const out = new Float64Array(seeds.length * perImage);
  seeds.forEach((seed, i) => {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed ${seed} is not an integer`);
    const rng = new Rng(seed, 'noise');
    for (let k = 0; k < perImage; k++) out[i * perImage + k] = rng.normal();
  });
  return out;
}

/** img2img start: x = (1 - sigma) x0 + sigma eps (the rectified-flow forward process at sigma). */
export function noised(x0: ArrayLike<number>, noise: ArrayLike<number>, sigma: number): Float64Array {
  if (x0.length !== noise.length) throw new RangeError(`image of ${x0.length} values, noise of ${noise.length}`);
  const out = new Float64Array(x0.length);
  for (let i = 0; i < out.length; i++) out[i] = (1 - sigma) * x0[i]! + sigma * noise[i]!;
  return out;
}
