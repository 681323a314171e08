"""Shared network blocks: self-attention, centre/island loss, ResNet trunks, PatchGAN."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torchvision
from torch import nn

from ferlib.errors import FerlibError
from ferlib.nn.attention import SelfAttention, query_position
from ferlib.nn.centre_losses import CenterLoss, IslandLoss, centre_optimizer
from ferlib.nn.patchgan import PatchDiscriminator, receptive_field
from ferlib.nn.trunks import FROM_SCRATCH, RESNET_DEPTHS, ResNetTrunk

torch.set_num_threads(1)  # as the other test files: 2 busy cores make intra-op threading slower, not faster


# ----------------------------------------------------------------------------- self-attention

def reference_attention(module: SelfAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The module's output and attention written out position by position (row-major i = y * W + x)."""
    b, c, h, w = x.shape
    wq, bq = module.query.weight[:, :, 0, 0], module.query.bias
    wk, bk = module.key.weight[:, :, 0, 0], module.key.bias
    wv, bv = module.value.weight[:, :, 0, 0], module.value.bias
    positions = [(y, xx) for y in range(h) for xx in range(w)]
    out = torch.empty_like(x)
    attention = torch.empty(b, h * w, h * w, dtype=x.dtype)
    for n in range(b):
        feature = {p: x[n, :, p[0], p[1]] for p in positions}
        for i, (yi, xi) in enumerate(positions):
            query = wq @ feature[(yi, xi)] + bq
            energies = torch.stack([query @ (wk @ feature[p] + bk) for p in positions])
            weights = torch.exp(energies - energies.max())
            weights = weights / weights.sum()
            attention[n, i] = weights
            attended = sum(weights[j] * (wv @ feature[p] + bv) for j, p in enumerate(positions))
            out[n, :, yi, xi] = module.gamma * attended + feature[(yi, xi)]
    return out, attention


def test_self_attention_starts_as_the_identity_exactly_but_gamma_still_learns():
    torch.manual_seed(0)
    module = SelfAttention(16)
    x = torch.randn(2, 16, 5, 7)
    assert module.gamma.shape == (1,) and module.gamma.item() == 0.0
    assert (module.query.out_channels, module.key.out_channels, module.value.out_channels) == (2, 2, 16)
    y = module(x)
    assert torch.equal(y, x)
    y.pow(2).sum().backward()
    assert module.gamma.grad is not None and module.gamma.grad.abs().item() > 0


def test_self_attention_matches_a_position_by_position_reference_on_a_non_square_map():
    torch.manual_seed(1)
    module = SelfAttention(4, reduction=2).double()
    with torch.no_grad():
        module.gamma.fill_(1.0)
    x = torch.randn(2, 4, 2, 3, dtype=torch.float64)
    expected_out, expected_attention = reference_attention(module, x)
    with torch.no_grad():
        out = module(x)
        attention = module.attention(x)
    assert out.shape == (2, 4, 2, 3) and attention.shape == (2, 6, 6)
    torch.testing.assert_close(attention, expected_attention, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, expected_out, rtol=1e-12, atol=1e-12)
    assert not torch.equal(out, x)
    assert query_position(1, 2, width=3) == 5


def test_attention_rows_sum_to_one_and_are_kept_only_when_asked():
    torch.manual_seed(2)
    module = SelfAttention(8, reduction=8)             # C2 = 1
    assert module.reduced_channels == 1
    assert SelfAttention(3).reduced_channels == 1      # max(1, 3 // 8)
    x = torch.randn(3, 8, 4, 6)
    module(x)
    assert module.last_attention is None
    module.keep_attention = True
    module(x)
    kept = module.last_attention
    assert kept.shape == (3, 24, 24) and not kept.requires_grad
    torch.testing.assert_close(kept.sum(dim=-1), torch.ones(3, 24))
    assert bool((kept > 0).all())
    torch.testing.assert_close(kept, module.attention(x).detach())


# ----------------------------------------------------------------------------- centre and island loss

def island_with(centres, alpha: float, reduction: str = "mean") -> IslandLoss:
    centres = torch.tensor(centres, dtype=torch.float32)
    loss = IslandLoss(centres.shape[0], centres.shape[1], alpha=alpha, reduction=reduction)
    with torch.no_grad():
        loss.centers.copy_(centres)
    return loss


