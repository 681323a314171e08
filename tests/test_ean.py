"""EAN: A = I in the first phase, the graph and Adj_loss after it, which parameters each of D_m's and
G_enc's losses reaches, the transductive prediction that changes with batch mates (while A = I's does
not), the views set and the label noise of the experiment."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import notebook_parameter_names

from ferlib.engine import Precision
from ferlib.errors import FerlibError
from ferlib.models.ean import EAN, EANTask, frozen, normalised_maps

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = 4
IDENTITIES = 3


def make_task(graph=True, invariant=True, graph_start=2, adjacency="soft", backbone="resnet18"):
    model = EAN(CLASSES, backbone, 3, width_divisor=16, graph=graph, gcn_dims=(16, 16), invariant=invariant,
                num_identities=IDENTITIES, tau1=0.5, tau2=None, adjacency=adjacency, disc_width=8)
    task = EANTask(model, lr=0.01, lr_step=10, graph_start=graph_start)
    task.amp = Precision(torch.device("cpu"), False)
    return task


def views(n=8, generator=None):
    g = generator or torch.Generator().manual_seed(3)
    frontal = torch.arange(n) % 4 == 0
    return {"image": torch.randn(n, 3, 64, 64, generator=g), "identity": torch.arange(n) % IDENTITIES,
            "frontal": frontal, "profile": torch.arange(n) % 4 == 1}


def batch(n=8, with_views=True):
    g = torch.Generator().manual_seed(4)
    out = {"image": torch.randn(n, 3, 64, 64, generator=g), "label": torch.arange(n) % CLASSES}
    if with_views:
        out["views"] = views(n)
    return out


def reached(loss, model) -> set[str]:
    """The top-level parts of `model` whose parameters get a non-zero gradient from `loss`."""
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    parts = set()
    for name, p in model.named_parameters():
        if p.grad is not None and p.grad.abs().sum() > 0:
            parts.add(".".join(name.split(".")[:2]) if name.startswith("encoder.") else name.split(".")[0])
    return parts


def test_shapes_and_the_first_phase_uses_the_identity_graph():
    task = make_task(graph_start=2)
    assert [task.epoch(), task.graph_phase()] == [1, False]
    parts = task.model.fer_losses(batch()["image"], batch()["label"], use_graph=task.graph_phase())
    assert set(parts) == {"ce"}                            # no Adj_loss while A = I
    task.schedulers["net"].step(), task.schedulers["net"].step()
    assert [task.epoch(), task.graph_phase()] == [3, True]
    parts = task.model.fer_losses(batch()["image"], batch()["label"], use_graph=True)
    assert set(parts) == {"ce", "adj", "links", "cross_links"} and parts["adj"].item() >= 0
    a = task.model.batch_adjacency(task.model.features(batch()["image"])[1]).detach()
    other = (batch()["label"][:, None] != batch()["label"][None, :]).float()
    assert parts["links"].item() == pytest.approx((a.sum() / (8 * 7)).item(), rel=1e-5)   # over the 56 pairs
    assert parts["cross_links"].item() == pytest.approx(((a * other).sum() / other.sum()).item(), rel=1e-5)
    assert task.model(batch()["image"]).shape == (8, CLASSES)


def test_the_graph_starts_after_exactly_graph_start_epochs_and_selection_waits_for_it():
    from ferlib.experiments import ean
    task = make_task(graph_start=2)
    phases = []
    for _ in range(4):
        phases.append((task.epoch(), task.graph_phase()))
        task.optimizers["net"].step(), task.schedulers["net"].step()
    assert phases == [(1, False), (2, False), (3, True), (4, True)]
    cfg = ean.EANConfig.from_preset("study")
    assert ean.select_from(cfg, "ean") == cfg.graph_start + 1 and ean.select_from(cfg, "baseline") == 1


def test_the_batch_graph_links_pairs_only():
    task = make_task()
    a = task.model.batch_adjacency(torch.randn(6, 5))
    assert torch.all(a.diagonal() == 0) and a.shape == (6, 6)
    parts = task.model.fer_losses(batch()["image"], torch.zeros(8, dtype=torch.long), use_graph=True)
    with torch.no_grad():   # one label: every pair linked gives Adj_loss 0 only if the diagonal is left out
        task.model.tau1 = -2.0
        assert task.model.fer_losses(batch()["image"], torch.zeros(8, dtype=torch.long), True)["adj"].item() < 1e-6
    assert parts["adj"].item() >= 0


def test_the_views_leave_the_batchnorm_statistics_to_the_fer_data():
    task = make_task()
    model, v = task.model, views()
    model.train()
    stats = {k: b.clone() for k, b in model.encoder.state_dict().items() if "running" in k}
    model.discriminator_loss(v["image"], v["identity"], v["frontal"], v["profile"])
    model.invariance_loss(v["image"], v["identity"], v["frontal"])["adv"].backward()
    after = {k: b for k, b in model.encoder.state_dict().items() if "running" in k}
    assert all(torch.equal(stats[k], after[k]) for k in stats)
    model.fer_losses(batch()["image"], batch()["label"], use_graph=False)   # the FER batch does move them
    assert any(not torch.equal(stats[k], model.encoder.state_dict()[k]) for k in stats)
    assert all(m.momentum == 0.1 for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_with_the_identity_graph_each_face_is_classified_alone():
    task = make_task()
    task.model.eval()
    x = batch()["image"]
    alone = task.predict({"image": x, "label": None})[0]
    y = x.clone()
    y[1:] = torch.randn(7, 3, 64, 64)                      # other batch mates
    assert torch.allclose(task.predict({"image": y, "label": None})[0][0], alone[0], atol=1e-5)
    assert torch.allclose(task.predict({"image": x[:1], "label": None})[0][0], alone[0], atol=1e-5)


def test_the_transductive_prediction_changes_with_batch_mates():
    task = make_task()
    task.model.eval()
    x = batch()["image"]
    with torch.no_grad():                                  # a low tau1: every pair is linked
        task.model.tau1, task.model.temperature = -1.0, 0.05
        together = task.transductive_logits(x)
        other = x.clone()
        other[1:] = torch.randn(7, 3, 64, 64, generator=torch.Generator().manual_seed(9))
        moved = task.transductive_logits(other)
    assert not torch.allclose(together[0], moved[0], atol=1e-4)


def test_which_parameters_each_loss_reaches():
    task = make_task()
    model, b = task.model, batch()
    v = b["views"]
    d_loss = model.discriminator_loss(v["image"], v["identity"], v["frontal"], v["profile"])
    assert reached(d_loss, model) == {"discriminator"}
    parts = model.invariance_loss(v["image"], v["identity"], v["frontal"])
    stem = {"encoder.conv1", "encoder.bn1", "encoder.layer1", "encoder.layer2", "encoder.layer3"}
    assert set(parts) == {"adv"} and reached(parts["adv"], model) == stem   # G_enc up to Conv3, never D_m
    fer = model.fer_losses(b["image"], b["label"], use_graph=True)
    assert reached(fer["ce"], model) == stem | {"encoder.layer4", "gcn", "classifier"}
    adj = reached(fer["adj"], model)
    assert adj and adj <= stem | {"encoder.layer4"}       # through the features only, and it does reach them
    assert all(p.requires_grad for p in model.discriminator.parameters())  # `frozen` restores the flags


def test_frozen_blocks_the_discriminator_and_restores_it():
    task = make_task()
    d = task.model.discriminator
    maps = torch.randn(2, task.model.encoder.conv3_channels, 4, 4, requires_grad=True)
    with frozen(d):
        who, _ = d(normalised_maps(maps))
        who.sum().backward()
    assert maps.grad is not None and all(p.grad is None for p in d.parameters())
    assert all(p.requires_grad for p in d.parameters())


def test_a_training_step_updates_d_then_the_network():
    task = make_task(graph_start=0)
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    task.model.train()
    logged = task.train_step(batch(), 0)
    assert {"d", "ce", "adj", "links", "cross_links", "adv", "loss"} <= set(logged)
    after = task.model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert {"encoder", "gcn", "classifier", "discriminator"} <= changed


def test_the_hard_adjacency_is_selectable_and_gives_adj_loss_no_gradient():
    task = make_task(adjacency="hard")
    b = batch()
    parts = task.model.fer_losses(b["image"], b["label"], use_graph=True)
    assert not parts["adj"].requires_grad
    with pytest.raises(FerlibError, match="adjacency"):
        EAN(CLASSES, adjacency="sharp", invariant=False)


def test_table5_backbones_build_with_and_without_g_enc():
    for backbone in ("alexnet", "vgg13", "vgg16"):
        task = make_task(graph=False, invariant=True, backbone=backbone)
        assert task.model.gcn is None and task.model(batch()["image"]).shape == (8, CLASSES)
        v = views()
        parts = task.model.invariance_loss(v["image"], v["identity"], v["frontal"])
        assert set(parts) == {"adv"}


# ----------------------------------------------------------------------------- the experiment

def test_label_noise_flips_exactly_the_share_seeded_and_keeps_the_clean_label():
    from ferlib.experiments import ean
    from ferlib.experiments.common import make_fold
    cfg = ean.EANConfig.from_preset("smoke", dataset="synth-rafdb+noise20", scales="synth-rafdb=0.02")
    assert (cfg.clean_dataset, cfg.noise) == ("synth-rafdb", 0.2)
    data = ean.load(cfg)
    fold = make_fold(data, 0, transform="ean", size=cfg.size)
    noisy, flips = ean.with_label_noise(fold, cfg.noise, seed=0, size=cfg.size)
    m = noisy.manifest
    trained = m[m["split"] != "test"]
    assert flips["flipped"] == round(0.2 * len(trained)) == int((trained["label"] != trained["label_noisy"]).sum())
    test = m[m["split"] == "test"]
    assert (test["label"] == test["label_noisy"]).all()                      # test labels untouched
    assert list(noisy.test.labels) == list(fold.test.labels)
    assert (m["label"] == fold.manifest["label"]).all()                      # the clean label is kept
    noisy_train = [noisy.classes[i] for i in noisy.train.labels]
    assert noisy_train == list(m.loc[noisy.train.index, "label_noisy"])      # training reads the noisy one
    again, _ = ean.with_label_noise(fold, 0.2, seed=0, size=cfg.size)
    other, _ = ean.with_label_noise(fold, 0.2, seed=1, size=cfg.size)
    assert again.manifest["label_noisy"].equals(m["label_noisy"])
    assert not other.manifest["label_noisy"].equals(m["label_noisy"])


def test_noisy_dataset_names_are_checked_against_the_protocol():
    from ferlib.data.protocols import load_protocol, noisy_name, split_noise
    assert load_protocol("ean", "synth-rafdb+noise10").noise == 0.1
    assert noisy_name("synth-ferplus", 0.2) == "synth-ferplus+noise20" and split_noise("rafdb") == ("rafdb", 0.0)
    with pytest.raises(FerlibError, match="no 40% label noise"):
        load_protocol("ean", "synth-rafdb+noise40")
    with pytest.raises(FerlibError, match="noise suffix"):
        split_noise("synth-rafdb+noiseX")


def test_views_people_held_out_are_never_trained_on():
    from ferlib.data.views import ViewsDataset, WithViews, load_views, split_people
    views = load_views("synth-pairs", size=32, channels=1, scale=0.1)
    assert views.images.shape[-1] == 1 and set(views.manifest["view"]) == {"frontal", "profile", "occluded", "relit"}
    train, held = split_people(views, 0.2, seed=0)
    assert not set(train.manifest["subject"]) & set(held.manifest["subject"])
    assert len(set(held.manifest["subject"])) >= 1
    data = ViewsDataset(train)
    sample = data[0]
    assert sample["image"].shape == (1, 32, 32) and 0 <= sample["identity"] < len(data.people)
    assert set(sample) == {"image", "identity", "frontal", "profile"}     # views carry no expression label
    assert data.frontal.sum() == (train.manifest["view"] == "frontal").sum()

    class Fer(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"image": torch.zeros(1, 32, 32), "label": 0}
    paired = WithViews(Fer(), data, seed=0)
    assert len(paired) == 5 and set(paired[0]["views"]) >= {"image", "identity", "frontal", "profile"}
    seen = []
    for epoch in range(1, len(data) // 5 + 1):      # the epochs of one pass use every view once
        paired.set_epoch(epoch)
        seen += [paired.view_of(i) for i in range(5)]
    assert len(set(seen)) == len(seen) == len(data) // 5 * 5
    paired.set_epoch(1)
    first = [paired.view_of(i) for i in range(5)]
    paired.set_epoch(2)
    assert first != [paired.view_of(i) for i in range(5)]
    again = WithViews(Fer(), data, seed=0)
    again.set_epoch(2)
    assert [again.view_of(i) for i in range(5)] == [paired.view_of(i) for i in range(5)]   # a function of the epoch


def test_grid_runs_tables_3_4_methods_on_noisy_data_and_replicates_seeds():
    from ferlib.experiments import ean
    from ferlib.study.sweep import study_grid
    jobs = study_grid(["ean"])
    assert {j.dataset for j in jobs} == set(ean.GRID_DATASETS)
    assert {j.method for j in jobs if "+noise" in j.dataset} == set(ean.NOISY)
    official = [j for j in jobs if j.dataset in ("synth-rafdb", "synth-ferplus")]
    assert {(j.fold, j.seed) for j in official} == {(0, s) for s in ean.SEEDS}          # seeds replicate one split
    assert {(j.fold, j.seed) for j in jobs if j.dataset == ean.STAND_IN} == {(f, 0) for f in range(3)}  # folds do
    assert {j.method for j in jobs if j.dataset == ean.STAND_IN} == set(ean.METHODS)


def test_notebook_parameters_map_onto_the_config_and_the_paper_preset_is_the_papers():
    from ferlib.experiments import ean
    from ferlib.study.results import VIEW_PARAMETERS
    names = notebook_parameter_names("ean")
    assert set(VIEW_PARAMETERS) <= names
    assert names - set(VIEW_PARAMETERS) <= {f.name for f in dataclasses.fields(ean.EANConfig)}
    assert {"dataset", "fold", "folds", "preset", "epochs", "seed", "data_root", "device", "out_dir", "methods",
            "pretrained", "views", "views_root"} <= names
    paper = ean.EANConfig.from_preset("paper")
    assert (paper.size, paper.width_divisor, paper.batch_size, paper.optimizer, paper.lr, paper.lr_step,
            paper.graph_start, paper.alpha, paper.beta, paper.margin_rank, paper.margin_relabel) == \
        (224, 1, 64, "sgd", 0.1, 20, 50, 0.1, 0.7, 0.15, 0.2)
    assert set(ean.PRESETS["paper"]) == set(ean.PRESETS["smoke"]) == set(ean.PRESETS["study"])
    with pytest.raises(FerlibError, match="choose from baseline, scn, ean"):
        ean.EANConfig.from_preset("smoke", methods="ean,gcn").method_list()


def test_the_views_set_reads_cfp_through_its_adapter(tmp_path):
    from ferlib.data.layouts import cfp as cfp_layout
    from ferlib.data.views import load_views, split_people
    fixture = cfp_layout.build(tmp_path)
    views = load_views("cfp", str(fixture.root), size=32, channels=3)
    assert set(views.manifest["view"]) == {"frontal", "profile"} and (views.manifest["label"] == "").all()
    assert views.images.shape[1:] == (32, 32, 3) and len(views.images) == len(views.manifest)
    train, held = split_people(views, 0.25)
    assert set(train.manifest["subject"]).isdisjoint(held.manifest["subject"])
    with pytest.raises(FerlibError, match="views_root"):
        load_views("cfp", None)


def test_a_smoke_run_lowers_the_cross_entropy_and_records_its_noise(tmp_path):
    from ferlib.experiments import ean
    cfg = ean.EANConfig.from_preset("smoke", dataset="synth-bu3dfe+noise10", methods="ean", device="cpu",
                                    out_dir=str(tmp_path), epochs=4, graph_start=2)
    result = ean.run(cfg, progress=False)
    record = result.folds[0].record
    ce = [h["train_ce"] for h in record["history"]]
    assert ce[-1] < ce[0] and "train_adj" in record["history"][-1] and "train_adj" not in record["history"][0]
    assert record["label_noise"]["flipped"] == round(0.1 * record["label_noise"]["eligible"])
    extras = ean.extras("ean", result.folds[0], cfg, figure_fold=True)
    assert {"views", "transductive", "association"} <= set(extras)
    assert [b["batch_size"] for b in extras["transductive"]["by_batch"]] == [16, 64, 128]


def test_the_views_people_are_never_the_fer_datasets_people():
    # SynthFER presets are populations: the same subject name in two presets is two different people
    # (identity = f(seed, population, index)); G_enc's views must come from a population of their own
    from ferlib.data import synth
    from ferlib.data.protocols import split_noise
    from ferlib.data.registry import base_name
    from ferlib.experiments import ean
    views = synth.get_preset(base_name(ean.EANConfig().views)).population
    fer = {synth.get_preset(base_name(split_noise(d)[0])).population for d in ean.GRID_DATASETS}
    assert views not in fer and len(fer) == 3
    assert synth.make_identity(0, 5, population=views) != synth.make_identity(0, 5, population=min(fer))
