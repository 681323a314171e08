"""EAN (Du et al., "Learning Associative Representation for Facial Expression Recognition").

A backbone G_enc (ResNet-18 in the paper) reads every face of a mini-batch; a graph over the batch
links faces whose features are alike, and a GCN classifies each face from its own feature and its
neighbours' (Fig. 2):

    F          = G_enc(x)                                    pooled features [F_0 .. F_k]
    C_s        = cos(F_i, F_j)                               (Eq. 3)
    A          = 1[C_s >= tau1] + 1[C_s <= tau2]             (Eq. 4), relaxed (`ferlib.nn.graph`)
    A_mask     = 1[label_i == label_j]                       (Eq. 5)
    Adj_loss   = alpha (sum A_mask * A - sum A_mask)^2       (Eq. 6)
    Z          = GCN(F, A)  (D~^-1/2 (A + I) D~^-1/2 X Theta, stacked)   (Eq. 8)
    L          = CE(classifier(Z), y) + Adj_loss             (Sec. 3.2)

For the first `graph_start` epochs A is the identity (Sec. 3.2: "to avoid Adj_loss exploding");
with A = I, D~^-1/2 (I + I) D~^-1/2 = I and the GCN treats every face alone.

The invariant feature generator (Sec. 2.2, Fig. 3): a multi-task discriminator D_m reads G_enc's
L2-normalised Conv3 maps (layer3 of a ResNet) of views of people in a separate set (frontal, profile,
frontal occluded, frontal relit): D^d has M^d + 1 outputs (the M^d identities and one "not frontal"
class), D^f two (frontal pose, profile pose). Eqs. 1-2 are garbled in our copy; the reading
implemented here, after DR-GAN (Tran et al.), which the "M^d + 1" outputs follow:

    D_m step   D^d: frontal views -> their identity, other views -> the extra class;
               D^f: each view -> its pose (occluded and relit views are frontal).       (our Eq. 2)
               On detached maps: only D_m learns from it.
    G_enc step the other views' maps -> D^d says their identity, D^f says frontal
               (non-saturating form of Eq. 1's min log D^f_{y^f}), through a frozen D_m: the
               gradient reaches G_enc up to Conv3 only. The expression co-training of Fig. 3 ("the
               frontal facial images with the expression labels") is the FER data's own cross-entropy:
               CFP, the paper's views set, has no expression labels.

Each training step of the task: one D_m step, then one network step whose loss is the FER loss of the
batch plus `lambda_invariant` times G_enc's adversarial loss on the batch's views. The views pass
through the encoder with its BatchNorm statistics frozen (`frozen_bn_stats`): the running statistics
the test uses are the FER data's alone, as the baseline's are.

The batch graph links pairs: A's diagonal (C_s(i, i) = 1) is set to 0 and so is A_mask's, so that
Eq. 8's D~^-1/2 (A + I) D~^-1/2 counts each face's own feature once (Kipf and Welling's renormalisation
assumes an A without self-loops), and Eq. 6 counts pairs i != j.

Test time is not described. `predict` classifies each face alone (A = I); `transductive_logits`
builds the graph over a test batch (a face's prediction then depends on its batch mates).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from ferlib.errors import FerlibError
from ferlib.nn.optim import make_optimizer
from ferlib.nn.backbones import make_backbone
from ferlib.nn.graph import (GCN, adjacency_loss, cosine_similarity_matrix, hard_adjacency, label_mask,
                             soft_adjacency)

ADJACENCIES = ("soft", "hard")
FRONTAL, PROFILE = 0, 1   # D^f's classes


class InvariantDiscriminator(nn.Module):
    """D_m: a small CNN on the normalised Conv3 maps with two heads, D^d (identities + 1) and D^f (pose)."""

    def __init__(self, channels: int, num_identities: int, width: int = 64):
        super().__init__()
        if num_identities < 2:
            raise FerlibError("D^d needs at least two identities in the views set")
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.identity = nn.Linear(width, num_identities + 1)   # D^d: M^d identities and "not frontal"
        self.pose = nn.Linear(width, 2)                        # D^f: frontal, profile
        self.not_frontal = num_identities

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(maps)
        return self.identity(h), self.pose(h)


def normalised_maps(maps: torch.Tensor) -> torch.Tensor:
    """Conv3 maps scaled to unit L2 norm per image (what D_m reads)."""
    return maps / maps.flatten(1).norm(dim=1).clamp(min=1e-8).view(-1, 1, 1, 1)


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module):
    """`module`'s BatchNorm layers normalise with the batch's statistics but leave their running
    statistics as they were inside the block (momentum 0)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def without_self_loops(matrix: torch.Tensor) -> torch.Tensor:
    return matrix * (1 - torch.eye(len(matrix), dtype=matrix.dtype, device=matrix.device))


