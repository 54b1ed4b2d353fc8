#!/usr/bin/env bash
# The main job end to end on the embedded default data (make demo): synthesise a Kaggle-layout
# dataset, check it, stream it through both loaders, train a small cross-validated CNN ensemble
# on the CPU, evaluate it on the held-out test/ split, calibrate it on that "site" sample,
# export it, score the test split into Parquet with the ensemble run folder, and score a folder
# of pictures that are not chest X-rays (every one should get status not_cxr).
# Usage: scripts/demo.sh [DIR]
set -euo pipefail
dir=${1:-.cache/demo}
cli=".venv/bin/cxr-fast"
run() { printf '\n$ %s\n' "$*"; "$@"; }

rm -rf "$dir/data" "$dir/run" "$dir/run-site" "$dir/cams"
run "$cli" data synth "$dir/data" --n 320 --seed 0
# data check exits 1 when it finds leakage or unreadable files: the demo must show neither.
run "$cli" data check "$dir/data"
run "$cli" data stream "$dir/data" --loader dali --device cpu
run "$cli" data stream "$dir/data" --loader torch --device cpu
# Three members on patient-level folds, one ensemble run folder, the threshold chosen on
# out-of-fold predictions; the small cnn for 8 epochs, where the default recipe trains resnet18s
# for 12, so the demo is quick.
run "$cli" train --data "$dir/data" --out "$dir/run" --arch cnn --image-size 128 \
    --epochs 8 --batch-size 16 --lr 3e-3 --device cpu --folds 3
run "$cli" evaluate "$dir/run" --data "$dir/data/test" --device cpu
# A deployment site's small labelled sample fits the temperature and threshold (a new run).
run "$cli" calibrate "$dir/run" --data "$dir/data/test" --out "$dir/run-site" --device cpu
run "$cli" export "$dir/run" --format torchscript
run "$cli" export "$dir/run" --format pt2
run "$cli" score "$dir/data/test" --model "$dir/run" --out "$dir/preds.parquet" \
    --overwrite --device cpu --cam-dir "$dir/cams" --cam-top 3
# The input gate: photos, pages, patterns and other modalities get status not_cxr, no verdict.
rm -rf "$dir/not-cxr"
.venv/bin/python -m bench.ood_corpus "$dir/not-cxr" >/dev/null
run "$cli" score "$dir/not-cxr" --model "$dir/run" --out "$dir/not-cxr.parquet" \
    --overwrite --device cpu
printf '\nfirst rows of %s:\n' "$dir/preds.parquet"
.venv/bin/python - "$dir/preds.parquet" <<'PY'
import os
import sys

import pyarrow.parquet as pq

table = pq.read_table(sys.argv[1])
rows = table.slice(0, 5).to_pylist()
print(f"{'path':<48} {'prob':>7} {'pred':<10} {'label':<10} {'status':<6} size")
for r in rows:
    prob = "-" if r["prob_pneumonia"] is None else f"{r['prob_pneumonia']:.4f}"
    path = os.path.relpath(r["path"])  # rows hold absolute paths; shown from here
    print(f"{path[-48:]:<48} {prob:>7} {r['pred'] or '-':<10} {r['label'] or '-':<10} "
          f"{r['status']:<6} {r['width']}x{r['height']}")
print("\nGrad-CAM overlays of the most suspicious films (cam_path):")
for r in sorted(table.to_pylist(), key=lambda r: -(r["prob_pneumonia"] or 0))[:3]:
    print(f"  {r['prob_pneumonia']:.4f}  {r['cam_path']}")
PY
