"""One member of an ensemble run as a one-model run with out-of-fold scores of its own.

Copies ``RUN/members/fold-K/``'s model.pt and config.json into OUT and writes OUT/oof.parquet:
the member's scores on its own validation fold (patients it never saw), in the layout training
writes for an ensemble. `bench.adapt OUT --heldout` then measures adaptation on one model (the
held-out check splits those films into patient halves). The source run is only read.

    python -m bench.member_run /work/main/runs/default-s0 1 runs/fold1
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.inference import sigmoid
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import CONFIG_FILE, MODEL_FILE, load_run, read_json
from cxr_fast.scoring.model import module_model
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.folds import OOF_FILE, _write_oof, member_dir
from cxr_fast.training.plan import plan


def member_run(run: Path, k: int, out: Path, workers: int = 2) -> float:
    """Write member ``k`` (1-based) of ``run`` into ``out``; returns its own threshold."""
    src = member_dir(run, k - 1)
    config = TrainConfig.from_dict(read_json(src / CONFIG_FILE)["train"])
    val = plan(replace(config, out=str(src))).data.val
    model, info = load_run(src)
    loader = make_scoring_loader(LoaderSpec(val, info.contract, 64, workers=workers))
    scorer = module_model(model, info.contract, inference_precision(torch.device("cpu")))
    index, logits, _ = scorer.predict(loader)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / MODEL_FILE, out / MODEL_FILE)
    shutil.copyfile(src / CONFIG_FILE, out / CONFIG_FILE)
    records = [val[i] for i in index]
    _write_oof(out / OOF_FILE, records, np.zeros(len(records), dtype=np.int64), sigmoid(logits))
    return info.threshold


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("k", type=int, help="the member, 1-based (members/fold-K)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    threshold = member_run(args.run, args.k, args.out, args.workers)
    print(f"member {args.k} of {args.run} (threshold {threshold:.4f}) -> {args.out}")


if __name__ == "__main__":
    main()
