"""Sharpness and dynamic range per class at a model's input, on the training split and on an
external sample: is an acquisition property a class cue in training but not at the new site?

    python -m bench.sharpness [--data ../shared/data/kaggle224/train]
        [--external ../shared/data/kaggle-test-sample] [--size 128] [--n 200] [--blur 0.5 1.0]

Sharpness is the mean absolute difference between neighbouring pixels (in [0, 1] units) of the
contract's resized image; range is its 1-99% percentile spread. ``--blur`` adds the training
NORMAL films blurred by each sigma (input pixels), as the removed ``train --normal-blur`` did.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.decode import read_gray
from cxr_fast.data.discover import discover
from cxr_fast.labels import CLASS_NAMES, NORMAL_LABEL


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` ([..., H, W]) blurred by a Gaussian of ``sigma`` pixels, kernel radius 3 sigma."""
    from torchvision.transforms.v2 import functional as TF

    size = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, [size, size], [sigma, sigma])


def sharpness(x: torch.Tensor) -> np.ndarray:
    """Mean absolute neighbour difference of each [N,1,H,W] image, horizontal and vertical."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return ((dx + dy) / 2).numpy()


def spread(x: torch.Tensor) -> np.ndarray:
    """1-99% percentile range of each image."""
    q = torch.quantile(x.flatten(1), torch.tensor([0.01, 0.99]), dim=1)
    return (q[1] - q[0]).numpy()


def _images(folder: str, label: int, n: int, size: int, seed: int) -> torch.Tensor:
    records = [r for r in discover(folder) if r.label == label]
    picked = np.random.default_rng(seed).permutation(len(records))[:n]
    contract = PreprocessContract(image_size=size)
    planes = [read_gray(records[i].path, contract)[0] for i in picked]
    return torch.from_numpy(np.stack(planes)).float().unsqueeze(1) / 255


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/kaggle224/train")
    parser.add_argument("--external", default="../shared/data/kaggle-test-sample")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=200, help="films per class and set (at most)")
    parser.add_argument("--blur", type=float, nargs="*", default=[0.5, 1.0])
    args = parser.parse_args(argv)

    print("| set | class | films | sharpness (sd) | 1-99% range |\n|---|---|---:|---:|---:|")
    normals = None
    for name, folder in (("training", args.data), ("external", args.external)):
        for label, cls in enumerate(CLASS_NAMES):
            x = _images(folder, label, args.n, args.size, seed=0)
            if name == "training" and label == NORMAL_LABEL:
                normals = x
            s = sharpness(x)
            print(
                f"| {name} | {cls} | {len(x)} | {s.mean():.4f} ({s.std():.4f}) | "
                f"{spread(x).mean():.3f} |"
            )
    for sigma in args.blur:
        s = sharpness(gaussian_blur(normals, sigma))
        print(
            f"| training, blurred sigma {sigma:g} px | NORMAL | {len(normals)} | "
            f"{s.mean():.4f} ({s.std():.4f}) | |"
        )


if __name__ == "__main__":
    main()
