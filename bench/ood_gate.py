"""How well does the input gate tell chest films from everything else?

Fits the gate on the training films (or takes a run's stored gate), then reads four sets the
way `cxr-fast score` reads them (the PIL decoder, DICOM headers included) and reports the share
refused with a 95% interval, and the ROC-AUC of the out-of-distribution score, non-chest inputs
against real chest films:

- the training films (in-sample; the out-of-fold share is recorded at the fit);
- the external sample (films acquired apart from the training split);
- full-resolution films generated from the sample (upscaled with film grain, as `bench/` makes
  its throughput films);
- the corpus of inputs that are not chest radiographs (bench/ood_corpus.py), per category.

    python -m bench.ood_gate [--run RUN] [--train DIR] [--sample DIR] [--image-size 128]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import beta

from bench.images import CACHE, fullres_images
from bench.ood_corpus import build_corpus
from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import stack_gray
from cxr_fast.data.decode import ImageReadError, read_image
from cxr_fast.data.discover import discover
from cxr_fast.gate import InputGate, Judgement
from cxr_fast.gate.fit import fit_gate
from cxr_fast.run_folder import read_run

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def judge_files(gate: InputGate, paths: list[str]) -> list[tuple[str, Judgement]]:
    """The gate's judgement of each readable file, read as score reads it."""
    out = []
    for path in paths:
        try:
            read = read_image(path, gate.contract)
        except ImageReadError:
            continue
        x = stack_gray([read.pixels], gate.contract)
        out.append((path, gate.judge(x, [read.info])[0]))
    return out


def interval(k: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson 95% interval of k/n."""
    low = beta.ppf(0.025, k, n - k + 1) if k else 0.0
    high = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


def refused_line(name: str, judged: list[tuple[str, Judgement]]) -> dict:
    k, n = sum(j.refused for _, j in judged), len(judged)
    low, high = interval(k, n)
    print(f"{name:28s} refused {k:4d} of {n:5d} = {k / n:6.2%}  (95% CI {low:.2%}-{high:.2%})")
    return {"refused": k, "n": n, "ci": [low, high]}


def auc(negatives: list[float], positives: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a run folder whose stored gate is measured")
    parser.add_argument("--train", type=Path, default=SHARED / "kaggle224")
    parser.add_argument("--sample", type=Path, default=SHARED / "kaggle-test-sample")
    parser.add_argument("--image-size", type=int, default=128, help="without --run")
    parser.add_argument("--fullres", type=int, default=193, help="generated full-res films")
    parser.add_argument(
        "--chest", type=Path, nargs="*", default=[], help="more folders of real chest films"
    )
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)

    train = discover(args.train)
    if args.run is not None:
        _, info = read_run(args.run)
        gate = InputGate.from_meta(info.meta, info.contract)
        if gate.content is None:
            raise SystemExit(f"{args.run} has no fitted gate: run `cxr-fast ood-fit` first")
    else:
        contract = PreprocessContract(image_size=args.image_size)
        started = time.perf_counter()
        gate = InputGate(contract, fit_gate(train, contract))
        print(f"fitted on {len(train)} films in {time.perf_counter() - started:.0f} s")
    print(f"threshold {gate.threshold:.2f}; fit: {json.dumps(gate.content.fitted)}")

    sample_paths = [r.path for r in discover(args.sample)]
    full = fullres_images(args.fullres, source=args.sample)
    corpus_dir = CACHE / "ood-corpus"
    corpus = build_corpus(corpus_dir, chest=args.train)
    sets = {
        "training films": judge_files(gate, [r.path for r in train]),
        "external sample": judge_files(gate, sample_paths),
        "full-res generated": judge_files(gate, [r.path for r in discover(full)]),
    }
    for folder in args.chest:
        sets[f"chest: {folder.name}"] = judge_files(gate, [r.path for r in discover(folder)])
    results = {name: refused_line(name, judged) for name, judged in sets.items()}
    for name in sets:
        for path, j in sets[name] if name.startswith("chest: ") else []:
            if j.refused:
                print(f"    refused: {Path(path).name} ({j.reason})")
    chest = [
        j.ood_score for name in ("external sample", "full-res generated") for _, j in sets[name]
    ]
    non_chest: list[float] = []
    for category, files in corpus.items():
        judged = judge_files(gate, [str(p) for p in files])
        results[category] = refused_line(f"not chest: {category}", judged)
        non_chest += [j.ood_score for _, j in judged]
        for path, j in judged:
            if not j.refused:
                print(f"    passed: {Path(path).name} (score {j.ood_score:.1f})")
    results["roc_auc_non_chest_vs_chest"] = auc(chest, non_chest)
    roc = results["roc_auc_non_chest_vs_chest"]
    print(f"ROC-AUC of the OOD score, non-chest vs chest films: {roc:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"threshold": gate.threshold, **results}, indent=2))


if __name__ == "__main__":
    main()