@contextlib.contextmanager
def frozen(module: nn.Module):
    """`module`'s parameters take no gradient inside the block (the G step through D_m)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class EAN(nn.Module):
    """G_enc, the GCN (or none: a plain classifier) and, with `invariant`, D_m.

    graph: build a graph over the batch after `graph_start` epochs (EAN); False: each face alone and
        no GCN (the "Basic" and "with G_enc" rows of Table 5, the ResNet-18 baseline).
    gcn_dims: the GCN's hidden widths (two layers of 256 by default; the paper gives no number).
    """

    def __init__(self, num_classes: int, backbone: str = "resnet18", in_channels: int = 3, width_divisor: int = 1,
                 pretrained: str | None = None, graph: bool = True, gcn_dims: tuple[int, ...] = (256, 256),
                 invariant: bool = True, num_identities: int = 0, tau1: float = 0.5, tau2: float | None = 0.1,
                 adjacency: str = "soft", temperature: float = 0.05, disc_width: int = 64):
        super().__init__()
        if adjacency not in ADJACENCIES:
            raise FerlibError(f"adjacency {adjacency!r}: choose {' or '.join(ADJACENCIES)}")
        self.encoder = make_backbone(backbone, in_channels, width_divisor, pretrained)   # G_enc
        dim = self.encoder.feature_dim
        self.gcn = GCN((dim, *gcn_dims)) if graph else None
        self.classifier = nn.Linear(gcn_dims[-1] if graph else dim, num_classes)
        self.discriminator = (InvariantDiscriminator(self.encoder.conv3_channels, num_identities, disc_width)
                              if invariant else None)
        self.graph, self.invariant = graph, invariant
        self.tau1, self.tau2, self.adjacency, self.temperature = tau1, tau2, adjacency, temperature

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Conv3 maps, pooled features F)."""
        maps = self.encoder.stem_to_conv3(x)
        return maps, self.encoder.conv3_to_features(maps)

    def batch_adjacency(self, features: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        """A over the batch's pairs from C_s (Eqs. 3-4): the relaxed or the hard form, diagonal 0."""
        similarity = cosine_similarity_matrix(features)
        if (kind or self.adjacency) == "hard":
            return without_self_loops(hard_adjacency(similarity, self.tau1, self.tau2))
        return without_self_loops(soft_adjacency(similarity, self.tau1, self.tau2, self.temperature))

    def classify(self, features: torch.Tensor, adjacency: torch.Tensor | None) -> torch.Tensor:
        """Logits from F: through the GCN over `adjacency` (None: A = I), or the plain classifier."""
        if self.gcn is None:
            return self.classifier(features)
        if adjacency is None:
            adjacency = torch.eye(len(features), dtype=features.dtype, device=features.device)
        return self.classifier(self.gcn(features, adjacency))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each face alone (A = I): the inductive reading of test time."""
        return self.classify(self.features(x)[1], None)

    def fer_losses(self, x: torch.Tensor, labels: torch.Tensor, use_graph: bool, alpha: float = 0.1,
                   normalise: bool = True) -> dict[str, torch.Tensor]:
        """The FER loss of a batch: CE, and in the graph phase Adj_loss (Eq. 6) with A from the batch (and,
        logged only, A's mean `links` and its mean over pairs of different labels `cross_links`: Eq. 6 asks
        same-label pairs to link and never asks other pairs not to)."""
        _, feats = self.features(x)
        parts: dict[str, torch.Tensor] = {}
        adjacency = None
        if self.gcn is not None and use_graph:
            adjacency = self.batch_adjacency(feats)
            same = label_mask(labels)                                          # Eq. 5
            parts["adj"] = adjacency_loss(adjacency, without_self_loops(same), alpha, normalise)   # Eq. 6, i != j
            with torch.no_grad():   # logged, not trained: how dense A is, and how much it links other labels
                pairs = len(labels) * (len(labels) - 1)
                parts["links"] = adjacency.sum() / max(pairs, 1)
                parts["cross_links"] = (adjacency * (1 - same)).sum() / (1 - same).sum().clamp(min=1)
        parts["ce"] = F.cross_entropy(self.classify(feats, adjacency), labels)
        return parts

    def discriminator_loss(self, views: torch.Tensor, identity: torch.Tensor, frontal: torch.Tensor,
                           profile: torch.Tensor) -> torch.Tensor:
        """D_m's loss on detached Conv3 maps of the views (our reading of Eq. 2): it reaches D_m only."""
        with torch.no_grad(), frozen_bn_stats(self.encoder):
            maps = normalised_maps(self.encoder.stem_to_conv3(views))
        who, pose = self.discriminator(maps)
        target = torch.where(frontal, identity, torch.full_like(identity, self.discriminator.not_frontal))
        return F.cross_entropy(who, target) + F.cross_entropy(pose, profile.long())

    def invariance_loss(self, views: torch.Tensor, identity: torch.Tensor, frontal: torch.Tensor) -> dict[str, torch.Tensor]:
        """G_enc's adversarial part on the views: the other views' maps should pass D_m as frontal views of
        their identity (our reading of Eq. 1), through a frozen D_m and frozen BatchNorm statistics,
        reaching G_enc up to Conv3 only. Empty when the batch has no other view."""
        other = ~frontal
        if not other.any():
            return {}
        with frozen_bn_stats(self.encoder):
            maps = self.encoder.stem_to_conv3(views[other])
        with frozen(self.discriminator):
            who, pose = self.discriminator(normalised_maps(maps))
        return {"adv": F.cross_entropy(who, identity[other]) + F.cross_entropy(pose, torch.full_like(identity[other], FRONTAL))}


class EANTask:
    """The engine's task: SGD (lr / 10 every `lr_step` epochs) on CE + Adj_loss, A = I for the first
    `graph_start` epochs; with D_m, an Adam step of D_m before every step of the network."""

    def __init__(self, model: EAN, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4,
                 lr_step: int = 20, graph_start: int = 50, alpha: float = 0.1, normalise_adj: bool = True,
                 lambda_invariant: float = 1.0, disc_lr: float = 2e-4, optimizer: str = "sgd"):
        self.model = model
        self.graph_start, self.alpha, self.normalise_adj = graph_start, alpha, normalise_adj
        self.lambda_invariant = lambda_invariant
        self.modules = {"ean": model}
        network = [p for name, p in model.named_parameters() if not name.startswith("discriminator.")]
        self.optimizers = {"net": make_optimizer(optimizer, network, lr, momentum, weight_decay)}
        if model.discriminator is not None:
            self.optimizers["disc"] = torch.optim.Adam(model.discriminator.parameters(), lr=disc_lr, betas=(0.5, 0.999))
        self.schedulers = {"net": torch.optim.lr_scheduler.StepLR(self.optimizers["net"], lr_step, 0.1)}
        self.device = torch.device("cpu")  # set by the engine

    def epoch(self) -> int:
        """The epoch being trained, from 1 (the scheduler counts finished epochs; it is checkpointed)."""
        return self.schedulers["net"].last_epoch + 1

    def graph_phase(self) -> bool:
        return self.model.gcn is not None and self.epoch() > self.graph_start

    def train_step(self, batch, step: int) -> dict[str, float]:
        logged = {}
        views = batch.get("views") if self.model.discriminator is not None else None
        if views is not None:
            self.optimizers["disc"].zero_grad(set_to_none=True)
            with self.amp.autocast():
                d_loss = self.model.discriminator_loss(views["image"], views["identity"], views["frontal"],
                                                       views["profile"])
            self.amp.backward(d_loss)
            self.amp.step(self.optimizers["disc"])
            self.amp.update()
            logged["d"] = d_loss.item()
        self.optimizers["net"].zero_grad(set_to_none=True)
        with self.amp.autocast():
            parts = self.model.fer_losses(batch["image"], batch["label"], self.graph_phase(), self.alpha,
                                          self.normalise_adj)
            if views is not None:
                parts |= self.model.invariance_loss(views["image"], views["identity"], views["frontal"])
            loss = parts["ce"] + parts.get("adj", 0.0) + self.lambda_invariant * parts.get("adv", 0.0)
        self.amp.backward(loss)
        self.amp.step(self.optimizers["net"])
        return logged | {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}}

    def predict(self, batch):
        _, feats = self.model.features(batch["image"])
        return self.model.classify(feats, None), batch["label"], feats

    @torch.no_grad()
    def transductive_logits(self, images: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        """Logits of a test batch classified together: A built over the batch (reading (b) of test time)."""
        _, feats = self.model.features(images)
        adjacency = self.model.batch_adjacency(feats, kind) if self.model.gcn is not None else None
        return self.model.classify(feats, adjacency)
