"""ADFL: Table 1's architecture and its parameter count, the gradient routing of the four losses,
neutral samples, AM-Softmax, Eq. 4 and Eq. 5 against hand-computed values, ten-crop prediction, the
dispeller report, the non-square data path, and smoke runs."""

import dataclasses
import math

import numpy as np
import pytest
from conftest import notebook_parameter_names
import torch

from ferlib.engine import Precision
from ferlib.errors import FerlibError
from ferlib.models.adfl import ADFL, PAPER_UNITS, PAPER_WIDTHS, ADFLTask, expressive_labels, uniform_target_loss
from ferlib.nn.margin import AdditiveMarginSoftmax
from ferlib.nn.sphereface import SphereFaceNet

GROUPS = ("shared", "expression_branch", "splitter", "neutral_branch", "dispeller", "residual_fc", "classifier")


pytestmark = pytest.mark.usefixtures("one_thread")


def small_model(mode="adfl", neutral=0, num_classes=4) -> ADFL:
    return ADFL(num_classes, neutral, 3, input_size=(24, 20), widths=(4, 8, 8, 16), units=(1, 1, 1, 1),
                feature_dim=16, mode=mode)


def batch(n=8, num_classes=4, neutral=0):
    labels = torch.arange(n) % num_classes
    return torch.randn(n, 3, 24, 20), labels


# ----------------------------------------------------------------------------- architecture


def conv_unit(c_in, c_out):
    """3x3 conv without bias + batch norm (weight, bias) + channel-wise PReLU."""
    return 9 * c_in * c_out + 2 * c_out + c_out


def stage_params(c_in, c_out, units):
    return conv_unit(c_in, c_out) + units * 2 * conv_unit(c_out, c_out)


def test_sphereface20_has_the_parameter_count_of_its_table():
    # SphereFace-20 (Liu et al. 2017, Table 2): 64/128/256/512 channels, 1/2/4/1 residual units,
    # 112x96 input -> 7x6 maps -> FC-512; every convolution with batch norm and PReLU (ADFL's rule)
    widths, units = (64, 128, 256, 512), (1, 2, 4, 1)
    channels = (3, *widths)
    expected = sum(stage_params(channels[i], channels[i + 1], units[i]) for i in range(4))
    expected += 512 * 7 * 6 * 512 + 512
    net = SphereFaceNet()
    assert sum(p.numel() for p in net.parameters()) == expected
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 20 and sum(c.stride == (2, 2) for c in convs) == 4
    assert net(torch.randn(2, 3, 112, 96)).shape == (2, 512)


def test_adfl_paper_architecture_follows_table_1():
    n = 8  # CK+: neutral + seven expressions
    model = ADFL(n, 0, 3, input_size=(112, 96))
    assert PAPER_WIDTHS == (32, 64, 128, 256) and PAPER_UNITS == (1, 2, 4, 1)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    channels = (3, *PAPER_WIDTHS)
    assert count(model.shared) == sum(stage_params(channels[i], channels[i + 1], PAPER_UNITS[i]) for i in range(3))
    branch = stage_params(128, 256, 1) + 256 * 7 * 6 * 256 + 256   # [3x3,256] S-2, one unit, FC-256 on 7x6 maps
    assert count(model.expression_branch) == count(model.neutral_branch) == branch
    assert count(model.splitter) == 256 * (n - 1) + (n - 1)          # #Expression Category - 1
    assert count(model.dispeller) == 256 * n + n                     # #Expression Category
    assert count(model.residual_fc) == 256 * 256 + 256               # B_r: FC-256
    assert count(model.classifier) == 256 * (n - 1)                  # AM-Softmax: normalised weights, no bias
    baseline = ADFL(n, 0, 3, input_size=(112, 96), mode="baseline")
    # the baseline is S + B_e + the classifier: a half-width SphereFace-20 with an FC-256 embedding
    assert count(baseline) == count(SphereFaceNet(3, PAPER_WIDTHS, PAPER_UNITS, (112, 96), 256)) + 256 * (n - 1)
    assert not hasattr(baseline, "splitter") and not hasattr(baseline, "neutral_branch")
    with torch.no_grad():
        feats = model.eval().encode(torch.randn(2, 3, 112, 96))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {k: (2, 256) for k in ("f_e", "f_n", "f_r", "h_r", "classified")}
    assert model(torch.randn(2, 3, 112, 96)).shape == (2, n - 1)