FEATURES = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 4.0]])
LABELS = torch.tensor([0, 0, 1])
# centres (1, 0) and (0, 2): squared distances 1, 1, 4 -> sum 6, mean 2; the centres are orthogonal,
# so the ordered pairs (0, 1) and (1, 0) give (0 + 1) + (0 + 1) = 2.


@pytest.mark.parametrize("reduction, alpha, expected", [
    ("sum", 0.5, 6 + 0.5 * 2), ("mean", 0.5, 2 + 0.5 * 2),
    ("sum", 0.03, 6 + 0.03 * 2), ("mean", 0.03, 2 + 0.03 * 2),
])
def test_island_loss_equals_the_hand_computed_value(reduction, alpha, expected):
    loss = island_with([[1.0, 0.0], [0.0, 2.0]], alpha=alpha, reduction=reduction)
    assert loss(FEATURES, LABELS).item() == pytest.approx(expected, abs=1e-6)


def test_island_term_over_ordered_pairs_of_three_classes():
    # c0 = (1, 0), c1 = (0, 2), c2 = (-1, 0): pairs 0-1 and 1-2 orthogonal (1 each way), 0-2 opposite (0).
    loss = island_with([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]], alpha=1.0)
    assert loss.island_term().item() == pytest.approx(4.0, abs=1e-6)
    # the absent class 2 still counts: the term runs over all classes' centres
    assert loss(FEATURES, LABELS).item() == pytest.approx(2.0 + 4.0, abs=1e-6)


@pytest.mark.parametrize("second_centre, expected", [
    ([-3.0, 0.0], 0.0),   # opposite: cos = -1, the minimum
    ([0.0, 5.0], 2.0),    # orthogonal: cos = 0
    ([2.0, 0.0], 4.0),    # same direction: cos = 1, the maximum
])
def test_island_term_is_smallest_for_opposite_centres(second_centre, expected):
    loss = island_with([[1.0, 0.0], second_centre], alpha=1.0)
    assert loss.island_term().item() == pytest.approx(expected, abs=1e-6)
    features = loss.centers.detach().clone()            # features on their centres: centre term 0
    assert loss(features, torch.tensor([0, 1])).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_center_loss_is_island_loss_without_alpha(reduction):
    torch.manual_seed(3)
    centre = CenterLoss(4, 5, reduction=reduction)
    island = IslandLoss(4, 5, alpha=0.0, reduction=reduction)
    with torch.no_grad():
        island.centers.copy_(centre.centers)
    features, labels = torch.randn(6, 5), torch.tensor([0, 1, 3, 3, 2, 0])
    assert torch.equal(centre(features, labels), island(features, labels))
    expected = ((features - centre.centers[labels]) ** 2).sum(dim=1)
    expected = expected.sum() if reduction == "sum" else expected.mean()
    torch.testing.assert_close(centre(features, labels), expected)


def test_gradients_reach_features_and_centres():
    loss = island_with([[1.0, 0.0], [0.0, 2.0]], alpha=0.5)
    features = FEATURES.clone().requires_grad_(True)
    loss(features, LABELS).backward()
    # d/dx_i of mean ||x_i - c||^2 = (2 / M) (x_i - c_{y_i})
    expected = 2 / 3 * (FEATURES - torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]))
    torch.testing.assert_close(features.grad, expected)
    assert loss.centers.grad is not None and bool((loss.centers.grad.abs().sum(dim=1) > 0).all())


def test_centre_optimizer_steps_only_the_centres_towards_the_class_means():
    torch.manual_seed(4)
    net = nn.Linear(3, 2)
    loss = island_with([[1.0, 0.0], [0.0, 2.0]], alpha=0.0)
    optimiser = centre_optimizer(loss)
    assert [p for group in optimiser.param_groups for p in group["params"]] == [loss.centers]
    assert optimiser.param_groups[0]["lr"] == 0.5
    net_before = [p.detach().clone() for p in net.parameters()]
    features = net(torch.randn(4, 3))
    labels = torch.tensor([0, 0, 0, 1])
    means = torch.stack([features[:3].mean(0), features[3]]).detach()
    before = loss.centers.detach().clone()
    optimiser.zero_grad()
    loss(features, labels).backward()
    optimiser.step()
    assert all(torch.equal(a, b) for a, b in zip(net_before, net.parameters()))
    # mean reduction, lr 0.5: c_k moves the fraction n_k / M of the way to its class mean
    fractions = torch.tensor([[3 / 4], [1 / 4]])
    torch.testing.assert_close(loss.centers.detach(), before + fractions * (means - before))
    assert bool(((loss.centers - means).norm(dim=1) < (before - means).norm(dim=1)).all())


