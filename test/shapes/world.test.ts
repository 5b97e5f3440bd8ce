import { describe, expect, it } from 'vitest';
import { Rng } from '../../src/ir/init.ts';
import { caption, paraphrase, parseCaption, partialCaption } from '../../runtime/shapes/captions.ts';
import { applyEdit, instruction, parseInstruction, randomEdit } from '../../runtime/shapes/edits.ts';
import { hasHeldOut, HELD_OUT, NAMED_SCENES, randomScene } from '../../runtime/shapes/scenes.ts';
import { cellCentre, emptyScene, inShape, objectsOf, render, sameScene, sceneOf, SIZE, type Scene } from '../../runtime/shapes/world.ts';

describe('shapes world', () => {
  it('renders the issue geometry: pixel centres, colours, cell centres', () => {
    const s = sceneOf([{ colour: 'red', shape: 'circle', cell: 0 }, { colour: 'blue', shape: 'square', cell: 4 }, { colour: 'yellow', shape: 'triangle', cell: 8 }]);
    const img = render(s);
    const px = (x: number, y: number) => Array.from(img.subarray((y * SIZE + x) * 3, (y * SIZE + x) * 3 + 3));
    // cell 0 centre (8, 8): pixel (8, 8) has centre (8.5, 8.5) -> inside; (2, 8): (2.5-8)^2 = 30.25 <= 36 -> inside; (1, 8): 42.25 -> outside
    expect(px(8, 8)).toEqual([220, 40, 40]);
    expect(px(2, 8)).toEqual([220, 40, 40]);
    expect(px(1, 8)).toEqual([0, 0, 0]);
    // square at the center (24, 24): x in 18..29 (centres 18.5..29.5 within +-6)
    expect(px(18, 18)).toEqual([40, 80, 220]);
    expect(px(29, 29)).toEqual([40, 80, 220]);
    expect(px(17, 24)).toEqual([0, 0, 0]);
    expect(px(30, 24)).toEqual([0, 0, 0]);
    // triangle at (40, 40), apex up: row py = 34.5 has half width 0.25, and the nearest pixel centre is 0.5 away
    expect(px(40, 34)).toEqual([0, 0, 0]);
    expect(px(39, 35)).toEqual([230, 210, 40]); // py 35.5: half width 0.75, px 39.5 -> 0.5
    expect(px(34, 45)).toEqual([230, 210, 40]); // py 45.5: half width 5.75, px 34.5 -> 5.5
    expect(px(40, 46)).toEqual([0, 0, 0]); // py 46.5 > cy + 6
    // pixel counts per shape match the inequalities evaluated independently
    const count = (colour: number[]) => {
      let n = 0;
      for (let i = 0; i < SIZE * SIZE; i++) if (img[3 * i] === colour[0] && img[3 * i + 1] === colour[1] && img[3 * i + 2] === colour[2]) n++;
      return n;
    };
    let circle = 0, tri = 0;
    for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
      if ((x + 0.5 - 8) ** 2 + (y + 0.5 - 8) ** 2 <= 36) circle++;
      const py = y + 0.5;
      if (py <= 14 && Math.abs(x + 0.5 - 8) <= (py - 2) / 2) tri++;
    }
    expect(count([220, 40, 40])).toBe(circle);
    expect(count([40, 80, 220])).toBe(144);
    expect(count([230, 210, 40])).toBe(tri);
    expect(cellCentre(5)).toEqual({ cx: 40, cy: 24 });
    expect(inShape('triangle', 8.5, 14, 8, 8)).toBe(true);
  });

  it('canonical captions as the issue writes them, and parse(caption(s)) = s', () => {
    const s = sceneOf([{ colour: 'blue', shape: 'square', cell: 4 }, { colour: 'red', shape: 'circle', cell: 0 }, { colour: 'yellow', shape: 'triangle', cell: 8 }]);
    expect(caption(s)).toBe('a red circle at the top left, a blue square at the center and a yellow triangle at the bottom right');
    expect(caption(sceneOf([{ colour: 'white', shape: 'circle', cell: 3 }]))).toBe('a white circle at the left');
    expect(caption(sceneOf([{ colour: 'green', shape: 'circle', cell: 1 }, { colour: 'purple', shape: 'square', cell: 7 }]))).toBe('a green circle at the top and a purple square at the bottom');
    const rng = new Rng(1, 'test');
    for (let i = 0; i < 500; i++) {
      const sc = randomScene(rng);
      const parsed = parseCaption(caption(sc));
      expect(parsed && sameScene(parsed, sc)).toBe(true);
    }
    // not canonical: wrong order, duplicate cell, other words, extra spaces inside
    expect(parseCaption('a blue square at the center and a red circle at the top left')).toBeUndefined();
    expect(parseCaption('a red circle at the top, a blue square at the top')).toBeUndefined();
    expect(parseCaption('a red disc at the top left')).toBeUndefined();
    expect(parseCaption('a red circle at  the top left')).toBeUndefined();
    expect(parseCaption('')).toBeUndefined();
  });

  it('random scenes: 1..3 objects in distinct cells, held-out modes honoured, seeded', () => {
    const a = new Rng(3, 's'), b = new Rng(3, 's');
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 2000; i++) {
      const s = randomScene(a);
      expect(sameScene(s, randomScene(b))).toBe(true);
      counts[objectsOf(s).length]!++;
    }
    expect(counts[0]).toBe(0);
    for (const n of [1, 2, 3]) expect(counts[n]!).toBeGreaterThan(500);
    const r = new Rng(4, 's');
    for (let i = 0; i < 1000; i++) {
      expect(hasHeldOut(randomScene(r, { heldOut: 'exclude' }))).toBe(false);
      expect(hasHeldOut(randomScene(r, { heldOut: 'require' }))).toBe(true);
    }
    expect(HELD_OUT.map((h) => `${h.colour} ${h.shape}`)).toEqual(['purple triangle', 'yellow square', 'white circle']);
  });

  it('named scenes as specified', () => {
    expect(Object.fromEntries(Object.entries(NAMED_SCENES).map(([k, s]) => [k, caption(s)]))).toEqual({
      'a traffic light': 'a red circle at the top, a yellow circle at the center and a green circle at the bottom',
      'a christmas tree': 'a green triangle at the top, a green triangle at the center and a red square at the bottom',
      'the blue diagonal': 'a blue square at the top left, a blue square at the center and a blue square at the bottom right',
      'a pyramid row': 'a yellow triangle at the bottom left, a yellow triangle at the bottom and a yellow triangle at the bottom right',
      'a lonely moon': 'a yellow circle at the top right',
    });
  });

  it('paraphrases keep every colour, are seeded, and vary', () => {
    const rng = new Rng(5, 'p');
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const s = randomScene(rng);
      const p = paraphrase(s, new Rng(i, 'x'));
      expect(p).toBe(paraphrase(s, new Rng(i, 'x')));
      for (const o of objectsOf(s)) expect(p).toContain(o.colour);
      seen.add(p);
    }
    expect(seen.size).toBeGreaterThan(290);
  });

  it('partial captions: canonical order, each object loses its colour or its shape (never both), seeded', () => {
    const rng = new Rng(11, 'pc');
    let colourless = 0, shapeless = 0, full = 0;
    for (let i = 0; i < 400; i++) {
      const s = randomScene(rng);
      const p = partialCaption(s, new Rng(i, 'y'));
      expect(p).toBe(partialCaption(s, new Rng(i, 'y')));
      expect(partialCaption(s, new Rng(i, 'y'), 0)).toBe(caption(s));
      const phrases = p.replace(/ and (?=a )/, ', ').split(', ');
      const objs = objectsOf(s);
      expect(phrases.length).toBe(objs.length);
      objs.forEach((o, k) => {
        const ph = phrases[k]!;
        expect(ph.endsWith(` at the ${caption(sceneOf([o])).split(' at the ')[1]}`)).toBe(true);
        const hasColour = ph.startsWith(`a ${o.colour} `), hasShape = ph.includes(` ${o.shape} at`);
        expect(hasColour || hasShape).toBe(true);
        if (!hasColour) (colourless++, expect(ph.startsWith(`a ${o.shape} at`)).toBe(true));
        else if (!hasShape) (shapeless++, expect(ph.startsWith(`a ${o.colour} one at`)).toBe(true));
        else full++;
      });
    }
    // drop 0.25 each: about a quarter of the objects lose their colour, a quarter their shape
    const n = colourless + shapeless + full;
    for (const c of [colourless, shapeless]) expect(Math.abs(c / n - 0.25)).toBeLessThan(0.05);
    expect(() => partialCaption(randomScene(rng), rng, 0.6)).toThrow(/drop must be in/);
  });

  it('edits: canonical instructions round-trip and produce the expected target scenes', () => {
    const s = sceneOf([{ colour: 'red', shape: 'circle', cell: 0 }, { colour: 'blue', shape: 'square', cell: 4 }]);
    const t = (e: Parameters<typeof applyEdit>[1]) => caption(applyEdit(s, e));
    expect(t({ kind: 'recolour', colour: 'red', shape: 'circle', to: 'green' })).toBe('a green circle at the top left and a blue square at the center');
    expect(t({ kind: 'move', colour: 'blue', shape: 'square', to: 8 })).toBe('a red circle at the top left and a blue square at the bottom right');
    expect(t({ kind: 'remove', colour: 'red', shape: 'circle' })).toBe('a blue square at the center');
    expect(t({ kind: 'add', colour: 'white', shape: 'triangle', at: 2 })).toBe('a red circle at the top left, a white triangle at the top right and a blue square at the center');
    expect(() => applyEdit(s, { kind: 'move', colour: 'blue', shape: 'square', to: 0 })).toThrow(/not empty/);
    expect(() => applyEdit(s, { kind: 'remove', colour: 'green', shape: 'circle' })).toThrow(/names 0 objects/);
    expect(() => applyEdit(sceneOf([{ colour: 'red', shape: 'circle', cell: 0 }]), { kind: 'remove', colour: 'red', shape: 'circle' })).toThrow(/empty image/);
    const rng = new Rng(6, 'e');
    let made = 0;
    for (let i = 0; i < 1000; i++) {
      const src = randomScene(rng, { heldOut: 'exclude' });
      const r = randomEdit(src, rng, { allowHeldOut: false });
      if (!r) continue;
      made++;
      const text = instruction(r.edit);
      expect(parseInstruction(text)).toEqual(r.edit);
      expect(sameScene(applyEdit(src, r.edit), r.target)).toBe(true);
      expect(hasHeldOut(r.target)).toBe(false);
      const n = objectsOf(r.target).length;
      expect(n >= 1 && n <= 3).toBe(true);
    }
    expect(made).toBeGreaterThan(950);
    expect(parseInstruction('make the red circle')).toBeUndefined();
    const e: Scene = emptyScene();
    expect(randomEdit(e, rng)?.edit.kind).toBe('add');
  });
});
