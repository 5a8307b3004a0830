#!/usr/bin/env bash
# Run the whole test suite (builds .venv first if missing or stale).
#
# Pytest processes: the Keras side on TensorFlow (tests, some starting JAX and torch processes
# of their own, the README, the docs site's pages, examples/README, saved_models/README and
# keras_ls docstrings); the backend-generic modules under JAX and under torch; the YOLO side
# (tests/detection, detection/README and its docstrings). A YOLO process must never
# load TensorFlow -- importing torch's compiler stack (triton) after TensorFlow in one
# process segfaults -- so they do not share an interpreter. With arguments, one pytest run
# with exactly those arguments (e.g. `bash scripts/test.sh tests/test_losses.py -x`).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/env.sh" || exit 1
cd "$ROOT"
mkdir -p runs
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
.venv/bin/ruff check . || exit 1
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi
# Keras side on TensorFlow: tests (the docs site's build included), then every Python example
# of the docs and docstrings (sybil, conftest.py)
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q tests --ignore=tests/detection \
  README.md docs examples/README.md saved_models/README.md keras_ls
keras_rc=$?
# The modules written for every backend, once more under JAX and under torch, one process each
# and both at once (two cores), as Keras runs its own suite. Their slow tests run above (they
# start their own per-backend processes).
PER_BACKEND=(tests/test_traced_inputs.py tests/test_lm_head.py tests/test_metrics.py
  tests/test_jax_loop.py tests/test_labels.py)
pids=()
for backend in jax torch; do
  KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -m "not slow" "${PER_BACKEND[@]}" \
    > "runs/test_$backend.log" 2>&1 &
  pids+=("$!")
done
backend_rc=0
for i in 0 1; do
  name=$([ "$i" = 0 ] && echo jax || echo torch)
  wait "${pids[$i]}" || backend_rc=1
  echo "--- KERAS_BACKEND=$name"; tail -n 3 "runs/test_$name.log"
done
[ "$backend_rc" -eq 0 ] || cat runs/test_jax.log runs/test_torch.log
# YOLO side: its tests, detection/README.md and the detection docstrings
.venv/bin/python -m pytest -q tests/detection detection
yolo_rc=$?
echo "keras side: exit ${keras_rc}; jax/torch: exit ${backend_rc}; detection side: exit ${yolo_rc}"
[ "$keras_rc" -eq 0 ] && [ "$backend_rc" -eq 0 ] && [ "$yolo_rc" -eq 0 ]
