"""pix2pix's PatchGAN discriminator (Isola et al. 2017), IF-GAN's D.

A PatchGAN does not judge a whole image: each output logit judges one patch of the input (its
receptive field), so the generator is penalised only for structure at the scale of patches and
the L1 term looks after low frequencies. pix2pix's default (n_layers = 3) sees 70 x 70 patches
and gives a 30 x 30 grid of logits for a 256 x 256 input. IF-GAN feeds it an image tuple
stacked along channels ({I_SE, I_AE} or {I_SE, G(I_SE)}: in_channels = 6 for RGB).

The layers follow junyanz/pytorch-CycleGAN-and-pix2pix `NLayerDiscriminator` with BatchNorm:
4 x 4 kernels, padding 1, convolutions before a BatchNorm have no bias (the norm's shift makes it
redundant), weights drawn N(0, 0.02) and BatchNorm scales N(1, 0.02) as pix2pix's `init_weights`
("normal", gain 0.02) does. The logits have no sigmoid: train with BCEWithLogitsLoss (or MSE for
an LSGAN).
"""

from __future__ import annotations

import torch
from torch import nn

from ferlib.errors import FerlibError

KERNEL, PADDING = 4, 1
MAX_WIDTH_MULTIPLIER = 8


def check_n_layers(n_layers: int) -> None:
    if n_layers < 1:
        raise FerlibError(f"a PatchGAN needs n_layers >= 1 (pix2pix uses 3), got {n_layers}")


def receptive_field(n_layers: int = 3) -> int:
    """The side in input pixels of the patch one logit sees: 70 for n_layers=3, 34 for 2, 16 for 1.

    Walking back from one output logit, a k x k convolution of stride s turns a field of r
    positions into (r - 1) * s + k: the final and the penultimate (stride-1) convolutions give
    4, then 7, and each of the n_layers stride-2 convolutions r -> 2 * r + 2.
    """
    check_n_layers(n_layers)
    field = 1
    strides = [2] * n_layers + [1, 1]                  # input -> output order
    for stride in reversed(strides):
        field = (field - 1) * stride + KERNEL
    return field


def init_pix2pix_weights(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix's "normal" init: conv weights N(0, gain), biases 0, BatchNorm scale N(1, gain), shift 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, gain)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, gain)
        nn.init.zeros_(module.bias)


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN (Isola et al. 2017, junyanz NLayerDiscriminator): conv4x4 s2 LeakyReLU(0.2), then
    n_layers-1 conv4x4 s2 + BatchNorm + LeakyReLU with channels doubling (capped at 8x width), one conv4x4 s1 + BN
    + LeakyReLU, and a final conv4x4 s1 to 1 channel (logits, no sigmoid).

    in_channels: channels of the (stacked) input, e.g. 6 for an RGB image pair.
    width: channels of the first convolution (pix2pix's ndf, 64).
    n_layers: stride-2 convolutions; the receptive field is `receptive_field(n_layers)`.
    init_gain: std of pix2pix's N(0, gain) weight init; None keeps PyTorch's default init.
    """

    def __init__(self, in_channels: int, width: int = 64, n_layers: int = 3, init_gain: float | None = 0.02):
        super().__init__()
        check_n_layers(n_layers)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, KERNEL, stride=2, padding=PADDING),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        multiplier = 1
        for n in range(1, n_layers + 1):
            previous, multiplier = multiplier, min(2 ** n, MAX_WIDTH_MULTIPLIER)
            stride = 2 if n < n_layers else 1          # the last of these is pix2pix's stride-1 layer
            layers += [
                nn.Conv2d(width * previous, width * multiplier, KERNEL, stride=stride, padding=PADDING, bias=False),
                nn.BatchNorm2d(width * multiplier),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers.append(nn.Conv2d(width * multiplier, 1, KERNEL, stride=1, padding=PADDING))
        self.model = nn.Sequential(*layers)
        self.n_layers = n_layers
        if init_gain is not None:
            self.apply(lambda m: init_pix2pix_weights(m, init_gain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, 1, h, w) patch logits; (B, 1, 30, 30) for 256 x 256, n_layers=3."""
        return self.model(x)
