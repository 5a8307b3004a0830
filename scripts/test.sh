#!/usr/bin/env bash
# Run the whole test suite (builds .venv first if missing or stale).
#
# Two pytest processes: the Keras side (TensorFlow, JAX, torch backends) and the
# YOLO side (tests/detection). A YOLO process must never load TensorFlow -- and
# importing torch's compiler stack after TensorFlow in one process segfaults
# here -- so they do not share an interpreter. With arguments, one pytest run
# with exactly those arguments (e.g. `bash scripts/test.sh tests/test_losses.py -x`).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/env.sh" || exit 1
cd "$ROOT"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
.venv/bin/ruff check . || exit 1
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi
.venv/bin/python -m pytest -q tests --ignore=tests/detection
keras_rc=$?
.venv/bin/python -m pytest -q tests/detection
yolo_rc=$?
echo "keras side: exit ${keras_rc}; detection side: exit ${yolo_rc}"
[ "$keras_rc" -eq 0 ] && [ "$yolo_rc" -eq 0 ]
