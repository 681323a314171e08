"""EIFN: VGG-16 extractors against torchvision's, bilinear pooling against explicit outer products,
the signed square root and L2 normalisation, the gradient routing of EIFN / EIFN* / EFN, the centre
loss and its update rule, identity labels of training subjects only, and the two-stage run."""

import dataclasses

import numpy as np
import pytest
from conftest import notebook_parameter_names
import torch
import torchvision

from ferlib.engine import Precision
from ferlib.errors import FerlibError
from ferlib.models.eifn import EIFN, EIFNTask
from ferlib.nn.bilinear import BilinearFusion, bilinear_pool, signed_sqrt
from ferlib.nn.centre_losses import CenterLoss
from ferlib.nn.vgg import VGG16Trunk

pytestmark = pytest.mark.usefixtures("one_thread")

SUBJECTS = torch.tensor([0, 1, 2, -1])  # dataset subject 3 is a test subject: no identity class


def small_model(mode="eifn") -> EIFN:
    return EIFN(4, SUBJECTS, in_channels=3, size=32, width_divisor=16, identity_dim=8, mode=mode)


def task_for(model, lambdas=(1e-4, 1.0, 6.0)) -> EIFNTask:
    task = EIFNTask(model, lambdas=lambdas, lr=0.01)
    task.amp = Precision(torch.device("cpu"), False)
    return task


def batch(n=6):
    return {"image": torch.randn(n, 3, 32, 32), "label": torch.arange(n) % 4, "subject": torch.arange(n) % 3}


# ----------------------------------------------------------------------------- VGG-16


def test_vgg16_trunk_is_torchvisions_vgg16_up_to_conv5_3_and_loads_its_weights(tmp_path):
    reference = torchvision.models.vgg16(weights=None)
    truncated = reference.features[:30]  # conv1_1 ... conv5_3 + ReLU, no pool5
    trunk = VGG16Trunk()
    assert sum(p.numel() for p in trunk.parameters()) == sum(p.numel() for p in truncated.parameters()) == 14_714_688
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    loaded = VGG16Trunk(pretrained=path).eval()
    from ferlib.nn.imagenet import ImageNetInput
    x = torch.rand(2, 3, 64, 64) * 2 - 1              # [-1, 1], normalised for ImageNet weights inside the trunk
    with torch.no_grad():
        assert torch.allclose(loaded(x), truncated.eval()(ImageNetInput(3)(x)), atol=1e-5)
        assert not torch.allclose(loaded(x), truncated.eval()(x), atol=1e-3)
    assert loaded(x).shape == (2, 512, 4, 4) and "ImageNet weights from" in loaded.source
    grey = VGG16Trunk(in_channels=1, pretrained=path)
    assert torch.allclose(grey.features[0].weight, reference.features[0].weight.sum(1, keepdim=True), atol=1e-6)
    with pytest.raises(FerlibError, match="full width"):
        VGG16Trunk(width_divisor=8, pretrained=path)
    with pytest.raises(FerlibError, match="does not exist"):
        VGG16Trunk(pretrained=tmp_path / "none.pth")


# ----------------------------------------------------------------------------- bilinear fusion


def test_bilinear_pooling_is_the_sum_of_per_location_outer_products():
    a, b = torch.randn(2, 5, 3, 4), torch.randn(2, 6, 3, 4)
    explicit = torch.zeros(2, 5, 6)
    for y in range(3):
        for x in range(4):
            explicit += torch.einsum("bi,bj->bij", a[:, :, y, x], b[:, :, y, x])  # Eq. 3 at location (y, x)
    assert torch.allclose(bilinear_pool(a, b), explicit.flatten(1), atol=1e-5)   # Eq. 4: vec, sum-pooled
    with pytest.raises(FerlibError, match="same batch and spatial size"):
        bilinear_pool(a, torch.randn(2, 6, 2, 4))


