"""torchvision ResNets without their classifier: image -> pooled feature vector.

IF-GAN's expression classifier E (and its baseline) is a ResNet-101 pre-trained on ImageNet.
The study never downloads weights: the trunk is built with `weights=None` and, when the user
has an ImageNet checkpoint on disk, loads it from that file. Otherwise it trains from scratch,
and `source` says so, so the record cannot pass a from-scratch run off as a pre-trained one.

The trunk's submodules carry torchvision's names (conv1, bn1, layer1..layer4, ...), so its
state_dict has exactly torchvision's keys minus fc.*: a torchvision checkpoint loads into it,
and its own state_dict can be given back as `pretrained`.

Inputs with other than 3 channels get a new conv1. From a 3-channel checkpoint its weights are
adapted (the rule of timm's `adapt_input_conv`, chosen because it keeps the pretrained
activation scale, which the pretrained BatchNorm statistics expect):

- in_channels a multiple of 3 (e.g. 6 for an [I_SE, I_AE] pair): the RGB filters repeated
  in_channels / 3 times, scaled by 3 / in_channels, so k identical RGB images stacked give
  exactly the pretrained response to one;
- otherwise (e.g. 1 for greyscale): the RGB filters averaged over R, G, B, put in every channel
  and scaled by 3 / in_channels (for one channel: the sum over RGB), so a grey image copied into
  every channel gives exactly the pretrained response to that grey image in RGB.

With pretrained weights the trunk normalises its [-1, 1] input the way ImageNet weights expect
(`ferlib.nn.imagenet.ImageNetInput`, attribute `input_norm`); from scratch it takes [-1, 1] as it is.

Small inputs work (48-64 px faces included): torchvision's ResNet ends in adaptive average
pooling. It downsamples 32 times, so a 64 x 64 face reaches layer4 as a 2 x 2 map and anything up
to 32 x 32 as a single position.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from ferlib.errors import FerlibError
from ferlib.nn.imagenet import ImageNetInput

RESNET_DEPTHS = (18, 34, 50, 101)
TRUNK_PARTS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
FROM_SCRATCH = "trained from scratch (no pretrained weights given)"


def adapt_conv1_weight(rgb_weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(out, 3, k, k) pretrained RGB filters -> (out, in_channels, k, k) (rule in the module docstring)."""
    if in_channels % 3 == 0:
        adapted = rgb_weight.repeat(1, in_channels // 3, 1, 1)
    else:
        adapted = rgb_weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
    return adapted * (3.0 / in_channels)


def read_state_dict(path: Path, depth: int | None = None, expected: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, or a FerlibError saying what the file should hold
    (`expected`, or a torchvision ResNet-`depth` state_dict)."""
    expected = expected or (f"a torchvision ResNet-{depth} state_dict saved with torch.save(model.state_dict(), "
                            f"path), e.g. the ImageNet weights torchvision publishes as resnet{depth}-*.pth")
    if not path.is_file():
        raise FerlibError(f"pretrained weights file {path} does not exist; it should be {expected}. "
                          "Pass pretrained=None to train from scratch.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated, foreign or pickled-object file
        raise FerlibError(f"cannot read pretrained weights file {path} ({type(error).__name__}: {error}); "
                          f"it should be {expected}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FerlibError(f"pretrained weights file {path} does not hold a name -> tensor dict; "
                          f"it should be {expected}")
    return state


def matched_state_dict(path: Path, own: dict[str, torch.Tensor], *, name: str, expected: str, head: str,
                       first_conv: str, in_channels: int) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of the torchvision `name` checkpoint at `path` ready for strict loading into a model
    whose state_dict is `own`: the head's keys (`head` prefix) dropped, an RGB first conv (`first_conv`,
    a module name) adapted to `in_channels`. Returns (state, how the first conv was adapted or None);
    a FerlibError names each key or shape that does not match."""
    state = {k: v for k, v in read_state_dict(path, expected=expected).items() if not k.startswith(head)}
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing or unexpected:
        problems = [f"{what} key(s) {list_first(keys)}"
                    for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise FerlibError(f"pretrained weights file {path} does not match a torchvision {name} ({head}* ignored): "
                          f"{'; '.join(problems)}; it should be {expected} (no 'module.' prefixes, no wrapper dict)")
    key, adapted = first_conv + ".weight", None
    if state[key].shape[1] != in_channels:
        if state[key].shape[1] != 3:
            raise FerlibError(f"pretrained weights file {path} has a first conv for {state[key].shape[1]} input "
                              f"channels; only RGB (3-channel) weights can be adapted to {in_channels} channels")
        state[key] = adapt_conv1_weight(state[key], in_channels)
        adapted = (f"{first_conv} adapted from RGB to {in_channels} channels "
                   f"({'RGB filters repeated' if in_channels % 3 == 0 else 'RGB filters averaged'}, "
                   f"scaled by 3/{in_channels})")
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})"
             for k, v in state.items() if v.shape != own[k].shape]
    if wrong:
        raise FerlibError(f"pretrained weights file {path} has tensors of the wrong shape for a torchvision "
                          f"{name}: {', '.join(wrong[:5])}")
    return state, adapted


