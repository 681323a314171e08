"""EAN Table 5 backbones: torchvision's layouts (exactly, at width_divisor 1), divided widths, the
Conv3 split, input sizes, greyscale, refused settings."""

import pytest
import torch
import torchvision
from torch import nn

from ferlib.errors import FerlibError, UnknownName
from ferlib.nn.backbones import BACKBONES, MIN_CONV3_SIZES, MIN_SIZES, make_backbone, parameter_count
from ferlib.nn.imagenet import ImageNetInput

HEAD = {"alexnet": "classifier.6", "vgg13": "classifier.6", "vgg16": "classifier.6", "resnet18": "fc"}
CONV3_CHANNELS = {"alexnet": 384, "vgg13": 256, "vgg16": 256, "resnet18": 256}
CONV3_SIDE = {"alexnet": {64: 3, 224: 13}, "vgg13": {64: 8, 224: 28}, "vgg16": {64: 8, 224: 28},
              "resnet18": {64: 4, 224: 14}}
FEATURE_DIM = {"alexnet": 4096, "vgg13": 4096, "vgg16": 4096, "resnet18": 512}


def torchvision_model(name: str) -> nn.Module:
    return getattr(torchvision.models, name)(weights=None, num_classes=1000)


def torchvision_conv3(tv: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """torchvision's own layers up to Conv3, with the split points written out independently."""
    if name == "resnet18":
        x = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        return tv.layer3(tv.layer2(tv.layer1(x)))
    end = {"alexnet": 8, "vgg13": 15, "vgg16": 17}[name]  # conv3+ReLU; the 3rd max-pool of each VGG
    return tv.features[:end](x)


def layout(model: nn.Module, skip: str) -> list[tuple]:
    """(name, type, geometry) of every module but the root, `skip` and input_norm, in order."""
    rows = []
    for name, m in model.named_modules():
        if not name or name == skip or name.startswith(skip + ".") or name == "input_norm":
            continue
        geometry = ()
        if isinstance(m, nn.Conv2d):
            geometry = (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.bias is not None)
        elif isinstance(m, nn.Linear):
            geometry = (m.in_features, m.out_features)
        elif isinstance(m, nn.BatchNorm2d):
            geometry = (m.num_features,)
        elif isinstance(m, nn.MaxPool2d):
            geometry = (m.kernel_size, m.stride, m.padding)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            geometry = (m.output_size,)
        elif isinstance(m, nn.Dropout):
            geometry = (m.p,)
        rows.append((name, type(m), geometry))
    return rows


def divided(rows: list[tuple], d: int) -> list[tuple]:
    """torchvision's layout with every width / d (the RGB input and the 1000 classes kept)."""
    out = []
    for name, kind, g in rows:
        if kind is nn.Conv2d:
            g = (g[0] if g[0] == 3 else g[0] // d, g[1] // d) + g[2:]
        elif kind is nn.Linear:
            g = (g[0] // d, g[1] // d)
        elif kind is nn.BatchNorm2d:
            g = (g[0] // d,)
        out.append((name, kind, g))
    return out


@pytest.mark.parametrize("name", BACKBONES)
def test_full_width_is_torchvision(name, tmp_path, one_thread):
    with torch.device("meta"):
        tv, ours = torchvision_model(name), make_backbone(name)
    head = nn.Linear(ours.feature_dim, 1000, device="meta")
    assert parameter_count(ours) + parameter_count(head) == parameter_count(tv)
    assert layout(ours, "-") == layout(tv, HEAD[name])
    tv_state = tv.state_dict()
    own = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert own == {k: tuple(v.shape) for k, v in tv_state.items() if not k.startswith(HEAD[name] + ".")}
    assert {k[len(HEAD[name]) + 1:]: tuple(v.shape) for k, v in tv_state.items() if k.startswith(HEAD[name] + ".")} \
        == {k: tuple(v.shape) for k, v in head.state_dict().items()}
    del tv, ours, head

    tv = torchvision_model(name).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(tv.state_dict(), path)
    ours = make_backbone(name, pretrained=path).eval()
    path.unlink()
    assert ours.source == f"ImageNet weights from {path}"
    head = nn.Linear(ours.feature_dim, 1000)
    head.load_state_dict({k[len(HEAD[name]) + 1:]: v for k, v in tv.state_dict().items()
                          if k.startswith(HEAD[name] + ".")})
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        normalised = ImageNetInput(3)(x)  # pretrained weights put ImageNet normalisation in front
        torch.testing.assert_close(ours.stem_to_conv3(x), torchvision_conv3(tv, name, normalised))
        torch.testing.assert_close(head(ours(x)), tv(normalised))


@pytest.mark.parametrize("d", (1, 4, 8))
@pytest.mark.parametrize("name", BACKBONES)
def test_widths_are_torchvision_divided(name, d):
    with torch.device("meta"):
        tv, ours = torchvision_model(name), make_backbone(name, width_divisor=d)
    assert layout(ours, "-") == divided(layout(tv, HEAD[name]), d)
    tv_convs = [m.out_channels for m in tv.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in ours.modules() if isinstance(m, nn.Conv2d)] == [c // d for c in tv_convs]
    assert all(c % d == 0 for c in tv_convs)
    assert ours.feature_dim == FEATURE_DIM[name] // d and ours.conv3_channels == CONV3_CHANNELS[name] // d
    assert ours.source == "trained from scratch (no pretrained weights given)"


@pytest.mark.parametrize("name", BACKBONES)
def test_conv3_maps(name, one_thread):
    ours = make_backbone(name, width_divisor=8).eval()
    for size in (64, 224):
        with torch.no_grad():
            maps = ours.stem_to_conv3(torch.zeros(1, 3, size, size))
        side = CONV3_SIDE[name][size]
        assert maps.shape == (1, CONV3_CHANNELS[name] // 8, side, side)
        assert ours.conv3_to_features(maps).shape == (1, FEATURE_DIM[name] // 8)


@pytest.mark.parametrize("name", BACKBONES)
def test_forward_shapes_and_too_small_inputs(name, one_thread):
    ours = make_backbone(name, width_divisor=8)
    for size in (48, 64):
        x = torch.rand(2, 3, size, size) * 2 - 1
        if size < MIN_SIZES[name]:
            with pytest.raises(FerlibError, match=rf"{name} needs inputs of at least 63 x 63 px .* got 48 x 48"):
                ours(x)
            continue
        out = ours(x)
        assert out.shape == (2, FEATURE_DIM[name] // 8)
        out.sum().backward()
    if MIN_SIZES[name] > 1:
        with pytest.raises(FerlibError, match=f"at least {MIN_SIZES[name]} x {MIN_SIZES[name]} px"):
            ours(torch.zeros(2, 3, 96, MIN_SIZES[name] - 1))  # one side too small is enough
        with pytest.raises(FerlibError, match="Conv3 maps of at least"):
            ours.conv3_to_features(torch.zeros(2, ours.conv3_channels, MIN_CONV3_SIZES[name] - 1, 8))
        with pytest.raises(FerlibError, match=f"at least {MIN_SIZES[name]}"):
            ours.check_input_size(MIN_SIZES[name] - 1)
    ours.check_input_size(MIN_SIZES[name])
    ours.check_input_size((MIN_SIZES[name], 300))


@pytest.mark.parametrize("name", BACKBONES)
def test_min_sizes_are_the_measured_ones(name, monkeypatch, one_thread):
    """Without the checks, torch itself works at min_size and fails one pixel below it."""
    ours = make_backbone(name, width_divisor=16).eval()
    monkeypatch.setattr(ours, "check_input_size", lambda size: None)
    monkeypatch.setattr(ours, "check_conv3_size", lambda size: None)
    with torch.no_grad():
        at_min = ours.stem_to_conv3(torch.zeros(1, 3, MIN_SIZES[name], MIN_SIZES[name]))
        assert at_min.shape[-1] == MIN_CONV3_SIZES[name]
        assert ours.conv3_to_features(at_min).shape == (1, ours.feature_dim)
        if MIN_SIZES[name] > 1:
            with pytest.raises(RuntimeError):
                ours(torch.zeros(1, 3, MIN_SIZES[name] - 1, MIN_SIZES[name] - 1))
            with pytest.raises(RuntimeError):
                side = MIN_CONV3_SIZES[name] - 1
                ours.conv3_to_features(torch.zeros(1, ours.conv3_channels, side, side))


@pytest.mark.parametrize("name", BACKBONES)
def test_greyscale(name, one_thread):
    ours = make_backbone(name, in_channels=1, width_divisor=8)
    first = next(m for m in ours.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1 and first.out_channels == 64 // 8
    assert ours(torch.rand(2, 1, 64, 64) * 2 - 1).shape == (2, FEATURE_DIM[name] // 8)
    with pytest.raises(RuntimeError):
        ours(torch.rand(2, 3, 64, 64))


def test_greyscale_from_rgb_weights(tmp_path, one_thread):
    tv = torchvision_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    ours = make_backbone("resnet18", in_channels=1, pretrained=path)
    torch.testing.assert_close(ours.conv1.weight, tv.conv1.weight.sum(dim=1, keepdim=True))
    assert "adapted from RGB to 1 channels" in ours.first_conv_adaptation
    torch.testing.assert_close(ours.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)


@pytest.mark.parametrize("d", (0, -4, 3, 5, 12, 128, 4096, 2.0, True, "4"))
def test_refused_divisors(d):
    with pytest.raises(FerlibError, match=r"width_divisor .*divisor of 64 \(1, 2, 4, 8, 16, 32, 64\)"):
        make_backbone("vgg16", width_divisor=d)


def test_refused_settings(tmp_path):
    with pytest.raises(FerlibError, match=r"need the full width \(width_divisor 1, got 4\)"):
        make_backbone("vgg16", width_divisor=4, pretrained=tmp_path / "absent.pth")  # refused before reading
    with pytest.raises(UnknownName, match="unknown backbone 'vgg19'; valid backbones are: alexnet, resnet18, vgg13"):
        make_backbone("vgg19")
    with pytest.raises(FerlibError, match="in_channels >= 1"):
        make_backbone("alexnet", in_channels=0)
    with pytest.raises(FerlibError, match="does not exist; it should be a torchvision alexnet state_dict"):
        make_backbone("alexnet", pretrained=tmp_path / "absent.pth")
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_model("resnet18").state_dict(), path)
    with pytest.raises(FerlibError, match=r"does not match a torchvision alexnet .*missing key\(s\) classifier.1"):
        make_backbone("alexnet", pretrained=path)
    state = torchvision_model("resnet18").state_dict()
    state["conv1.weight"] = state["conv1.weight"][:, :2]
    torch.save(state, path)
    with pytest.raises(FerlibError, match="first conv for 2 input channels; only RGB"):
        make_backbone("resnet18", pretrained=path)


def test_never_downloads(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("a backbone tried to download weights")
    for module, attribute in ((torch.hub, "load_state_dict_from_url"), (torch.hub, "download_url_to_file"),
                              (torchvision.models._api, "load_state_dict_from_url")):
        monkeypatch.setattr(module, attribute, refuse, raising=module is torch.hub)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_model("resnet18").state_dict(), path)
    with torch.device("meta"):
        for name in BACKBONES:
            make_backbone(name)
    assert make_backbone("resnet18", pretrained=path).source.endswith(str(path))
