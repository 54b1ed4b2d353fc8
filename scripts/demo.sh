#!/usr/bin/env bash
# The main job end to end on the embedded default data (make demo). Usage: scripts/demo.sh [DIR]
set -euo pipefail
dir=${1:-.cache/demo}
cli=".venv/bin/cxr-fast"
run() { printf '\n$ %s\n' "$*"; "$@"; }

rm -rf "$dir/data"
run "$cli" data synth "$dir/data" --n 120 --seed 0
# data check exits 1 when it finds leakage or unreadable files: the demo must show neither.
run "$cli" data check "$dir/data"
run "$cli" data stream "$dir/data" --loader dali --device cpu
run "$cli" data stream "$dir/data" --loader torch --device cpu
