"""The optimiser a task steps, by name: the paper's SGD, or Adam where a preset deviates (say why)."""

from __future__ import annotations

import torch

from ferlib.errors import FerlibError

OPTIMIZERS = ("sgd", "adam")


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
    """SGD with momentum, or Adam (betas 0.9, 0.999; `momentum` unused), both with L2 weight decay."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise FerlibError(f"optimizer {name!r}: choose {' or '.join(OPTIMIZERS)}")
