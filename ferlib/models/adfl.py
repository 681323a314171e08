"""ADFL (Bai, Xie, Shen, ICIP 2019): adversarial disentangled feature learning.

An expressive face is read as a neutral face plus an expressive component. Shared layers S (Conv1-
Conv3 of a half-width SphereFace-20, Table 1) feed two parallel branches:

    ADFL-d  f_e = B_e(S(x))                       (Eq. 1)  -> splitter (N-1 expressions), l_d (Eq. 2)
    ADFL-n  f_n = B_n(S(x))                       -> dispeller (N classes, incl. neutral):
                                                      l_a (cross-entropy) trains the dispeller,
                                                      l_n (Eq. 4) pushes its prediction to uniform
    ADFL-r  f_r = f_e - f_n                       (Eq. 5)  -> FC-256 -> AM-Softmax over N-1 (Eq. 6), l_r (Eq. 7)

    L = l_d * ld + l_n * (la + ln) + l_r * lr     (Eq. 8; lambdas 1, 10, 1)

Gradient routing (Sec. 2.2-2.4, Fig. 2), enforced with detach() so that one backward pass of Eq. 8
gives every parameter exactly the gradient the paper describes:

    l_d  -> splitter, B_e, S
    l_a  -> dispeller only              (f_n detached)
    l_n  -> B_n, S only                 (the dispeller's weights detached)
    l_r  -> residual FC and classifier  (f_e and f_n detached)

l_d, l_n and l_r are zero for neutral samples (their losses are averaged over the batch's
non-neutral samples); l_a sees every sample. Only the residual branch classifies: its N-1 outputs
are the non-neutral classes, so ADFL, like the paper, is scored on the expressive images.

`mode="baseline"` is the paper's baseline: S and B_e with the AM-Softmax classifier in place of the
splitter, trained with AM-Softmax alone.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ferlib.errors import FerlibError
from ferlib.nn.margin import AdditiveMarginSoftmax
from ferlib.nn.sphereface import downsampled, sphere_stage

MODES = ("adfl", "baseline")
PAPER_WIDTHS = (32, 64, 128, 256)   # Conv1, Conv2, Conv3, branch: SphereFace-20's widths halved (Table 1)
PAPER_UNITS = (1, 2, 4, 1)          # residual units per stage, as SphereFace-20


class Branch(nn.Sequential):
    """B_e or B_n (Table 1): [3x3, c] x 1, S-2; [3x3, c; 3x3, c] x units; FC-`feature_dim`."""

    def __init__(self, c_in: int, c_out: int, units: int, map_size: tuple[int, int], feature_dim: int):
        super().__init__(sphere_stage(c_in, c_out, units), nn.Flatten(1),
                         nn.Linear(c_out * map_size[0] * map_size[1], feature_dim))


def expressive_labels(labels: torch.Tensor, neutral: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(index among the N-1 non-neutral classes, mask of non-neutral samples); neutral samples get 0."""
    mask = labels != neutral
    return torch.where(mask, labels - (labels > neutral).long(), torch.zeros_like(labels)), mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over `mask`; 0 (still in the graph) when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def uniform_target_loss(logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4 per sample: -(1/N) sum_i log y_i, the cross-entropy to the uniform distribution."""
    return -F.log_softmax(logits, dim=1).mean(dim=1)


class ADFL(nn.Module):
    """ADFL's networks. `num_classes` counts neutral (N); the classifier and splitter have N-1 outputs."""

    def __init__(self, num_classes: int, neutral_index: int, in_channels: int = 3,
                 input_size: tuple[int, int] = (112, 96), widths: Sequence[int] = PAPER_WIDTHS,
                 units: Sequence[int] = PAPER_UNITS, feature_dim: int = 256, s: float = 30.0, m: float = 0.35,
                 mode: str = "adfl"):
        super().__init__()
        if mode not in MODES:
            raise FerlibError(f"ADFL mode {mode!r}: valid modes are {', '.join(MODES)}")
        if not 0 <= neutral_index < num_classes:
            raise FerlibError(f"neutral_index {neutral_index} is not one of the {num_classes} classes: ADFL needs "
                              "neutral among its classes (the protocol's `neutral: first` frames)")
        if len(widths) != 4 or len(units) != 4:
            raise FerlibError(f"ADFL needs four stages (Conv1-3 and the branch), got widths {widths}, units {units}")
        self.mode, self.num_classes, self.neutral_index = mode, num_classes, neutral_index
        self.input_size = tuple(input_size)
        channels = [in_channels, *widths]
        self.shared = nn.Sequential(*[sphere_stage(channels[i], channels[i + 1], units[i]) for i in range(3)])  # S
        map_size = tuple(downsampled(s_, 4) for s_ in self.input_size)
        branch = lambda: Branch(widths[2], widths[3], units[3], map_size, feature_dim)  # noqa: E731
        self.expression_branch = branch()                                      # B_e
        self.classifier = AdditiveMarginSoftmax(feature_dim, num_classes - 1, s=s, m=m)
        if mode == "adfl":
            self.splitter = nn.Linear(feature_dim, num_classes - 1)             # W_e, b_e (Eq. 2)
            self.neutral_branch = branch()                                     # B_n
            self.dispeller = nn.Linear(feature_dim, num_classes)                # W_n, b_n (Eq. 3)
            self.residual_fc = nn.Linear(feature_dim, feature_dim)              # B_r's FC-256

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every feature of Fig. 2: f_e, and for ADFL f_n, f_r = f_e - f_n and h_r = FC(f_r);
        `classified` is what the classifier reads (h_r, or f_e for the baseline)."""
        if tuple(x.shape[-2:]) != self.input_size:
            raise FerlibError(f"ADFL was built for {self.input_size[0]}x{self.input_size[1]} inputs, got "
                              f"{x.shape[-2]}x{x.shape[-1]}: build it with input_size={tuple(x.shape[-2:])}")
        shared = self.shared(x)
        f_e = self.expression_branch(shared)                                   # Eq. 1
        if self.mode == "baseline":
            return {"f_e": f_e, "classified": f_e}
        f_n = self.neutral_branch(shared)
        f_r = f_e - f_n                                                        # Eq. 5
        h_r = self.residual_fc(f_r)
        return {"f_e": f_e, "f_n": f_n, "f_r": f_r, "h_r": h_r, "classified": h_r}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Test-time logits over the N-1 non-neutral classes (s cos, Eq. 6 without the margin)."""
        return self.classifier(self.encode(x)["classified"])

    def losses(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The losses of one batch with the paper's gradient routing (see the module docstring)."""
        expressive, mask = expressive_labels(labels, self.neutral_index)
        shared = self.shared(x)
        f_e = self.expression_branch(shared)
        if self.mode == "baseline":
            return {"ams": masked_mean(self.classifier.loss(f_e, expressive, reduction="none"), mask)}
        f_n = self.neutral_branch(shared)
        # Eq. 2: the splitter's cross-entropy; reaches the splitter, B_e and S
        l_d = masked_mean(F.cross_entropy(self.splitter(f_e), expressive, reduction="none"), mask)
        # l_a: the dispeller learns the expression (all N classes) from f_n; f_n detached: dispeller only
        l_a = F.cross_entropy(self.dispeller(f_n.detach()), labels)
        # Eq. 4: B_n and S make the dispeller's prediction uniform; its weights detached: they stay put
        fooled = F.linear(f_n, self.dispeller.weight.detach(), self.dispeller.bias.detach())
        l_n = masked_mean(uniform_target_loss(fooled), mask)
        # Eq. 5-7: the residual, from detached f_e and f_n; reaches only B_r's FC and the classifier
        h_r = self.residual_fc(f_e.detach() - f_n.detach())
        l_r = masked_mean(self.classifier.loss(h_r, expressive, reduction="none"), mask)
        return {"l_d": l_d, "l_a": l_a, "l_n": l_n, "l_r": l_r}


class ADFLTask:
    """The engine's task: one Adam step on Eq. 8 (or on AM-Softmax alone for the baseline)."""

    def __init__(self, model: ADFL, lr: float = 1e-4, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 5e-4, lambdas=(1.0, 10.0, 1.0)):
        self.model, self.lambdas = model, tuple(lambdas)
        self.modules = {"adfl": model}
        self.optimizers = {"adam": torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps,
                                                    weight_decay=weight_decay)}
        self.schedulers = {}
        self.device = torch.device("cpu")  # set by the engine

    def total_loss(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.model.mode == "baseline":
            return parts["ams"]
        lambda_d, lambda_n, lambda_r = self.lambdas
        return lambda_d * parts["l_d"] + lambda_n * (parts["l_a"] + parts["l_n"]) + lambda_r * parts["l_r"]  # Eq. 8

    def train_step(self, batch, step: int) -> dict[str, float]:
        optimizer = self.optimizers["adam"]
        optimizer.zero_grad(set_to_none=True)
        with self.amp.autocast():
            parts = self.model.losses(batch["image"], batch["label"])
            loss = self.total_loss(parts)
        self.amp.backward(loss)
        self.amp.step(optimizer)
        return {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}}

    def predict(self, batch):
        """Logits over the N-1 non-neutral classes, their labels and the classifier's features, for
        the batch's non-neutral images only (neutral images are not classified, Sec. 2.4-2.5).
        With ten crops per image (B, 10, C, h, w), logits and features are the mean over the crops."""
        labels, mask = expressive_labels(batch["label"], self.model.neutral_index)
        images = batch["image"][mask]
        if images.ndim == 5:
            b, k = images.shape[:2]
            features = self.model.encode(images.flatten(0, 1))["classified"]
            logits = self.model.classifier(features).reshape(b, k, -1).mean(1)
            return logits, labels[mask], features.reshape(b, k, -1).mean(1)
        features = self.model.encode(images)["classified"]
        return self.model.classifier(features), labels[mask], features
