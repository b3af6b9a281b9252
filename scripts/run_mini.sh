#!/usr/bin/env bash
# The main job on the embedded default corpus: build MeMa-mini (cached), verify it, and score a
# method with mema-eval (METHOD=name to choose; default rofi, the built-in baseline). The reference evaluators
# are shipped; the first evaluation of a method trains its adaptive attackers once (minutes; cached afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GLOG_minloglevel=2 TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/mema-data build mini
.venv/bin/mema-data verify mini --quiet
.venv/bin/mema-eval --method "${METHOD:-rofi}" --dataset mini --out "runs/${METHOD:-rofi}"