def constant_branches(model: ADFL, f_e: torch.Tensor, f_n: torch.Tensor) -> None:
    """Set B_e and B_n to output `f_e` and `f_n` for any input (last FC: zero weights, that bias) and
    B_r's FC to the identity, so that f_r and h_r are known by hand."""
    with torch.no_grad():
        for branch, value in ((model.expression_branch, f_e), (model.neutral_branch, f_n)):
            branch[-1].weight.zero_()
            branch[-1].bias.copy_(value)
        model.residual_fc.weight.copy_(torch.eye(len(f_e)))
        model.residual_fc.bias.zero_()


def test_eq_5_the_residual_is_f_e_minus_f_n_against_hand_set_branches():
    model = small_model().eval()
    f_e = torch.linspace(-1.0, 2.0, 16)
    f_n = torch.linspace(0.5, -0.5, 16) ** 2
    constant_branches(model, f_e, f_n)
    x, labels = batch()
    feats = model.encode(x)
    expected = (f_e - f_n).expand(len(x), -1)                        # Eq. 5, by hand
    assert torch.equal(feats["f_e"], f_e.expand(len(x), -1)) and torch.equal(feats["f_n"], f_n.expand(len(x), -1))
    assert torch.allclose(feats["f_r"], expected) and torch.allclose(feats["h_r"], expected)
    assert torch.allclose(model(x), model.classifier(expected))     # the classifier reads FC(f_e - f_n)
    # l_r (Eq. 7) in `losses` builds its own residual: AM-Softmax of FC(f_e - f_n), over the expressive samples
    expressive, mask = expressive_labels(labels, 0)
    l_r = model.classifier.loss(expected[mask], expressive[mask])
    assert model.losses(x, labels)["l_r"].item() == pytest.approx(l_r.item(), rel=1e-5)
    assert model.classifier.loss((-expected)[mask], expressive[mask]).item() != pytest.approx(l_r.item(), rel=1e-3)
    # the untouched networks: the residual of two separately run branches, against encode's
    model = small_model().eval()
    with torch.no_grad():
        shared = model.shared(x)
        by_hand = model.expression_branch(shared) - model.neutral_branch(shared)
        feats = model.encode(x)
    assert torch.allclose(feats["f_r"], by_hand, atol=1e-6) and torch.allclose(feats["h_r"], model.residual_fc(by_hand),
                                                                                atol=1e-6)


def test_wrong_input_size_and_missing_neutral_fail_clearly():
    with pytest.raises(FerlibError, match="built for 24x20 inputs, got 32x32"):
        small_model().encode(torch.randn(1, 3, 32, 32))
    with pytest.raises(FerlibError, match="neutral_index 5"):
        ADFL(4, 5)
    with pytest.raises(FerlibError, match="mode 'dfl'"):
        ADFL(4, 0, mode="dfl")


# ----------------------------------------------------------------------------- gradient routing


def receiving_groups(model: ADFL, loss: torch.Tensor) -> set[str]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    got = set()
    for group in GROUPS:
        if not hasattr(model, group):
            continue
        grads = [p.grad for p in getattr(model, group).parameters()]
        if any(g is not None and g.abs().sum() > 0 for g in grads):
            got.add(group)
    return got


@pytest.mark.parametrize("loss, groups", [
    ("l_d", {"splitter", "expression_branch", "shared"}),    # red arrow of Fig. 2
    ("l_a", {"dispeller"}),                                  # the dispeller only
    ("l_n", {"neutral_branch", "shared"}),                   # B_n and S only, not the dispeller
    ("l_r", {"residual_fc", "classifier"}),                  # green arrow: B_r's FC and the classifier only
])
def test_each_loss_reaches_exactly_the_parameters_the_paper_routes_it_to(loss, groups):
    model = small_model()
    x, labels = batch()
    parts = model.losses(x, labels)
    assert receiving_groups(model, parts[loss]) == groups


def test_every_parameter_of_a_receiving_group_gets_gradient_from_eq_8():
    model = small_model()
    task = ADFLTask(model)
    x, labels = batch()
    model.zero_grad(set_to_none=True)
    task.total_loss(model.losses(x, labels)).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_eq_8_weights_the_losses_1_10_1():
    model = small_model()
    task = ADFLTask(model)
    parts = {"l_d": torch.tensor(1.0), "l_a": torch.tensor(2.0), "l_n": torch.tensor(3.0), "l_r": torch.tensor(4.0)}
    assert task.total_loss(parts).item() == pytest.approx(1 * 1 + 10 * (2 + 3) + 1 * 4)


