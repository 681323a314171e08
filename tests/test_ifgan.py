"""IF-GAN: generator shapes and attention placement, the D and G + E sub-steps of train_step,
Eqs. 2-4 against hand-computed values, average targets from training subjects only, and a smoke run."""

import dataclasses
import math

import numpy as np
import pytest
from conftest import notebook_parameter_names
import torch

from ferlib.engine import Precision
from ferlib.errors import FerlibError
from ferlib.models.ifgan import (IFGAN, IFGANTask, UNetGenerator, average_targets,
                                 discriminator_adversarial_loss, generator_adversarial_loss, l1_loss,
                                 tuple_softmax_loss)
from ferlib.nn.attention import SelfAttention


pytestmark = pytest.mark.usefixtures("one_thread")


def small_model(**kw) -> IFGAN:
    args = dict(num_classes=3, in_channels=3, size=32, gen_width=8, gen_depth=3, disc_width=8, disc_layers=2,
                trunk_depth=18)
    return IFGAN(**(args | kw))


def task_for(model: IFGAN) -> IFGANTask:
    task = IFGANTask(model, lr=1e-3)
    task.amp = Precision(torch.device("cpu"), False)
    model.averages.copy_(torch.rand_like(model.averages) * 2 - 1)
    return task


def batch(n=4, size=32):
    return {"image": torch.rand(n, 3, size, size) * 2 - 1, "label": torch.arange(n) % 3}


def test_generator_keeps_the_image_shape_and_places_three_attention_modules():
    g = UNetGenerator(3, 3, width=8, depth=4)
    x = torch.randn(2, 3, 64, 64)
    assert g(x).shape == (2, 3, 64, 64) and g(x).abs().max() <= 1
    modules = g.attention_modules
    assert all(isinstance(m, SelfAttention) for m in modules.values())
    seen = {}
    for name, m in modules.items():
        m.keep_attention = True
    g(x)
    for name, m in modules.items():
        seen[name] = m.last_attention.shape[-1]
    # encoder: 1/8 resolution (8x8 = 64 positions); skip and decoder (the last one): 1/4 (16x16 = 256)
    assert seen == {"encoder": 64, "skip": 256, "decoder": 256}
    assert not any(isinstance(m, SelfAttention) for m in UNetGenerator(3, 3, 8, 4, attention=False).modules())
    with pytest.raises(FerlibError, match="divisible by 16"):
        g(torch.randn(1, 3, 40, 40))


def test_with_every_gamma_zero_the_attention_modules_change_nothing():
    torch.manual_seed(1)
    with_attention = UNetGenerator(3, 3, 8, 4, attention=True).eval()
    torch.manual_seed(1)
    without = UNetGenerator(3, 3, 8, 4, attention=False).eval()
    without.load_state_dict({k: v for k, v in with_attention.state_dict().items() if "attention" not in k})
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(with_attention(x), without(x))


