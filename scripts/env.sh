#!/usr/bin/env bash
# Build (or refresh) the project's environment in .venv/ at the repo root.
# Idempotent: does nothing when .venv matches pyproject.toml and this script.
# Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
stamp_src() { cat "$ROOT/pyproject.toml" "$ROOT/scripts/env.sh" | sha256sum | cut -d' ' -f1; }
want="$(stamp_src)"

# Fashion-MNIST comes from Debian's package (offline); best effort, root only.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[env] installing Debian package dataset-fashion-mnist" >&2
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }) \
    || echo "[env] could not install dataset-fashion-mnist; Fashion-MNIST users fall back to keras.datasets" >&2
fi

if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.keras-ls-stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "[env] building $VENV (a few minutes on a fresh machine)" >&2
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch comes through ultralytics; this machine's pip caps it (no pin here).
"$VENV/bin/python" -m pip install -q -e "$ROOT[dev,detection]"
echo "$want" > "$VENV/.keras-ls-stamp"
echo "[env] ready" >&2
