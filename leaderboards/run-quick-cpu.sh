#!/usr/bin/env bash
# The committed CPU boards, each declared by one grid file in leaderboards/grids/ (methods, sweeps, seeds, preset,
# budgets, --jobs 2 and the time estimate are in the files). Rerunning resumes: finished cells are kept.
# Usage: bash leaderboards/run-quick-cpu.sh [SHARED_DATA_DIR]   (default ../shared/data: the real MNIST, if there)
# The MNIST grid's header comments name leaderboards/pending/, where it ran until all its cells had finished: the
# records carry the file's sha256, so its text stays as it ran. Publish on an otherwise idle machine:
# --remeasure-latency measures every stored model's latency again, one at a time.
set -uo pipefail
cd "$(dirname "$0")/.."
mnist_dir=${1:-../shared/data}
odnbench compare --grid leaderboards/grids/mnist5k-quick.toml --results leaderboards/results --quiet
if [ -d "$mnist_dir/MNIST/raw" ]; then
  odnbench compare --grid leaderboards/grids/mnist-quick.toml --results leaderboards/results \
    --data-dir "$mnist_dir" --no-download --quiet
fi
odnbench leaderboard publish --results leaderboards/results --out leaderboards --remeasure-latency
