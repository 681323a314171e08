"""The plain CNN baseline: the reference recipe every paper is measured against.

Four conv stages (conv3x3-BN-ReLU twice, then 2x2 max-pool), global average pooling, a
dropout and a linear classifier. `features` returns the penultimate, pooled vector: what the
identity-leakage probe and t-SNE look at.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class PlainCNN(nn.Module):
    """A VGG-style CNN: `in_channels` x H x W image -> `num_classes` logits.

    width: channels of the first stage; each later stage doubles it (w, 2w, 4w, 8w).
    in_channels: 3 for RGB, 1 for greyscale, 6 for the two-image oracle [apex, neutral].
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32, dropout: float = 0.0):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        stages, c = [], in_channels
        for w in widths:
            stages.append(conv_stage(c, w))
            c = w
        self.trunk = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c, num_classes)
        self.feature_dim = c

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


class BaselineTask:
    """The engine's task for PlainCNN: cross-entropy, one Adam optimiser."""

    def __init__(self, model: PlainCNN, lr: float, weight_decay: float):
        self.model = model
        self.modules = {"model": model}
        self.optimizers = {"model": torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)}
        self.schedulers = {}
        self.device = torch.device("cpu")  # set by the engine

    def train_step(self, batch, step: int) -> dict[str, float]:
        opt = self.optimizers["model"]
        opt.zero_grad(set_to_none=True)
        with self.amp.autocast():
            loss = nn.functional.cross_entropy(self.model(batch["image"]), batch["label"])
        self.amp.backward(loss)
        self.amp.step(opt)
        return {"loss": loss.item()}

    def predict(self, batch):
        features = self.model.features(batch["image"])
        return self.model.classifier(features), batch["label"], features
