"""The scorer a user writes without cxr-fast, as a whole program: torchvision ImageFolder +
DataLoader + the run's weights in an eager fp32 model, probabilities to Parquet.

python -m bench.plain_scorer ARCHIVE RUN OUT.parquet [--workers N] [--batch-size N] [--device D]

It reads the run's weights (model.pt) into the same architecture (an ensemble run: each
member's, and the mean of their logits), so the model does the same work per image as
cxr-fast's; it does nothing else (no draft decoding, no channels_last, no bf16, no int8, no
contract normalisation, no error rows). Imports only torch, torchvision and pyarrow besides the
model builder.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def _plain_model(arch: str, state_dict: dict, members: int, device: torch.device):
    """The eager fp32 model; for an ensemble run, the mean of its members' logits."""
    from cxr_fast.models.registry import build_model  # the architecture, nothing else

    if not members:
        model = build_model(arch)
        model.load_state_dict(state_dict)
        return model.eval().to(device)
    nets = []
    for i in range(members):
        prefix = f"members.{i}."
        net = build_model(arch)
        net.load_state_dict(
            {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        )
        nets.append(net.eval().to(device))
    return lambda x: torch.stack([net(x) for net in nets]).mean(dim=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.plain_scorer")
    parser.add_argument("archive", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=16)
    # A GPU user's plain scorer moves the model and each batch there (pinned, as the
    # DataLoader documentation shows); nothing else changes.
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)

    checkpoint = torch.load(args.run / "model.pt", map_location="cpu", weights_only=True)
    meta = checkpoint["meta"]
    members = int(meta.get("members") or 0)
    model = _plain_model(meta["arch"], checkpoint["state_dict"], members, device)
    size = int(meta["contract"]["image_size"])
    transform = transforms.Compose(
        [transforms.Grayscale(1), transforms.Resize((size, size)), transforms.ToTensor()]
    )
    dataset = datasets.ImageFolder(str(args.archive), transform=transform)
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    probs: list[float] = []
    with torch.inference_mode():
        for x, _ in loader:
            x = x.to(device, non_blocking=True)
            probs += torch.sigmoid(model(x)).reshape(-1).tolist()
    paths = [path for path, _ in dataset.samples]
    pq.write_table(pa.table({"path": paths, "prob_pneumonia": probs}), args.out)


if __name__ == "__main__":
    main()
