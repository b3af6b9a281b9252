#!/usr/bin/env bash
# The main job on the embedded default corpus: build MeMa-mini (cached), then verify it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GLOG_minloglevel=2 TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/mema-data build mini "$@"
.venv/bin/mema-data verify mini --quiet
