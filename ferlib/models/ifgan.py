"""IF-GAN (Cai et al.): identity-free facial expression recognition with a conditional GAN.

A generator G turns a face I_SE of any subject into the "average identity" face showing the same
expression (I~_AE); an expression classifier E reads expressions from the generated faces; a
PatchGAN discriminator D judges (input, candidate) pairs. G, D and E train jointly, and E's loss
reaches G. At test time only G and E run: logits = E(G(I_SE)).

    G: U-Net with skip connections (Fig. 3) and three self-attention modules (Fig. 4): one on a
       skip connection, one on the encoder path, one on the decoder path (the last, after the
       1/4-resolution maps: 56x56 for 224 input).
    D: PatchGAN over the concatenated tuple {I_SE, candidate}: real {I_SE, I_AE}, fake {I_SE, G(I_SE)}.
    E: ResNet trunk (ResNet-101 in the paper) + linear classifier, softmax + island loss.

Loss (Eq. 1): L = l1 * L_cGAN + l2 * L_L1 + l3 * L_softmax + l4 * L_IL, with l = 1, 20, 10, 1.

What E sees of a "tuple" (Eq. 4: p(l_e | {I_SE, I_AE})) is not pinned down by the paper. The
default, `classifier_input="candidate"`, gives E the second image of each tuple: I_AE for the
real tuple, G(I_SE) for the fake one, so at test time E classifies the generated, identity-free
face alone, which is what the paper's story (and Fig. 2's test path G -> E) describes. The other
reading, "pair", gives E both images stacked as channels, so the input face (and its identity) is
visible to E. Both are selectable.

`mode="baseline"` is the paper's baseline: E alone on the input images, softmax + island loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ferlib.errors import FerlibError
from ferlib.nn.attention import SelfAttention
from ferlib.nn.centre_losses import IslandLoss, centre_optimizer
from ferlib.nn.patchgan import PatchDiscriminator
from ferlib.nn.trunks import ResNetTrunk

MODES = ("ifgan", "baseline")
CLASSIFIER_INPUTS = ("candidate", "pair")


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, act: nn.Module | None = None) -> nn.Sequential:
    padding = (kernel - 1) // 2 if stride == 1 else 1
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out),
                         act if act is not None else nn.ReLU(inplace=True))


class UNetGenerator(nn.Module):
    """U-Net encoder-decoder with skip connections and three self-attention modules (IF-GAN Fig. 3).

    Level 0 is the input resolution; each of `depth` encoder levels halves it (a 4x4 stride-2
    convolution, then a 3x3 one) and doubles the channels up to 8 x width. The decoder mirrors it
    with 4x4 transposed convolutions, concatenating the encoder's maps of the same level (the
    skip connections), and ends in a 1x1 convolution and tanh (images are normalised to [-1, 1]).

    Self-attention (when `attention`): on the encoder path after level 3 (1/8 resolution), on
    the skip connection of level 2 (1/4), and on the decoder path after level 2 (1/4: the 56x56
    maps for 224 input), the last module before the output, whose maps Fig. 6 shows.
    """

    ENCODER_LEVEL, SKIP_LEVEL, DECODER_LEVEL = 3, 2, 2

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 64, depth: int = 5,
                 attention: bool = True):
        super().__init__()
        if depth < self.ENCODER_LEVEL:
            raise FerlibError(f"UNetGenerator depth {depth}: needs at least {self.ENCODER_LEVEL} levels for its "
                              "attention placements")
        self.depth, self.has_attention = depth, attention
        widths = [min(width * 2 ** i, width * 8) for i in range(depth + 1)]
        self.stem = nn.Sequential(conv_bn(in_channels, widths[0]), conv_bn(widths[0], widths[0]))
        leaky = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        self.down = nn.ModuleList(
            nn.Sequential(conv_bn(widths[i - 1], widths[i], 4, 2, leaky()), conv_bn(widths[i], widths[i], act=leaky()))
            for i in range(1, depth + 1))
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(widths[i], widths[i - 1], 4, 2, 1, bias=False),
                          nn.BatchNorm2d(widths[i - 1]), nn.ReLU(inplace=True))
            for i in range(1, depth + 1))
        self.merge = nn.ModuleList(conv_bn(2 * widths[i - 1], widths[i - 1]) for i in range(1, depth + 1))
        self.out = nn.Sequential(nn.Conv2d(widths[0], out_channels, 1), nn.Tanh())
        make = (lambda c: SelfAttention(c)) if attention else (lambda c: nn.Identity())
        self.encoder_attention = make(widths[self.ENCODER_LEVEL])
        self.skip_attention = make(widths[self.SKIP_LEVEL])
        self.decoder_attention = make(widths[self.DECODER_LEVEL])

    @property
    def attention_modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder_attention, "skip": self.skip_attention, "decoder": self.decoder_attention}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 ** self.depth or x.shape[-2] % 2 ** self.depth:
            raise FerlibError(f"UNetGenerator with depth {self.depth} needs sides divisible by {2 ** self.depth}, "
                              f"got {tuple(x.shape[-2:])}")
        skips = [self.stem(x)]
        for level, down in enumerate(self.down, start=1):
            h = down(skips[-1])
            skips.append(self.encoder_attention(h) if level == self.ENCODER_LEVEL else h)
        h = skips.pop()
        for level in range(self.depth, 0, -1):
            skip = skips.pop()
            if level - 1 == self.SKIP_LEVEL:
                skip = self.skip_attention(skip)
            h = self.merge[level - 1](torch.cat([self.up[level - 1](h), skip], dim=1))
            if level - 1 == self.DECODER_LEVEL:
                h = self.decoder_attention(h)
        return self.out(h)


class ExpressionClassifier(nn.Module):
    """E: a ResNet trunk and a linear layer; `features` is the pooled vector the island loss sees."""

    def __init__(self, num_classes: int, in_channels: int = 3, depth: int = 101, pretrained: str | None = None):
        super().__init__()
        self.trunk = ResNetTrunk(depth, in_channels=in_channels, pretrained=pretrained)
        self.classifier = nn.Linear(self.trunk.feature_dim, num_classes)
        self.feature_dim = self.trunk.feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def average_targets(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The "average" expression faces: per class, the pixel mean of `images` (N,C,H,W) with that label.

    Called on a fold's training images only (IF-GAN 4.3); a class with no image gets the mean of all.
    """
    averages = images.mean(dim=0, keepdim=True).repeat(num_classes, 1, 1, 1)
    for k in range(num_classes):
        chosen = labels == k
        if chosen.any():
            averages[k] = images[chosen].mean(dim=0)
    return averages