@pytest.mark.parametrize("neutral", [0, 2, 3])
def test_neutral_samples_contribute_nothing_to_l_d_l_n_and_l_r(neutral):
    model = small_model(neutral=neutral).eval()  # eval: batch norm uses running statistics, samples are independent
    x, labels = batch(neutral=neutral)
    x.requires_grad_(True)
    parts = model.losses(x, labels)
    is_neutral = labels == neutral
    for name in ("l_d", "l_n", "l_r"):
        grad, = torch.autograd.grad(parts[name], x, retain_graph=True, allow_unused=True)
        grad = torch.zeros_like(x) if grad is None else grad
        assert grad[is_neutral].abs().max() == 0, f"{name} reaches neutral inputs"
    grad, = torch.autograd.grad(parts["l_d"], x, retain_graph=True)
    assert grad[~is_neutral].abs().max() > 0
    # the same losses on the batch without its neutral samples: averages over the expressive ones only
    kept = model.losses(x[~is_neutral], labels[~is_neutral])
    for name in ("l_d", "l_n", "l_r"):
        assert torch.allclose(parts[name], kept[name], atol=1e-6)
    # a batch of neutral faces only: l_d, l_n and l_r are exactly 0; l_a (the dispeller) still learns
    only = model.losses(x[is_neutral], labels[is_neutral])
    assert [only[n].item() for n in ("l_d", "l_n", "l_r")] == [0.0, 0.0, 0.0] and only["l_a"] > 0


def test_expressive_labels_skip_the_neutral_index():
    labels = torch.tensor([0, 1, 2, 3, 4])
    mapped, mask = expressive_labels(labels, 2)
    assert mask.tolist() == [True, True, False, True, True]
    assert mapped[mask].tolist() == [0, 1, 2, 3]


def test_baseline_trains_with_am_softmax_alone():
    model = small_model(mode="baseline")
    x, labels = batch()
    parts = model.losses(x, labels)
    assert set(parts) == {"ams"}
    assert receiving_groups(model, parts["ams"]) == {"shared", "expression_branch", "classifier"}


# ----------------------------------------------------------------------------- the two formulas


def test_am_softmax_equals_the_hand_computed_eq_6():
    head = AdditiveMarginSoftmax(2, 3, s=30.0, m=0.35)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]]))  # normalised to unit rows inside
    f = torch.tensor([[3.0, 4.0]])                                              # normalised: (0.6, 0.8)
    cos = [0.6, 0.8, -(0.6 + 0.8) / math.sqrt(2)]
    y = 0
    target = math.exp(30 * (cos[y] - 0.35))
    expected = -math.log(target / (target + math.exp(30 * cos[1]) + math.exp(30 * cos[2])))
    assert head.loss(f, torch.tensor([y])).item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(head(f), 30 * torch.tensor([cos]), atol=1e-5)  # test time: no margin
    # with m = 0 it is the softmax of s cos
    plain = AdditiveMarginSoftmax(2, 3, s=30.0, m=0.0)
    plain.weight = head.weight
    assert plain.loss(f, torch.tensor([1])).item() == pytest.approx(
        -math.log(math.exp(30 * cos[1]) / sum(math.exp(30 * c) for c in cos)), abs=1e-6)


def test_l_n_is_log_n_at_the_uniform_prediction_and_larger_anywhere_else():
    n = 7
    uniform = torch.zeros(1, n, requires_grad=True)
    loss = uniform_target_loss(uniform)
    assert loss.item() == pytest.approx(math.log(n))
    loss.backward()
    assert uniform.grad.abs().max() < 1e-7  # a minimum: zero gradient
    others = torch.randn(200, n) * 3
    assert (uniform_target_loss(others) > math.log(n)).all()
    assert uniform_target_loss(torch.full((1, n), 5.0)).item() == pytest.approx(math.log(n))  # any constant logits


# ----------------------------------------------------------------------------- prediction and training


def test_predict_scores_only_the_expressive_images_and_ten_crops_average():
    model = small_model(neutral=0).eval()
    task = ADFLTask(model)
    x, labels = batch(n=8)
    logits, y, features = task.predict({"image": x, "label": labels})
    assert logits.shape == (6, 3) and y.tolist() == [0, 1, 2, 0, 1, 2] and features.shape == (6, 16)
    crops = torch.stack([x, x.flip(-1)], dim=1)  # (B, 2, C, h, w): two "crops"
    with torch.no_grad():
        avg_logits, _, _ = task.predict({"image": crops, "label": labels})
        one = model(x[labels != 0])
        flipped = model(x.flip(-1)[labels != 0])
    assert torch.allclose(avg_logits, (one + flipped) / 2, atol=1e-5)


