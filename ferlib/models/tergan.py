"""TER-GAN (Ali and Hughes, "All-In-One: Facial Expression Transfer, Editing and Recognition Using a
Single Network").

Two encoders and a decoder (Fig. 2): G_es reads the expression f(e) of a source face x_s, G_et the
identity f(i) of a target face x_t, and G_de draws x_bar, the target person showing the source's
expression, from their concatenation f(x) = [f(e), f(i)]. Around them:

    D        a multi-task CNN: D^e (N^e expressions + "fake") and D^i (N^i training people)   (Eqs. 1-3)
    D_es     FC 32-16-1 on f(e), behind a gradient reversal layer: f(e) of x_s or of x_bar?   (Eq. 4)
    D_et     the same on f(i): f(i) of x_t or of x_bar?                                      (Eq. 5)
    L_irec   L1(x_bar, x_t),  L_erec  L1(x_bar, x_s)                                         (Eqs. 6-7)
    L_ef     sum_l w_l L1(h1_l(x_bar), h1_l(x_s)) through a frozen copy of stage 1's G_es     (Eq. 8)
    L_if     sum_l w_l L1(h2_l(x_bar), h2_l(x_t)) through a frozen copy of stage 1's G_et     (Eq. 9)
    total    l1 L_if + l2 L_ef + l3 L_irec + l4 L_erec + l5 L_Det + l6 L_Des + l7 L_adv       (Eq. 10)

Readings of what the paper leaves open (each also in the chapter's Deviations):
- f(x) = "f(e) + f(i)" is called a concatenation in the text: the decoder reads the 80-vector [f(e), f(i)].
- Encoders: five blocks of a 3x3 stride-1 convolution (BatchNorm, ReLU), each followed by 2x2 max pooling
  (the downsampling operator is not given), then the FC layer. h_l (Eqs. 8-9) are the five convolution
  blocks' activations, before pooling. Decoder: an FC layer to 1024 maps at 1/32 of the side, then five
  blocks of 2x nearest-neighbour upsampling and a 3x3 stride-1 convolution (512, 256, 128, 64, then the
  image's channels with tanh). D: four 4x4 stride-2 convolutions (16, 32, 64, 128; LeakyReLU 0.2,
  BatchNorm after the first), FC 1024 shared, two branches of FC 512 and FC 256.
- 75 x 75 does not halve five times: a side that is not a multiple of 32 is padded (replicated borders)
  up to the next multiple (75 -> 96) at the input of every network, and the decoder's output is cropped
  back to the centre; every loss compares images at the original side.
- Eq. 2 as printed asks D^i for the SOURCE's identity on x_bar; the text says the generated image keeps
  the TARGET's identity: D^i is asked for the target's (the text).
- Eq. 1 and Eq. 2 as losses: cross-entropies (D minimises -Eq. 1, G minimises -Eq. 2). D^e's extra class
  (index N^e) is "fake". L_adv's two halves go to their own players: D's step minimises l7 * L_D, the
  generator's step l7 * L_G (Eq. 3 sums them; each player only moves its own half).
- Eqs. 4-5 as binary cross-entropies (real feature 1, generated 0; the paper's classes 1 and 2), through
  a gradient reversal layer (Sec. 3.1.4): one minimisation trains D_es and D_et to separate and pushes
  the encoders to confuse them. The reversed gradient of the generated image's feature flows back through
  x_bar into the whole generator (one graph: x_bar is fed back, not detached).
- L_irec and L_erec pull x_bar towards x_t and towards x_s in pixels at the same time, as printed.
- L1 is the mean absolute difference (per element), for images and for each layer's maps.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ferlib.errors import FerlibError
from ferlib.models.ifgan import set_requires_grad
from ferlib.nn.gradient_reversal import GradientReversal

ENCODER_WIDTHS = (64, 128, 256, 512, 1024)      # Sec. 4.1
DECODER_WIDTHS = (512, 256, 128, 64)            # then the image's channels
DISCRIMINATOR_WIDTHS = (16, 32, 64, 128)
DISCRIMINATOR_FC = (1024, 512, 256)             # shared, then per branch
FEATURE_DISCRIMINATOR = (32, 16)                # then 1
OMEGAS = (0.5, 0.6, 0.7, 0.88, 0.99)            # w_1l = w_2l, Sec. 4.1
LAMBDAS = (1.0, 1.0, 1.0, 1.0, 0.3, 0.3, 0.5)   # l1..l7 of Eq. 10
TERMS = ("if", "ef", "irec", "erec", "det", "des", "g")   # what lambda1..lambda7 weigh (Eq. 10)
EXPRESSION_DIM, IDENTITY_DIM = 30, 50
DOWNSAMPLINGS = len(ENCODER_WIDTHS)


def padded_side(size: int) -> int:
    """The side the networks run at: `size` rounded up to a multiple of 2^5 (75 -> 96)."""
    step = 2 ** DOWNSAMPLINGS
    if size < step:
        raise FerlibError(f"TER-GAN needs images of at least {step} x {step} px (five halvings); got {size}")
    return int(math.ceil(size / step) * step)


def narrow(width: int, divisor: int) -> int:
    return max(1, width // divisor)


class Geometry(nn.Module):
    """Pads a side-`size` image to `padded_side(size)` (replicated borders) and crops it back."""

    def __init__(self, size: int):
        super().__init__()
        self.size, self.padded = size, padded_side(size)
        extra = self.padded - size
        self.before, self.after = extra // 2, extra - extra // 2

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise FerlibError(f"TER-GAN was built for {self.size} x {self.size} px images; got "
                              f"{x.shape[-2]} x {x.shape[-1]}")
        if self.before == self.after == 0:
            return x
        return F.pad(x, (self.before, self.after, self.before, self.after), mode="replicate")

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.before:self.before + self.size, self.before:self.before + self.size]


class Encoder(nn.Module):
    """G_es or G_et: five (3x3 stride-1 conv, BatchNorm, ReLU, 2x2 max pool) blocks, then FC to `dim`."""

    def __init__(self, in_channels: int, dim: int, size: int, width_divisor: int = 1):
        super().__init__()
        self.geometry = Geometry(size)
        widths = [narrow(w, width_divisor) for w in ENCODER_WIDTHS]
        blocks, c_in = [], in_channels
        for c_out in widths:
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
                                        nn.ReLU(inplace=True)))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        side = self.geometry.padded // 2 ** DOWNSAMPLINGS
        self.fc = nn.Linear(widths[-1] * side * side, dim)
        self.dim = dim

    def forward(self, x: torch.Tensor, with_maps: bool = False):
        """(B, C, size, size) -> f (B, dim); with `with_maps` also the five blocks' activations h_1..h_5."""
        maps, h = [], self.geometry.pad(x)
        for block in self.blocks:
            h = block(h)
            maps.append(h)
            h = self.pool(h)
        f = self.fc(torch.flatten(h, 1))
        return (f, maps) if with_maps else f


