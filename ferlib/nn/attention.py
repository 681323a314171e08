"""SAGAN-style self-attention, as drawn in IF-GAN's Fig. 4.

IF-GAN (Cai et al.) puts three of these modules in its U-Net generator so that a pixel of the
generated "average" face can draw on distant regions (the lips while drawing the cheeks). The
module follows SAGAN (Zhang et al. 2019) and the figure:

- query f(x) and key g(x): 1x1 convolutions C1 -> C2 (the figure's green/red boxes),
- value h(x): a 1x1 convolution C1 -> C1 (the magenta box),
- attention A = softmax over each row of f(x)^T g(x), an N x N matrix for N = H * W positions,
- output gamma * (value attended by A) + x, with gamma a learnable scalar that starts at 0, so a
  freshly built module is the identity and the network learns how much attention to mix in.

Positions are numbered row-major: the feature at (y, x) of an H x W map is position
i = y * W + x. Row i of the attention matrix holds the weights that query position i gives to
every key position j (the row sums to 1); `row.view(H, W)` is the attention map that IF-GAN's
Fig. 6 draws for the query point (y, x).

SAGAN wraps these convolutions in spectral normalisation; IF-GAN does not say it does, so this
module uses plain convolutions (with biases, as SAGAN's PyTorch code does). Memory grows as N^2:
one 56 x 56 map (Fig. 3's last module) needs a 3136 x 3136 matrix per image.
"""

from __future__ import annotations

import torch
from torch import nn


def query_position(y: int, x: int, width: int) -> int:
    """The attention-matrix row of the query point (y, x) on a map `width` positions wide."""
    return y * width + x


class SelfAttention(nn.Module):
    """SAGAN-style self-attention (IF-GAN Fig. 4): 1x1 query/key convs C1 -> C2, 1x1 value conv C1 -> C1,
    row-wise softmax over positions, output gamma * attended + x, gamma a learnable scalar starting at 0.

    channels: C1, the channels of the input (and output) feature map.
    reduction: C2 = max(1, channels // reduction); SAGAN uses 8.
    keep_attention: when True, `forward` stores the (detached) attention matrix in `last_attention`
        for visualisation; off by default so training does not hold an extra N x N tensor.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        reduced = max(1, channels // reduction)
        self.channels = channels
        self.reduced_channels = reduced
        self.query = nn.Conv2d(channels, reduced, kernel_size=1)
        self.key = nn.Conv2d(channels, reduced, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.keep_attention: bool = False
        self.last_attention: torch.Tensor | None = None

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, N) attention weights for a (B, C1, H, W) map; row i (query i = y * W + x) sums to 1."""
        b, _, h, w = x.shape
        queries = self.query(x).view(b, -1, h * w).transpose(1, 2)   # (B, N, C2)
        keys = self.key(x).view(b, -1, h * w)                         # (B, C2, N)
        return torch.softmax(torch.bmm(queries, keys), dim=-1)        # (B, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """gamma * attended + x, the same shape as x; exactly x while gamma is 0.

        The attended value is computed even when gamma is 0: gamma's gradient is the attended
        value itself, so skipping it would freeze gamma at 0 for ever.
        """
        b, c, h, w = x.shape
        weights = self.attention(x)                                   # (B, N, N)
        if self.keep_attention:
            self.last_attention = weights.detach()
        values = self.value(x).view(b, c, h * w)                      # (B, C1, N)
        # out[:, :, i] = sum_j values[:, :, j] * weights[:, i, j]
        attended = torch.bmm(values, weights.transpose(1, 2)).view(b, c, h, w)
        return self.gamma * attended + x
