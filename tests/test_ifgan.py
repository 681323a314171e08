"""IF-GAN: generator shapes and attention placement, gradient routing of the joint step,
average targets from training subjects only, and a smoke run that lowers the loss."""

import dataclasses

import pytest
from conftest import notebook_parameter_names
import torch

from ferlib.engine import Precision
from ferlib.errors import FerlibError
from ferlib.models.ifgan import IFGAN, IFGANTask, UNetGenerator, average_targets
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


def grads(module) -> dict[str, bool]:
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in module.named_parameters()}


def test_discriminator_update_leaves_generator_and_classifier_untouched_and_vice_versa():
    model = small_model()
    task = task_for(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = batch()
    source, labels = x["image"], x["label"]
    target = model.averages[labels]
    fake = model.G(source)
    loss_d = task.discriminator_loss(source, target, fake)
    loss_d.backward()
    assert any(grads(model.D).values())
    assert not any(grads(model.G).values()) and not any(grads(model.E).values())
    for p in model.parameters():
        p.grad = None
    # the G + E step: D frozen, no gradient reaches it
    task.train_step(x, 0)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k]) and after[k].is_floating_point()}
    assert any(k.startswith("G.") for k in changed) and any(k.startswith("E.") for k in changed)


def test_g_and_e_step_sends_no_gradient_into_d_and_e_loss_reaches_g():
    model = small_model()
    task = task_for(model)
    x = batch()
    source, labels = x["image"], x["label"]
    for p in model.D.parameters():
        p.requires_grad_(False)
    fake = model.G(source)
    parts = task.generator_losses(source, model.averages[labels], fake, labels)
    assert all(p.grad is None for p in model.D.parameters())
    # the softmax term alone reaches G through the fake tuple (E's loss trains G)
    parts["softmax"].backward(retain_graph=True)
    assert any(grads(model.G).values())
    assert all(p.grad is None for p in model.D.parameters())


def test_the_d_step_of_train_step_changes_d_but_not_g():
    model = small_model()
    task = task_for(model)
    g_before = {k: v.clone() for k, v in model.G.state_dict().items()}
    d_before = {k: v.clone() for k, v in model.D.state_dict().items()}
    # run only the discriminator part by hand, as train_step does first
    x = batch()
    fake = model.G(x["image"])
    task.optimizers["D"].zero_grad()
    task.discriminator_loss(x["image"], model.averages[x["label"]], fake).backward()
    task.optimizers["D"].step()
    assert any(not torch.equal(d_before[k], v) for k, v in model.D.state_dict().items() if v.is_floating_point())
    assert all(torch.equal(g_before[k], v) for k, v in model.G.state_dict().items() if "running" not in k
               and "num_batches" not in k)


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


def test_fold_averages_never_read_the_test_subjects():
    from ferlib.experiments import ifgan
    cfg = ifgan.IFGANConfig.from_preset("smoke", scale=0.2, size=32)
    data = ifgan.load(cfg)
    from ferlib.experiments.common import make_fold
    fold = make_fold(data, 0, transform="ifgan", size=32)
    averages = ifgan.fold_averages(fold)
    # recompute from the training rows by hand, then poison the test images: nothing changes
    test_rows = fold.manifest.index[fold.manifest["split"] == "test"]
    train_subjects = set(fold.manifest.loc[fold.manifest["split"] == "train", "subject"])
    assert not train_subjects & set(fold.manifest.loc[test_rows, "subject"])
    positions = [fold.cache.position(r) for r in test_rows]
    fold.cache.images[positions] = 255 - fold.cache.images[positions]
    assert torch.equal(ifgan.fold_averages(fold), averages)
    val_rows = fold.manifest.index[fold.manifest["split"] == "train"]
    positions = [fold.cache.position(r) for r in val_rows[:5]]
    fold.cache.images[positions] = 255 - fold.cache.images[positions]
    assert not torch.equal(ifgan.fold_averages(fold), averages), "the training images do feed the averages"


def test_a_smoke_run_lowers_the_loss(tmp_path):
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
    assert names <= {f.name for f in dataclasses.fields(ifgan.IFGANConfig)}
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


