# Residual + LayerNorm on onnxruntime 1.30 CPU: com.microsoft SkipLayerNormalization (normed +
# input_skip_bias_sum outputs, what the add-layer-norm rule lowers to on cuda/webgpu) vs Add +
# LayerNormalization-17 (what --target cpu keeps), both outputs used, as in a transformer block.
# Interleaved rounds, 2 intra-op threads, medians; prints the 1-minute load average so a busy
# machine shows. Also checks both against a float64 numpy reference.
import json, os, sys, time, numpy as np, onnxruntime as ort
from onnx import helper as h, TensorProto as T

def model(kind, shp):
    f = T.FLOAT; D = shp[-1]
    ins = [h.make_tensor_value_info('x', f, shp), h.make_tensor_value_info('r', f, shp)]
    outs = [h.make_tensor_value_info('y', f, shp), h.make_tensor_value_info('s', f, shp)]
    rng = np.random.default_rng(1)
    inits = [h.make_tensor('g', f, [D], (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)), h.make_tensor('b', f, [D], (0.1 * rng.standard_normal(D)).astype(np.float32))]
    if kind == 'skip':
        nodes = [h.make_node('SkipLayerNormalization', ['x', 'r', 'g', 'b'], ['y', '', '', 's'], domain='com.microsoft', epsilon=1e-5)]
    else:
        nodes = [h.make_node('Add', ['x', 'r'], ['s']), h.make_node('LayerNormalization', ['s', 'g', 'b'], ['y'], axis=-1, epsilon=1e-5)]
    g = h.make_graph(nodes, kind, ins, outs, initializer=inits)
    return h.make_model(g, opset_imports=[h.make_opsetid('', 23), h.make_opsetid('com.microsoft', 1)], ir_version=10).SerializeToString(), inits

def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    res = {'loadavg_1m_start': os.getloadavg()[0]}
    for shp in [(2, 4096, 512), (2, 4096, 3072)]:
        rng = np.random.default_rng(0)
        feeds = {'x': rng.standard_normal(shp, np.float32), 'r': rng.standard_normal(shp, np.float32)}
        sess, errs = {}, {}
        for k in ['add+layernorm17', 'skip']:
            b, inits = model('skip' if k == 'skip' else 'pair', shp)
            sess[k] = ort.InferenceSession(b, so, providers=['CPUExecutionProvider'])
            y, s = sess[k].run(None, feeds)
            g = np.frombuffer(inits[0].raw_data, np.float32) if inits[0].raw_data else np.array(inits[0].float_data, np.float32)
            bb = np.frombuffer(inits[1].raw_data, np.float32) if inits[1].raw_data else np.array(inits[1].float_data, np.float32)
            s64 = feeds['x'].astype(np.float64) + feeds['r']
            c = s64 - s64.mean(-1, keepdims=True)
            y64 = c / np.sqrt((c * c).mean(-1, keepdims=True) + 1e-5) * g + bb
            errs[k] = float(max(np.abs(y - y64).max(), np.abs(s - s64).max()))
        ts = {k: [] for k in sess}
        for r in range(rounds):
            for k in (list(sess) if r % 2 == 0 else list(sess)[::-1]):
                for _ in range(2): sess[k].run(None, feeds)
                t0 = time.perf_counter(); n = 10
                for _ in range(n): sess[k].run(None, feeds)
                ts[k].append((time.perf_counter() - t0) / n * 1e3)
        med = {k: float(np.median(v)) for k, v in ts.items()}
        res[str(list(shp))] = {'median_ms': med, 'skip_speedup_over_pair': med['add+layernorm17'] / med['skip'], 'max_abs_err_vs_f64': errs}
    res['loadavg_1m_end'] = os.getloadavg()[0]
    print(json.dumps(res))
main()
