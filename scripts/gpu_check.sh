#!/usr/bin/env bash
# GPU readiness (issue: scale you can plan): on a machine with a CUDA GPU, run the vLLM and the
# transformers engines on the embedded model and compare their reads, train 20 steps, run one short
# `humpback run` and check its selection against the same selection recomputed on the CPU from its
# ratings. Writes bench/results/gpu_check.{json,md}. Where there is no GPU it says so and exits 2.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); run this on a machine with one" >&2
  exit 2
fi
exec "$PY" scripts/gpu_check.py "$@"
