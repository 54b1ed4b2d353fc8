"""IBN-a (Pan et al., "Two at Once: Enhancing Learning and Generalization Capacities via
IBN-Net", ECCV 2018): in the first three stages of a ResNet, the first normalisation of every
block normalises half of its channels per image (InstanceNorm) and half over the batch.

Instance normalisation removes each film's own feature contrast and brightness (acquisition
"style") in the early layers, where the paper found it improves accuracy on an unseen domain
without hurting the seen one; the BatchNorm half keeps the content statistics.
"""

from __future__ import annotations

import torch
from torch import nn

# The paper's split: half of the channels get InstanceNorm.
IN_FRACTION = 0.5
# Stages whose blocks get IBN (layer4 keeps plain BatchNorm, as IBN-a does).
IBN_STAGES = ("layer1", "layer2", "layer3")


class IBN(nn.Module):
    """InstanceNorm (affine) on the first ``in_channels`` channels, BatchNorm on the rest."""

    def __init__(self, channels: int, in_fraction: float = IN_FRACTION) -> None:
        super().__init__()
        self.in_channels = int(channels * in_fraction)
        self.instance = nn.InstanceNorm2d(self.in_channels, affine=True)
        self.batch = nn.BatchNorm2d(channels - self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.in_channels, x.shape[1] - self.in_channels], dim=1)
        return torch.cat((self.instance(first.contiguous()), self.batch(rest)), dim=1)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> IBN:
        """An IBN that starts from ``bn``'s affine parameters (and running statistics for its
        BatchNorm half), so ImageNet weights carry over."""
        ibn = cls(bn.num_features)
        k = ibn.in_channels
        with torch.no_grad():
            ibn.instance.weight.copy_(bn.weight[:k])
            ibn.instance.bias.copy_(bn.bias[:k])
            ibn.batch.weight.copy_(bn.weight[k:])
            ibn.batch.bias.copy_(bn.bias[k:])
            ibn.batch.running_mean.copy_(bn.running_mean[k:])
            ibn.batch.running_var.copy_(bn.running_var[k:])
        return ibn


def to_ibn_a(resnet: nn.Module) -> nn.Module:
    """``resnet`` (a torchvision ResNet) with each block's ``bn1`` in :data:`IBN_STAGES`
    replaced by :class:`IBN`, in place; returned for chaining."""
    for stage in IBN_STAGES:
        for block in resnet.get_submodule(stage):
            block.bn1 = IBN.from_batchnorm(block.bn1)
    return resnet