def test_extra_datasets_join_every_training_split_and_never_validation_or_test():
    from ferlib.experiments import ifgan
    from ferlib.experiments.common import make_fold
    cfg = ifgan.IFGANConfig.from_preset("smoke", scale=0.35, size=32, extra_datasets="synth-mmi, synth-bu3dfe")
    assert ifgan.extra_dataset_roots(cfg.extra_datasets) == [("synth-mmi", None), ("synth-bu3dfe", None)]
    assert ifgan.extra_dataset_roots("bu3dfe=/c , synth-mmi") == [("bu3dfe", "/c"), ("synth-mmi", None)]
    data = ifgan.load(cfg)
    main = ifgan.load(ifgan.IFGANConfig.from_preset("smoke", scale=0.35, size=32))
    extra_rows = data.manifest[data.manifest["extra"]]
    assert len(data.manifest) - len(extra_rows) == len(main.manifest) and len(extra_rows) > 0
    assert extra_rows["subject"].str.match(r"synth-(mmi|bu3dfe):S\d+").all()
    assert "extra training data: SynthFER mmi" in data.source
    assert len(data.loaded.images) == len(data.loaded.manifest)
    for fold in (0, 4):
        f = make_fold(data, fold, transform="ifgan", size=32)
        split = f.manifest["split"]
        assert (split[f.manifest["extra"].astype(bool)] == "train").all()
        assert set(f.manifest.loc[split.isin(["val", "test"]), "subject"]).isdisjoint(extra_rows["subject"])
        mm = make_fold(main, fold, transform="ifgan", size=32).manifest
        assert (f.manifest.loc[~f.manifest["extra"].astype(bool), "split"] == mm["split"]).all()
        # the extra images are the extra datasets' own: row -> image of the right dataset
        row = extra_rows.index[0]
        assert torch.equal(f.cache.image(row), torch.from_numpy(data.loaded.images[row]).permute(2, 0, 1))


def test_extra_data_must_share_classes_and_size():
    from ferlib.experiments import ifgan
    from ferlib.experiments.common import load_protocol_data, with_extra_training_data
    main = load_protocol_data("synth-ckplus", "ifgan", data_root=None, size=32, scale=0.12, seed=0)
    raf = load_protocol_data("synth-rafdb", "ifgan", data_root=None, size=32, scale=0.002, seed=0)
    with pytest.raises(FerlibError, match="labels \\['neutral'\\] that are not classes"):
        with_extra_training_data(main, [raf])
    other_size = load_protocol_data("synth-mmi", "ifgan", data_root=None, size=48, scale=0.35, seed=0)
    with pytest.raises(FerlibError, match="at the same size"):
        with_extra_training_data(main, [other_size])


def test_rafdb_averages_come_from_the_posed_extra_datasets():
    from ferlib.experiments import ifgan
    from ferlib.experiments.common import make_fold
    cfg = ifgan.IFGANConfig.from_preset("smoke", dataset="synth-rafdb", scale=0.1, size=32,
                                        extra_datasets="synth-ckplus")
    data = ifgan.load(cfg)
    fold = make_fold(data, 0, transform="ifgan", size=32)
    averages = ifgan.fold_averages(fold)
    extra = fold.manifest.loc[fold.train_eval.index, "extra"].astype(bool).to_numpy()
    images = torch.stack([fold.train_eval[i]["image"] for i in range(len(fold.train_eval)) if extra[i]])
    labels = torch.tensor([fold.train_eval[i]["label"] for i in range(len(fold.train_eval)) if extra[i]])
    assert torch.allclose(averages, average_targets(images, labels, len(fold.classes)))
    neutral = fold.classes.index("neutral")
    assert torch.allclose(averages[neutral], images.mean(dim=0))  # no posed neutral: the mean of all


def test_rafdb_table_run_takes_its_averages_from_the_posed_datasets():
    from ferlib.experiments import ifgan
    cfg = ifgan.IFGANConfig.from_preset("smoke", size=32, scale=0.35)
    raf = ifgan.replace_dataset(cfg, "synth-rafdb")
    assert raf.averages_from == "synth-bu3dfe,synth-ckplus,synth-mmi" and raf.extra_datasets == ""
    assert ifgan.replace_dataset(cfg, "synth-mmi").averages_from == ""
    with pytest.raises(FerlibError, match="only SynthFER datasets"):
        ifgan.replace_dataset(cfg, "mmi")
    classes = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
    one = ifgan.averages_of_datasets(dataclasses.replace(cfg, averages_from="synth-mmi"), classes)
    assert one.shape == (7, 3, 32, 32)
    # neutral (absent from MMI's rows) is the mean of all images: the class averages weighted by their counts
    rows = ifgan.load(dataclasses.replace(cfg, dataset="synth-mmi")).manifest
    counts = torch.tensor([float((rows["label"] == c).sum()) for c in classes[1:]])
    assert counts.sum() == len(rows)
    assert torch.allclose(one[0], (one[1:] * counts[:, None, None, None]).sum(0) / counts.sum(), atol=1e-5)
