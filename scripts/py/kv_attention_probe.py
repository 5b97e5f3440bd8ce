# Which onnxruntime 1.30 CPU kernel runs the generation graphs' cached attention fastest, and
# exactly: Concat(past, new) + Attention-23 (what --target cpu emits today) vs Attention-23 with
# past_key/past_value -> present vs com.microsoft GroupQueryAttention (causal=0 + attention_bias,
# the only way it takes a left-padded mask) vs com.microsoft MultiHeadAttention with past (H == KV).
# Decode shapes (S = 1, past P) and a prefill chunk; checks each against a float64 numpy reference.
import sys, time, numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T

def model(kind, B, H, KV, D, S):
    f = T.FLOAT
    ins = [h.make_tensor_value_info('q', f, [B, H, S, D]), h.make_tensor_value_info('k', f, [B, KV, S, D]), h.make_tensor_value_info('v', f, [B, KV, S, D]),
           h.make_tensor_value_info('pk', f, [B, KV, 'P', D]), h.make_tensor_value_info('pv', f, [B, KV, 'P', D]), h.make_tensor_value_info('bias', f, [B, 1, S, 'T'])]
    outs = [h.make_tensor_value_info('o', f, None), h.make_tensor_value_info('prk', f, None), h.make_tensor_value_info('prv', f, None)]
    sc = 1 / np.sqrt(D)
    nodes, extra_ins = [], []
    if kind == 'concat+attention23':
        nodes += [h.make_node('Concat', ['pk', 'k'], ['prk'], axis=2), h.make_node('Concat', ['pv', 'v'], ['prv'], axis=2),
                  h.make_node('Attention', ['q', 'prk', 'prv', 'bias'], ['o4'], scale=sc)]
    elif kind == 'attention23-past':
        nodes += [h.make_node('Attention', ['q', 'k', 'v', 'bias', 'pk', 'pv'], ['o4', 'prk', 'prv'], scale=sc)]
    elif kind in ('gqa', 'mha'):
        t3 = lambda x, n, y: [h.make_node('Transpose', [x], [x + 't'], perm=[0, 2, 1, 3]), h.make_node('Reshape', [x + 't', 'shp' + y], [x + '3'])]
        nodes += t3('q', H, 'q') + t3('k', KV, 'k') + t3('v', KV, 'k')
        inits = [h.make_tensor('shpq', T.INT64, [3], [B, S, H * D]), h.make_tensor('shpk', T.INT64, [3], [B, S, KV * D]), h.make_tensor('shpo', T.INT64, [4], [B, S, H, D])]
        if kind == 'gqa':
            # seqlens_k = T - 1 for every row (padding is masked by the bias, not by seqlens), total = T
            nodes += [h.make_node('Shape', ['bias'], ['bs']), h.make_node('Gather', ['bs', 'three'], ['tot64']), h.make_node('Cast', ['tot64'], ['tot'], to=T.INT32),
                      h.make_node('Sub', ['tot', 'one'], ['sl0']), h.make_node('Expand', ['sl0', 'bshape'], ['sl']),
                      h.make_node('GroupQueryAttention', ['q3', 'k3', 'v3', 'pk', 'pv', 'sl', 'tot', '', '', '', 'bias'], ['o3', 'prk', 'prv'], domain='com.microsoft', num_heads=H, kv_num_heads=KV, scale=sc)]
            inits += [h.make_tensor('three', T.INT64, [], [3]), h.make_tensor('one', T.INT32, [], [1]), h.make_tensor('bshape', T.INT64, [1], [B])]
        else:
            nodes += [h.make_node('MultiHeadAttention', ['q3', 'k3', 'v3', '', '', 'bias', 'pk', 'pv'], ['o3', 'prk', 'prv'], domain='com.microsoft', num_heads=H, scale=sc)]
        nodes += [h.make_node('Reshape', ['o3', 'shpo'], ['o3r']), h.make_node('Transpose', ['o3r'], ['o4'], perm=[0, 2, 1, 3])]
        extra_ins = inits
    nodes.append(h.make_node('Identity', ['o4'], ['o']))
    g = h.make_graph(nodes, kind, ins, outs, initializer=extra_ins)
    return h.make_model(g, opset_imports=[h.make_opsetid('', 23), h.make_opsetid('com.microsoft', 1)], ir_version=10).SerializeToString()