def test_signed_square_root_then_l2_normalisation():
    a, b = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    pooled = bilinear_pool(a, b)
    assert (pooled < 0).any()  # signs matter here
    y = torch.sign(pooled) * torch.sqrt(pooled.abs())
    z = y / y.norm(dim=1, keepdim=True)
    fused = BilinearFusion()(a, b)
    assert torch.allclose(fused, z, atol=1e-6) and torch.allclose(fused.norm(dim=1), torch.ones(3))
    assert torch.equal(signed_sqrt(torch.tensor([-4.0, 0.0, 9.0]), eps=0.0), torch.tensor([-2.0, 0.0, 3.0]))
    zero = torch.zeros(3, requires_grad=True)
    signed_sqrt(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()  # ReLU maps give exact zeros: the gradient must stay finite


# ----------------------------------------------------------------------------- gradient routing


def grad_norm(module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("mode, reaches_identity_extractor", [("eifn", True), ("eifn-star", False), ("efn", True)])
def test_expression_loss_reaches_i_in_eifn_and_efn_but_not_in_eifn_star(mode, reaches_identity_extractor):
    model = small_model(mode)
    x = batch()
    model.zero_grad(set_to_none=True)
    model.losses(x["image"], x["label"], x["subject"], identity_losses=False)["s_exp"].backward()
    assert grad_norm(model.E) > 0 and grad_norm(model.expression_classifier) > 0
    assert (grad_norm(model.I) > 0) == reaches_identity_extractor
    assert grad_norm(model.identity) == 0 and grad_norm(model.centres) == 0


def test_identity_losses_reach_i_and_the_identity_head_but_never_e_or_the_expression_classifier():
    model = small_model("eifn")
    x = batch()
    parts = model.losses(x["image"], x["label"], x["subject"])
    (parts["s_id"] + parts["c_id"]).backward()
    assert grad_norm(model.I) > 0 and grad_norm(model.identity.fc1) > 0 and grad_norm(model.identity.fc2) > 0
    assert grad_norm(model.E) == 0 and grad_norm(model.expression_classifier) == 0


def test_efn_sends_no_gradient_from_the_identity_losses_anywhere():
    model = small_model("efn")
    task = task_for(model, lambdas=(1e-4, 2.0, 1.0))
    assert task.lambda2 == 0
    x = batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logged = task.train_step(x, 0)
    assert set(logged) == {"loss", "s_exp"}  # the identity losses are not even computed
    assert all(p.grad is None for p in model.identity.parameters()) and model.centres.centers.grad is None
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("identity.", "centres.")))
    assert not torch.equal(before["I.features.0.weight"], after["I.features.0.weight"])  # L_S_exp still trains I


def test_eq_5_weights_the_losses():
    task = task_for(small_model("eifn"), lambdas=(1e-4, 2.0, 1.0))
    parts = {"s_exp": torch.tensor(1.5), "s_id": torch.tensor(3.0), "c_id": torch.tensor(100.0)}
    assert task.total_loss(parts).item() == pytest.approx(2.0 * (3.0 + 1e-4 * 100.0) + 1.0 * 1.5)


# ----------------------------------------------------------------------------- centre loss