def test_smoke_train_step_runs_and_its_losses_fall_on_one_repeated_batch():
    """Smoke test: train_step runs, and on one repeated batch its losses fall; not a loss test (a wrong
    sign or routing can pass it: the routing and Eqs. 4, 6 and 8 are tested above)."""
    model = small_model()
    task = ADFLTask(model, lr=1e-3)
    task.amp = Precision(torch.device("cpu"), False)
    x, labels = batch(n=16)
    first = task.train_step({"image": x, "label": labels}, 0)
    for step in range(1, 30):
        last = task.train_step({"image": x, "label": labels}, step)
    assert last["loss"] < first["loss"] and last["l_d"] < first["l_d"] and last["l_r"] < first["l_r"]
    assert last["l_a"] < first["l_a"]


def test_a_smoke_run_of_the_experiment_trains_both_methods(tmp_path):
    from ferlib.experiments import adfl
    cfg = adfl.ADFLConfig.from_preset("smoke", epochs=2, scale=0.3, width=4, out_dir=str(tmp_path), table_datasets="")
    result = adfl.run(cfg, progress=False)
    assert [f.method for f in result.folds] == ["baseline", "adfl"]
    for f in result.folds:
        assert f.record["test"]["class_names"] == list(adfl.expressive_classes(f.data.classes))
        assert f.test["n"] == int((f.data.test.labels != f.data.classes.index("neutral")).sum())
        assert f.test["logits"].shape[1] == len(f.data.classes) - 1
    feats = adfl.encode_split(result.of("adfl")[0], "test")
    assert len(feats["label"]) == len(result.folds[1].data.test) and set(feats) >= {"f_e", "f_n", "f_r", "h_r"}
    table = adfl.probe_table(result.folds, seed=0)
    assert list(table["method"]) == ["raw pixels", "Baseline", "ADFL", "ADFL", "ADFL", "ADFL"]
    # the dispeller report against the dispeller run by hand on f_n of every test image (centre crop)
    fold = result.of("adfl")[0]
    report = adfl.dispeller_report(fold)
    model = fold.task.model.eval()
    test = adfl.single_crop(fold.data, "test")
    with torch.no_grad():
        images = torch.stack([test[i]["image"] for i in range(len(test))])
        logits = model.dispeller(model.neutral_branch(model.shared(images)))
    labels = torch.as_tensor(test.labels)
    assert len(labels) == len(fold.data.test) and (labels == fold.data.classes.index("neutral")).any()
    assert report["dispeller acc"] == pytest.approx((logits.argmax(1) == labels).float().mean().item(), abs=1e-9)
    probs = logits.softmax(1)
    entropy = torch.special.entr(probs).sum(1).mean() / math.log(len(fold.data.classes))
    assert report["normalised entropy"] == pytest.approx(entropy.item(), abs=1e-4)
    assert report["chance"] == pytest.approx(1 / len(fold.data.classes))
    # a dispeller set by hand to name class c whatever f_n is: its accuracy is the share of c in the test labels
    c = int(torch.bincount(labels).argmax())
    with torch.no_grad():
        model.dispeller.weight.zero_()
        model.dispeller.bias.copy_(torch.eye(len(fold.data.classes))[c])
    n = len(fold.data.classes)
    p_c, p_other = math.e / (math.e + n - 1), 1 / (math.e + n - 1)
    report = adfl.dispeller_report(fold)
    share = (labels == c).float().mean().item()
    assert 0 < share < 1 and report["dispeller acc"] == pytest.approx(share, abs=1e-9)
    assert report["normalised entropy"] == pytest.approx(
        -(p_c * math.log(p_c) + (n - 1) * p_other * math.log(p_other)) / math.log(n), abs=1e-5)


# ----------------------------------------------------------------------------- config and data


