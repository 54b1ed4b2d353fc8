"""bench.aspect on a small real ensemble run: out-of-fold films re-scored at other aspect
ratios, zooms and places, the unchanged film giving the run's own out-of-fold logits."""

import numpy as np
import pyarrow.parquet as pq
import torch

from bench.aspect import affine_view, aspect_logits, main


def test_ratio_one_is_the_runs_own_scoring_and_others_differ(tiny_ensemble, capsys):
    labels, logits = aspect_logits(tiny_ensemble, [0.7, 1.0], per_fold=1000)
    oof = pq.read_table(tiny_ensemble / "oof.parquet").to_pydict()
    assert len(labels) == len(oof["path"])  # every out-of-fold film, once
    probs = np.sort(1 / (1 + np.exp(-logits[1.0])))
    assert np.abs(probs - np.sort(oof["prob_pneumonia"])).max() < 1e-3
    assert not np.allclose(logits[0.7], logits[1.0])
    main([str(tiny_ensemble), "--per-fold", "5", "--ratios", "0.8", "1", "--zooms", "--shifts"])
    text = capsys.readouterr().out
    assert "10 out-of-fold films" in text and "| 0.8 |" in text and "| 1 |" in text
    assert text.count("%") == 2 * 2  # a share per class and ratio
    main([str(tiny_ensemble), "--per-fold", "5", "--ratios", "1", "--zooms", "0.8"])
    text = capsys.readouterr().out
    for row in ("| as they are |", "| zoom 0.8 |", "| shift -0.1 |", "| shift +0.1 |"):
        assert row in text
    assert text.count("%") == 2 * (1 + 4)  # the ratio table, then 4 views


def _centre_of_mass(image: torch.Tensor) -> tuple[float, float, float]:
    """Row and column of the centre of mass, and the mass."""
    weight = image[0].double()
    rows = torch.arange(weight.shape[0], dtype=torch.float64)[:, None]
    cols = torch.arange(weight.shape[1], dtype=torch.float64)[None, :]
    mass = weight.sum()
    return float((weight * rows).sum() / mass), float((weight * cols).sum() / mass), float(mass)


def test_affine_views_zoom_about_the_centre_and_move_down():
    image = torch.zeros(1, 100, 100, dtype=torch.uint8)
    image[:, 40:60, 30:50] = 200  # a block left of the centre
    assert torch.equal(affine_view()(image), image)
    row, col, mass = _centre_of_mass(image)
    down_row, down_col, _ = _centre_of_mass(affine_view(shift=0.1)(image))
    assert abs(down_row - (row + 10)) < 0.5 and abs(down_col - col) < 0.5
    small_row, small_col, small_mass = _centre_of_mass(affine_view(zoom=0.5)(image))
    # Half the size about the centre (49.5): the block's centre halves its distance to it.
    assert abs(small_col - (49.5 + (col - 49.5) / 2)) < 1 and abs(small_row - row) < 1
    assert abs(small_mass / mass - 0.25) < 0.05
