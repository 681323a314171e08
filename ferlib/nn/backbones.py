"""The four backbones of EAN's Table 5 (AlexNet, VGG13, VGG16, ResNet-18) in torchvision's layouts,
split at "Conv3" and with every width divided by `width_divisor`.

width_divisor 1 is exactly torchvision's `alexnet`, `vgg13`, `vgg16` and `resnet18` without the
classifier's last Linear: the same layers in the same order with the same kernels, strides,
paddings and BatchNorms (VGG13/VGG16 without BN, as torchvision's `vgg13`/`vgg16`), under
torchvision's module names, so the state_dict has torchvision's keys minus `classifier.6.*`
(AlexNet, VGG) or `fc.*` (ResNet-18). A head `nn.Linear(feature_dim, num_classes)` on top gives
torchvision's full network. Other divisors (a divisor of 64: 2, 4, 8, ...) divide every conv and
hidden FC width and keep everything else, cheap enough to train on a 2-core CPU.

The split, for attention on the Conv3 maps:

- `stem_to_conv3`: ResNet-18 through layer3; VGG13/VGG16 through the third conv block and its
  max-pool; AlexNet through its third conv layer and ReLU.
- `conv3_to_features`: the rest, ending in a flat vector: ResNet-18 after avgpool (512 / d wide);
  VGG after the second 4096-wide FC, ReLU and Dropout; AlexNet after the second 4096-wide FC and
  ReLU (torchvision's AlexNet has no Dropout there); both 4096 / d wide.

Input sizes: torchvision's adaptive average pooling (AlexNet 6x6, VGG 7x7, ResNet 1x1) is kept, so
small faces work down to a minimum measured by trying sizes (`MIN_SIZES`): AlexNet needs 63 px (its
stride-4 11x11 first conv and three 3x3 stride-2 max-pools shrink 62 px to nothing), VGG13/VGG16
32 px (five 2x2 max-pools), ResNet-18 any size (its strided convs and max-pool are padded). A
smaller input is a FerlibError, not a torch shape error.

Nothing is downloaded: `pretrained` is None (train from scratch, torchvision's initialisation) or a
local torchvision state_dict file, width_divisor 1 only; its head is ignored. As in
`ferlib.nn.trunks`, in_channels != 3 gets a new first conv (from an RGB checkpoint its filters are
adapted by `trunks.adapt_conv1_weight`), and pretrained weights put `ImageNetInput` in front.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from ferlib.errors import FerlibError, UnknownName
from ferlib.nn.imagenet import ImageNetInput
from ferlib.nn.trunks import FROM_SCRATCH, matched_state_dict

BACKBONES = ("alexnet", "vgg13", "vgg16", "resnet18")
WIDTH_DIVISORS = (1, 2, 4, 8, 16, 32, 64)  # they divide 64 and 4096, so every width is whole
VGG_CONFIGS = {  # torchvision's cfgs "B" and "D"
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}
# Smallest input side (px) that forward accepts, and smallest Conv3 map side conv3_to_features
# accepts; measured by trying sizes (tests/test_backbones.py checks both and one px less).
MIN_SIZES = {"alexnet": 63, "vgg13": 32, "vgg16": 32, "resnet18": 1}
MIN_CONV3_SIZES = {"alexnet": 3, "vgg13": 4, "vgg16": 4, "resnet18": 1}
SHRINKS = {
    "alexnet": "its stride-4 11x11 first conv and three 3x3 stride-2 max-pools",
    "vgg13": "its five 2x2 max-pools",
    "vgg16": "its five 2x2 max-pools",
    "resnet18": "its strided layers",
}
FIRST_CONV = {"alexnet": "features.0", "vgg13": "features.0", "vgg16": "features.0", "resnet18": "conv1"}
HEAD = {"alexnet": "classifier.6.", "vgg13": "classifier.6.", "vgg16": "classifier.6.", "resnet18": "fc."}


def parameter_count(module: nn.Module) -> int:
    """The number of parameters (trainable or not) in `module`."""
    return sum(p.numel() for p in module.parameters())


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sides(size) -> tuple[int, int]:
    """An int or an (H, W) pair -> (H, W)."""
    if isinstance(size, int):
        return size, size
    height, width = (int(s) for s in size)
    return height, width


class Backbone(nn.Module):
    """EAN Table 5 backbone: image (B, in_channels, H, W) -> (B, feature_dim), split at Conv3.

    Build it with `make_backbone`. Attributes: name, in_channels, width_divisor, conv3_channels,
    feature_dim, min_size (smallest input side, px), min_conv3_size (smallest Conv3 map side),
    source ("ImageNet weights from <path>" or "trained from scratch (no pretrained weights given)"),
    first_conv_adaptation (None, or how pretrained RGB filters were adapted to in_channels).
    """

    def __init__(self, name: str = "resnet18", in_channels: int = 3, width_divisor: int = 1,
                 pretrained: str | os.PathLike | None = None):
        super().__init__()
        if name not in BACKBONES:
            raise UnknownName("backbone", name, BACKBONES)
        if not is_int(in_channels) or in_channels < 1:
            raise FerlibError(f"backbone {name} needs in_channels >= 1, got {in_channels!r}")
        if not is_int(width_divisor) or width_divisor not in WIDTH_DIVISORS:
            raise FerlibError(f"backbone {name} width_divisor {width_divisor!r}: use a divisor of 64 "
                              f"({', '.join(map(str, WIDTH_DIVISORS))}) so that every width (64 ... 4096) "
                              "divides exactly")
        if pretrained is not None and width_divisor != 1:
            raise FerlibError(f"pretrained {name} weights need the full width (width_divisor 1, got "
                              f"{width_divisor}); use width_divisor=1 or pretrained=None")
        self.name, self.in_channels, self.width_divisor = name, in_channels, width_divisor
        self.min_size, self.min_conv3_size = MIN_SIZES[name], MIN_CONV3_SIZES[name]
        self.input_norm: nn.Module = nn.Identity()  # ImageNetInput once pretrained weights are loaded
        self.source: str = FROM_SCRATCH
        self.first_conv_adaptation: str | None = None
        if name == "alexnet":
            self.build_alexnet(in_channels, width_divisor)
        elif name == "resnet18":
            self.build_resnet18(in_channels, width_divisor)
        else:
            self.build_vgg(VGG_CONFIGS[name], in_channels, width_divisor)
        if pretrained is not None:
            self.load_pretrained(Path(pretrained))

    def build_alexnet(self, c: int, d: int) -> None:
        """torchvision's AlexNet (default PyTorch init, as torchvision's); Conv3 = features[:8]."""
        self.features = nn.Sequential(
            nn.Conv2d(c, 64 // d, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64 // d, 192 // d, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192 // d, 384 // d, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384 // d, 256 // d, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256 // d, 256 // d, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(  # torchvision's, less the last Linear
            nn.Dropout(p=0.5), nn.Linear(256 // d * 6 * 6, 4096 // d), nn.ReLU(inplace=True),
            nn.Dropout(p=0.5), nn.Linear(4096 // d, 4096 // d), nn.ReLU(inplace=True),
        )
        self.conv3_end, self.conv3_channels, self.feature_dim = 8, 384 // d, 4096 // d

    def build_vgg(self, config: tuple, c: int, d: int) -> None:
        """torchvision's VGG without BN and its initialisation; Conv3 = features up to the third max-pool."""
        layers, pools = [], 0
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                pools += 1
                if pools == 3:
                    self.conv3_end, self.conv3_channels = len(layers), c
            else:
                layers += [nn.Conv2d(c, item // d, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c = item // d
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(  # torchvision's, less the last Linear
            nn.Linear(512 // d * 7 * 7, 4096 // d), nn.ReLU(True), nn.Dropout(p=0.5),
            nn.Linear(4096 // d, 4096 // d), nn.ReLU(True), nn.Dropout(p=0.5),
        )
        self.feature_dim = 4096 // d
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def build_resnet18(self, c: int, d: int) -> None:
        """torchvision's ResNet-18 (its BasicBlock, 1x1-conv + BN downsamples, initialisation); Conv3 = layer3."""
        self.conv1 = nn.Conv2d(c, 64 // d, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64 // d)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64 // d
        for index, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            planes //= d
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(inplanes, planes, stride, downsample),
                                                         BasicBlock(planes, planes)))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv3_channels, self.feature_dim = 256 // d, 512 // d
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def load_pretrained(self, path: Path) -> None:
        """A torchvision state_dict of this architecture from `path`, its head ignored; an RGB first conv
        adapted to in_channels."""
        head = HEAD[self.name]
        expected = (f"a torchvision {self.name} state_dict saved with torch.save(model.state_dict(), path), "
                    f"e.g. the ImageNet weights torchvision publishes as {self.name}-*.pth")
        state, self.first_conv_adaptation = matched_state_dict(
            path, self.state_dict(), name=self.name, expected=expected, head=head,
            first_conv=FIRST_CONV[self.name], in_channels=self.in_channels)
        self.load_state_dict(state, strict=True)
        self.source = f"ImageNet weights from {path}"
        self.input_norm = ImageNetInput(self.in_channels)

    def check_input_size(self, size) -> None:
        """FerlibError if an input of `size` (int or (H, W)) is too small for the maps to survive."""
        height, width = sides(size)
        if min(height, width) < self.min_size:
            raise FerlibError(f"{self.name} needs inputs of at least {self.min_size} x {self.min_size} px "
                              f"({SHRINKS[self.name]} shrink anything smaller to nothing); got {height} x {width}. "
                              "Resize the faces (e.g. the preset's image size) or pick another backbone.")

    def check_conv3_size(self, size) -> None:
        """FerlibError if Conv3 maps of `size` (int or (H, W)) are too small for the rest of the network."""
        height, width = sides(size)
        if min(height, width) < self.min_conv3_size:
            raise FerlibError(f"{self.name}'s conv3_to_features needs Conv3 maps of at least "
                              f"{self.min_conv3_size} x {self.min_conv3_size} (what a {self.min_size} px input "
                              f"gives); got {height} x {width}")

    def stem_to_conv3(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) in [-1, 1] -> Conv3 maps (B, conv3_channels, h, w)."""
        self.check_input_size(x.shape[-2:])
        x = self.input_norm(x)
        if self.name == "resnet18":
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            return self.layer3(self.layer2(self.layer1(x)))
        for layer in self.features[:self.conv3_end]:
            x = layer(x)
        return x

    def conv3_to_features(self, maps: torch.Tensor) -> torch.Tensor:
        """Conv3 maps (B, conv3_channels, h, w) -> (B, feature_dim)."""
        self.check_conv3_size(maps.shape[-2:])
        if self.name == "resnet18":
            return torch.flatten(self.avgpool(self.layer4(maps)), 1)
        for layer in self.features[self.conv3_end:]:
            maps = layer(maps)
        return self.classifier(torch.flatten(self.avgpool(maps), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) in [-1, 1] -> (B, feature_dim)."""
        return self.conv3_to_features(self.stem_to_conv3(x))


def make_backbone(name: str, in_channels: int = 3, width_divisor: int = 1,
                  pretrained: str | os.PathLike | None = None) -> Backbone:
    """One of BACKBONES; width_divisor 1 is torchvision's architecture; pretrained a local file or None."""
    return Backbone(name, in_channels, width_divisor, pretrained)
