"""bench.ensemble_threshold on a small real ensemble run trained with aligned members."""

import numpy as np

from bench.ensemble_threshold import raw_out_of_fold, report
from cxr_fast.run_folder import read_run
from cxr_fast.training.member_alignment import apply_alignment


def test_the_stored_scores_map_back_to_each_members_own(tiny_ensemble):
    labels, raw, folds = raw_out_of_fold(str(tiny_ensemble))
    alignment = read_run(tiny_ensemble)[1].meta["member_alignment"]
    assert len(alignment) == 2 and set(folds) == {0, 1} and len(labels) == len(raw)
    stored = apply_alignment(raw, folds, alignment)
    again = raw_out_of_fold(str(tiny_ensemble))[1]
    assert np.allclose(raw, again) and not np.allclose(stored, raw)


def test_the_report_puts_the_plain_and_the_aligned_ensemble_side_by_side(
    tiny_ensemble, synth_small
):
    lines = report(str(tiny_ensemble), str(synth_small))
    text = "\n".join(lines)
    assert "| NORMAL: pooled out-of-fold |" in text and "| PNEUMONIA: sample, plain mean |" in text
    assert sum(line.startswith("| member ") for line in lines) == 2
    assert lines[-1].startswith("| aligned members (threshold ")