def test_centre_losses_reject_bad_inputs():
    loss = IslandLoss(3, 2)
    with pytest.raises(FerlibError, match="labels must lie in 0..2"):
        loss(torch.zeros(2, 2), torch.tensor([0, 3]))
    with pytest.raises(FerlibError, match=r"features of shape \(batch, 2\)"):
        loss(torch.zeros(2, 5), torch.tensor([0, 1]))
    with pytest.raises(FerlibError, match="reduction"):
        CenterLoss(3, 2, reduction="none")


# ----------------------------------------------------------------------------- ResNet trunks

@pytest.fixture(scope="module")
def resnet101_trunk():
    torch.manual_seed(5)
    return ResNetTrunk(101).eval()


def test_resnet101_trunk_is_torchvisions_resnet101_without_fc(resnet101_trunk):
    reference = torchvision.models.resnet101(weights=None)
    fc = sum(p.numel() for p in reference.fc.parameters())
    count = sum(p.numel() for p in resnet101_trunk.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) - fc
    assert count == 42_500_160
    assert set(resnet101_trunk.state_dict()) == {k for k in reference.state_dict() if not k.startswith("fc.")}
    assert resnet101_trunk.feature_dim == 2048
    assert resnet101_trunk.source == FROM_SCRATCH
    with torch.no_grad():
        assert resnet101_trunk(torch.randn(2, 3, 64, 64)).shape == (2, 2048)


