"""EIFN (Zhang, Su, Wang, ICIP 2019): expression-identity fusion network.

Two VGG-16 extractors read the same face (Fig. 1):

    F_id  = I(x)   identity-related maps   (Eq. 1)    conv5_3 + ReLU
    F_exp = E(x)   expression-related maps (Eq. 2)

Face-recognition branch: F_id -> max pooling -> FC1 (the identity feature, with centre loss) ->
FC2 -> softmax over the training subjects. Expression branch: bilinear fusion of F_id and F_exp
(outer product per location, sum-pooled, Eqs. 3-4), signed square root, L2 normalisation, then the
expression softmax.

    L = lambda2 (L_S_id + lambda1 L_C_id) + lambda3 L_S_exp          (Eq. 5)

The three variants the paper compares are one switch each:

    "eifn"       L_S_exp reaches E and I (the "special training strategy", Sec. 2.3)
    "eifn-star"  EIFN*: L_S_exp stops at I (F_id detached in the fusion), Sec. 3.2
    "efn"        EFN baseline: lambda2 = 0, the identity losses are not computed at all

Centres (Wen et al. 2016) learn by their own rule, not by Eq. 5's gradient: after each step
c_k moves towards the batch mean of class k's identity features (plain SGD, rate `centre_lr`,
on the unweighted centre term with the features detached; see `ferlib.nn.centre_losses`), so
lambda1 = 1e-4 scales only what the centre term does to the network.

Identity labels exist only for training subjects: `subject_classes` maps the dataset's subject
index to the identity classifier's class (-1 for subjects it never saw); the identity head is
used in training only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ferlib.errors import FerlibError
from ferlib.nn.bilinear import BilinearFusion
from ferlib.nn.centre_losses import CenterLoss, centre_optimizer
from ferlib.nn.vgg import VGG16Trunk

MODES = ("eifn", "eifn-star", "efn")


class IdentityHead(nn.Module):
    """The face-recognition branch after I: max pooling, FC1 (identity feature), FC2 (subjects)."""

    def __init__(self, channels: int, map_size: int, hidden: int, num_subjects: int):
        super().__init__()
        pooled = map_size // 2
        if pooled < 1:
            raise FerlibError(f"the identity branch's max pooling needs conv5_3 maps of at least 2x2, got "
                              f"{map_size}x{map_size}: use faces of at least 32 px")
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(channels * pooled * pooled, hidden)
        self.fc2 = nn.Linear(hidden, num_subjects)

    def features(self, f_id: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.pool(f_id).flatten(1))

    def forward(self, f_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.features(f_id)
        return self.fc2(feature), feature


class EIFN(nn.Module):
    """I, E, the identity head with its centres, the bilinear fusion and the expression classifier."""

    def __init__(self, num_expressions: int, subject_classes: torch.Tensor, in_channels: int = 3, size: int = 64,
                 width_divisor: int = 1, identity_dim: int = 512, pretrained: str | None = None, mode: str = "eifn",
                 batch_norm: bool = False):
        super().__init__()
        if mode not in MODES:
            raise FerlibError(f"EIFN mode {mode!r}: valid modes are {', '.join(MODES)}")
        subject_classes = torch.as_tensor(subject_classes, dtype=torch.long)
        num_subjects = int(subject_classes.max()) + 1
        if num_subjects < 2:
            raise FerlibError("EIFN's identity branch needs at least two training subjects")
        self.mode = mode
        self.I = VGG16Trunk(in_channels, width_divisor, pretrained, batch_norm)
        self.E = VGG16Trunk(in_channels, width_divisor, pretrained, batch_norm)
        channels, map_size = self.I.out_channels, size // 16
        self.identity = IdentityHead(channels, map_size, identity_dim, num_subjects)
        self.centres = CenterLoss(num_subjects, identity_dim)
        self.fusion = BilinearFusion()
        self.expression_classifier = nn.Linear(channels * channels, num_expressions)
        self.register_buffer("subject_classes", subject_classes)

    def fused(self, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalised bilinear vector of F_id and F_exp (what the expression softmax reads)."""
        return self.fusion(self.I(x), self.E(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expression logits (test time: the identity head is not used)."""
        return self.expression_classifier(self.fused(x))

    def losses(self, x: torch.Tensor, labels: torch.Tensor, subjects: torch.Tensor,
               identity_losses: bool = True) -> dict[str, torch.Tensor]:
        """L_S_exp, and unless `identity_losses` is False (EFN), L_S_id and L_C_id for the batch."""
        f_id, f_exp = self.I(x), self.E(x)
        fusion_id = f_id.detach() if self.mode == "eifn-star" else f_id       # EIFN*: L_S_exp stops at I
        parts = {"s_exp": F.cross_entropy(self.expression_classifier(self.fusion(fusion_id, f_exp)), labels)}
        if identity_losses:
            classes = self.subject_classes[subjects]
            if (classes < 0).any():
                raise FerlibError("a training batch holds a subject the identity branch has no class for; "
                                  "identity labels exist only for the training split's subjects")
            logits, feature = self.identity(f_id)
            parts["s_id"] = F.cross_entropy(logits, classes)
            parts["c_id"] = self.centres(feature, classes)
            parts["identity_feature"], parts["identity_class"] = feature, classes
        return parts


class EIFNTask:
    """The engine's task: SGD on Eq. 5 (centres by their own rule), lr / 10 every `lr_step` epochs.

    The engine steps the scheduler once per pass over the training loader, so `lr_step` counts
    passes over whatever set the loader holds: the paper's 14x expanded set (20 epochs of it) when
    the experiment expands the split (`EIFNConfig.expand`), else one random copy per image."""

    def __init__(self, model: EIFN, lambdas=(1e-4, 1.0, 6.0), lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, lr_step: int | None = 20, centre_lr: float = 0.5,
                 classifier_lr_mult: float = 1.0):
        self.model = model
        self.lambda1, self.lambda2, self.lambda3 = lambdas
        if model.mode == "efn":
            self.lambda2 = 0.0  # the EFN baseline (Sec. 3.2)
        self.modules = {"eifn": model}
        # the expression classifier reads a unit-norm vector, so its logits move slowly: it may get
        # `classifier_lr_mult` times the learning rate (1 in the paper preset)
        head = [p for name, p in model.named_parameters() if name.startswith("expression_classifier.")]
        network = [p for name, p in model.named_parameters()
                   if not name.startswith(("centres.", "expression_classifier."))]
        groups = [{"params": network}, {"params": head, "lr": lr * classifier_lr_mult}]
        self.optimizers = {"sgd": torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay),
                           "centres": centre_optimizer(model.centres, centre_lr)}
        self.schedulers = ({"sgd": torch.optim.lr_scheduler.StepLR(self.optimizers["sgd"], lr_step, 0.1)}
                           if lr_step else {})
        self.device = torch.device("cpu")  # set by the engine

    def total_loss(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = self.lambda3 * parts["s_exp"]
        if self.lambda2:
            loss = loss + self.lambda2 * (parts["s_id"] + self.lambda1 * parts["c_id"])  # Eq. 5
        return loss

    def train_step(self, batch, step: int) -> dict[str, float]:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        with self.amp.autocast():
            parts = self.model.losses(batch["image"], batch["label"], batch["subject"],
                                      identity_losses=self.lambda2 != 0)
            loss = self.total_loss(parts)
        self.amp.backward(loss)
        if self.lambda2:
            # Wen et al.'s centre update: the unweighted centre term on detached features moves only the centres
            self.optimizers["centres"].zero_grad(set_to_none=True)
            self.model.centres(parts["identity_feature"].detach().float(), parts["identity_class"]).backward()
            self.optimizers["centres"].step()
        self.amp.step(self.optimizers["sgd"])
        logged = {"loss": loss.item(), "s_exp": parts["s_exp"].item()}
        if self.lambda2:
            logged |= {"s_id": parts["s_id"].item(), "c_id": parts["c_id"].item()}
        return logged

    def predict(self, batch):
        fused = self.model.fused(batch["image"])
        return self.model.expression_classifier(fused), batch["label"], fused