def ref(q, k, v, pk, pv, keep):
    K = np.concatenate([pk, k], 2).astype(np.float64); V = np.concatenate([pv, v], 2).astype(np.float64)
    B, H, S, D = q.shape; KV = K.shape[1]; G = H // KV
    K = np.repeat(K, G, 1); V = np.repeat(V, G, 1)
    s = q.astype(np.float64) @ K.transpose(0, 1, 3, 2) / np.sqrt(D)
    s = np.where(keep, s, np.finfo(np.float32).min)
    p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
    return p @ V

def case(B, H, KV, D, P, S, pad, rng):
    q = rng.standard_normal((B, H, S, D), np.float32); k = rng.standard_normal((B, KV, S, D), np.float32); v = rng.standard_normal((B, KV, S, D), np.float32)
    pk = rng.standard_normal((B, KV, P, D), np.float32); pv = rng.standard_normal((B, KV, P, D), np.float32)
    Tn = P + S
    am = np.ones((B, Tn), bool)
    for b in range(B): am[b, :pad * b] = False  # left padding, more per row
    qi = np.arange(P, Tn)[:, None]; kj = np.arange(Tn)[None]
    keep = (qi >= kj)[None, None] & am[:, None, None, :]
    bias = np.where(keep, 0, -3e38).astype(np.float32)
    return dict(q=q, k=k, v=v, pk=pk, pv=pv, bias=bias), ref(q, k, v, pk, pv, keep), keep

KINDS = ['concat+attention23', 'attention23-past', 'gqa', 'mha']
def main():
    rng = np.random.default_rng(0)
    so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    print('## correctness (max |err| vs float64, rows with real tokens only)')
    for (B, H, KV, D, P, S) in [(2, 4, 2, 16, 5, 3), (2, 4, 2, 16, 0, 6), (3, 4, 2, 16, 7, 1), (2, 4, 4, 16, 5, 2)]:
        feeds, want, keep = case(B, H, KV, D, P, S, 2, rng)
        real = keep.any(-1)[..., None].repeat(D, -1).repeat(H // keep.shape[1], 1) if keep.shape[1] == 1 else None
        for kind in KINDS:
            if kind == 'mha' and H != KV: continue
            try:
                s = ort.InferenceSession(model(kind, B, H, KV, D, S), so, providers=['CPUExecutionProvider'])
                o, prk, _ = s.run(None, feeds)
                ok = keep.any(-1)  # [B,1,S]: query rows that see at least one key
                err = np.abs(o - want)[np.broadcast_to(ok[..., None], o.shape)].max()
                allerr = np.abs(o - want).max()
                perr = np.abs(prk - np.concatenate([feeds['pk'], feeds['k']], 2)).max()
                print(f'B{B} H{H} KV{KV} D{D} P{P} S{S} {kind:20s} err {err:.1e} (all rows {allerr:.1e}) present err {perr:.1e}')
            except Exception as e:
                print(f'B{B} H{H} KV{KV} D{D} P{P} S{S} {kind:20s} ERROR {str(e)[:160]}')
    print('## decode timing, ms per call (median of interleaved rounds), 2 threads')
    shapes = [(1, 16, 2, 128, 512, 1), (1, 16, 2, 128, 2048, 1), (1, 16, 8, 128, 1024, 1), (4, 16, 2, 128, 1024, 1), (1, 16, 16, 64, 1024, 1), (1, 16, 2, 128, 0, 256)]
    for shp in shapes:
        B, H, KV, D, P, S = shp
        feeds, _, _ = case(B, H, KV, D, P, S, 0, rng)
        sess = {k: ort.InferenceSession(model(k, B, H, KV, D, S), so, providers=['CPUExecutionProvider']) for k in KINDS if not (k == 'mha' and H != KV)}
        times = {k: [] for k in sess}
        for r in range(7):
            for k, s in sess.items():
                for _ in range(3): s.run(None, feeds)
                t0 = time.perf_counter(); n = 20
                for _ in range(n): s.run(None, feeds)
                times[k].append((time.perf_counter() - t0) / n * 1e3)
        base = np.median(times['concat+attention23'])
        print(f'B{B} H{H} KV{KV} D{D} P{P} S{S}: ' + ', '.join(f'{k} {np.median(v):.3f} ms ({base / np.median(v):.2f}x)' for k, v in times.items()))
main()
