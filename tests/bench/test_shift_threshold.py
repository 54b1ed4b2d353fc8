"""bench.shift_threshold on a small real ensemble run: every out-of-fold film re-scored under
each shift, and the thresholds the shift policy picks from them."""

import re

import pyarrow.parquet as pq

from bench.shift_threshold import main, shifted_oof
from cxr_fast.training.shift import CLEAN, SHIFTS


def test_the_bench_rescored_every_out_of_fold_film(tiny_ensemble, synth_small, capsys):
    out = tiny_ensemble
    labels, probs = shifted_oof(out)
    oof = pq.read_table(out / "oof.parquet").to_pydict()
    assert list(labels) == oof["label"]
    assert list(probs) == [CLEAN, *SHIFTS]
    # The clean pass is the run's own out-of-fold scoring, film for film.
    assert abs(probs[CLEAN] - oof["prob_pneumonia"]).max() < 1e-3
    main([str(out), "--sample", str(synth_small)])
    text = capsys.readouterr().out
    stored = float(re.search(r"stored by the run: ([0-9.]+)", text).group(1))
    default = float(re.search(r"shift policy over all shifts.*: ([0-9.]+)", text).group(1))
    assert stored == default  # trained with --threshold-policy shift: the same choice
    assert text.count("\n| 0.") >= 3  # one sample row per threshold
