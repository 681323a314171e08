"""Centre loss (Wen et al. 2016) and island loss (Cai et al. 2018; IF-GAN Eq. 5).

Both keep one learnable centre per class in feature space and pull each feature towards its
class's centre, which shrinks intra-class variation. Island loss adds a term that pushes the
centres apart by their cosine similarity, which widens inter-class gaps: IF-GAN trains its
ResNet-101 expression classifier with it (and, for a fair comparison, the baseline too).

    L_IL = sum_i ||x_i - c_{y_i}||^2 + alpha * sum_j sum_{k != j} (cos(c_k, c_j) + 1)      (Eq. 5)

Reductions of the first (centre) term:

- "sum": exactly Eq. 5, summed over the M images of the batch, so it grows with the batch size;
- "mean" (default): averaged over the batch, what centre-loss implementations do, so the loss
  weight (IF-GAN's lambda_4) and the centres' learning rate do not depend on the batch size.

The pairwise (island) term is the same under both reductions: it runs over all N classes (not
only those in the batch) and over ordered pairs j != k, exactly as written, so every unordered
pair counts twice. Each summand lies in [0, 2]: 0 for opposite centres, 1 for orthogonal ones, 2
for centres pointing the same way.

Centres start as `init_std * torch.randn` (std 1 by default, as the widely used PyTorch centre
loss of KaiyangZhou does), not zeros: the cosine of a zero centre is undefined. (Cosines use
F.normalize, which clamps norms at 1e-12: a zero centre gives cosine 0 in the forward pass but a
gradient of order 1e12, so zero centres would blow up at the first island step.) In a 2048-d
ResNet feature space std-1 centres have norm about 45, so the centre term starts large; with
lr 0.5 the centres reach the class means within a few dozen steps. Pass a smaller `init_std`
for a gentler start.

How the centres learn: they are an `nn.Parameter` of the loss, updated by their OWN optimiser
(`centre_optimizer`, plain SGD), never by the network's. Call `backward` on the total loss, then
step both optimisers. For the "mean" reduction the gradient of the centre term wrt c_k is
-(2 / M) * sum_{i: y_i = k} (x_i - c_k), so one SGD step of rate lr moves c_k to

    c_k + 2 * lr * (n_k / M) * (mean_k - c_k)        (n_k images of class k in the batch)

towards the batch's class mean: Wen et al.'s moving update c_k + a * n_k / (1 + n_k) * (mean_k - c_k)
up to the scale of the step. With lr = 0.5 (Wen et al.'s alpha) the step is the fraction n_k / M
of the way, never past the mean. With "sum" the step is 2 * lr * n_k of the way, which overshoots
once 2 * lr * n_k > 1: use lr <= 1 / (2 * largest n_k) there. A loss weight (lambda_4) multiplies
this gradient too. The island term adds its own gradient (alpha times the cosine's), which
rotates the centres away from each other.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ferlib.errors import FerlibError

REDUCTIONS = ("mean", "sum")


class CenterLoss(nn.Module):
    """Wen et al. 2016's centre term: sum (or batch mean) of ||x_i - c_{y_i}||^2.

    num_classes, feature_dim: the shape of `centers`, (num_classes, feature_dim).
    reduction: "mean" (default, averaged over the batch) or "sum" (summed, as Eq. 5 writes it).
    init_std: the centres start as init_std * randn (see the module docstring for why not zeros).
    """

    def __init__(self, num_classes: int, feature_dim: int, reduction: str = "mean", init_std: float = 1.0):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise FerlibError(f"centre-loss reduction {reduction!r} is not one of {', '.join(REDUCTIONS)}")
        if num_classes < 1 or feature_dim < 1:
            raise FerlibError(f"a centre loss needs num_classes >= 1 and feature_dim >= 1, "
                              f"got {num_classes} and {feature_dim}")
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.reduction = reduction
        self.centers = nn.Parameter(init_std * torch.randn(num_classes, feature_dim))

    def check_inputs(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Stop with a readable error on shapes or labels that do not fit the centres."""
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise FerlibError(f"{type(self).__name__} expects features of shape (batch, {self.feature_dim}), "
                              f"got {tuple(features.shape)}")
        if labels.shape != features.shape[:1]:
            raise FerlibError(f"{type(self).__name__} expects one label per feature row, got labels of shape "
                              f"{tuple(labels.shape)} for features of shape {tuple(features.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise FerlibError(f"{type(self).__name__} has {self.num_classes} classes; labels must lie in "
                              f"0..{self.num_classes - 1}, got {int(labels.min())}..{int(labels.max())}")

    def centre_term(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The first term of Eq. 5 under `self.reduction`."""
        self.check_inputs(features, labels)
        squared = (features - self.centers[labels]).pow(2).sum(dim=1)
        return squared.sum() if self.reduction == "sum" else squared.mean()

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """features: (B, feature_dim); labels: (B,) class indices. A scalar loss."""
        return self.centre_term(features, labels)


class IslandLoss(CenterLoss):
    """Cai et al. 2018's island loss, IF-GAN Eq. 5: the centre term plus alpha times the pairwise
    term sum_{j != k} (cos(c_k, c_j) + 1) over ordered pairs of all classes' centres.

    alpha: 0.03 in IF-GAN; alpha = 0 gives `CenterLoss` exactly.
    """

    def __init__(self, num_classes: int, feature_dim: int, alpha: float = 0.03, reduction: str = "mean",
                 init_std: float = 1.0):
        super().__init__(num_classes, feature_dim, reduction=reduction, init_std=init_std)
        self.alpha = alpha

    def island_term(self) -> torch.Tensor:
        """sum_j sum_{k != j} (cos(c_k, c_j) + 1), without alpha."""
        unit = F.normalize(self.centers, dim=1)
        similarity = unit @ unit.t()
        off_diagonal = ~torch.eye(self.num_classes, dtype=torch.bool, device=similarity.device)
        return (similarity[off_diagonal] + 1).sum()

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.centre_term(features, labels)
        if self.alpha != 0:
            loss = loss + self.alpha * self.island_term()
        return loss


def centre_optimizer(loss: CenterLoss, lr: float = 0.5) -> torch.optim.SGD:
    """Plain SGD over `loss.centers` only: the centres' own optimiser and learning rate.

    Centre-loss practice (Wen et al.: SGD, alpha = 0.5) keeps the centres out of the network's
    optimiser: that one has weight decay and Adam's per-parameter scaling, which would shrink the
    centres and change their step. So build the network's optimiser from the network's
    parameters only (never from a module that holds the loss), and each step:

        net_opt.zero_grad(); centre_opt.zero_grad()
        total_loss.backward()          # fills the centres' .grad too
        net_opt.step(); centre_opt.step()

    See the module docstring for how far one step moves a centre, and the rate to use with
    reduction="sum".
    """
    return torch.optim.SGD([loss.centers], lr=lr, momentum=0.0, weight_decay=0.0)
