#!/usr/bin/env python3
"""Load the generated onnxruntime custom-op library and check that it registers the ai.unifusion ops.

Usage: python scripts/py/check_cuda_glue.py LIB.so MODEL.onnx

Without the library, onnxruntime (CPU) runs the ai.unifusion nodes through their model-local function
bodies. With it, the nodes belong to the library's CUDA kernels: on a machine with the CUDA execution
provider the session runs them (and its outputs are compared with the function bodies'); on a CPU-only
onnxruntime the session must fail for exactly those nodes ("Could not find an implementation"), which
shows that the library loaded and claimed them.
"""
import sys

import numpy as np
import onnxruntime as ort

lib, model = sys.argv[1], sys.argv[2]
so = ort.SessionOptions()
so.register_custom_ops_library(lib)
print(f"cuda-glue: registered {lib}")
m = __import__("onnx").load(model)
feeds = {}
rng = np.random.default_rng(0)
for i in m.graph.input:
    dims = [d.dim_value if d.dim_value else {"batch": 2, "seq": 5, "h": 3, "w": 2}.get(d.dim_param, 2) for d in i.type.tensor_type.shape.dim]
    feeds[i.name] = (rng.standard_normal(dims) > -1) if i.type.tensor_type.elem_type == 9 else rng.standard_normal(dims).astype(np.float32)
plain = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
if "CUDAExecutionProvider" in ort.get_available_providers():
    got = ort.InferenceSession(model, so, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]).run(None, feeds)[0]
    err = float(np.abs(got - plain).max())
    print(f"cuda-glue: CUDA session with the library vs function bodies on CPU: max |diff| {err:.3g}")
    sys.exit(0 if err < 1e-3 else 1)
try:
    ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
except Exception as e:  # noqa: BLE001
    msg = str(e)
    if "Could not find an implementation for AdaRMSNorm" in msg or "Could not find an implementation for LayerPool" in msg:
        print("cuda-glue: no CUDA EP here; the library claimed the ai.unifusion nodes for CUDA (CPU session refuses them, as expected); function bodies run without it")
        sys.exit(0)
    print(f"cuda-glue: unexpected error: {msg[:300]}")
    sys.exit(1)
print("cuda-glue: the CPU session accepted the nodes although the library registers them for CUDA only")
sys.exit(1)
