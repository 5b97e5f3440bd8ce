// Training curves as PNG: a vega-lite spec (raw loss and its exponential moving average over the
// step) compiled by vega-lite, rendered headless to SVG by vega (no canvas, no browser), then
// rasterised by sharp's librsvg. A declarative chart library instead of hand-drawn pixels.
import sharp from 'sharp';
import * as vega from 'vega';
import * as vl from 'vega-lite';

export interface CurvePoint {
  step: number;
  loss: number;
}

/** PNG bytes of the loss curve (raw + EMA-smoothed with `smoothing`). */
export async function lossCurvePng(points: readonly CurvePoint[], opts: { title?: string; smoothing?: number; width?: number; height?: number } = {}): Promise<Uint8Array> {
  const a = opts.smoothing ?? 0.9;
  const values: { step: number; loss: number; series: string }[] = [];
  let ema: number | undefined;
  for (const p of points) {
    if (!Number.isFinite(p.loss)) continue;
    ema = ema === undefined ? p.loss : a * ema + (1 - a) * p.loss;
    values.push({ step: p.step, loss: p.loss, series: 'loss' }, { step: p.step, loss: ema, series: `EMA ${a}` });
  }
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: opts.title ?? 'training loss',
    width: opts.width ?? 640,
    height: opts.height ?? 320,
    background: 'white',
    data: { values },
    mark: { type: 'line', strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'loss', type: 'quantitative', title: 'loss', scale: { zero: false } },
      color: { field: 'series', type: 'nominal', title: null, scale: { domain: ['loss', `EMA ${a}`], range: ['#9ecae1', '#08519c'] } },
    },
  };
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return new Uint8Array(await sharp(Buffer.from(svg)).png().toBuffer());
}
