#!/usr/bin/env python3
"""The anchor of bench/fusion-dit.ts: onnxruntime's own Python transformer optimiser
(onnxruntime.transformers.optimizer.optimize_model) applied to our UNFUSED graph.

Usage: python bench/py/ort_transformer_optimize.py IN.onnx OUT_PREFIX --heads N --hidden D [--types mmdit,bert,unet]

For each model type it writes OUT_PREFIX.<type>.onnx (python fusions only, opt_level 0: the
onnxruntime session that times it applies its own graph optimisations at ALL, like ours) and prints
one JSON line: per type, the file, the op histogram and the fusions the optimiser reports.
"""
import argparse
import json
import logging
from collections import Counter

import onnx
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.optimizer import optimize_model

ap = argparse.ArgumentParser()
ap.add_argument("inp")
ap.add_argument("out_prefix")
ap.add_argument("--heads", type=int, required=True)
ap.add_argument("--hidden", type=int, required=True)
ap.add_argument("--types", default="mmdit,bert,unet")
a = ap.parse_args()
logging.disable(logging.WARNING)
res = {}
def run(t):
    # onnxruntime 1.30's SimplifiedLayerNormalization fusion crashes on some graphs (a NodeProto
    # indexed like a list in fusion_simplified_layernorm.py); retry without the layer-norm fusions
    try:
        return optimize_model(a.inp, model_type=t, num_heads=a.heads, hidden_size=a.hidden, opt_level=0, use_gpu=False), "default"
    except TypeError:
        o = FusionOptions(t)
        o.enable_layer_norm = False
        return optimize_model(a.inp, model_type=t, num_heads=a.heads, hidden_size=a.hidden, opt_level=0, use_gpu=False, optimization_options=o), "enable_layer_norm=False (the default crashes)"


for t in a.types.split(","):
    try:
        m, how = run(t)
        path = f"{a.out_prefix}.{t}.onnx"
        m.save_model_to_file(path)
        ops = Counter((n.domain + "." if n.domain else "") + n.op_type for n in onnx.load(path, load_external_data=False).graph.node)
        res[t] = {"file": path, "options": how, "nodes": sum(ops.values()), "ops": dict(ops), "fused": {k: v for k, v in (m.get_fused_operator_statistics() or {}).items() if v}}
    except Exception as e:  # noqa: BLE001  (a model type whose fusions do not apply is reported, not fatal)
        res[t] = {"error": str(e)[:300]}
print(json.dumps(res))
