"""Margin softmax heads.

Additive margin softmax (AM-Softmax, Wang et al., IEEE SPL 2018), as ADFL's Eq. 6 uses it: with
features f and class weights W_j both L2-normalised, cos_j = W_j^T f, and

    p(y | f) = exp(s (cos_y - m)) / (exp(s (cos_y - m)) + sum_{j != y} exp(s cos_j))

The margin m is subtracted from the true class's cosine in training only; at test time the logits
are s cos_j (the argmax is the same as that of the cosines).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class AdditiveMarginSoftmax(nn.Module):
    """Cosine classifier with an additive margin: `logits(f)` for prediction, `loss(f, y)` for training."""

    def __init__(self, in_features: int, num_classes: int, s: float = 30.0, m: float = 0.35):
        super().__init__()
        self.s, self.m = float(s), float(m)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """cos_j = W_j^T f with both normalised: (B, num_classes) in [-1, 1]."""
        return F.linear(F.normalize(features, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Test-time logits s * cos_j (no margin)."""
        return self.s * self.cosine(features)

    def margin_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """s * (cos_j - m [j = y]): the logits inside Eq. 6's softmax."""
        cos = self.cosine(features)
        return self.s * (cos - self.m * F.one_hot(labels, cos.shape[1]).to(cos.dtype))

    def loss(self, features: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """-log p(y | f) of Eq. 6, per sample or reduced."""
        return F.cross_entropy(self.margin_logits(features, labels), labels, reduction=reduction)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, s={self.s}, m={self.m}"
