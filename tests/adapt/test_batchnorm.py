"""AdaBN: BatchNorm statistics re-estimated on a site's films."""

import torch
from torch import nn

from cxr_fast.adapt.batchnorm import batchnorm_layers, reestimate_batchnorm
from cxr_fast.data.batch import Batch


def _batches(x: torch.Tensor, size: int) -> list[Batch]:
    return [
        Batch(
            x[i : i + size],
            torch.full((len(x[i : i + size]),), -1),
            torch.arange(i, i + len(x[i : i + size])),
        )
        for i in range(0, len(x), size)
    ]


def test_statistics_become_the_site_films_and_nothing_else_changes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k}
    site = torch.randn(64, 1, 8, 8) * 3 + 5  # brighter and more contrasted than training
    seen = reestimate_batchnorm(model, _batches(site, 16), torch.device("cpu"))
    assert seen == 64 and not model.training
    with torch.no_grad():
        features = model[0](site)
    bn = batchnorm_layers(model)[0]
    # Equal batches: the mean of batch means is the mean over every film.
    torch.testing.assert_close(bn.running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert bn.momentum == 0.1  # restored
    for k, v in weights.items():
        torch.testing.assert_close(model.state_dict()[k], v)


def test_a_batch_of_one_film_is_left_out():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    seen = reestimate_batchnorm(model, _batches(torch.randn(5, 1, 6, 6), 4), torch.device("cpu"))
    assert seen == 4
