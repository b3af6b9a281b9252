#!/usr/bin/env bash
# The default test suite (well under 20 minutes on 2 CPU cores). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE MEMA_TORCH_THREADS=1
export GLOG_minloglevel=2 TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/python -m pytest -q "$@"
