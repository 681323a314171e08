"""SphereFace-style residual trunks (Liu et al., "SphereFace", CVPR 2017, Table 2).

SphereFace-20 is four stages. Each stage opens with a stride-2 3x3 convolution (the
down-sampling layer, "S-2") and continues with residual units of two 3x3 convolutions, the unit's
input added to their output:

    stage   channels   residual units
    conv1      64           1
    conv2     128           2
    conv3     256           4
    conv4     512           1        then FC-512 (the face embedding), on a 112x96 face

4 down-sampling + 2 x 8 unit convolutions = 20 convolutions. SphereFace follows each convolution
with a PReLU; ADFL (Sec. 2.1) puts a batch norm between convolution and PReLU, which is what
`ConvBNPReLU` does (so its convolution has no bias).

`SphereFaceNet` is the plain network (the reference architecture the tests count parameters
against); ADFL builds its shared layers and branches from the same `sphere_stage`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

SPHEREFACE20_WIDTHS = (64, 128, 256, 512)
SPHEREFACE20_UNITS = (1, 2, 4, 1)


class ConvBNPReLU(nn.Sequential):
    """3x3 convolution (stride 1 or 2, padding 1, no bias), batch norm, channel-wise PReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.PReLU(c_out))


class SphereResidualUnit(nn.Module):
    """x + conv(conv(x)): the double-bracket [3x3, c; 3x3, c] of the SphereFace and ADFL tables."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(ConvBNPReLU(channels, channels), ConvBNPReLU(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def sphere_stage(c_in: int, c_out: int, units: int) -> nn.Sequential:
    """[3x3, c_out] x 1, S-2, then [3x3, c_out; 3x3, c_out] x `units`."""
    return nn.Sequential(ConvBNPReLU(c_in, c_out, stride=2), *[SphereResidualUnit(c_out) for _ in range(units)])


def downsampled(size: int, stages: int) -> int:
    """The side of a map after `stages` stride-2 3x3 convolutions with padding 1: ceil(size / 2) each."""
    for _ in range(stages):
        size = (size - 1) // 2 + 1
    return size


class SphereFaceNet(nn.Module):
    """The SphereFace trunk with its FC embedding: image (B,C,H,W) -> (B, embedding).

    The defaults are SphereFace-20 at its 112x96 input with a 512-d embedding."""

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = SPHEREFACE20_WIDTHS,
                 units: Sequence[int] = SPHEREFACE20_UNITS, input_size: tuple[int, int] = (112, 96),
                 embedding: int = 512):
        super().__init__()
        channels = [in_channels, *widths]
        self.stages = nn.Sequential(*[sphere_stage(channels[i], channels[i + 1], units[i]) for i in range(len(widths))])
        h, w = (downsampled(s, len(widths)) for s in input_size)
        self.fc = nn.Linear(widths[-1] * h * w, embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(x).flatten(1))
