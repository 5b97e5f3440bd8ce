// compile --target / --cuda-ops: the fused model, its manifest, the generated CUDA sources, and the
// refusals (unknown target, overlapping folders, a folder holding someone else's files).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileCommand } from '../../src/cli/compile.ts';
import { decodeModel } from '../../codegen/onnx/proto.ts';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-fusion-cli-'));

describe('compile --target / --cuda-ops', () => {
  it('cuda: ai.unifusion nodes with function bodies, and the CUDA sources of both custom ops', async () => {
    const dir = tmp();
    const out = path.join(dir, 'model'), cuda = path.join(dir, 'cuda');
    await compileCommand('graphs/unifusion.ts', { out, preset: 'tiny', quiet: true, target: 'cuda', cudaOps: cuda });
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    expect(m.target).toBe('cuda');
    expect(m.fused).toMatchObject({ ada_rms_norm: 9, layer_pool: 1, sdpa: 8, rope: 8, gelu: 3 });
    const model = decodeModel(fs.readFileSync(path.join(out, 'unifusion.onnx')));
    // (com.microsoft: SkipSimplifiedLayerNormalization for the LAP and refiner blocks' residual + norm)
    expect(model.opsetImport.map((o) => `${o.domain}:${o.version}`).sort()).toEqual([':23', 'ai.unifusion:1', 'com.microsoft:1']);
    // one node per (normed, sum) pair; a pair whose sum nothing else reads has only its normed half
    const skip = model.graph!.node!.filter((n) => n.opType === 'SkipSimplifiedLayerNormalization').length;
    expect(skip).toBeGreaterThanOrEqual(m.fused.add_rms_norm / 2);
    expect(skip).toBeLessThanOrEqual(m.fused.add_rms_norm);
    expect(model.functions.map((f) => f.name).sort()).toEqual(['AdaRMSNorm', 'LayerPool']);
    expect(model.graph!.node!.filter((n) => n.domain === 'ai.unifusion').length).toBe(10);
    expect(model.graph!.node!.filter((n) => n.opType === 'Attention').length).toBe(8);
    expect(fs.readdirSync(cuda).sort()).toEqual(['CMakeLists.txt', 'ada_rms_norm.cu', 'harness.cu', 'layer_pool.cu', 'ort_glue.cc', 'unifusion_common.cuh', 'unifusion_ops.h']);
    const h = fs.readFileSync(path.join(cuda, 'unifusion_ops.h'), 'utf8');
    for (const t of ['f32', 'f16', 'bf16']) for (const op of ['ada_rms_norm', 'layer_pool']) expect(h).toContain(`int unifusion_${op}_${t}(`);
    expect(fs.readFileSync(path.join(cuda, 'ort_glue.cc'), 'utf8')).toContain('RegisterCustomOps');
    // a second run replaces our own files (and nothing else is there)
    await compileCommand('graphs/unifusion.ts', { out: path.join(dir, 'model2'), preset: 'tiny', quiet: true, target: 'cuda', cudaOps: cuda });
    expect(fs.readdirSync(cuda)).toHaveLength(7);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    fs.rmSync(dir, { recursive: true });
  });

  it('portable: standard ops only, no custom domain, so no CUDA sources', async () => {
    const dir = tmp();
    await compileCommand('graphs/dit.ts', { out: path.join(dir, 'm'), quiet: true, target: 'portable', cudaOps: path.join(dir, 'cuda') });
    const model = decodeModel(fs.readFileSync(path.join(dir, 'm', 'dit.onnx')));
    expect(model.opsetImport.map((o) => o.domain)).toEqual(['']);
    expect(model.graph!.node!.some((n) => n.opType === 'RMSNormalization')).toBe(true);
    expect(fs.existsSync(path.join(dir, 'cuda'))).toBe(false);
    fs.rmSync(dir, { recursive: true });
  });

  it.each([
    ['unknown target', (d: string) => ({ target: 'gpu', out: path.join(d, 'o') }), /--target must be one of cpu, cuda, webgpu, portable, got 'gpu'/],
    ['--cuda-ops inside --out', (d: string) => ({ target: 'cuda', out: path.join(d, 'o'), cudaOps: path.join(d, 'o', 'cuda') }), /overlaps --out/],
    ['--cuda-ops holding the graph file', (_d: string) => ({ target: 'cuda', out: path.join(_d, 'o'), cudaOps: 'graphs' }), /overlaps the input graphs\/dit.ts/],
  ])('%s: clear error, nothing written', async (_n, opts, re) => {
    const d = tmp();
    await expect(compileCommand('graphs/dit.ts', { quiet: true, ...(opts(d) as { out: string }) })).rejects.toThrow(re);
    expect(fs.readdirSync(d)).toEqual([]);
    fs.rmSync(d, { recursive: true });
  });

  it("refuses a --cuda-ops folder holding files it did not write, and leaves them alone", async () => {
    const d = tmp();
    const cuda = path.join(d, 'cuda');
    fs.mkdirSync(cuda);
    fs.writeFileSync(path.join(cuda, 'notes.txt'), 'mine');
    await expect(compileCommand('graphs/unifusion.ts', { out: path.join(d, 'o'), preset: 'tiny', quiet: true, target: 'cuda', cudaOps: cuda })).rejects.toThrow(/holds files this command did not write \(notes.txt\)/);
    expect(fs.readdirSync(cuda)).toEqual(['notes.txt']);
    expect(fs.existsSync(path.join(d, 'o'))).toBe(false); // refused before anything was written
    expect(fs.readFileSync(path.join(cuda, 'notes.txt'), 'utf8')).toBe('mine');
    fs.rmSync(d, { recursive: true });
  });
});
