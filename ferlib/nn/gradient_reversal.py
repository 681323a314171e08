"""Gradient reversal (Ganin et al., "Domain-adversarial training of neural networks", JMLR 2016).

The identity in the forward pass; in the backward pass the incoming gradient times -lambda. Put between
a feature and a discriminator of it, one minimisation trains the discriminator to tell its classes
apart and the feature's producer to make them indistinguishable (the min-max of a domain-adversarial
loss in a single backward pass).

    reversed = GradientReversal(1.0)(features)      # D sees features; the encoder gets -grad
"""

from __future__ import annotations

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """x in the forward pass; -scale * grad in the backward pass."""
    return _ReverseGradient.apply(x, float(scale))


class GradientReversal(nn.Module):
    """The gradient reversal layer as a module; `scale` is Ganin et al.'s lambda."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
