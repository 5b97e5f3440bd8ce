#!/usr/bin/env bash
# Benchmark setup: the repo's Python venv (scripts/py/setup-venv.sh: torch, onnx,
# numpy, safetensors) plus onnxscript, which torch.onnx.export(dynamo=True) needs.
# Idempotent; `npx tsx bench/run.ts` runs it first unless given --no-setup.
# On an offline machine with local wheel indexes only, PIP_RETRIES=0 avoids pip's
# retry back-off:   PIP_RETRIES=0 bash bench/setup.sh
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$REPO_ROOT/.venv}"
bash "$REPO_ROOT/scripts/py/setup-venv.sh" --ort >&2
if "$VENV_DIR/bin/python" -c 'import onnxscript' 2>/dev/null; then
  echo "bench/setup: onnxscript present" >&2
else
  echo "bench/setup: pip install onnxscript" >&2
  "$VENV_DIR/bin/pip" install --disable-pip-version-check onnxscript >&2
fi
