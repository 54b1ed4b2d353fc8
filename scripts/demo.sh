#!/usr/bin/env bash
# The main job end to end on the embedded default data (make demo): synthesise a Kaggle-layout
# dataset, check it, stream it through both loaders, train a small CNN on the CPU, evaluate it
# on the held-out test/ split. Usage: scripts/demo.sh [DIR]
set -euo pipefail
dir=${1:-.cache/demo}
cli=".venv/bin/cxr-fast"
run() { printf '\n$ %s\n' "$*"; "$@"; }

rm -rf "$dir/data" "$dir/run"
run "$cli" data synth "$dir/data" --n 240 --seed 0
# data check exits 1 when it finds leakage or unreadable files: the demo must show neither.
run "$cli" data check "$dir/data"
run "$cli" data stream "$dir/data" --loader dali --device cpu
run "$cli" data stream "$dir/data" --loader torch --device cpu
run "$cli" train --data "$dir/data" --out "$dir/run" --arch cnn --image-size 128 \
    --epochs 8 --batch-size 16 --lr 3e-3 --device cpu
run "$cli" evaluate "$dir/run" --data "$dir/data/test" --device cpu
