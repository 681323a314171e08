"""SCN (Wang et al., CVPR 2020, "Suppressing Uncertainties for Large-Scale Facial Expression
Recognition"): the comparator of EAN's Tables 3-4.

A ResNet-18 reads the face; its pooled feature x feeds the classifier FC and a self-attention
importance branch alpha = sigmoid(FC(x)) (one weight per image). Three parts:

    logits  = alpha * FC(x)                                 logit-weighted cross-entropy
    L_RR    = max(0, delta1 - (mean alpha_H - mean alpha_L))  rank regularisation: the top beta share
                                                          of the batch by alpha (H) against the rest (L)
    relabel   from epoch `relabel_epoch` on, a training image whose most probable class beats its
              current label's probability by more than delta2 takes that class as its label, for the
              rest of training (the labels live in a buffer, so a resumed run keeps them)

Details settled from the authors' public train.py (read, not copied): beta 0.7, delta1 0.15,
delta2 0.2, relabelling from epoch 10 with the softmax of the weighted logits of the step's forward
pass, the loss CE(alpha * FC(x), y) + L_RR. Not taken from it: their noise script is unseeded and
flips each label with probability p (our noise flips an exact, seeded share), and their loop keeps
the checkpoints that score best on the test split (ours selects on validation, tests once).

At test time alpha > 0 only rescales an image's logits, so the prediction is argmax FC(x).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ferlib.errors import FerlibError
from ferlib.nn.optim import make_optimizer
from ferlib.nn.backbones import make_backbone


def rank_regularisation(weights: torch.Tensor, beta: float = 0.7, margin: float = 0.15) -> torch.Tensor:
    """L_RR = max(0, margin - (mean of the top round-down(beta B) weights - mean of the others))."""
    weights = weights.view(-1)
    high = int(len(weights) * beta)
    if not 0 < high < len(weights):
        raise FerlibError(f"rank regularisation needs both groups non-empty: batch {len(weights)}, beta {beta}")
    ordered = torch.sort(weights, descending=True).values
    return F.relu(margin - (ordered[:high].mean() - ordered[high:].mean()))


def relabel(logits: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(new labels, which changed): a sample takes its most probable class where P_max - P_label > margin."""
    p = torch.softmax(logits.detach().float(), dim=1)
    p_max, predicted = p.max(dim=1)
    p_label = p.gather(1, labels.view(-1, 1)).squeeze(1)
    changed = (p_max - p_label) > margin
    return torch.where(changed, predicted, labels), changed


class SCN(nn.Module):
    """ResNet-18, the classifier FC and the importance branch; `labels` is the training set's current
    labels by dataset index (-1: not a training image)."""

    def __init__(self, num_classes: int, train_index: torch.Tensor, train_labels: torch.Tensor, in_channels: int = 3,
                 width_divisor: int = 1, pretrained: str | None = None):
        super().__init__()
        self.backbone = make_backbone("resnet18", in_channels, width_divisor, pretrained)
        self.fc = nn.Linear(self.backbone.feature_dim, num_classes)
        self.importance = nn.Sequential(nn.Linear(self.backbone.feature_dim, 1), nn.Sigmoid())
        train_index = torch.as_tensor(train_index, dtype=torch.long)
        table = torch.full((int(train_index.max()) + 1,), -1, dtype=torch.long)
        table[train_index] = torch.as_tensor(train_labels, dtype=torch.long)
        self.register_buffer("labels", table)
        self.register_buffer("given", table.clone())     # the labels as given (noisy ones included)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(importance weights (B, 1), weighted logits alpha * FC(x), features x)."""
        features = self.backbone(x)
        weights = self.importance(features)
        return weights, weights * self.fc(features), features

    def current_labels(self, index: torch.Tensor) -> torch.Tensor:
        if (index < 0).any() or (index >= len(self.labels)).any() or (self.labels[index] < 0).any():
            raise FerlibError("an SCN training batch holds an image that is not in its training set's label table")
        return self.labels[index]


class SCNTask:
    """The engine's task: SGD on CE(alpha FC(x), y) + L_RR, lr / 10 every `lr_step` epochs, relabelling
    from epoch `relabel_epoch` (counted from 1, as the authors' loop)."""

    def __init__(self, model: SCN, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4,
                 lr_step: int = 20, beta: float = 0.7, margin_rank: float = 0.15, margin_relabel: float = 0.2,
                 relabel_epoch: int = 10, optimizer: str = "sgd"):
        self.model = model
        self.beta, self.margin_rank, self.margin_relabel, self.relabel_epoch = beta, margin_rank, margin_relabel, relabel_epoch
        self.modules = {"scn": model}
        self.optimizers = {"net": make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)}
        self.schedulers = {"net": torch.optim.lr_scheduler.StepLR(self.optimizers["net"], lr_step, 0.1)}
        self.device = torch.device("cpu")  # set by the engine

    def epoch(self) -> int:
        """The epoch being trained, from 1 (the scheduler counts finished epochs; it is checkpointed)."""
        return self.schedulers["net"].last_epoch + 1

    def train_step(self, batch, step: int) -> dict[str, float]:
        index = batch["index"]
        labels = self.model.current_labels(index)
        self.optimizers["net"].zero_grad(set_to_none=True)
        with self.amp.autocast():
            weights, logits, _ = self.model(batch["image"])
            ce = F.cross_entropy(logits, labels)
            rr = rank_regularisation(weights, self.beta, self.margin_rank)
            loss = ce + rr
        self.amp.backward(loss)
        self.amp.step(self.optimizers["net"])
        changed = torch.zeros_like(labels, dtype=torch.bool)
        if self.epoch() >= self.relabel_epoch:
            new, changed = relabel(logits, labels, self.margin_relabel)
            self.model.labels[index] = new
        return {"loss": loss.item(), "ce": ce.item(), "rank": rr.item(), "relabelled": float(changed.sum())}

    def predict(self, batch):
        _, _, features = self.model(batch["image"])
        return self.model.fc(features), batch["label"], features
