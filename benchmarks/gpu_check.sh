#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): speed of the paper preset on this GPU, one command.
#   bash benchmarks/gpu_check.sh [--methods lamae,st_mem,ind_p] [--steps 200] [--out DIR] ...
# Writes benchmarks/results/gpu-check-<device>.md and .json; a hard stop after 8 minutes keeps
# the rows measured until then (they are written as they come).
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout --signal=INT --kill-after=20 "${GPU_CHECK_TIMEOUT:-480}" python benchmarks/gpu_check.py "$@"
