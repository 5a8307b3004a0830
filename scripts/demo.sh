#!/usr/bin/env bash
# The main demo, end to end and offline: builds .venv if needed, then trains the same small
# Fashion-MNIST MLP (5,000 images, 20 epochs: long enough for plain cross-entropy to become
# over-confident) with plain Keras cross-entropy and with keras-ls SmoothedCE(0.05), prints
# accuracy / NLL / ECE / confidence gap for both and for the temperature-scaled Keras model,
# saves the smoothed model to saved_models/ (and loads it back) and writes both reliability
# diagrams to saved_models/fashion_mnist_reliability.png. It prints the CPU it ran on and its
# wall time: 29 s on an AMD EPYC with 2 cores, once .venv is built.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/env.sh"
cd "$ROOT"
# Only the demo's own lines: TensorFlow's C++ logs off up to errors (3 also drops the
# "failed call to cuInit" error of a machine without a GPU); the example holds stderr
# while TensorFlow loads, which logs a few lines before it reads this variable.
export TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/python examples/image_classification.py --compare-baseline "$@"