def parameters_of(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def gradients_of(module) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.detach().clone() for n, p in module.named_parameters()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((a[k] is None and b[k] is None) or
                                        (a[k] is not None and b[k] is not None and torch.equal(a[k], b[k])) for k in a)


def any_changed(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def spy_on_the_d_step(task) -> dict:
    """Records, right after train_step's D optimiser step, every network's parameters and gradients."""
    seen = {}

    def record(optimizer, args, kwargs):
        for name in ("G", "D", "E"):
            seen[name] = parameters_of(getattr(task.model, name))
            seen[name + " grad"] = gradients_of(getattr(task.model, name))

    task.optimizers["D"].register_step_post_hook(record)
    return seen


def test_the_d_step_of_train_step_changes_d_and_leaves_g_and_e_alone():
    """In train_step's D step the D loss sends no gradient into G or E (G(I_SE) is detached), and
    only D's optimiser steps: D moves, G and E do not."""
    model = small_model()
    task = task_for(model)
    before = {name: parameters_of(getattr(model, name)) for name in ("G", "D", "E")}
    seen = spy_on_the_d_step(task)
    task.train_step(batch(), 0)
    assert seen, "train_step never stepped D's optimiser"
    assert all(g is None for g in seen["G grad"].values()) and all(g is None for g in seen["E grad"].values())
    assert any(g is not None and g.abs().sum() > 0 for g in seen["D grad"].values())
    assert same(seen["G"], before["G"]) and same(seen["E"], before["E"])
    assert any_changed(seen["D"], before["D"])


def test_train_step_freezes_d_in_the_g_and_e_step():
    """train_step's own freezing: after its D step, the G + E losses give D no gradient (its .grad
    stays what the D loss left) and the G + E update leaves D's parameters as the D step left them,
    while G and E do move; D trains again in the next step."""
    model = small_model()
    task = task_for(model)
    seen = spy_on_the_d_step(task)
    task.train_step(batch(), 0)
    assert same(gradients_of(model.D), seen["D grad"]), "the G + E losses reached D"
    assert same(parameters_of(model.D), seen["D"]), "the G + E step changed D"
    assert any_changed(parameters_of(model.G), seen["G"]) and any_changed(parameters_of(model.E), seen["E"])
    assert all(p.requires_grad for p in model.D.parameters())
    d_after_first = parameters_of(model.D)
    task.train_step(batch(), 1)
    assert any_changed(parameters_of(model.D), d_after_first)


def test_the_softmax_term_alone_reaches_g_through_the_fake_tuple():
    """E's loss trains G (Fig. 2): L_softmax alone gives G a gradient, down to its output layer."""
    model = small_model()
    task = task_for(model)
    x = batch()
    parts = task.generator_losses(x["image"], model.averages[x["label"]], model.G(x["image"]), x["label"])
    parts["softmax"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.G.out.parameters())
    assert all(p.grad is None for p in model.D.parameters())


# ----------------------------------------------------------------------------- Eqs. 2-4 by hand
# The code's choices, checked here: G minimises the non-saturating -log D(G(I_SE)) instead of Eq. 2's
# log(1 - D(G(I_SE))); D's loss is halved (pix2pix); the L1 of Eq. 3 is the per-pixel mean;
# Eq. 4 sums the two tuples' batch-mean cross-entropies.

LN2, LN3 = math.log(2.0), math.log(3.0)


def test_d_loss_is_half_the_bce_of_real_to_1_and_fake_to_0():
    # D(real) = sigmoid(ln 3) = 3/4, D(fake) = sigmoid(0) = 1/2
    real, fake = torch.full((1, 1, 2, 2), LN3), torch.zeros(1, 1, 2, 2)
    expected = 0.5 * (-math.log(3 / 4) - math.log(1 - 1 / 2))
    assert discriminator_adversarial_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    # the patches are averaged: two patches at 3/4 and 1/4 for the real tuple
    real = torch.tensor([[[[LN3, -LN3]]]])
    expected = 0.5 * ((-math.log(3 / 4) - math.log(1 / 4)) / 2 + LN2)
    assert discriminator_adversarial_loss(real, torch.zeros(1, 1, 1, 2)).item() == pytest.approx(expected, rel=1e-6)


def test_g_adversarial_loss_is_the_non_saturating_minus_log_d_of_the_fake():
    # D(fake) = 3/4 and 1/2 on two patches: -log D, averaged
    fake = torch.tensor([[[[LN3, 0.0]]]])
    expected = (-math.log(3 / 4) + LN2) / 2
    assert generator_adversarial_loss(fake).item() == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx((math.log(1 - 3 / 4) + math.log(1 - 1 / 2)) / 2)  # not Eq. 2's log(1 - D)
    # the sign: G's loss falls as D takes the fake for real
    fooled, caught = torch.full((1, 1, 1, 1), 3.0), torch.full((1, 1, 1, 1), -3.0)
    assert generator_adversarial_loss(fooled) < generator_adversarial_loss(caught)
    assert generator_adversarial_loss(fooled).item() == pytest.approx(math.log(1 + math.exp(-3.0)), rel=1e-6)


def test_l1_is_the_per_pixel_mean_absolute_difference():
    target = torch.tensor([[[[1.0, -1.0]]], [[[0.5, 0.5]]]])   # (2, 1, 1, 2)
    fake = torch.tensor([[[[0.0, 2.0]]], [[[0.5, -1.5]]]])
    # |1 - 0| + |-1 - 2| + 0 + |0.5 + 1.5| = 6 over 4 pixels (not 6, the sum, nor 3, the per-image sum)
    assert l1_loss(target, fake).item() == pytest.approx(1.5)


def test_softmax_loss_sums_the_real_and_the_fake_tuples_cross_entropies():
    labels = torch.tensor([0, 2])
    real = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, LN2]])      # p(label) = 1/3, 2/4
    fake = torch.tensor([[LN3, 0.0, 0.0], [0.0, 0.0, 0.0]])      # p(label) = 3/5, 1/3
    expected = (LN3 + LN2) / 2 + (math.log(5 / 3) + LN3) / 2
    assert tuple_softmax_loss(torch.cat([real, fake]), labels).item() == pytest.approx(expected, rel=1e-6)


class PixelClassifier(torch.nn.Module):
    """A stand-in E: its features (and logits) are the first three pixel values of what it reads."""

    def features(self, x):
        return x.flatten(1)[:, :3]

    def classifier(self, features):
        return features


