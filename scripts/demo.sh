#!/usr/bin/env bash
# The main demo, end to end and offline: builds .venv if needed, trains a small
# Fashion-MNIST CNN with SmoothedCE + a linear (0.1 -> 0.05) SmoothingScheduler next to plain
# Keras cross-entropy, prints accuracy / NLL / ECE for both, saves the model to
# saved_models/ (and loads it back) and writes a reliability diagram PNG.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/env.sh"
cd "$ROOT"
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python examples/image_classification.py --compare-baseline "$@"
