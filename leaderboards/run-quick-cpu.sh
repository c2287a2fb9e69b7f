#!/usr/bin/env bash
# The runs behind the committed CPU leaderboards (ResNet-18, preset quick). Rerunning resumes:
# finished cells in leaderboards/results are skipped, so adding a --seed only trains the new cells.
# Usage: bash leaderboards/run-quick-cpu.sh [SHARED_DATA_DIR]   (default ../shared/data for real MNIST)
set -uo pipefail
cd "$(dirname "$0")/.."
results=leaderboards/results
mnist_dir=${1:-../shared/data}
common=(--backbone resnet18 --preset quick --results "$results" --quiet)
# Offline default dataset, 3 seeds: full, odn, size-matched prune, scratch, truncate; then MACs-matched prune.
# Every command resumes: full and odn train once per dataset and seed, whatever needs them.
odnbench compare --method full --method odn --method prune --method scratch --method truncate \
  --set prune.match=odn:size --seed 0 --seed 1 --seed 2 "${common[@]}"
odnbench compare --method prune --set prune.match=odn:macs --seed 0 --seed 1 --seed 2 "${common[@]}"
# The baselines a reviewer asks for (issue 14): width (slim, matched on size and on MACs), inner-block
# removal (blockdrop: as many blocks as ODN keeps, and matched on size), distillation at ODN's depth (kd),
# and DepGraph's group-norm sparse learning before pruning to ODN's size (4 sparse-training epochs at
# torch-pruning's benchmark coefficient 5e-4, to fit the CPU budget).
baselines() {
  odnbench compare --method slim --set slim.match=odn:size "$@" "${common[@]}"
  odnbench compare --method slim --set slim.match=odn:macs "$@" "${common[@]}"
  odnbench compare --method blockdrop --method kd "$@" "${common[@]}"
  odnbench compare --method blockdrop --set blockdrop.match=odn:size "$@" "${common[@]}"
  odnbench compare --method prune --set prune.match=odn:size --set prune.pruner=group-norm \
    --set prune.sparse_epochs=4 --set prune.reg=5e-4 "$@" "${common[@]}"
}
baselines --seed 0 --seed 1 --seed 2
# The real MNIST (60k/10k; the quick preset trains on 6,000 images and tests on all 10,000).
if [ -d "$mnist_dir/MNIST/raw" ]; then
  for match in size macs; do
    odnbench compare --method full --method odn --method prune --method scratch --method truncate \
      --set prune.match=odn:$match --dataset mnist --data-dir "$mnist_dir" --no-download --seed 0 --seed 1 "${common[@]}"
  done
  baselines --dataset mnist --data-dir "$mnist_dir" --no-download --seed 0 --seed 1
fi
odnbench leaderboard publish --results "$results" --out leaderboards