def list_first(keys, n: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (and {len(keys) - n} more)" if len(keys) > n else "")


class ResNetTrunk(nn.Module):
    """torchvision's ResNet without its fc: image -> (B, feature_dim) pooled features.

    depth: one of RESNET_DEPTHS; IF-GAN uses 101.
    in_channels: input channels; != 3 replaces conv1 (see the module docstring).
    pretrained: None to train from scratch, or a local file holding a torchvision ResNet
        state_dict (its fc.* keys are ignored; every other key must match). Nothing is ever
        downloaded.

    feature_dim: 512 for depths 18/34, 2048 for 50/101.
    source: "ImageNet weights from <path>" or "trained from scratch (no pretrained weights given)".
    conv1_adaptation: None, or how conv1 was changed for in_channels != 3.
    """

    def __init__(self, depth: int = 101, in_channels: int = 3, pretrained: str | os.PathLike | None = None):
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise FerlibError(f"ResNet depth {depth!r} is not available; valid depths are "
                              f"{', '.join(map(str, RESNET_DEPTHS))}")
        if in_channels < 1:
            raise FerlibError(f"ResNetTrunk needs in_channels >= 1, got {in_channels}")
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.depth = depth
        self.in_channels = in_channels
        self.feature_dim: int = net.fc.in_features
        for name in TRUNK_PARTS:
            setattr(self, name, getattr(net, name))
        self.source: str = FROM_SCRATCH
        self.conv1_adaptation: str | None = None
        self.input_norm: nn.Module = nn.Identity()  # ImageNetInput once pretrained weights are loaded

        rgb_conv1 = self.conv1
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, rgb_conv1.out_channels, kernel_size=rgb_conv1.kernel_size,
                                   stride=rgb_conv1.stride, padding=rgb_conv1.padding, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
            self.conv1_adaptation = f"conv1 replaced for {in_channels} input channels (random init)"
        if pretrained is not None:
            self.load_pretrained(Path(pretrained))

    def load_pretrained(self, path: Path) -> None:
        """Load a torchvision ResNet state_dict from `path`, ignoring fc.*; adapt an RGB conv1."""
        expected = (f"a torchvision ResNet-{self.depth} state_dict saved with torch.save(model.state_dict(), "
                    f"path), e.g. the ImageNet weights torchvision publishes as resnet{self.depth}-*.pth")
        state, adapted = matched_state_dict(path, self.state_dict(), name=f"ResNet-{self.depth}", expected=expected,
                                            head="fc.", first_conv="conv1", in_channels=self.in_channels)
        self.load_state_dict(state, strict=True)
        self.source = f"ImageNet weights from {path}"
        self.conv1_adaptation = adapted
        self.input_norm = ImageNetInput(self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) in [-1, 1] -> (B, feature_dim)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.input_norm(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)
