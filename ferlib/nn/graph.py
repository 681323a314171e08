"""A graph over a mini-batch: cosine similarity, a thresholded adjacency, its label regulariser,
and Kipf and Welling's graph convolution (EAN, Du et al., Sec. 2.3).

    C  = cosine_similarity_matrix(F)                      (Eq. 3)
    A  = hard_adjacency(C, tau1, tau2)                    (Eq. 4; tau2=None: the single-tau form)
    A  = soft_adjacency(C, tau1, tau2, temperature)       a differentiable relaxation of Eq. 4
    M  = label_mask(labels)                               (Eq. 5)
    L  = adjacency_loss(A, M, alpha)                      (Eq. 6)
    Z  = GraphConvolution(A, X)                           (Eq. 8: D~^-1/2 (A + I) D~^-1/2 X Theta)

A hard threshold has zero gradient almost everywhere, so Eq. 6 through `hard_adjacency` trains
nothing. `soft_adjacency` replaces each step 1[c >= tau] by sigmoid((c - tau) / temperature),
which tends to the hard form as the temperature goes to 0 (except exactly at c = tau).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ferlib.errors import FerlibError


def cosine_similarity_matrix(features: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(B, D) features -> (B, B) cosine similarities C_s(i, j) = F_i . F_j / (|F_i| |F_j|)   (Eq. 3).

    A norm below `eps` is taken as `eps` (an all-zero post-ReLU feature then has similarity 0, and a
    gradient of at most 1 / eps instead of 1e8)."""
    if features.dim() != 2:
        raise FerlibError(f"cosine_similarity_matrix takes (batch, dims) features, got shape {tuple(features.shape)}")
    unit = F.normalize(features, dim=1, eps=eps)
    return unit @ unit.t()


def check_thresholds(tau1: float, tau2: float | None) -> None:
    if tau2 is not None and not tau2 < tau1:
        raise FerlibError(f"Eq. 4 needs tau2 < tau1, got tau1={tau1}, tau2={tau2}")


def hard_adjacency(similarity: torch.Tensor, tau1: float, tau2: float | None = None) -> torch.Tensor:
    """Eq. 4: 1 where C_s >= tau1 ("similar"), 1 where C_s <= tau2 ("opposite"), else 0.
    With tau2=None, the single-threshold form: 1 where C_s >= tau1. No gradient."""
    check_thresholds(tau1, tau2)
    a = (similarity >= tau1)
    if tau2 is not None:
        a = a | (similarity <= tau2)
    return a.to(similarity.dtype)


def soft_adjacency(similarity: torch.Tensor, tau1: float, tau2: float | None = None,
                   temperature: float = 0.05) -> torch.Tensor:
    """Eq. 4 relaxed: sigmoid((C_s - tau1) / T) [+ sigmoid((tau2 - C_s) / T)], in [0, 1].

    Differentiable in C_s (and so in the features); tends to `hard_adjacency` as T -> 0."""
    check_thresholds(tau1, tau2)
    if not temperature > 0:
        raise FerlibError(f"the relaxation's temperature must be > 0, got {temperature}")
    a = torch.sigmoid((similarity - tau1) / temperature)
    if tau2 is not None:
        a = a + torch.sigmoid((tau2 - similarity) / temperature)  # the two ranges are disjoint: the sum stays <= 1
    return a.clamp(max=1.0)


def label_mask(labels: torch.Tensor) -> torch.Tensor:
    """Eq. 5: A_mask(i, j) = 1 where label_i == label_j, else 0 (the diagonal is 1)."""
    labels = labels.view(-1)
    return (labels[:, None] == labels[None, :]).float()


def adjacency_loss(adjacency: torch.Tensor, mask: torch.Tensor, alpha: float = 0.1,
                   normalise: bool = False) -> torch.Tensor:
    """Eq. 6: alpha (sum_ij A_mask * A - sum_ij A_mask)^2.

    The printed form grows with the square of the number of same-label pairs (about B^2 / classes,
    so with the fourth power of the batch size). `normalise=True` divides the difference by
    sum_ij A_mask first: alpha times the squared share of same-label pairs the graph leaves
    unlinked, in [0, alpha] whatever the batch size."""
    mask = mask.to(adjacency.dtype)
    difference = (mask * adjacency).sum() - mask.sum()
    if normalise:
        difference = difference / mask.sum().clamp(min=1.0)
    return alpha * difference ** 2


def normalized_adjacency(adjacency: torch.Tensor) -> torch.Tensor:
    """D~^-1/2 (A + I) D~^-1/2 with D~_ii = sum_j (A + I)_ij (Kipf and Welling; Eq. 8)."""
    if adjacency.dim() != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise FerlibError(f"an adjacency matrix is square (B, B), got shape {tuple(adjacency.shape)}")
    a_tilde = adjacency + torch.eye(adjacency.shape[0], dtype=adjacency.dtype, device=adjacency.device)
    d = a_tilde.sum(dim=1).rsqrt()   # >= 1 on the diagonal, so the degree is never 0
    return d[:, None] * a_tilde * d[None, :]


class GraphConvolution(nn.Module):
    """One graph convolution: Z = D~^-1/2 (A + I) D~^-1/2 X Theta   (Eq. 8)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)   # Theta (and a bias)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return normalized_adjacency(adjacency) @ self.linear(x)


class GCN(nn.Module):
    """Stacked graph convolutions with ReLU between them (Sec. 2.3.2: "stacking multiple GCN layers").

    dims: (in, hidden..., out), e.g. (512, 256, 256) for two layers. A ReLU follows every layer but
    the last when `last_relu` is False."""

    def __init__(self, dims: tuple[int, ...], last_relu: bool = True, dropout: float = 0.0):
        super().__init__()
        if len(dims) < 2:
            raise FerlibError(f"a GCN needs at least (in, out) dims, got {dims}")
        self.layers = nn.ModuleList(GraphConvolution(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.last_relu, self.dropout = last_relu, dropout
        self.out_features = dims[-1]

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(F.dropout(x, self.dropout, self.training), adjacency)
            if i < len(self.layers) - 1 or self.last_relu:
                x = F.relu(x)
        return x
