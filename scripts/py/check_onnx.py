#!/usr/bin/env python3
"""Run the official ONNX checker on every *.onnx file under the given directories.

Usage: python scripts/py/check_onnx.py DIR [DIR...]

For each model, `onnx.checker.check_model(path, full_check=True)` is called with the
*path* (not a loaded proto) so that models with external data and models over 2 GB
are handled by the checker itself. `full_check=True` also runs strict shape
inference.

Prints one line per model (OK / FAIL: error), then a summary line
    onnx.checker: N passed, M failed
Exits 1 if any model failed or if no *.onnx file was found at all (an empty
directory means the test suite did not dump any models, which is an error).
Exits 2 on bad usage (no arguments, or an argument that is not a directory).
"""

from __future__ import annotations

import os
import sys


def find_models(roots: list[str]) -> list[str]:
    found: list[str] = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".onnx"):
                    found.append(os.path.join(dirpath, name))
    return found


def main(argv: list[str]) -> int:
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip(), file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    bad = [d for d in argv if not os.path.isdir(d)]
    if bad:
        for d in bad:
            print(f"check_onnx: not a directory: {d}", file=sys.stderr)
        return 2

    import onnx  # imported late so --help works without onnx installed

    models = find_models(argv)
    passed = failed = 0
    for path in models:
        try:
            onnx.checker.check_model(path, full_check=True)
        except Exception as e:  # ValidationError, InferenceError, protobuf DecodeError, ...
            failed += 1
            msg = " ".join(str(e).split()) or type(e).__name__
            print(f"FAIL {path}: {type(e).__name__}: {msg}")
        else:
            passed += 1
            print(f"OK   {path}")

    if not models:
        print(f"check_onnx: no *.onnx files found under: {' '.join(argv)}", file=sys.stderr)
    print(f"onnx.checker: {passed} passed, {failed} failed")
    return 1 if failed or not models else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
