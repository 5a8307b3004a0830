#!/usr/bin/env bash
# Run the whole test suite (builds .venv first if missing or stale).
#
# Two pytest processes: the Keras side (TensorFlow, JAX, torch backends, the README, the
# docs site's pages, examples/README, saved_models/README and keras_ls docstrings) and the YOLO side
# (tests/detection, detection/README and its docstrings). A YOLO process must never
# load TensorFlow -- importing torch's compiler stack (triton) after TensorFlow in one
# process segfaults -- so they do not share an interpreter. With arguments, one pytest run
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
# Keras side: tests (the docs site's build included), then every Python example of the docs
# and docstrings (sybil, conftest.py)
.venv/bin/python -m pytest -q tests --ignore=tests/detection \
  README.md docs examples/README.md saved_models/README.md keras_ls
keras_rc=$?
# YOLO side: its tests, detection/README.md and the detection docstrings
.venv/bin/python -m pytest -q tests/detection detection
yolo_rc=$?
echo "keras side: exit ${keras_rc}; detection side: exit ${yolo_rc}"
[ "$keras_rc" -eq 0 ] && [ "$yolo_rc" -eq 0 ]