def test_adfl_notebook_parameters_map_onto_the_config_and_presets_match_the_paper():
    from ferlib.experiments import adfl
    names = notebook_parameter_names("adfl")
    from ferlib.study.results import VIEW_PARAMETERS
    assert set(VIEW_PARAMETERS) <= names   # which registry records the chapter shows: not config fields
    assert names - set(VIEW_PARAMETERS) <= {f.name for f in dataclasses.fields(adfl.ADFLConfig)}
    assert {"dataset", "fold", "folds", "preset", "epochs", "seed", "data_root", "device", "out_dir", "methods",
            "test_crops"} <= names
    paper = adfl.ADFLConfig.from_preset("paper")
    assert (paper.aligned_size, paper.crop_size, paper.widths) == ((128, 110), (112, 96), PAPER_WIDTHS)
    assert (paper.batch_size, paper.epochs, paper.lr, paper.betas, paper.eps, paper.weight_decay) == (
        64, 100, 1e-4, (0.9, 0.999), 1e-8, 5e-4)
    assert (paper.margin, paper.scale_s, paper.lambda_d, paper.lambda_n, paper.lambda_r) == (0.35, 30, 1, 10, 1)
    assert set(adfl.PRESETS["paper"]) == set(adfl.PRESETS["smoke"])
    with pytest.raises(FerlibError, match="choose from baseline, adfl"):
        adfl.ADFLConfig.from_preset("smoke", methods="adfl,derl").method_list()
    with pytest.raises(FerlibError, match="only SynthFER"):
        adfl.replace_dataset(paper, "mmi")


def test_non_square_synthfer_is_the_centre_of_the_square_render():
    from ferlib.data.registry import load_dataset
    square = load_dataset("synth-mmi", size=55, scale=0.1)
    narrow = load_dataset("synth-mmi", size=(55, 47), scale=0.1)
    assert narrow.images.shape[1:3] == (55, 47)
    assert np.array_equal(narrow.images, square.images[:, :, 4:51])
    assert "55x47 px" in narrow.source


def test_a_prepared_cache_loads_at_a_non_square_size(tmp_path):
    from ferlib.data.prepare import load_prepared, prepare
    cache = prepare("synth-mmi", None, "adfl", tmp_path / "c", scale=0.4, progress=False, detector="unused")
    assert load_prepared(cache, size=(55, 47)).images.shape[1:3] == (55, 47)
    assert load_prepared(cache, size=24).images.shape[1:3] == (24, 24)


def test_a_real_dataset_layout_runs_through_adfl_at_128x110(tmp_path):
    """CK+ in its owners' layout: aligned by five landmarks to 128x110, loaded at the smoke preset's
    55x47 without squashing, trained and tested (neutral first frames included, not scored)."""
    from ferlib.data import align
    from ferlib.data.layouts import build_layout
    from ferlib.data.prepare import load_prepared, prepare
    from ferlib.experiments import adfl
    fixture = build_layout("ckplus", tmp_path / "CK+")
    cache = prepare("ckplus", fixture.root, "adfl", tmp_path / "cache", progress=False, detector=align.FaceDetector())
    assert load_prepared(cache).images.shape[1:3] == (128, 110)
    cfg = adfl.ADFLConfig.from_preset("smoke", dataset="ckplus", data_root=str(cache), epochs=1, width=4,
                                      table_datasets="", out_dir=str(tmp_path / "results"))
    data = adfl.load(cfg)
    assert data.loaded.images.shape[1:3] == (55, 47) and "MTCNN-aligned to 128x110" in data.source
    assert (data.manifest["label"] == "neutral").sum() == data.manifest["sequence"].nunique()
    result = adfl.run(cfg, data, progress=False)
    assert [f.record["finished"] for f in result.folds] == [True, True]


def test_the_disentanglement_summary_reads_the_probe_table():
    import pandas as pd
    from ferlib.experiments import adfl
    t = adfl.FEATURE_TITLES

    def table(n_identity, n_expression):
        return pd.DataFrame([
            {"method": "ADFL", "feature": t["f_e"], "identity x chance": 10.0, "expression x chance": 3.0},
            {"method": "ADFL", "feature": t["f_n"], "identity x chance": n_identity, "expression x chance": n_expression},
            {"method": "ADFL", "feature": t["f_r"], "identity x chance": 12.0, "expression x chance": 3.2}])

    assert adfl.disentanglement_summary(table(30.0, 1.5)).endswith("this run shows both.")
    assert adfl.disentanglement_summary(table(30.0, 3.1)).endswith("this run shows one.")
    assert adfl.disentanglement_summary(table(5.0, 3.1)).endswith("this run shows neither.")
    assert "f_n 30.0x chance" in adfl.disentanglement_summary(table(30.0, 1.5))
    assert "did not run" in adfl.disentanglement_summary(table(1, 1).assign(method="Baseline"))


def test_an_unknown_test_crop_mode_is_refused(tmp_path):
    from ferlib.experiments import adfl
    cfg = adfl.ADFLConfig.from_preset("smoke", test_crops="five", scale=0.3, out_dir=str(tmp_path))
    with pytest.raises(FerlibError, match="test_crops='five'"):
        adfl.run_fold(cfg, adfl.load(cfg), 0, "adfl", progress=False)
