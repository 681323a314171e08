"""VGG-16's convolutional layers up to conv5_3 and its ReLU (Simonyan & Zisserman 2015), as EIFN's
identity and expression extractors use them.

    conv1_1-1_2 (64), pool, conv2_1-2_2 (128), pool, conv3_1-3_3 (256), pool,
    conv4_1-4_3 (512), pool, conv5_1-5_3 (512), ReLU          -- no pool5

A 64x64 face leaves conv5_3 as 4x4 maps of 512 channels. The layers sit in `features` at
torchvision's indices (features.0 ... features.29), so a torchvision VGG-16 ImageNet state_dict
(features.* up to conv5_3; classifier.* and anything later ignored) loads into it from a local
file. Nothing is downloaded; without a file the trunk trains from scratch and `source` says so.

`width_divisor` divides every layer's channels (1 is VGG-16; the smoke preset uses 8): the same
layout, cheap enough for a CPU. Pretrained weights need width_divisor 1.

`batch_norm=True` is VGG-16-BN (a batch norm after every convolution, torchvision's `vgg16_bn`
layout and keys): plain VGG-16 does not learn from scratch with EIFN's SGD settings (the smoke
preset, which has no ImageNet weights, stays at the majority class), VGG-16-BN does.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ferlib.errors import FerlibError
from ferlib.nn.imagenet import ImageNetInput
from ferlib.nn.trunks import FROM_SCRATCH, adapt_conv1_weight, list_first, read_state_dict

VGG16_CONV5_3 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class VGG16Trunk(nn.Module):
    """image (B, C, H, W) -> conv5_3 + ReLU maps (B, out_channels, H/16, W/16)."""

    def __init__(self, in_channels: int = 3, width_divisor: int = 1, pretrained: str | os.PathLike | None = None,
                 batch_norm: bool = False):
        super().__init__()
        if width_divisor < 1 or 64 % width_divisor:
            raise FerlibError(f"VGG16Trunk width_divisor {width_divisor}: use a divisor of 64 (1, 2, 4, 8, ...)")
        layers, c = [], in_channels
        for item in VGG16_CONV5_3:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.Conv2d(c, item // width_divisor, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(item // width_divisor))
                layers.append(nn.ReLU(inplace=True))
                c = item // width_divisor
        self.features = nn.Sequential(*layers)
        self.in_channels, self.width_divisor, self.out_channels = in_channels, width_divisor, c
        self.batch_norm = batch_norm
        for m in self.features:
            if isinstance(m, nn.Conv2d):  # torchvision's VGG initialisation
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.source = FROM_SCRATCH
        self.input_norm: nn.Module = nn.Identity()  # ImageNetInput once pretrained weights are loaded
        if pretrained is not None:
            self.load_pretrained(Path(pretrained))

    def load_pretrained(self, path: Path) -> None:
        """The features.* up to conv5_3 of a torchvision VGG-16 (or VGG-16-BN) state_dict; an RGB conv1_1
        adapted to other channels."""
        if self.width_divisor != 1:
            raise FerlibError(f"pretrained VGG-16 weights need the full width (width_divisor 1, got "
                              f"{self.width_divisor}); use the paper preset or pretrained=None")
        name = "vgg16_bn" if self.batch_norm else "vgg16"
        expected = (f"a torchvision {name} state_dict saved with torch.save(model.state_dict(), path), "
                    f"e.g. the ImageNet weights torchvision publishes as {name}-*.pth")
        own = self.state_dict()
        state = {k: v for k, v in read_state_dict(path, expected=expected).items() if k in own}
        missing = set(own) - set(state)
        if missing:
            raise FerlibError(f"pretrained weights file {path} is not a VGG-16 up to conv5_3: missing key(s) "
                              f"{list_first(missing)}; it should be {expected}")
        first = state["features.0.weight"]
        if first.shape[1] != self.in_channels:
            state["features.0.weight"] = adapt_conv1_weight(first, self.in_channels)
        wrong = [f"{k} {tuple(v.shape)}" for k, v in state.items() if v.shape != own[k].shape]
        if wrong:
            raise FerlibError(f"pretrained weights file {path} has tensors of the wrong shape for VGG-16: "
                              f"{', '.join(wrong[:5])}")
        self.load_state_dict(state, strict=True)
        self.source = f"ImageNet weights from {path}"
        self.input_norm = ImageNetInput(self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) in [-1, 1] (ImageNet-normalised inside when pretrained) -> conv5_3 maps."""
        return self.features(self.input_norm(x))
