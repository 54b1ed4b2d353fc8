"""bench.sharpness: the per-class acquisition table on the committed real films."""

import torch

from bench import sharpness


def test_blurring_lowers_sharpness_and_spread_is_in_unit_range():
    x = torch.rand(3, 1, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    assert (sharpness.sharpness(blurred) < sharpness.sharpness(x)).all()
    s = sharpness.spread(x)
    assert ((s > 0.9) & (s <= 1.0)).all()


def test_table_on_real_films(kaggle_dir, capsys):
    sharpness.main(
        [
            "--data",
            str(kaggle_dir),
            "--external",
            str(kaggle_dir),
            "--n",
            "4",
            "--size",
            "64",
            "--blur",
            "1",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split("|") for line in lines[2:]]
    assert [r[1].strip() for r in rows] == ["training"] * 2 + ["external"] * 2 + [
        "training, blurred sigma 1 px"
    ]
    normal, blurred = float(rows[0][4].split()[0]), float(rows[4][4].split()[0])
    assert 0 < blurred < normal