class Decoder(nn.Module):
    """G_de: FC to 1024 maps at 1/32 of the side, five (2x upsampling, 3x3 stride-1 conv) blocks, tanh."""

    def __init__(self, in_dim: int, out_channels: int, size: int, width_divisor: int = 1):
        super().__init__()
        self.geometry = Geometry(size)
        self.start = self.geometry.padded // 2 ** DOWNSAMPLINGS
        self.width = narrow(ENCODER_WIDTHS[-1], width_divisor)
        self.fc = nn.Linear(in_dim, self.width * self.start * self.start)
        blocks, c_in = [], self.width
        for c_out in [narrow(w, width_divisor) for w in DECODER_WIDTHS]:
            blocks.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                        nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
                                        nn.ReLU(inplace=True)))
            c_in = c_out
        blocks.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, out_channels, 3, 1, 1),
                                    nn.Tanh()))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(f)).view(-1, self.width, self.start, self.start)
        return self.geometry.crop(self.blocks(h))


def mlp(widths, leak: float | None = None) -> nn.Sequential:
    """Linear layers between consecutive `widths`, a (Leaky)ReLU after each but the last."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.LeakyReLU(leak) if leak else nn.ReLU())
    return nn.Sequential(*layers)


class MultiTaskDiscriminator(nn.Module):
    """D = [D^e, D^i]: four stride-2 conv blocks and FC 1024 shared, then FC 512, FC 256 and the
    classification layer per branch. D^e has N^e + 1 outputs (the last: fake), D^i N^i."""

    def __init__(self, in_channels: int, size: int, num_expressions: int, num_identities: int,
                 width_divisor: int = 1):
        super().__init__()
        self.geometry = Geometry(size)
        layers, c_in = [], in_channels
        for i, c_out in enumerate(narrow(w, width_divisor) for w in DISCRIMINATOR_WIDTHS):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0)]
            layers += [nn.BatchNorm2d(c_out)] if i > 0 else []
            layers += [nn.LeakyReLU(0.2)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        side = self.geometry.padded // 2 ** len(DISCRIMINATOR_WIDTHS)
        shared, branch, last = (narrow(w, width_divisor) for w in DISCRIMINATOR_FC)
        self.shared = nn.Sequential(nn.Linear(c_in * side * side, shared), nn.LeakyReLU(0.2))
        self.expression = mlp((shared, branch, last, num_expressions + 1), leak=0.2)
        self.identity = mlp((shared, branch, last, num_identities), leak=0.2)
        self.fake_class = num_expressions

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(D^e logits (B, N^e + 1), D^i logits (B, N^i))."""
        h = self.shared(torch.flatten(self.convs(self.geometry.pad(x)), 1))
        return self.expression(h), self.identity(h)