def test_feature_dims_and_input_sizes():
    torch.manual_seed(6)
    assert RESNET_DEPTHS == (18, 34, 50, 101)
    assert [ResNetTrunk(d).feature_dim for d in (18, 34, 50)] == [512, 512, 2048]
    trunk = ResNetTrunk(18).eval()
    with torch.no_grad():
        assert trunk(torch.randn(1, 3, 224, 224)).shape == (1, 512)
        assert trunk(torch.randn(2, 3, 48, 48)).shape == (2, 512)
    grey = ResNetTrunk(18, in_channels=1).eval()
    assert grey.conv1.weight.shape == (64, 1, 7, 7)
    with torch.no_grad():
        assert grey(torch.randn(2, 1, 64, 64)).shape == (2, 512)
    with pytest.raises(FerlibError, match="valid depths are 18, 34, 50, 101"):
        ResNetTrunk(152)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision ResNet-18 state_dict (fc included) with random, seeded weights and BN statistics."""
    torch.manual_seed(7)
    net = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(net.state_dict(), path)
    net.fc = nn.Identity()
    return path, net.eval()


def test_pretrained_file_reproduces_torchvisions_outputs_exactly(resnet18_file, tmp_path):
    path, reference = resnet18_file
    trunk = ResNetTrunk(18, pretrained=path).eval()
    assert trunk.source == f"ImageNet weights from {path}"
    assert trunk.conv1_adaptation is None
    x = torch.rand(2, 3, 64, 64) * 2 - 1            # the study's [-1, 1] images
    imagenet = ((x + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(imagenet)                # torchvision's weights see ImageNet-normalised input
        torch.testing.assert_close(trunk(x), expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(reference(x), expected, atol=1e-3)   # the normalisation matters
    # the trunk's own state_dict is a valid `pretrained` file too
    own = tmp_path / "trunk.pth"
    torch.save(trunk.state_dict(), own)
    with torch.no_grad():
        torch.testing.assert_close(ResNetTrunk(18, pretrained=str(own)).eval()(x), expected, rtol=1e-5, atol=1e-6)
    assert set(trunk.state_dict()) == set(ResNetTrunk(18).state_dict())   # the normalisation adds no keys
    scratch = ResNetTrunk(18).eval()
    scratch.load_state_dict(trunk.state_dict())
    with torch.no_grad():                             # from scratch, [-1, 1] goes in as it is
        torch.testing.assert_close(scratch(x), reference(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("in_channels, copies", [(6, 2), (1, 1)])
def test_pretrained_conv1_adapted_keeps_the_rgb_response(resnet18_file, in_channels, copies):
    path, reference = resnet18_file
    trunk = ResNetTrunk(18, in_channels=in_channels, pretrained=path).eval()
    assert trunk.conv1.weight.shape == (64, in_channels, 7, 7)
    assert "adapted from RGB" in trunk.conv1_adaptation
    torch.manual_seed(8)
    from ferlib.nn.imagenet import ImageNetInput
    if in_channels == 6:                               # an RGB image stacked twice
        image = torch.rand(2, 3, 64, 64) * 2 - 1
        stacked = image.repeat(1, copies, 1, 1)
        rgb = ImageNetInput(3)(image)
    else:                                              # a grey image, and the same (normalised) grey in R, G and B
        stacked = torch.rand(2, 1, 64, 64) * 2 - 1
        rgb = ImageNetInput(1)(stacked).repeat(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(trunk(stacked), reference(rgb), rtol=1e-4, atol=1e-5)


def test_pretrained_file_errors(resnet18_file, tmp_path):
    path, _ = resnet18_file
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FerlibError, match="nowhere.pth does not exist"):
        ResNetTrunk(18, pretrained=missing)
    with pytest.raises(FerlibError, match=r"missing key\(s\) layer1.2"):  # ResNet-18 weights for a ResNet-34
        ResNetTrunk(34, pretrained=path)
    state = torch.load(path, weights_only=True)
    state["backbone.conv1.weight"] = state.pop("conv1.weight")
    renamed = tmp_path / "renamed.pth"
    torch.save(state, renamed)
    with pytest.raises(FerlibError, match=r"missing key\(s\) conv1.weight; unexpected key\(s\) backbone.conv1"):
        ResNetTrunk(18, pretrained=renamed)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FerlibError, match="cannot read pretrained weights file"):
        ResNetTrunk(18, pretrained=garbage)


def test_trunks_never_touch_the_network(resnet18_file, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    ResNetTrunk(18)
    ResNetTrunk(18, in_channels=6, pretrained=resnet18_file[0])


# ----------------------------------------------------------------------------- PatchGAN

def measured_receptive_field(n_layers: int, size: int = 256) -> tuple[int, int, int]:
    """(rows, cols, pixels) of the input that one central logit's gradient reaches."""
    torch.manual_seed(9)
    disc = PatchDiscriminator(3, width=8, n_layers=n_layers).eval()
    x = torch.randn(1, 3, size, size, requires_grad=True)
    logits = disc(x)
    logits[0, 0, logits.shape[2] // 2, logits.shape[3] // 2].backward()
    reached = x.grad[0].abs().sum(dim=0) != 0
    rows = reached.any(dim=1).nonzero().flatten()
    cols = reached.any(dim=0).nonzero().flatten()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1), int(reached.sum())


@pytest.mark.parametrize("n_layers, analytic", [(3, 70), (2, 34), (1, 16)])
def test_patchgan_receptive_field_is_measured_as_computed(n_layers, analytic):
    assert receptive_field(n_layers) == analytic
    rows, cols, pixels = measured_receptive_field(n_layers)
    assert (rows, cols, pixels) == (analytic, analytic, analytic * analytic)


def test_patchgan_matches_pix2pix():
    torch.manual_seed(10)
    disc = PatchDiscriminator(6)
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [
        (6, 64, 2), (64, 128, 2), (128, 256, 2), (256, 512, 1), (512, 1, 1)]
    assert sum(p.numel() for p in disc.parameters()) == 2_768_705   # pix2pix's netD: 2.769 M
    assert sum(isinstance(m, nn.BatchNorm2d) for m in disc.modules()) == 3
    assert disc(torch.randn(2, 6, 256, 256)).shape == (2, 1, 30, 30)
    assert math.isclose(float(convs[1].weight.detach().std()), 0.02, rel_tol=0.05)
    capped = PatchDiscriminator(3, width=4, n_layers=5)
    assert [m.out_channels for m in capped.modules() if isinstance(m, nn.Conv2d)] == [4, 8, 16, 32, 32, 32, 1]
    with pytest.raises(FerlibError, match="n_layers >= 1"):
        receptive_field(0)
