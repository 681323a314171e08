"""Per-paper image transforms: uint8 (C,H,W) tensor in, normalised float tensor out.

Each preset states its geometry at the paper's input size, as the paper describes it (e.g. IF-GAN:
scale to 256, flip, rotate +-5 degrees, random 224 crop; centre 224 crop at test; `source` cites
the section and marks what is assumed). `make_transform(name, train,
size)` scales that geometry by `size / paper input height`, so the smoke preset at 64 px resizes
to 73 and crops 64. Output: float in [0, 1], then (x - 0.5) / 0.5, i.e. in [-1, 1].

Randomness comes from torch's global RNG (the engine seeds it) or an explicit `generator`, so
a seed fixes every flip, angle and crop.

A training transform whose draws are finitely many (flip or not, one of `rotate_choices`, one of
the five crop positions or a crop with no slack) also lists them: `variants()` is that set, in a
fixed order, and `apply_variant(image, k)` makes variant k without randomness. A paper that
expands its training set by these copies (ADFL's ten crops, EIFN's 14 rotated and flipped
images) is reproduced by visiting every (image, variant) pair once per epoch
(`ferlib.data.expand.ExpandedDataset`); calling the transform draws one variant at random.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ferlib.errors import FerlibError, UnknownName

MEAN, STD = 0.5, 0.5


@dataclass(frozen=True)
class TransformPreset:
    """One paper's geometry at its own input size; (H, W) pairs."""

    name: str
    scale_to: tuple[int, int]            # resize every image to this first
    crop: tuple[int, int]                # the network input; centre crop at test
    flip: bool                           # random horizontal flip in training
    rotate_degrees: float = 0.0          # uniform rotation in [-d, d] in training (0: none)
    rotate_choices: tuple[float, ...] = ()  # or one of these angles, uniformly (EIFN, TER-GAN)
    train_crop: str = "random"           # "random" position, or "five": one of the four corners or the centre
    source: str = ""                     # where the numbers come from

    def geometry(self, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(scale_to, crop) for an output height of `size` px, proportional to the paper's."""
        if size < 2:
            raise FerlibError(f"transform size {size} px is too small; use at least 2 px")
        factor = size / self.crop[0]
        scale_to = tuple(max(1, round(d * factor)) for d in self.scale_to)
        crop = (size, min(scale_to[1], max(1, round(self.crop[1] * factor))))
        return scale_to, crop


PRESETS: dict[str, TransformPreset] = {
    "baseline": TransformPreset(
        "baseline", (256, 256), (224, 224), flip=True,
        source="study's reference recipe: IF-GAN's scale-and-crop geometry and flip, no rotation"),
    "ifgan": TransformPreset(
        "ifgan", (256, 256), (224, 224), flip=True, rotate_degrees=5.0,
        source="IF-GAN 4.2: scaled to 256x256, random flip, random -5..5 deg rotation, random 224x224 crop; "
               "centre crop at test"),
    "adfl": TransformPreset(
        "adfl", (128, 110), (112, 96), flip=True, train_crop="five",
        source="ADFL 3.1: aligned to 128x110; ten 112x96 faces from the four corners and the centre of the "
               "image and its mirror (a random draw samples one of the ten; the expanded set holds all ten); "
               "centre crop at test (not stated)"),
    "eifn": TransformPreset(
        "eifn", (64, 64), (64, 64), flip=True, rotate_choices=(-15, -10, -5, 0, 5, 10, 15),
        source="EIFN 3.1: re-scaled to 64x64; each training image rotated by -15..15 deg in 5 deg steps, "
               "and flipped: 7 x 2 = 14 copies (a random draw samples one of the 14; the expanded set holds "
               "all 14)"),
    "ean": TransformPreset(
        "ean", (256, 256), (224, 224), flip=True,
        source="EAN 3.1: resized to 224x224, 'flipped or clipped randomly' (the crop is not specified: scaled to "
               "256x256 and a random 224x224 crop, the study's reference geometry; centre crop at test)"),
    "tergan": TransformPreset(
        "tergan", (84, 84), (75, 75), flip=True, rotate_choices=(-6, -3, 0, 3, 6), train_crop="five",
        source="TER-GAN 4.1: 75x75 samples from the centre and four corners, rotated by -6/-3/3/6 deg, "
               "flipped; the aligned size before cropping is not stated (84 assumed)"),
}


def to_model_input(image: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1] -> (x - 0.5) / 0.5."""
    if image.dtype != torch.uint8:
        raise FerlibError(f"expected a uint8 image tensor, got {image.dtype}; images come from ImageCache")
    return (image.float() / 255.0 - MEAN) / STD


def ten_crop(image: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """(C,H,W) -> (10,C,h,w): four corners and the centre, then the same of the flipped image."""
    return torch.stack(F.ten_crop(image, list(crop)))


def random_uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def random_int(high_inclusive: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(0, high_inclusive + 1, (), generator=generator))


class Variant(NamedTuple):
    """One deterministic training draw: mirror first, then rotate, then crop at (top, left)."""

    flip: bool
    angle: float
    top: int
    left: int


class PresetTransform:
    """Callable applying one preset in training or test mode at a given output height."""

    def __init__(self, preset: TransformPreset, train: bool, size: int, ten_crop: bool = False,
                 generator: torch.Generator | None = None):
        if preset.train_crop not in ("random", "five"):
            raise FerlibError(f"transform preset {preset.name}: train_crop must be 'random' or 'five'")
        self.preset, self.train, self.size, self.ten_crop = preset, train, size, ten_crop
        self.scale_to, self.crop = preset.geometry(size)
        self.generator = generator
        self._variants: list[Variant] | None = None   # `variants()`, listed on first use
        if ten_crop and train:
            raise FerlibError("ten-crop is a test-time transform; use train=False with ten_crop=True")

    @property
    def output_size(self) -> tuple[int, int]:
        return self.crop

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        return F.resize(image, list(self.scale_to), interpolation=InterpolationMode.BILINEAR, antialias=True)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = self.resize(image)
        if self.ten_crop:
            return to_model_input(ten_crop(image, self.crop))
        if not self.train:
            return to_model_input(F.center_crop(image, list(self.crop)))
        return self.make(image, self.draw(self.generator))

    def draw(self, g: torch.Generator | None) -> Variant:
        """One random training draw: flip with p 0.5, an angle, a crop position (in that order)."""
        preset = self.preset
        flip = bool(preset.flip and torch.rand((), generator=g).item() < 0.5)
        angle = 0.0
        if preset.rotate_choices:
            angle = float(preset.rotate_choices[random_int(len(preset.rotate_choices) - 1, g)])
        elif preset.rotate_degrees:
            angle = random_uniform(-preset.rotate_degrees, preset.rotate_degrees, g)
        top, left = self.crop_position(g)
        return Variant(flip, angle, top, left)

    def make(self, resized: torch.Tensor, variant: Variant) -> torch.Tensor:
        """`variant` of an image already resized to `scale_to`, normalised."""
        image = F.horizontal_flip(resized) if variant.flip else resized
        if variant.angle:
            image = F.rotate(image, variant.angle, interpolation=InterpolationMode.BILINEAR)
        return to_model_input(F.crop(image, variant.top, variant.left, self.crop[0], self.crop[1]))

    def five_positions(self) -> list[tuple[int, int]]:
        """(top, left) of the four corners and the centre, in torchvision's `five_crop` order."""
        slack_h, slack_w = self.scale_to[0] - self.crop[0], self.scale_to[1] - self.crop[1]
        return [(0, 0), (0, slack_w), (slack_h, 0), (slack_h, slack_w),
                (int(round(slack_h / 2)), int(round(slack_w / 2)))]

    def crop_position(self, g: torch.Generator | None) -> tuple[int, int]:
        """(top, left) of the training crop: anywhere, or one of the five-crop positions."""
        slack_h, slack_w = self.scale_to[0] - self.crop[0], self.scale_to[1] - self.crop[1]
        if self.preset.train_crop == "five":
            return self.five_positions()[random_int(4, g)]
        return random_int(slack_h, g), random_int(slack_w, g)

    def variants(self) -> list[Variant]:
        """Every training draw, each once: mirror (no, yes) x angle x crop position, the mirror
        outermost. For ADFL these are `ten_crop`'s ten crops in its order; for EIFN the seven angles
        of the face and then of its mirror. FerlibError when the draws are not finitely many (a
        continuous angle, or a random crop with slack)."""
        preset = self.preset
        if preset.rotate_degrees and not preset.rotate_choices:
            raise FerlibError(f"transform preset {preset.name} rotates by a continuous angle: its training "
                              f"variants cannot be listed, only drawn")
        if preset.train_crop == "five":
            positions = self.five_positions()
        elif self.scale_to == self.crop:
            positions = [(0, 0)]
        else:
            raise FerlibError(f"transform preset {preset.name} crops at a random position: its training "
                              f"variants cannot be listed, only drawn")
        flips = (False, True) if preset.flip else (False,)
        angles = tuple(float(a) for a in preset.rotate_choices) or (0.0,)
        return [Variant(f, a, t, l) for f in flips for a in angles for t, l in positions]

    def apply_variant(self, image: torch.Tensor, k: int) -> torch.Tensor:
        """Training variant k (an index into `variants()`) of a uint8 (C,H,W) image, no randomness."""
        if not self.train:
            raise FerlibError("training variants belong to the training transform; use train=True")
        if self._variants is None:
            self._variants = self.variants()
        return self.make(self.resize(image), self._variants[k])

    def __repr__(self) -> str:
        mode = "ten-crop test" if self.ten_crop else "train" if self.train else "test"
        return f"PresetTransform({self.preset.name!r}, {mode}, scale_to={self.scale_to}, crop={self.crop})"


def make_transform(name: str, train: bool, size: int, ten_crop: bool = False,
                   generator: torch.Generator | None = None) -> PresetTransform:
    """The `name` preset (baseline, ifgan, adfl, eifn, ean, tergan) with output height `size`.

    ten_crop=True (test only) returns (10,C,h,w) per image; average the logits over the crops.
    """
    if name not in PRESETS:
        raise UnknownName("transform preset", name, PRESETS)
    return PresetTransform(PRESETS[name], train=train, size=size, ten_crop=ten_crop, generator=generator)