class LastPixelDiscriminator(torch.nn.Module):
    """A stand-in D: its one patch logit is the candidate image's last pixel."""

    def forward(self, pair):
        return pair[:, -1:, -1:, -1:]


def test_the_task_wires_eqs_2_to_4_as_computed_by_hand():
    """generator_losses and discriminator_loss on 2x2 one-channel images through stand-in D and E
    whose outputs are pixels of the tuple, so every term is known by hand."""
    from ferlib.nn.centre_losses import IslandLoss
    model = small_model()
    task = task_for(model)
    model.D, model.E, model.island = LastPixelDiscriminator(), PixelClassifier(), IslandLoss(3, 3)
    source = torch.full((1, 1, 2, 2), 5.0)                       # D reads the candidate, never this
    target = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]]]])          # E: logits 0, 0, 0; D: logit 0
    fake = torch.tensor([[[[0.0, 0.0], [LN2, LN3]]]])            # E: logits 0, 0, ln 2; D: logit ln 3
    labels = torch.tensor([2])
    parts = task.generator_losses(source, target, fake, labels)
    assert parts["gan"].item() == pytest.approx(-math.log(3 / 4), rel=1e-6)         # -log D(fake)
    assert parts["l1"].item() == pytest.approx((LN2 + LN3) / 4, rel=1e-6)
    assert parts["softmax"].item() == pytest.approx(LN3 + LN2, rel=1e-6)            # real 1/3, fake 2/4
    fake.requires_grad_(True)
    loss_d = task.discriminator_loss(source, target, fake)
    assert loss_d.item() == pytest.approx(0.5 * (LN2 - math.log(1 / 4)), rel=1e-6)  # D(real) 1/2, D(fake) 3/4
    assert not loss_d.requires_grad or torch.autograd.grad(loss_d, fake, allow_unused=True)[0] is None


def test_baseline_mode_has_no_generator_and_classifies_the_input():
    model = small_model(mode="baseline")
    assert not hasattr(model, "G") and not hasattr(model, "D")
    task = task_for(model)
    assert set(task.optimizers) == {"E", "centres"}
    logits, _ = model.eval().classify(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 3)