def test_centre_loss_equals_the_hand_computed_value():
    loss = CenterLoss(2, 2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    features = torch.tensor([[3.0, 4.0], [1.0, 2.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    # ||(3,4)-(0,0)||^2 = 25, ||(1,2)-(1,1)||^2 = 1, ||(0,1)-(0,0)||^2 = 1; batch mean
    assert loss(features, labels).item() == pytest.approx((25 + 1 + 1) / 3)


def test_centres_move_by_wen_et_als_rule_whatever_lambda1_is():
    for lambda1 in (1e-4, 1.0):
        torch.manual_seed(0)
        model = small_model("eifn")
        task = task_for(model, lambdas=(lambda1, 1.0, 6.0))
        x = batch()
        before = model.centres.centers.detach().clone()
        with torch.no_grad():
            classes = model.subject_classes[x["subject"]]
            features = model.identity.features(model.I(x["image"]))
        task.train_step(x, 0)
        # one SGD step of rate 0.5 on the batch-mean centre term: c_k += 2 * 0.5 * n_k / M * (mean_k - c_k)
        expected = before.clone()
        for k in range(3):
            chosen = classes == k
            expected[k] += 2 * 0.5 * chosen.sum() / len(classes) * (features[chosen].mean(0) - before[k])
        assert torch.allclose(model.centres.centers, expected, atol=1e-4), lambda1


def test_identity_classes_exist_for_training_subjects_only():
    model = small_model()
    x = batch()
    x["subject"][0] = 3  # a test subject
    with pytest.raises(FerlibError, match="no class for"):
        model.losses(x["image"], x["label"], x["subject"])
    assert model.identity.fc2.out_features == 3


def test_smoke_train_step_runs_and_its_loss_falls_on_one_repeated_batch():
    """Smoke test: train_step runs, and on one repeated batch the total and both softmax terms fall (the
    network itself trains, not only the centres); not a loss test (a wrong sign or routing can pass it:
    the routing, Eq. 5 and the centre rule are tested above)."""
    model = small_model("eifn")
    task = task_for(model)
    x = batch(8)
    first = task.train_step(x, 0)
    for step in range(1, 25):
        last = task.train_step(x, step)
    assert last["loss"] < first["loss"] and last["s_exp"] < first["s_exp"] and last["s_id"] < first["s_id"]


# ----------------------------------------------------------------------------- the experiment


def test_lambdas_follow_the_dataset_a_stage_trains_on():
    from ferlib.experiments import eifn
    cfg = eifn.EIFNConfig.from_preset("paper")
    assert cfg.lambdas_for("ckplus") == cfg.lambdas_for("synth-ckplus") == (1e-4, 2.0, 1.0)
    assert cfg.lambdas_for("oulu") == cfg.lambdas_for("synth-oulu") == (1e-4, 1.0, 6.0)
    with pytest.raises(FerlibError, match="CK\\+ and Oulu-CASIA only"):
        cfg.lambdas_for("mmi")


def test_subject_classes_number_the_training_subjects():
    from ferlib.experiments import eifn

    class Split:
        subject_names = ["a", "b", "c", "d", "e"]
        subjects = np.array([4, 1, 1, 4])

    assert eifn.subject_classes(Split()).tolist() == [-1, 0, -1, -1, 1]


@pytest.fixture(scope="module")
def ckplus_and_oulu():
    """synth-ckplus (the target) and synth-oulu (its stage-1 data) under EIFN's protocol, 32 px,
    scale 0.3, loaded once for the module (the tests only read them)."""
    from ferlib.experiments import eifn
    cfg = eifn.EIFNConfig.from_preset("smoke", scale=0.3, size=32)
    data = eifn.load(cfg)
    return data, eifn.load_pretraining(cfg, data)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_two_stage_run_transfers_the_extractors_and_reuses_stage_1(tmp_path, monkeypatch, ckplus_and_oulu):
    """Stage 1 returns the weights it trained (I, E, identity FC1); stage 2's task holds exactly
    those when its training starts (not a fresh draw of them), and fresh classifiers."""
    from ferlib.experiments import eifn
    built, fitted, started = [], [], []   # weights: as build_task made them, after stage 1's fit, at stage 2's start
    real_build, real_fit, real_train_fold = eifn.build_task, eifn.fit, eifn.train_fold

    def build_task(*args, **kwargs):
        task = real_build(*args, **kwargs)
        built.append(weights(task.model))
        return task

    def fit(task, *args, **kwargs):
        out = real_fit(task, *args, **kwargs)
        fitted.append(weights(task.model))
        return out

    def train_fold(task, *args, **kwargs):
        started.append(weights(task.model))
        return real_train_fold(task, *args, **kwargs)

    monkeypatch.setattr(eifn, "build_task", build_task)
    monkeypatch.setattr(eifn, "fit", fit)
    monkeypatch.setattr(eifn, "train_fold", train_fold)
    cfg = eifn.EIFNConfig.from_preset("smoke", methods="eifn", epochs=1, pretrain_epochs=1, scale=0.3, size=32,
                                      width_divisor=16, identity_dim=8, out_dir=str(tmp_path), table_datasets="")
    data, other = ckplus_and_oulu
    assert other.protocol.dataset == "synth-oulu" and data.protocol.pretrain_on == "synth-oulu"
    stage1 = eifn.pretrain(cfg, "eifn", other, progress=False)
    assert {k.split(".")[0] for k in stage1} == {"I", "E", "identity"} and not any("fc2" in k for k in stage1)
    assert set(stage1) == {k for k in fitted[0] if k.startswith(("I.", "E.", "identity.fc1."))}
    assert all(torch.equal(stage1[k], fitted[0][k]) for k in stage1), "pretrain returned other weights than it trained"
    float_keys = [k for k in stage1 if stage1[k].is_floating_point()]
    assert all(not torch.equal(stage1[k], built[0][k]) for k in float_keys), "stage 1 did not train them"
    again = eifn.pretrain(dataclasses.replace(cfg, fold=3, epochs=5), "eifn", other, progress=False)  # resumes
    assert all(torch.equal(stage1[k], again[k]) for k in stage1)
    fold = eifn.run_fold(dataclasses.replace(cfg, epochs=1), data, 0, "eifn", stage1, progress=False)
    start, fresh = started[-1], built[-1]
    assert all(torch.equal(start[k], stage1[k]) for k in stage1), "stage 2 did not start from stage 1's weights"
    assert all(not torch.equal(start[k], fresh[k]) for k in float_keys)
    assert all(torch.equal(start[k], fresh[k]) for k in start if k.startswith(("identity.fc2.", "expression_classifier.")))
    assert fold.record["finished"] and fold.test["logits"].shape[1] == 7
    assert fold.task.model.identity.fc2.out_features == len(np.unique(fold.data.train.subjects))
    table = eifn.probe_table([fold])
    assert list(table["feature"]) == ["expression branch", "identity branch", "fused bilinear"]


def test_each_stage_trains_with_the_lambdas_of_its_own_dataset(tmp_path, monkeypatch, ckplus_and_oulu):
    """Inside pretrain and run_fold: stage 1 on Oulu-CASIA takes the Oulu lambdas, stage 2 on CK+ the
    CK+ ones, and the other way round (training itself is skipped: only the tasks are built)."""
    from ferlib.experiments import eifn
    lambdas = []

    class RecordingTask(EIFNTask):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            lambdas.append((self.lambda1, self.lambda2, self.lambda3))

    monkeypatch.setattr(eifn, "EIFNTask", RecordingTask)
    monkeypatch.setattr(eifn, "fit", lambda *args, **kwargs: None)
    monkeypatch.setattr(eifn, "train_fold", lambda *args, **kwargs: ({}, {}))
    ck, oulu = (1e-3, 2.5, 1.5), (2e-3, 1.5, 6.5)
    cfg = eifn.EIFNConfig.from_preset("smoke", methods="eifn", scale=0.3, size=32, width_divisor=16, identity_dim=8,
                                      out_dir=str(tmp_path), lambdas_ckplus=ck, lambdas_oulu=oulu)
    data, other = ckplus_and_oulu
    assert (data.protocol.dataset, other.protocol.dataset) == ("synth-ckplus", "synth-oulu")
    eifn.run_fold(cfg, data, 0, "eifn", eifn.pretrain(cfg, "eifn", other, progress=False), progress=False)
    assert lambdas == [oulu, ck]
    lambdas.clear()
    reverse = dataclasses.replace(cfg, dataset="synth-oulu")
    eifn.run_fold(reverse, other, 0, "eifn", eifn.pretrain(reverse, "eifn", data, progress=False), progress=False)
    assert lambdas == [ck, oulu]


def test_pretraining_images_take_the_targets_channels(tmp_path, ckplus_and_oulu):
    from ferlib.experiments import eifn
    from ferlib.data.registry import LoadedDataset
    cfg = eifn.EIFNConfig.from_preset("smoke", scale=0.3, size=32, out_dir=str(tmp_path))
    data = ckplus_and_oulu[0]
    grey = dataclasses.replace(data, loaded=LoadedDataset(data.loaded.images[..., :1], data.loaded.manifest,
                                                          data.loaded.classes, "grey"))
    other = eifn.load_pretraining(cfg, grey)
    assert other.loaded.images.shape[-1] == 1 and "converted to 1 channel" in other.source
    assert eifn.load_pretraining(dataclasses.replace(cfg, pretrain=False), data) is None


def test_eifn_notebook_parameters_map_onto_the_config_and_presets_match_the_paper():
    from ferlib.experiments import eifn
    names = notebook_parameter_names("eifn")
    from ferlib.study.results import VIEW_PARAMETERS
    assert set(VIEW_PARAMETERS) <= names   # which registry records the chapter shows: not config fields
    assert names - set(VIEW_PARAMETERS) <= {f.name for f in dataclasses.fields(eifn.EIFNConfig)}
    assert {"dataset", "fold", "folds", "preset", "epochs", "seed", "data_root", "device", "out_dir", "methods",
            "pretrain", "pretrained"} <= names
    paper = eifn.EIFNConfig.from_preset("paper")
    assert (paper.size, paper.width_divisor, paper.batch_size, paper.lr, paper.momentum, paper.weight_decay,
            paper.lr_step) == (64, 1, 100, 0.01, 0.9, 5e-4, 20)
    assert set(eifn.PRESETS["paper"]) == set(eifn.PRESETS["smoke"])
    with pytest.raises(FerlibError, match="choose from efn, eifn-star, eifn"):
        eifn.EIFNConfig.from_preset("smoke", methods="eifn,vgg").method_list()


def test_the_expression_classifier_may_learn_faster_and_nothing_else_does():
    model = small_model("eifn")
    task = EIFNTask(model, lr=0.01, classifier_lr_mult=10.0)
    network, head = task.optimizers["sgd"].param_groups
    assert head["lr"] == pytest.approx(0.1) and network["lr"] == 0.01
    assert {id(p) for p in head["params"]} == {id(p) for p in model.expression_classifier.parameters()}
    grouped = {id(p) for g in (network, head) for p in g["params"]}
    assert grouped == {id(p) for n, p in model.named_parameters() if not n.startswith("centres.")}
