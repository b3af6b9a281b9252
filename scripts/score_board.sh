#!/usr/bin/env bash
# Score every built-in method on the registered tracks with mema-eval's default tasks (every attacker)
# and submit the results to the leaderboard. Long: about 5-10 min per method on MeMa-mini on 2 CPU cores
# the first time (the adaptive attackers train once per method and are cached), a minute or two on the
# real-face track. Usage: bash scripts/score_board.sh [METHOD ...]   (default: all built-in methods)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GLOG_minloglevel=2 TF_CPP_MIN_LOG_LEVEL=2
methods=("$@")
if [ ${#methods[@]} -eq 0 ]; then
  methods=(identity mosaic blur blur-2 mask-out eye-crop dp-pix digital-mask facedefender medsem-deid rofi)
fi
.venv/bin/mema-data build mini --quiet
.venv/bin/mema-data build real-faces --quiet
for dataset in real-faces mini; do
  for m in "${methods[@]}"; do
    out="runs/board/$dataset/$m"
    echo "== $m on $dataset -> $out"
    .venv/bin/mema-eval --method "$m" --dataset "$dataset" --out "$out" --quiet
    .venv/bin/mema-leaderboard submit "$out/results.json"
  done
done
.venv/bin/mema-leaderboard render --readme README.md
.venv/bin/mema-leaderboard validate