def test_the_pair_reading_gives_e_both_images_as_channels():
    model = small_model(classifier_input="pair")
    conv1 = next(m for m in model.E.trunk.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv1.in_channels == 6
    x = torch.randn(2, 3, 32, 32)
    assert model.classifier_view(x, x).shape == (2, 6, 32, 32)
    assert small_model().classifier_view(x, x * 0).abs().sum() == 0  # candidate reading: the second image only
    logits, features = model.eval().classify(x)
    assert logits.shape == (2, 3) and features.shape == (2, 512)


def test_average_targets_are_per_class_means():
    images = torch.stack([torch.full((1, 2, 2), v) for v in (0.0, 2.0, 4.0, 10.0)])
    labels = torch.tensor([0, 0, 1, 1])
    averages = average_targets(images, labels, 3)
    assert averages[0].unique().item() == 1.0 and averages[1].unique().item() == 7.0
    assert averages[2].unique().item() == 4.0  # no image of class 2: the mean of all


def test_i_ae_is_made_of_training_subjects_only():
    """make_task's I_AE come from the fold's training split: validation and test subjects (other
    people than the training ones) and every image outside the training split can be inverted
    without changing them; inverting training images does change them."""
    from ferlib.experiments import ifgan
    from ferlib.experiments.common import load_protocol_data, make_fold
    data = load_protocol_data("synth-ckplus", "ifgan", data_root=None, size=32, scale=0.1, seed=0)
    fold = make_fold(data, 0, transform="ifgan", size=32)
    split = fold.manifest["split"]
    subjects = {name: set(fold.manifest.loc[split == name, "subject"]) for name in ("train", "val", "test")}
    assert all(subjects.values()) and not subjects["train"] & (subjects["val"] | subjects["test"])
    cfg = ifgan.IFGANConfig.from_preset("smoke", size=32, gen_width=4, disc_width=4)
    averages = ifgan.make_task(cfg, "ifgan", fold).model.averages.clone()
    assert torch.equal(averages, ifgan.fold_averages(fold))
    train = [fold.cache.position(r) for r in fold.manifest.index[split == "train"]]
    others = np.setdiff1d(np.arange(len(fold.cache.images)), train)  # val, test and every non-protocol image
    assert len(others) >= (split != "train").sum() > 0
    fold.cache.images[others] = 255 - fold.cache.images[others]
    assert torch.equal(ifgan.make_task(cfg, "ifgan", fold).model.averages, averages), \
        "images outside the training split entered I_AE"
    fold.cache.images[train[:5]] = 255 - fold.cache.images[train[:5]]
    assert not torch.equal(ifgan.make_task(cfg, "ifgan", fold).model.averages, averages), \
        "the training images do feed the averages"


def test_smoke_train_step_runs_and_its_loss_falls_on_one_repeated_batch():
    """Smoke test: train_step runs, and on one repeated batch the total falls; not a loss test (it
    passes with a wrong adversarial sign: Eqs. 2-4 are checked by hand above)."""
    model = small_model()
    task = task_for(model)
    x = batch(n=6)
    first = task.train_step(x, 0)["loss"]
    for step in range(1, 15):
        last = task.train_step(x, step)["loss"]
    assert last < first


def test_ifgan_notebook_parameters_map_onto_the_config_and_presets_match_the_paper():
    from ferlib.experiments import ifgan
    names = notebook_parameter_names("ifgan")
    from ferlib.study.results import VIEW_PARAMETERS
    assert set(VIEW_PARAMETERS) <= names   # which registry records the chapter shows: not config fields
    assert names - set(VIEW_PARAMETERS) <= {f.name for f in dataclasses.fields(ifgan.IFGANConfig)}
    assert {"dataset", "fold", "folds", "preset", "epochs", "seed", "data_root", "device", "out_dir", "methods",
            "classifier_input", "pretrained"} <= names
    paper = ifgan.IFGANConfig.from_preset("paper")
    assert (paper.size, paper.trunk_depth, paper.batch_size, paper.epochs, paper.lr) == (224, 101, 50, 100, 1e-4)
    assert (paper.lambda_gan, paper.lambda_l1, paper.lambda_softmax, paper.lambda_island) == (1, 20, 10, 1)
    assert paper.betas == (0.9, 0.99) and paper.weight_decay == 1e-4 and (paper.lr_step, paper.lr_gamma) == (10, 0.9)
    assert set(ifgan.PRESETS["paper"]) == set(ifgan.PRESETS["smoke"])
    with pytest.raises(FerlibError, match="choose from resnet, ifgan-noattention, ifgan"):
        ifgan.IFGANConfig.from_preset("smoke", methods="ifgan,vgg").method_list()


def test_paper_scale_generator_puts_the_last_attention_after_the_56x56_maps():
    from ferlib.experiments import ifgan
    cfg = ifgan.IFGANConfig.from_preset("paper")
    g = UNetGenerator(3, 3, width=4, depth=cfg.gen_depth)  # narrow, same layout as the paper preset
    g.decoder_attention.keep_attention = True
    with torch.no_grad():
        g.eval()(torch.randn(1, 3, 224, 224))
    assert g.decoder_attention.last_attention.shape == (1, 56 * 56, 56 * 56)


def test_decoder_attention_maps_have_one_map_per_query():
    from ferlib.models.ifgan import decoder_attention_maps
    model = small_model()
    generated, maps = decoder_attention_maps(model, torch.randn(2, 3, 32, 32), {"a": (0.1, 0.1), "b": (0.9, 0.5)})
    assert generated.shape == (2, 3, 32, 32) and set(maps) == {"a", "b"}
    assert maps["a"].shape == (2, 8, 8) and torch.allclose(maps["a"].sum(dim=(1, 2)), torch.ones(2))
    with pytest.raises(FerlibError, match="no self-attention"):
        decoder_attention_maps(small_model(attention=False), torch.randn(1, 3, 32, 32), {"a": (0.5, 0.5)})


def test_extra_data_must_share_the_image_size():
    from ferlib.experiments.common import load_protocol_data, with_extra_training_data
    main = load_protocol_data("synth-ckplus", "ifgan", data_root=None, size=32, scale=0.12, seed=0)
    other_size = load_protocol_data("synth-mmi", "ifgan", data_root=None, size=48, scale=0.35, seed=0)
    with pytest.raises(FerlibError, match="at the same size"):
        with_extra_training_data(main, [other_size])


def test_rafdb_table_run_takes_its_averages_from_the_posed_datasets():
    from ferlib.experiments import ifgan
    cfg = ifgan.IFGANConfig.from_preset("smoke", size=32, scale=0.35)
    raf = ifgan.replace_dataset(cfg, "synth-rafdb")
    assert raf.averages_from == "synth-bu3dfe,synth-ckplus,synth-mmi" and raf.extra_datasets == ""
    assert ifgan.replace_dataset(cfg, "synth-mmi").averages_from == ""
    with pytest.raises(FerlibError, match="only SynthFER datasets"):
        ifgan.replace_dataset(cfg, "mmi")