class FeatureDiscriminator(nn.Module):
    """D_es or D_et: FC 32, 16, 1 behind a gradient reversal layer (one logit: real feature vs generated)."""

    def __init__(self, dim: int, reversal: float = 1.0):
        super().__init__()
        self.reverse = GradientReversal(reversal)
        self.net = mlp((dim, *FEATURE_DISCRIMINATOR, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(self.reverse(f)).squeeze(1)


class FrozenEncoder(nn.Module):
    """A frozen copy of a stage-1 encoder (h_1l or h_2l of Eqs. 8-9): no parameter takes a gradient, its
    BatchNorm layers stay in eval mode whatever mode the model is in, and `load_from` fills it."""

    def __init__(self, encoder: Encoder, in_channels: int, size: int, width_divisor: int):
        super().__init__()
        self.copy = Encoder(in_channels, encoder.dim, size, width_divisor)
        self.load_from(encoder)

    def load_from(self, encoder: Encoder) -> None:
        self.copy.load_state_dict(encoder.state_dict())
        for p in self.copy.parameters():
            p.requires_grad_(False)
        self.copy.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.copy.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.copy(x, with_maps=True)[1]


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 of Eqs. 6-9: the mean absolute difference per element."""
    return (a - b).abs().mean()


def feature_loss(maps: list[torch.Tensor], reference: list[torch.Tensor], omegas=OMEGAS) -> torch.Tensor:
    """Eqs. 8-9: sum_l w_l L1(h_l(x_bar), h_l(x)) over the five layers."""
    if len(maps) != len(omegas):
        raise FerlibError(f"feature loss: {len(maps)} layers of maps but {len(omegas)} weights")
    return sum(w * l1(a, b) for w, a, b in zip(omegas, maps, reference))


def consistency_loss(real_logits: torch.Tensor, generated_logits: torch.Tensor) -> torch.Tensor:
    """Eqs. 4-5 as a loss: binary cross-entropy with the real image's feature 1 and the generated one's 0."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(generated_logits, torch.zeros_like(generated_logits)))


class TERGAN(nn.Module):
    """G = (G_es, G_et, G_de), D, D_es, D_et and the frozen stage-1 copies h1 (of G_es) and h2 (of G_et)."""

    def __init__(self, num_expressions: int, num_identities: int, in_channels: int = 3, size: int = 75,
                 width_divisor: int = 1, expression_dim: int = EXPRESSION_DIM, identity_dim: int = IDENTITY_DIM,
                 reversal: float = 1.0):
        super().__init__()
        if num_expressions < 2 or num_identities < 2:
            raise FerlibError(f"TER-GAN needs at least 2 expressions and 2 identities; got {num_expressions} "
                              f"and {num_identities}")
        self.num_expressions, self.num_identities, self.size = num_expressions, num_identities, size
        self.G_es = Encoder(in_channels, expression_dim, size, width_divisor)
        self.G_et = Encoder(in_channels, identity_dim, size, width_divisor)
        self.G_de = Decoder(expression_dim + identity_dim, in_channels, size, width_divisor)
        self.D = MultiTaskDiscriminator(in_channels, size, num_expressions, num_identities, width_divisor)
        self.D_es = FeatureDiscriminator(expression_dim, reversal)
        self.D_et = FeatureDiscriminator(identity_dim, reversal)
        self.h1 = FrozenEncoder(self.G_es, in_channels, size, width_divisor)
        self.h2 = FrozenEncoder(self.G_et, in_channels, size, width_divisor)

    def generator_parameters(self):
        return [*self.G_es.parameters(), *self.G_et.parameters(), *self.G_de.parameters()]

    def freeze_stage_one(self) -> None:
        """Stage 2 starts: h1 and h2 become frozen copies of the stage-1 encoders (Eqs. 8-9)."""
        self.h1.load_from(self.G_es)
        self.h2.load_from(self.G_et)

    def encode(self, source: torch.Tensor, target: torch.Tensor):
        """(f(e) of x_s, f(i) of x_t, x_bar = G_de([f(e), f(i)]))."""
        f_e, f_i = self.G_es(source), self.G_et(target)
        return f_e, f_i, self.G_de(torch.cat([f_e, f_i], 1))

    def transfer(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """x_bar: the target person with the source's expression (transfer; editing when both are one person)."""
        return self.encode(source, target)[2]

    def discriminator_loss(self, source, source_label, target, target_identity, generated) -> torch.Tensor:
        """-Eq. 1 (D's half of L_adv): real x_s -> its expression, real x_t -> its identity, x_bar -> fake."""
        e_source, _ = self.D(source)
        _, i_target = self.D(target)
        e_fake, _ = self.D(generated.detach())
        fake = torch.full_like(source_label, self.D.fake_class)
        return (F.cross_entropy(e_source, source_label) + F.cross_entropy(i_target, target_identity)
                + F.cross_entropy(e_fake, fake))

    def generator_losses(self, source, source_label, target, target_identity, encoded) -> dict[str, torch.Tensor]:
        """The terms of Eq. 10 but D's half of L_adv, from `encoded` = encode(source, target). The caller
        keeps D's parameters out of the step (D's own half is `discriminator_loss`)."""
        f_e, f_i, generated = encoded
        e_logits, i_logits = self.D(generated)
        terms = {"g": F.cross_entropy(e_logits, source_label) + F.cross_entropy(i_logits, target_identity)}  # Eq. 2
        terms["des"] = consistency_loss(self.D_es(f_e), self.D_es(self.G_es(generated)))                   # Eq. 4
        terms["det"] = consistency_loss(self.D_et(f_i), self.D_et(self.G_et(generated)))                   # Eq. 5
        terms["irec"] = l1(generated, target)                                                              # Eq. 6
        terms["erec"] = l1(generated, source)                                                              # Eq. 7
        with torch.no_grad():
            source_maps, target_maps = self.h1(source), self.h2(target)
        terms["ef"] = feature_loss(self.h1(generated), source_maps)                                        # Eq. 8
        terms["if"] = feature_loss(self.h2(generated), target_maps)                                        # Eq. 9
        return terms


def total_loss(terms: dict[str, torch.Tensor], lambdas=LAMBDAS) -> torch.Tensor:
    """Eq. 10 without D's half of L_adv: l1 L_if + l2 L_ef + l3 L_irec + l4 L_erec + l5 L_Det + l6 L_Des + l7 L_G."""
    if len(lambdas) != len(TERMS):
        raise FerlibError(f"Eq. 10 has {len(TERMS)} weights ({', '.join(TERMS)}); got {len(lambdas)}: {tuple(lambdas)}")
    return sum(weight * terms[term] for term, weight in zip(TERMS, lambdas))


class StageOneTask:
    """Sec. 3.1.4, stage 1: G_es with a linear head as a supervised expression classifier and G_et with a
    linear head as a supervised identity classifier (the batch's "identity": the person's class among the
    training people), trained together; the
    heads are dropped afterwards (`TERGAN.freeze_stage_one` copies the encoders)."""

    def __init__(self, model: TERGAN, lr: float = 2e-4, betas=(0.5, 0.999)):
        self.model = model
        self.expression_head = nn.Linear(model.G_es.dim, model.num_expressions)
        self.identity_head = nn.Linear(model.G_et.dim, model.num_identities)
        self.modules = {"tergan": model, "expression_head": self.expression_head, "identity_head": self.identity_head}
        params = [*model.G_es.parameters(), *model.G_et.parameters(), *self.expression_head.parameters(),
                  *self.identity_head.parameters()]
        self.optimizers = {"encoders": torch.optim.Adam(params, lr=lr, betas=betas)}
        self.schedulers = {}
        self.device = torch.device("cpu")  # set by the engine

    def train_step(self, batch, step: int) -> dict[str, float]:
        m = self.model
        self.optimizers["encoders"].zero_grad(set_to_none=True)
        with self.amp.autocast():
            expression = F.cross_entropy(self.expression_head(m.G_es(batch["image"])), batch["label"])
            identity = F.cross_entropy(self.identity_head(m.G_et(batch["image"])), batch["identity"])
            loss = expression + identity
        self.amp.backward(loss)
        self.amp.step(self.optimizers["encoders"])
        return {"loss": loss.item(), "expression": expression.item(), "identity": identity.item()}

    def predict(self, batch):
        features = self.model.G_es(batch["image"])
        return self.expression_head(features), batch["label"], features


class TERGANTask:
    """Sec. 3.1.4, stage 2: per iteration one D step (-Eq. 1), then one step of G, D_es and D_et on Eq. 10
    with D frozen; the gradient reversal layers turn D_es's and D_et's minimisation into the encoders'
    maximisation. The batch: x_s ("image", "label") and x_t ("target": "image", "identity").

    `predict` reads D^e's expression logits of a real face (its first N^e outputs): a monitor of D, not the
    recognition result (Sec. 4.4 trains a shallow classifier on G_es's f(e) afterwards)."""

    def __init__(self, model: TERGAN, lr: float = 2e-4, betas=(0.5, 0.999), lambdas=LAMBDAS):
        self.model, self.lambdas = model, tuple(lambdas)
        self.modules = {"tergan": model}
        adam = lambda params: torch.optim.Adam(params, lr=lr, betas=betas)  # noqa: E731
        self.optimizers = {"G": adam([*model.generator_parameters(), *model.D_es.parameters(),
                                      *model.D_et.parameters()]),
                           "D": adam(model.D.parameters())}
        self.schedulers = {}
        self.device = torch.device("cpu")  # set by the engine

    def train_step(self, batch, step: int) -> dict[str, float]:
        m, amp = self.model, self.amp
        source, label = batch["image"], batch["label"]
        target, identity = batch["target"]["image"], batch["target"]["identity"]
        with amp.autocast():
            encoded = m.encode(source, target)
        set_requires_grad(m.D, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with amp.autocast():
            d_loss = self.lambdas[6] * m.discriminator_loss(source, label, target, identity, encoded[2])  # l7 L_D
        amp.backward(d_loss)
        amp.step(self.optimizers["D"])
        amp.update()
        set_requires_grad(m.D, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with amp.autocast():
            terms = m.generator_losses(source, label, target, identity, encoded)
            loss = total_loss(terms, self.lambdas)                                                      # Eq. 10
        amp.backward(loss)
        amp.step(self.optimizers["G"])
        set_requires_grad(m.D, True)
        return {"loss": loss.item(), "d": d_loss.item(), **{k: v.item() for k, v in terms.items()}}

    def predict(self, batch):
        logits, _ = self.model.D(batch["image"])
        return logits[:, : self.model.num_expressions], batch["label"], self.model.G_es(batch["image"])


class ShallowClassifier(nn.Module):
    """Sec. 4.4's "shallow classifier" on f(e) (not specified): one hidden layer of `hidden` ReLU units."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 64):
        super().__init__()
        self.net = mlp((dim, hidden, num_classes))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


class RecognitionTask:
    """Sec. 4.4: G_es detached (frozen, eval mode) and a shallow classifier trained on its f(e). The CNN
    baseline of Table 1 is the same task on stage 1's G_es."""

    def __init__(self, encoder: Encoder, num_classes: int, lr: float = 1e-3, hidden: int = 64):
        self.encoder = encoder
        set_requires_grad(encoder, False)
        self.classifier = ShallowClassifier(encoder.dim, num_classes, hidden)
        self.modules = {"encoder": encoder, "classifier": self.classifier}
        self.optimizers = {"classifier": torch.optim.Adam(self.classifier.parameters(), lr=lr)}
        self.schedulers = {}
        self.device = torch.device("cpu")  # set by the engine

    def features(self, images: torch.Tensor) -> torch.Tensor:
        self.encoder.eval()               # detached: its BatchNorm statistics are stage 2's
        with torch.no_grad():
            return self.encoder(images)

    def train_step(self, batch, step: int) -> dict[str, float]:
        self.optimizers["classifier"].zero_grad(set_to_none=True)
        with self.amp.autocast():
            loss = F.cross_entropy(self.classifier(self.features(batch["image"])), batch["label"])
        self.amp.backward(loss)
        self.amp.step(self.optimizers["classifier"])
        return {"loss": loss.item()}

    def predict(self, batch):
        features = self.features(batch["image"])
        return self.classifier(features), batch["label"], features
