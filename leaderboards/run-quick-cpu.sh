#!/usr/bin/env bash
# The runs behind the committed CPU leaderboards (ResNet-18, preset quick, seeds 0-2). Rerunning
# resumes: finished cells in leaderboards/results are skipped, so adding a --seed trains only the new cells.
# Usage: bash leaderboards/run-quick-cpu.sh [SHARED_DATA_DIR]   (default ../shared/data for the real MNIST)
# JOBS=N runs N cells at once (default 2 on this 2-core machine: one torch thread each); the boards then
# say that timings shared the machine. JOBS=1 runs serially.
set -uo pipefail
cd "$(dirname "$0")/.."
results=leaderboards/results
mnist_dir=${1:-../shared/data}
datasets=(--dataset mnist5k)  # the offline default; the real MNIST (60k/10k) when its files are there
if [ -d "$mnist_dir/MNIST/raw" ]; then
  datasets+=(--dataset mnist --data-dir "$mnist_dir" --no-download)
fi
common=(--backbone resnet18 --preset quick --seed 0 --seed 1 --seed 2 "${datasets[@]}"
        --results "$results" --jobs "${JOBS:-2}" --quiet)
# 1. full, ODN and the configurations matched to ODN's result: prune to ODN's size, scratch, truncate.
odnbench compare --method full --method odn --method prune --method scratch --method truncate \
  --set prune.match=odn:size "${common[@]}"
# 2-3. The baselines a reviewer asks for (issue 14), grouped so that each grid has enough cells to keep
# every worker busy: prune matched on MACs; width (slim, matched on size and on MACs); inner-block
# removal (blockdrop: matched on size, and keeping as many blocks as ODN); distillation at ODN's
# depth (kd); DepGraph's group-norm sparse learning before pruning to ODN's size (4 sparse-training
# epochs at torch-pruning's benchmark coefficient 5e-4, to fit the CPU budget).
odnbench compare --method prune --method slim --method blockdrop --method kd \
  --set prune.match=odn:macs --set slim.match=odn:size --set blockdrop.match=odn:size "${common[@]}"
odnbench compare --method prune --method slim --method blockdrop \
  --set prune.match=odn:size --set prune.pruner=group-norm --set prune.sparse_epochs=4 --set prune.reg=5e-4 \
  --set slim.match=odn:macs "${common[@]}"
odnbench leaderboard publish --results "$results" --out leaderboards
