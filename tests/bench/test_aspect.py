"""bench.aspect on a small real ensemble run: out-of-fold films re-scored at other aspect
ratios, the unchanged ratio giving the run's own out-of-fold logits."""

import numpy as np
import pyarrow.parquet as pq

from bench.aspect import aspect_logits, main


def test_ratio_one_is_the_runs_own_scoring_and_others_differ(tiny_ensemble, capsys):
    labels, logits = aspect_logits(tiny_ensemble, [0.7, 1.0], per_fold=1000)
    oof = pq.read_table(tiny_ensemble / "oof.parquet").to_pydict()
    assert len(labels) == len(oof["path"])  # every out-of-fold film, once
    probs = np.sort(1 / (1 + np.exp(-logits[1.0])))
    assert np.abs(probs - np.sort(oof["prob_pneumonia"])).max() < 1e-3
    assert not np.allclose(logits[0.7], logits[1.0])
    main([str(tiny_ensemble), "--per-fold", "5", "--ratios", "0.8", "1"])
    text = capsys.readouterr().out
    assert "10 out-of-fold films" in text and "| 0.8 |" in text and "| 1 |" in text
    assert text.count("%") == 2 * 2  # a share per class and ratio
