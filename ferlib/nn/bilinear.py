"""Bilinear pooling (Lin et al., "Bilinear CNNs", 2015), as EIFN's fusion module (Eqs. 3-4) uses it.

At every location l the outer product of the two descriptors a_l (Ca) and b_l (Cb) is taken,
vectorised, and summed over the locations:

    F = sum_l vec(a_l b_l^T)            (Ca * Cb values; row index from a, column index from b)

For maps flattened to A (Ca x L) and B (Cb x L) that is the matrix product A B^T, one batched
`bmm` for the whole batch (no Python loop over locations or channels). F then goes through the
signed square root y = sign(F) sqrt(|F|) and L2 normalisation z = y / ||y||_2. The square root's
derivative is infinite at 0 (and ReLU maps give exact zeros), so it is taken of |F| + eps.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ferlib.errors import FerlibError


def bilinear_pool(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, Ca, H, W), (B, Cb, H, W) -> (B, Ca * Cb): sum over locations of the outer products (Eqs. 3-4)."""
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise FerlibError(f"bilinear pooling needs maps of the same batch and spatial size, got {tuple(a.shape)} "
                          f"and {tuple(b.shape)}")
    return torch.bmm(a.flatten(2), b.flatten(2).transpose(1, 2)).flatten(1)


def signed_sqrt(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """sign(x) sqrt(|x| + eps): the signed square root, with a finite gradient at 0."""
    return torch.sign(x) * torch.sqrt(x.abs() + eps)


class BilinearFusion(nn.Module):
    """Bilinear pooling, signed square root and L2 normalisation: the vector EIFN classifies."""

    def __init__(self, eps: float = 1e-10):
        super().__init__()
        self.eps = eps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.normalize(signed_sqrt(bilinear_pool(a, b), self.eps), dim=1)