def discriminator_adversarial_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's side of Eq. 2 on PatchGAN logits: D maximises log D(real) + log(1 - D(fake)), i.e. minimises
    0.5 * (BCE(real, 1) + BCE(fake, 0)), each BCE the mean over patches and batch; halved as in pix2pix."""
    return 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's side of Eq. 2, the non-saturating form (pix2pix): -log D(fake) = BCE(fake, 1), the mean over
    patches and batch, in place of minimising Eq. 2's log(1 - D(fake)) (same fixed point, stronger early
    gradient)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def l1_loss(target: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Eq. 3, E||I_AE - G(I_SE)||_1 as the per-pixel mean: |target - fake| averaged over batch, channels
    and pixels (not the sum per image), as pix2pix."""
    return (target - fake).abs().mean()


def tuple_softmax_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 4 as a loss: the cross-entropy on the real tuples plus the cross-entropy on the fake ones.

    logits (2B, K): the B real tuples {I_SE, I_AE} first, then the B fake tuples {I_SE, G(I_SE)};
    labels (B,). Each tuple's cross-entropy is its batch mean; the two are summed, not averaged."""
    losses = F.cross_entropy(logits, torch.cat([labels, labels]), reduction="none")
    return losses[: len(labels)].mean() + losses[len(labels):].mean()


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class IFGAN(nn.Module):
    """G, D and E with the island loss; `averages` (K,C,H,W) are the fold's I_AE targets (a buffer)."""

    def __init__(self, num_classes: int, in_channels: int = 3, size: int = 224, mode: str = "ifgan",
                 attention: bool = True, gen_width: int = 64, gen_depth: int = 5, disc_width: int = 64,
                 disc_layers: int = 3, trunk_depth: int = 101, pretrained: str | None = None,
                 classifier_input: str = "candidate", alpha: float = 0.03):
        super().__init__()
        if mode not in MODES:
            raise FerlibError(f"IF-GAN mode {mode!r}: valid modes are {', '.join(MODES)}")
        if classifier_input not in CLASSIFIER_INPUTS:
            raise FerlibError(f"classifier_input {classifier_input!r}: valid are {', '.join(CLASSIFIER_INPUTS)}")
        self.mode, self.classifier_input = mode, classifier_input
        e_channels = 2 * in_channels if (mode == "ifgan" and classifier_input == "pair") else in_channels
        self.E = ExpressionClassifier(num_classes, e_channels, trunk_depth, pretrained)
        self.island = IslandLoss(num_classes, self.E.feature_dim, alpha=alpha)
        if mode == "ifgan":
            self.G = UNetGenerator(in_channels, in_channels, gen_width, gen_depth, attention)
            self.D = PatchDiscriminator(2 * in_channels, disc_width, disc_layers)
        self.register_buffer("averages", torch.zeros(num_classes, in_channels, size, size))

    def classifier_view(self, source: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """What E sees of the tuple {source, candidate} (see the module docstring)."""
        return candidate if self.classifier_input == "candidate" else torch.cat([source, candidate], dim=1)

    def generate(self, x: torch.Tensor) -> torch.Tensor:
        return self.G(x)

    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) at test time: E(G(x)) for IF-GAN, E(x) for the baseline."""
        view = self.classifier_view(x, self.G(x)) if self.mode == "ifgan" else x
        features = self.E.features(view)
        return self.E.classifier(features), features


class IFGANTask:
    """The engine's task: one joint step updates D, then G and E together (E's loss reaches G)."""

    def __init__(self, model: IFGAN, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 1e-4,
                 lambdas=(1.0, 20.0, 10.0, 1.0), centre_lr: float = 0.5, lr_step: int = 10, lr_gamma: float = 0.9):
        self.model, self.lambdas = model, tuple(lambdas)
        self.modules = {"ifgan": model}
        adam = lambda params: torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)  # noqa: E731
        self.optimizers = {"E": adam(model.E.parameters()), "centres": centre_optimizer(model.island, centre_lr)}
        if model.mode == "ifgan":
            self.optimizers |= {"G": adam(model.G.parameters()), "D": adam(model.D.parameters())}
        self.schedulers = {name: torch.optim.lr_scheduler.StepLR(opt, lr_step, lr_gamma)
                           for name, opt in self.optimizers.items() if name != "centres"}
        self.device = torch.device("cpu")  # set by the engine

    def discriminator_loss(self, source, target, fake) -> torch.Tensor:
        """Eq. 2 for D: real tuple {I_SE, I_AE} -> 1, fake tuple {I_SE, G(I_SE)} -> 0 (halved, as pix2pix)."""
        D = self.model.D
        real = D(torch.cat([source, target], 1))
        fake = D(torch.cat([source, fake.detach()], 1))
        return discriminator_adversarial_loss(real, fake)

    def generator_losses(self, source, target, fake, labels) -> dict[str, torch.Tensor]:
        """The G and E terms of Eq. 1 (D frozen): adversarial (Eq. 2), L1 (Eq. 3), softmax (Eq. 4), island (Eq. 5)."""
        m = self.model
        pred = m.D(torch.cat([source, fake], 1))
        gan = generator_adversarial_loss(pred)                                         # Eq. 2, G's side
        l1 = l1_loss(target, fake)                                                     # Eq. 3
        views = torch.cat([m.classifier_view(source, target), m.classifier_view(source, fake)])
        features = m.E.features(views)
        both = torch.cat([labels, labels])
        softmax = tuple_softmax_loss(m.E.classifier(features), labels)                 # Eq. 4: real + fake tuple
        island = m.island(features, both)                                              # Eq. 5
        return {"gan": gan, "l1": l1, "softmax": softmax, "island": island}

    def train_step(self, batch, step: int) -> dict[str, float]:
        m, amp, (l1_, l2_, l3_, l4_) = self.model, self.amp, self.lambdas
        source, labels = batch["image"], batch["label"]
        if m.mode == "baseline":
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
            with amp.autocast():
                features = m.E.features(source)
                softmax = F.cross_entropy(m.E.classifier(features), labels)
                island = m.island(features, labels)
                loss = l3_ * softmax + l4_ * island
            amp.backward(loss)
            amp.step(self.optimizers["E"])
            amp.step(self.optimizers["centres"])
            return {"loss": loss.item(), "softmax": softmax.item(), "island": island.item()}
        target = m.averages[labels]
        with amp.autocast():
            fake = m.G(source)
        # D step: Eq. 2, D maximises it (minimises the BCE)
        set_requires_grad(m.D, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with amp.autocast():
            loss_d = self.discriminator_loss(source, target, fake)
        amp.backward(loss_d)
        amp.step(self.optimizers["D"])
        amp.update()
        # G + E step: Eq. 1 with D frozen; E's softmax on the fake tuple reaches G through G(I_SE)
        set_requires_grad(m.D, False)
        for name in ("G", "E", "centres"):
            self.optimizers[name].zero_grad(set_to_none=True)
        with amp.autocast():
            parts = self.generator_losses(source, target, fake, labels)
            loss = l1_ * parts["gan"] + l2_ * parts["l1"] + l3_ * parts["softmax"] + l4_ * parts["island"]  # Eq. 1
        amp.backward(loss)
        for name in ("G", "E", "centres"):
            amp.step(self.optimizers[name])
        set_requires_grad(m.D, True)
        return {"loss": loss.item(), "d": loss_d.item(), **{k: v.item() for k, v in parts.items()}}

    def predict(self, batch):
        logits, features = self.model.classify(batch["image"])
        return logits, batch["label"], features


@torch.no_grad()
def decoder_attention_maps(model: IFGAN, images: torch.Tensor,
                           queries: dict[str, tuple[float, float]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Fig. 6: the generated faces and, per named query point, the attention map of G's last
    self-attention module (the decoder's, at 1/4 resolution).

    queries: name -> (y, x) as fractions of the image height and width. Returns (generated
    (B,C,H,W), {name: (B, h, w) attention weights of that query position over all positions}).
    """
    module = model.G.decoder_attention
    if not isinstance(module, SelfAttention):
        raise FerlibError("this generator has no self-attention (the w/o-attention ablation): no maps to show")
    was_training = model.training
    model.eval()
    module.keep_attention = True
    try:
        generated = model.G(images)
        attention = module.last_attention
    finally:
        module.keep_attention = False
        model.train(was_training)
    h, w = images.shape[-2] // 4, images.shape[-1] // 4
    maps = {}
    for name, (fy, fx) in queries.items():
        row = min(int(fy * h), h - 1) * w + min(int(fx * w), w - 1)  # row-major query position
        maps[name] = attention[:, row, :].reshape(-1, h, w)
    return generated, maps
