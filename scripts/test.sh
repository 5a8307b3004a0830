#!/usr/bin/env bash
# Run the whole test suite (builds .venv first if missing or stale).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/env.sh"
cd "$ROOT"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
