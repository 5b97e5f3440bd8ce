#!/usr/bin/env bash
# Create / update the Python virtual environment used by the reference-fixture
# generator and the ONNX checker.
#
#   scripts/py/setup-venv.sh          # torch, numpy, safetensors, onnx
#   scripts/py/setup-venv.sh --hf     # ... plus transformers
#   scripts/py/setup-venv.sh --ort    # ... plus onnxruntime (the CUDA custom-op glue check, the fusion bench's anchor)
#
# Idempotent: if .venv already exists and already has the requested packages
# at the pinned versions, nothing is installed (a re-run takes ~1-2 s).
# Env overrides: PYTHON (interpreter used to create the venv, default python3),
#                VENV_DIR (default <repo>/.venv). pip's own PIP_* variables apply too;
#                on an offline machine with only local indexes, PIP_RETRIES=0
#                avoids pip's retry back-off against pypi.org (~2.5 min -> ~50 s).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
VENV_DIR="${VENV_DIR:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

TORCH_VERSION="2.13.0"
ONNX_VERSION="1.23.1"

WITH_HF=0
WITH_ORT=0
ORT_VERSION="1.30.0"
for arg in "$@"; do
  case "$arg" in
    --hf) WITH_HF=1 ;;
    --ort) WITH_ORT=1 ;;
    -h|--help)
      sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0 ;;
    *) echo "setup-venv: unknown argument: $arg (expected --hf or --ort)" >&2; exit 2 ;;
  esac
done

log() { echo "setup-venv: $*"; }

# pip requirement specs, and the matching "import name:expected version prefix"
# checks used to decide whether anything needs installing.
REQS=("torch==$TORCH_VERSION" "numpy" "safetensors" "onnx==$ONNX_VERSION")
CHECKS=("torch:$TORCH_VERSION" "numpy:" "safetensors:" "onnx:$ONNX_VERSION")
if [[ $WITH_HF == 1 ]]; then
  REQS+=("transformers")
  CHECKS+=("transformers:")
fi
if [[ $WITH_ORT == 1 ]]; then
  REQS+=("onnxruntime==$ORT_VERSION")
  CHECKS+=("onnxruntime:$ORT_VERSION")
fi

if [[ -x "$VENV_DIR/bin/python" ]]; then
  log "reusing existing venv at $VENV_DIR"
else
  command -v "$PYTHON" >/dev/null 2>&1 || { echo "setup-venv: $PYTHON not found" >&2; exit 1; }
  log "creating venv at $VENV_DIR with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV_DIR"
fi
VPY="$VENV_DIR/bin/python"

# Returns 0 when every check is satisfied; prints what is missing otherwise.
# Uses importlib.metadata (no heavy imports), so the fast path stays fast.
check_installed() {
  "$VPY" - "${CHECKS[@]}" <<'PY'
import sys
from importlib import metadata
missing = []
for spec in sys.argv[1:]:
    name, want = spec.split(":", 1)
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        missing.append(f"{name} (not installed)")
        continue
    # torch wheels carry a local tag, e.g. 2.13.0+cpu
    if want and have.split("+")[0] != want:
        missing.append(f"{name} (have {have}, want {want})")
if missing:
    print("missing: " + ", ".join(missing))
    sys.exit(1)
PY
}

if status_msg="$(check_installed)"; then
  log "all requirements already present (${REQS[*]}); nothing to install"
else
  log "$status_msg"
  log "pip install ${REQS[*]}"
  "$VPY" -m pip install --disable-pip-version-check "${REQS[@]}"
  if ! status_msg="$(check_installed)"; then
    echo "setup-venv: install finished but requirements still unmet: $status_msg" >&2
    exit 1
  fi
fi

# Sanity check that the key modules actually import.
"$VPY" - <<'PY'
import importlib, sys
mods = ["torch", "numpy", "safetensors", "onnx"]
for m in mods:
    importlib.import_module(m)
import torch, onnx, numpy
print(f"setup-venv: ok: python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"numpy {numpy.__version__}, onnx {onnx.__version__}")
PY
if [[ $WITH_HF == 1 ]]; then
  "$VPY" -c 'import transformers; print("setup-venv: ok: transformers", transformers.__version__)'
fi
if [[ $WITH_ORT == 1 ]]; then
  "$VPY" -c 'import onnxruntime; print("setup-venv: ok: onnxruntime", onnxruntime.__version__)'
fi
log "activate with: source ${VENV_DIR#$REPO_ROOT/}/bin/activate"
