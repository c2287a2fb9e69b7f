#!/usr/bin/env bash
# The committed CPU boards, each declared by one grid file in leaderboards/grids/ (methods, sweeps, seeds, preset,
# --jobs 2 and the time estimate are in the files). Rerunning resumes: finished cells in leaderboards/results are kept.
# Usage: bash leaderboards/run-quick-cpu.sh [SHARED_DATA_DIR]   (default ../shared/data: the real MNIST, if there)
set -uo pipefail
cd "$(dirname "$0")/.."
mnist_dir=${1:-../shared/data}
odnbench compare --grid leaderboards/grids/mnist5k-quick.toml --results leaderboards/results --quiet
if [ -d "$mnist_dir/MNIST/raw" ]; then
  odnbench compare --grid leaderboards/grids/mnist-quick.toml --results leaderboards/results --data-dir "$mnist_dir" \
    --no-download --quiet
fi
odnbench leaderboard publish --results leaderboards/results --out leaderboards
