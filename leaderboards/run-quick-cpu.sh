#!/usr/bin/env bash
# The committed CPU boards, each declared by one grid file in leaderboards/grids/ (methods, sweeps, seeds, preset,
# --jobs 2 and the time estimate are in the files). Rerunning resumes: finished cells in leaderboards/results are kept.
# Usage: bash leaderboards/run-quick-cpu.sh [SHARED_DATA_DIR]   (default ../shared/data: the real MNIST, if there)
# Measured: the committed boards came from one run of this script, 2026-12-06, on the 2-core machine (load from
# other jobs 2-3): 51 min 18 s wall for both boards and the publish (mnist5k 18 min, MNIST 33 min from first cell
# start to last cell end; 102 cells, 0 failed; 99 min of CPU time). The grid files' time estimates predate the
# bf16 default and are not edited: the pages check each record against its grid file's sha256.
set -uo pipefail
cd "$(dirname "$0")/.."
mnist_dir=${1:-../shared/data}
odnbench compare --grid leaderboards/grids/mnist5k-quick.toml --results leaderboards/results --quiet
if [ -d "$mnist_dir/MNIST/raw" ]; then
  odnbench compare --grid leaderboards/grids/mnist-quick.toml --results leaderboards/results --data-dir "$mnist_dir" \
    --no-download --quiet
fi
odnbench leaderboard publish --results leaderboards/results --out leaderboards
