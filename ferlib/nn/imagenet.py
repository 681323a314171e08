"""The input normalisation ImageNet weights expect, inside the network that uses them.

The study feeds every network images in [-1, 1] (`ferlib.data.transforms`; IF-GAN's generator
also produces [-1, 1]). torchvision's ImageNet weights were trained on (x - mean) / std of [0, 1]
images with ImageNet's channel means and stds. A trunk built from such weights puts
`ImageNetInput` in front of itself, so the pretrained filters see the statistics they were
trained on whatever produced the image; a trunk trained from scratch keeps [-1, 1] as it is.

Channels: 3 are R, G, B; a multiple of 3 repeats RGB (an [I_SE, I_AE] pair); any other count
(greyscale) takes the mean of the three means and of the three stds, the grey a pretrained conv1
adapted to that count (`trunks.adapt_conv1_weight`) sees in every one of its summed RGB filters.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetInput(nn.Module):
    """[-1, 1] images (B, C, H, W) -> ImageNet-normalised ones: ((x + 1) / 2 - mean) / std per channel.

    Its constants are not part of the state_dict, so a trunk's keys stay torchvision's."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        if in_channels % 3 == 0:
            mean = torch.tensor(IMAGENET_MEAN).repeat(in_channels // 3)
            std = torch.tensor(IMAGENET_STD).repeat(in_channels // 3)
        else:
            mean = torch.full((in_channels,), sum(IMAGENET_MEAN) / 3)
            std = torch.full((in_channels,), sum(IMAGENET_STD) / 3)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2 - self.mean) / self.std
