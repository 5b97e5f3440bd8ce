// The demo's evaluation sets: fixed by seeds, apart from the DiT's training scenes, and the dev
// validation set (seedBase) apart from the demo's own scenes.
import { describe, expect, it } from 'vitest';
import { DEMO_SIZES, evalItems, itemScenes, trainingSceneKeys, validationItems, type EvalItem } from '../../runtime/shapes/demo/sets.ts';
import { sceneKey } from '../../runtime/shapes/scenes.ts';

const scenesOf = (items: readonly EvalItem[]) => itemScenes(items.filter((i) => !i.cat.startsWith('named')));

describe('shapes demo sets', () => {
  const trained = trainingSceneKeys({ t2i: 2000, seed: 21 });
  const sizes = { t2i: 60, edits: 30, recon: 20, namedSeeds: 1 };

  it('the demo set is fixed by its seeds and holds no scene the DiT trained on', () => {
    const a = evalItems(sizes, trained);
    expect(evalItems(sizes, trained, 0)).toEqual(a);
    expect(a.filter((i) => i.cat === 'edit')).toHaveLength(30);
    for (const i of a) if (!i.cat.startsWith('named') && i.cat !== 'edit') expect(trained.has(sceneKey(i.target)), i.prompt).toBe(false);
    for (const i of a) if (i.source) expect(trained.has(sceneKey(i.source))).toBe(false);
  });

  it('the validation set (other seeds) shares no prompt scene with the demo', () => {
    const demo = evalItems(DEMO_SIZES, trained);
    const demoKeys = new Set(itemScenes(demo));
    const small = evalItems(sizes, trained);
    const dev = validationItems(sizes, trained);
    expect(dev).toHaveLength(small.length);
    const t2iAndSources = dev.filter((i) => i.cat.startsWith('t2i') || i.cat === 'recon').map((i) => sceneKey(i.target)).concat(dev.flatMap((i) => (i.source ? [sceneKey(i.source)] : [])));
    for (const k of t2iAndSources) expect(demoKeys.has(k)).toBe(false);
    // without the exclusion the other seeds still draw other scenes
    const overlap = scenesOf(evalItems(sizes, trained, 100)).filter((k) => demoKeys.has(k)).length;
    expect(overlap).toBeLessThan(scenesOf(small).length / 2);
  });
});
