#!/usr/bin/env bash
# CI step for codegen/cuda: generate the CUDA sources of the tiny UniFusion graph's ai.unifusion ops
# (AdaRMSNorm, LayerPool), compile every kernel and the standalone harness with nvcc, run the harness
# (kernel vs float64 reference; it says so and passes where no GPU is present), then build the
# onnxruntime custom-op library with CMake against onnxruntime's C/C++ headers and check that it
# registers its ops with onnxruntime (Python). Debian has no onnxruntime package; the headers come
# from the npm package com.github.asus4.onnxruntime (ORT 1.29, API 29), cached in ~/.cache.
#   bash scripts/cuda/check-cuda-ops.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/../.."
py="${1:-.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
command -v nvcc >/dev/null || { echo "cuda-ops: nvcc not found (CUDA toolkit required)"; exit 1; }

node bin/unifusion.mjs compile graphs/unifusion.ts --preset tiny --target cuda --out "$work/model" --cuda-ops "$work/cuda" | grep -E "target|cuda"
arch="${CUDA_ARCH:-sm_80}"
for cu in "$work"/cuda/*.cu; do
  [ "$(basename "$cu")" = harness.cu ] && continue
  nvcc -std=c++17 -arch="$arch" -Xcompiler -Wall -c "$cu" -o "$work/$(basename "$cu" .cu).o"
  echo "cuda-ops: nvcc compiled $(basename "$cu")"
done
nvcc -std=c++17 -arch="$arch" -o "$work/harness" "$work/cuda/harness.cu"
echo "cuda-ops: nvcc compiled harness.cu; running it"
"$work/harness"

# onnxruntime's C/C++ headers for the custom-op glue
cache="${XDG_CACHE_HOME:-$HOME/.cache}/unifusion/ort-headers-1.29"
if [ ! -f "$cache/include/onnxruntime_cxx_api.h" ]; then
  mkdir -p "$cache/pack"
  if (cd "$cache/pack" && npm pack com.github.asus4.onnxruntime@0.4.9 --silent >/dev/null 2>&1); then
    tar xzf "$cache/pack"/com.github.asus4.onnxruntime-0.4.9.tgz -C "$cache/pack" 'package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers'
    mkdir -p "$cache/include"
    cp "$cache/pack/package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers/"*.h "$cache/include/"
    rm -rf "$cache/pack"
  else
    rm -rf "$cache/pack"
    echo "cuda-ops: onnxruntime headers unavailable (npm pack com.github.asus4.onnxruntime failed): custom-op glue NOT built"
    exit 0
  fi
fi
cmake -S "$work/cuda" -B "$work/build" -DORT_ROOT="$cache" -DCMAKE_CUDA_ARCHITECTURES="${arch#sm_}" >/dev/null
cmake --build "$work/build" -j2 >/dev/null
echo "cuda-ops: cmake built $(cd "$work/build" && ls libunifusion_ort_ops.so unifusion_harness | tr '\n' ' ')"
LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" "$py" scripts/py/check_cuda_glue.py "$work/build/libunifusion_ort_ops.so" "$work/model/unifusion.onnx"
