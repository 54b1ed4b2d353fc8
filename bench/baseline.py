"""The loader a user would write without cxr-fast: torchvision ImageFolder + DataLoader."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def baseline_loader(root: Path, image_size: int, batch_size: int, workers: int) -> DataLoader:
    """ImageFolder with Grayscale -> Resize -> ToTensor, batched by a plain DataLoader."""
    transform = transforms.Compose(
        [
            transforms.Grayscale(num_output_channels=1),
            transforms.Resize((image_size, image_size)),
            transforms.ToTensor(),
        ]
    )
    dataset = datasets.ImageFolder(str(root), transform=transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
