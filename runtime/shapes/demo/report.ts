// The demo's report: PNG grids (each cell: the target or source render, then the sample) and one
// self-contained report.html (images as data: URIs, charts as inline SVG rendered by vega-lite ->
// vega headless, no script and no network), so it opens offline.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { decodeModel } from '../../../codegen/onnx/proto.ts';
import { encodePng, grid, type RgbImage } from '../png.ts';
import { render, SIZE, type Scene } from '../world.ts';
import { caption } from '../captions.ts';
import type { EvalResult, ItemResult } from './run.ts';
import type { Category } from './sets.ts';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const img = (s: Scene): RgbImage => ({ width: SIZE, height: SIZE, data: render(s) });

async function svg(spec: vl.TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Loss curves of the training runs (log loss, EMA-smoothed), one chart per run. */
export async function lossChart(title: string, points: readonly { step: number; loss: number }[]): Promise<string> {
  const values: { step: number; loss: number; series: string }[] = [];
  let ema: number | undefined;
  for (const p of points) {
    if (!Number.isFinite(p.loss) || p.loss <= 0) continue;
    ema = ema === undefined ? p.loss : 0.95 * ema + 0.05 * p.loss;
    values.push({ step: p.step, loss: p.loss, series: 'loss' }, { step: p.step, loss: ema, series: 'EMA 0.95' });
  }
  return svg({
    title,
    width: 420,
    height: 220,
    background: 'white',
    data: { values },
    mark: { type: 'line', strokeWidth: 1.2 },
    encoding: {
      x: { field: 'step', type: 'quantitative' },
      y: { field: 'loss', type: 'quantitative', scale: { type: 'log' } },
      color: { field: 'series', type: 'nominal', title: null, scale: { domain: ['loss', 'EMA 0.95'], range: ['#9ecae1', '#08519c'] } },
    },
  });
}

/** LAP's pooling weights (Linear(n -> 1) over the taps) from the pipeline's DiT graph. */
export function lapWeights(pipelineDir: string, taps: readonly number[]): number[] | undefined {
  const j = JSON.parse(fs.readFileSync(path.join(pipelineDir, 'pipeline.json'), 'utf8')) as { parts: { dit: { onnx: string } } };
  const model = decodeModel(fs.readFileSync(path.join(pipelineDir, j.parts.dit.onnx)));
  const init = model.graph?.initializer?.find((i) => i.name === 'lap.projector.weight');
  if (!init) return undefined;
  if (init.rawData?.length) {
    const b = Uint8Array.from(init.rawData);
    const f = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    return f.length === taps.length ? [...f] : undefined;
  }
  return init.floatData?.length === taps.length ? [...init.floatData] : undefined;
}

export async function lapChart(taps: readonly number[], w: readonly number[]): Promise<string> {
  return svg({
    title: "LAP's learned layer weights (pooling Linear over the VLM taps)",
    width: 320,
    height: 200,
    background: 'white',
    data: { values: taps.map((t, i) => ({ tap: `hidden_states.${t}`, weight: w[i]! })) },
    mark: { type: 'bar', color: '#3182bd' },
    encoding: { x: { field: 'tap', type: 'nominal', sort: null, title: 'VLM layer (0 = embeddings / image features)' }, y: { field: 'weight', type: 'quantitative' } },
  });
}

/** Pairs (target or source, sample) of up to `max` results, 8 pairs a row. */
export function pairGrid(rs: readonly ItemResult[], max = 48): RgbImage {
  const pics = rs.slice(0, max).flatMap((r) => [img(r.item.source ?? r.item.target), r.image]);
  return grid(pics, 16);
}

export const fileOf = (cat: Category) => `${cat.replace(/[^a-z0-9]+/g, '-')}.png`;

export interface ReportInput {
  eval: EvalResult;
  pipeline: string;
  curves: { title: string; points: { step: number; loss: number }[] }[];
  lap?: { taps: number[]; weights: number[] };
  /** how the shipped pipeline was made */
  provenance: string;
  seconds: number;
}

/** Write the grids (PNG) and report.html into `dir`; returns the files written. */
export async function writeReport(dir: string, r: ReportInput): Promise<string[]> {
  const files: string[] = [];
  const pngs = new Map<string, string>();
  const cats = [...new Set(r.eval.results.map((x) => x.item.cat))];
  for (const cat of cats) {
    const rs = r.eval.results.filter((x) => x.item.cat === cat);
    const bytes = await encodePng(pairGrid(rs));
    fs.writeFileSync(path.join(dir, fileOf(cat)), bytes);
    files.push(fileOf(cat));
    pngs.set(cat, `data:image/png;base64,${Buffer.from(bytes).toString('base64')}`);
  }
  const rows = r.eval.scores
    .map((s) => `<tr><td>${esc(s.cat)}</td><td>${s.n}</td><td><b>${pct(s.mean)}</b></td><td>${s.rewriteExact === undefined ? '-' : pct(s.rewriteExact)}</td></tr>`)
    .join('\n');
  const charts = await Promise.all(r.curves.filter((c) => c.points.length).map((c) => lossChart(c.title, c.points)));
  const lap = r.lap ? await lapChart(r.lap.taps, r.lap.weights) : '<p>(no LAP pooling weights in this DiT)</p>';
  const named: string[] = [];
  for (const x of r.eval.results.filter((x) => x.item.cat.startsWith('named')))
    named.push(`<tr><td>${esc(x.item.prompt)}</td><td>${x.item.rewrite ? 'yes' : 'no'}</td><td>${esc(x.rewritten ?? '')}</td><td><img src="data:image/png;base64,${Buffer.from(await encodePng(x.image)).toString('base64')}" width="96"></td><td>${pct(x.score)}</td></tr>`);
  const editRows = r.eval.results
    .filter((x) => x.item.cat === 'edit')
    .slice(0, 12)
      .map((x) => `<tr><td>${esc(x.item.prompt)}</td><td>${esc(x.rewritten ?? '')}</td><td>${esc(caption(x.item.target))}</td><td>${x.score ? 'exact' : 'no'}</td></tr>`);
  const sections = cats.map((c) => `<h3>${esc(c)}</h3><p>left of each pair: the ${c === 'edit' || c === 'recon' ? 'source image in the VLM prompt' : 'target render'}; right: the sample</p><img src="${pngs.get(c)}" style="image-rendering: pixelated; width: 100%; max-width: 1200px">`);
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>unifusion shapes demo</title>
<style>body{font-family:sans-serif;max-width:1250px;margin:2em auto;padding:0 1em} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left} .charts svg{margin-right:1em}</style></head>
<body>
<h1>UniFusion on the shapes world</h1>
<p>Pipeline <code>${esc(r.pipeline)}</code>. ${esc(r.provenance)}</p>
<p>Held-out text-to-image prompt adherence: <b>${pct(r.eval.adherence)}</b> (goals: held-out t2i &ge; 80%, named with rewriting &ge; 80%, edits &ge; 75% exact, reconstructions &ge; 80%). Demo time ${r.seconds.toFixed(0)} s (VLM ${(r.eval.timings.conditionMs / 1000).toFixed(1)} s, sampling ${(r.eval.timings.sampleMs / 1000).toFixed(1)} s).</p>
<h2>Adherence per category</h2>
<table><tr><th>category</th><th>samples</th><th>score</th><th>VLM rewrite = canonical target caption</th></tr>
${rows}</table>
<p>Score: adherence = correct objects / (objects in the prompt + extra objects), the mean over samples; for edits, the share whose scene equals the target exactly. "t2i held-out pairs" are the prompts with a purple triangle, yellow square or white circle (never in any DiT training image or caption); "t2i" the other held-out prompts.</p>
<h2>Training</h2><div class="charts">${charts.join('\n')}</div>
<h2>LAP layer weights</h2>${lap}
<h2>Grids</h2>${sections.join('\n')}
<h2>Named scenes</h2><table><tr><th>prompt</th><th>rewrite</th><th>VLM rewrite</th><th>sample</th><th>adherence</th></tr>${named.join('\n')}</table>
<h2>Edits (first 12)</h2><table><tr><th>instruction</th><th>VLM rewrite</th><th>target caption</th><th>result</th></tr>${editRows.join('\n')}</table>
</body></html>
`;
  fs.writeFileSync(path.join(dir, 'report.html'), html);
  files.push('report.html');
  return files;
}
