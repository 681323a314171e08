"""The training engine: exact resume, atomic checkpoints, validation-only model selection, the record."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from ferlib.engine import (EngineConfig, EpochSampler, Precision, evaluate, fit, jsonable, make_loader,
                           resolve_device, seed_everything, set_loader_epoch)
from ferlib.errors import FerlibError
from ferlib.models.baseline import PlainCNN

torch.set_num_threads(1)
CLASSES = ("anger", "happiness", "surprise")


class ToyTask:
    """A small MLP classifier whose training draws from every RNG the engine must checkpoint:
    dropout and noise (torch), a python and a numpy draw; Adam + StepLR state."""

    def __init__(self, init_seed: int = 0, lr: float = 1e-2):
        torch.manual_seed(init_seed)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.modules = {"net": self.net}
        self.optimizers = {"net": opt}
        self.schedulers = {"net": torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.7)}
        self.steps_done = 0

    def train_step(self, batch, step):
        x, y = batch
        x = x + 0.1 * random.random() * torch.randn_like(x) + 0.01 * float(np.random.rand())
        opt = self.optimizers["net"]
        opt.zero_grad()
        with self.amp.autocast():
            loss = F.cross_entropy(self.net(x), y)
        self.amp.backward(loss)
        self.amp.step(opt)
        self.steps_done += 1
        return {"loss": loss.item()}

    def predict(self, batch):
        x, y = batch
        hidden = self.net[:2](x)
        return self.net[2:](hidden), y, hidden


def toy_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, x[:, :3].argmax(1))


def toy_loaders(plain: bool = False, test_seed: int = 3):
    train = toy_data(64, 1)
    train_loader = (DataLoader(train, batch_size=16, shuffle=True) if plain
                    else make_loader(train, batch_size=16, shuffle=True, seed=7))
    val = make_loader(toy_data(32, 2), batch_size=16, shuffle=False)
    test = make_loader(toy_data(32, test_seed), batch_size=16, shuffle=False)
    return train_loader, val, test


def config(tmp_path, **kw) -> EngineConfig:
    return EngineConfig(**{"epochs": 3, "seed": 5, "out_dir": str(tmp_path), "run_name": "toy", "progress": False, **kw})


def params(task) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in task.net.state_dict().items()}


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("epoch_time_s", "images_per_s")} for row in history]


def scramble_global_rngs() -> None:
    torch.manual_seed(999)
    random.seed(999)
    np.random.seed(999)


@pytest.mark.parametrize("plain", [False, True], ids=["make_loader", "plain_dataloader"])
def test_a_crashed_run_resumed_ends_exactly_like_an_uninterrupted_one(tmp_path, plain):
    full_task = ToyTask()
    full = fit(full_task, *toy_loaders(plain), config(tmp_path / "full"), class_names=CLASSES)

    crashed = fit(ToyTask(), *toy_loaders(plain), config(tmp_path / "crash"), class_names=CLASSES, stop_after_epoch=1)
    assert crashed["finished"] is False and crashed["test"] is None and len(crashed["history"]) == 1
    assert not (tmp_path / "crash" / "toy" / "record.json").exists()

    scramble_global_rngs()  # a new process starts from other RNG states and other initial weights
    resumed_task = ToyTask(init_seed=123)
    resumed = fit(resumed_task, *toy_loaders(plain), config(tmp_path / "crash"), class_names=CLASSES)

    assert resumed["resumed_from_epoch"] == 1 and full["resumed_from_epoch"] == 0
    assert resumed["test"] == full["test"]
    assert without_timing(resumed["history"]) == without_timing(full["history"])
    assert resumed["best_epoch"] == full["best_epoch"]
    for name, value in params(full_task).items():
        assert torch.equal(value, params(resumed_task)[name]), name


def test_a_failure_while_saving_never_replaces_the_good_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save

    def save_that_dies_halfway(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "rng" in obj and obj["epoch"] == 2:
            f.write(b"half a checkpoint")
            raise OSError("No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_that_dies_halfway)
    with pytest.raises(OSError, match="No space"):
        fit(ToyTask(), *toy_loaders(), config(tmp_path))
    monkeypatch.setattr(torch, "save", real_save)

    run_dir = tmp_path / "toy"
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "last.pt"]  # no temp file left behind
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 1

    resumed_task = ToyTask(init_seed=42)
    resumed = fit(resumed_task, *toy_loaders(), config(tmp_path))
    full_task = ToyTask()
    full = fit(full_task, *toy_loaders(), config(tmp_path / "full"))
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["test"] == full["test"]
    assert all(torch.equal(a, b) for a, b in zip(params(resumed_task).values(), params(full_task).values()))


class GuardedTestSet:
    """An iterable test set that fails if it is read before training is over, and counts its reads."""

    def __init__(self, loader, task, total_steps: int):
        self.loader, self.task, self.total_steps, self.reads = loader, task, total_steps, 0

    def __iter__(self):
        if self.task.steps_done != self.total_steps:
            raise AssertionError(f"test set read after {self.task.steps_done} of {self.total_steps} steps")
        self.reads += 1
        return iter(self.loader)


def test_the_test_set_is_read_once_after_training_and_cannot_change_the_kept_checkpoint(tmp_path):
    outcomes = []
    for test_seed in (3, 4):
        task = ToyTask()
        train, val, test = toy_loaders(test_seed=test_seed)
        tripwire = GuardedTestSet(test, task, total_steps=3 * 4)
        record = fit(task, train, val, tripwire, config(tmp_path / f"test{test_seed}"))
        assert tripwire.reads == 1
        outcomes.append((record, params(task)))
    (first, first_params), (second, second_params) = outcomes
    assert first["test"]["acc"] != second["test"]["acc"]  # the test data did differ...
    assert first["best_epoch"] == second["best_epoch"]      # ...but not the choice of checkpoint
    assert without_timing(first["history"]) == without_timing(second["history"])
    assert all(torch.equal(first_params[k], second_params[k]) for k in first_params)


class ScriptedTask:
    """Validation accuracy follows a script per epoch (0.5, 0.9, 0.7): only the weights of epoch 2
    score 0.9, so the test accuracy shows which epoch's weights were restored."""

    script = (0.5, 0.9, 0.7)

    def __init__(self):
        self.counter = nn.Linear(1, 1, bias=False)
        nn.init.zeros_(self.counter.weight)
        self.modules = {"counter": self.counter}
        self.optimizers = {"sgd": torch.optim.SGD(self.counter.parameters(), lr=0.1)}
        self.schedulers = {}

    def train_step(self, batch, step):
        with torch.no_grad():
            self.counter.weight += 1.0  # one batch per epoch: the weight is the epoch number
        return {"loss": 1.0 / (1 + step)}

    def predict(self, batch):
        index, y = batch
        epoch = int(round(self.counter.weight.item()))
        correct = index < self.script[epoch - 1] * 10
        preds = torch.where(correct, y, (y + 1) % 3)
        return F.one_hot(preds, 3).float() * 5, y, None


def test_the_best_validation_epoch_is_kept_and_tested(tmp_path):
    data = TensorDataset(torch.arange(10), torch.arange(10) % 3)
    loader = make_loader(data, batch_size=10, shuffle=False)
    record = fit(ScriptedTask(), loader, loader, loader, config(tmp_path), class_names=CLASSES)
    assert [row["val_acc"] for row in record["history"]] == [0.5, 0.9, 0.7]
    assert [row["improved"] for row in record["history"]] == [True, True, False]
    assert record["best_epoch"] == 2 and record["best"] == {"metric": "val_acc", "value": 0.9}
    assert record["test"]["acc"] == 0.9  # epoch 2's weights, not the last epoch's (0.7)
    assert torch.load(tmp_path / "toy" / "last.pt", weights_only=True)["epoch"] == 3


def test_epochs_before_select_from_are_never_kept(tmp_path):
    data = TensorDataset(torch.arange(10), torch.arange(10) % 3)
    loader = make_loader(data, batch_size=10, shuffle=False)
    record = fit(ScriptedTask(), loader, loader, loader, config(tmp_path, select_from=3), class_names=CLASSES)
    assert [row["improved"] for row in record["history"]] == [False, False, True]
    assert record["best_epoch"] == 3 and record["test"]["acc"] == 0.7   # epoch 2 scored 0.9 but came too early
    with pytest.raises(FerlibError, match="select_from=4"):
        fit(ScriptedTask(), loader, loader, loader, config(tmp_path / "b", select_from=4), class_names=CLASSES)


def test_the_record_has_every_field_and_is_written_as_strict_json(tmp_path):
    record = fit(ToyTask(), *toy_loaders(), config(tmp_path), config={"paper": "toy", "lr": 0.01},
                 class_names=CLASSES)
    on_disk = json.loads((tmp_path / "toy" / "record.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"record.json holds {c}"))
    assert on_disk == record
    for key in ("run_name", "finished", "config", "engine", "config_hash", "history", "best_epoch", "best",
                "test", "git_commit", "git_dirty", "versions", "device", "wall_time_s", "train_time_s", "created"):
        assert key in record, key
    assert record["config"] == {"paper": "toy", "lr": 0.01} and record["engine"]["epochs"] == 3
    assert set(record["versions"]) >= {"python", "torch", "torchvision", "numpy", "ferlib"}
    assert record["git_commit"] == "unknown" or len(record["git_commit"]) == 40
    assert record["device"].startswith(("cpu", "NVIDIA")) or "cuda" in record["device"].lower()
    assert [row["epoch"] for row in record["history"]] == [1, 2, 3]
    for row in record["history"]:
        assert {"train_loss", "val_acc", "val_macro_acc", "val_loss", "lr_net", "epoch_time_s",
                "images_per_s"} <= set(row)
        assert row["images_per_s"] > 0
    assert [round(row["lr_net"], 6) for row in record["history"]] == [0.01, 0.01, 0.007]  # StepLR(2) stepped once per epoch
    test = record["test"]
    assert list(test["per_class_acc"]) == list(CLASSES) == test["class_names"]
    assert np.asarray(test["confusion"]).shape == (3, 3) and np.asarray(test["confusion"]).sum() == test["n"] == 32
    assert test["acc"] == pytest.approx(np.trace(test["confusion"]) / 32)


def test_a_tiny_plain_cnn_training_lowers_the_loss(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 2
    x = 0.3 * torch.randn(96, 1, 16, 16, generator=g)
    x[y == 1, :, :8] += 1.0  # class 1: bright top half

    class Classifier:
        def __init__(self):
            torch.manual_seed(0)
            self.model = PlainCNN(num_classes=2, in_channels=1, width=4)
            self.modules = {"model": self.model}
            self.optimizers = {"model": torch.optim.Adam(self.model.parameters(), lr=3e-3)}
            self.schedulers = {}

        def train_step(self, batch, step):
            images, labels = batch
            opt = self.optimizers["model"]
            opt.zero_grad()
            with self.autocast():
                loss = F.cross_entropy(self.model(images), labels)
            self.amp.backward(loss)
            self.amp.step(opt)
            return {"loss": loss.item()}

        def predict(self, batch):
            images, labels = batch
            features = self.model.features(images)
            return self.model.classifier(features), labels, features

    data = TensorDataset(x, y)
    loader = make_loader(data, batch_size=16, shuffle=True, seed=0)
    record = fit(Classifier(), loader, make_loader(data, 32, False), None, config(tmp_path, epochs=4))
    losses = [row["train_loss"] for row in record["history"]]
    assert losses[-1] < 0.7 * losses[0], losses
    assert record["test"] is None


def test_resuming_with_a_different_config_is_refused(tmp_path):
    fit(ToyTask(), *toy_loaders(), config(tmp_path), config={"lr": 0.01}, stop_after_epoch=1)
    with pytest.raises(FerlibError, match=r"different configuration.*run_name.*delete") as error:
        fit(ToyTask(), *toy_loaders(), config(tmp_path), config={"lr": 0.02})
    assert str(tmp_path / "toy") in str(error.value)
    with pytest.raises(FerlibError, match="different configuration"):
        fit(ToyTask(), *toy_loaders(), config(tmp_path, epochs=5), config={"lr": 0.01})


def test_an_unreadable_checkpoint_gives_a_clear_error(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FerlibError, match=r"last.pt cannot be read.*delete the folder"):
        fit(ToyTask(), *toy_loaders(), config(tmp_path))


def test_progress_bars_and_epoch_lines(tmp_path, capsys):
    fit(ToyTask(), *toy_loaders(), config(tmp_path, epochs=2, progress=True, log_every=2))
    out = capsys.readouterr()
    text = out.out + out.err
    assert "epoch 1/2: train_loss" in text and "(best)" in text and "step 2: loss" in text
    assert "toy: 100%" in out.err  # the run's bar, on stderr, named after the run


def test_make_loader_order_depends_only_on_seed_and_epoch():
    data = TensorDataset(torch.arange(20))

    def order(seed, epoch, shuffle=True):
        loader = make_loader(data, batch_size=5, shuffle=shuffle, seed=seed)
        set_loader_epoch(loader, epoch)
        return torch.cat([b[0] for b in loader]).tolist()

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4) and order(0, 3) != order(1, 3)
    assert sorted(order(0, 3)) == list(range(20))
    assert order(0, 3, shuffle=False) == list(range(20))
    sampler = EpochSampler(4, shuffle=True, seed=0)
    assert len(sampler) == 4


def test_fit_reshuffles_a_make_loader_loader_every_epoch_by_seed_and_epoch(tmp_path):
    class RecordingTask(ScriptedTask):
        def __init__(self):
            super().__init__()
            self.seen: list[int] = []

        def train_step(self, batch, step):
            self.seen += batch[0].tolist()
            return super().train_step(batch, step)

    data = TensorDataset(torch.arange(10), torch.arange(10) % 3)
    task = RecordingTask()
    fit(task, make_loader(data, batch_size=10, shuffle=True, seed=4), None, None, config(tmp_path))
    per_epoch = [task.seen[i:i + 10] for i in (0, 10, 20)]
    expected = []
    for epoch in (1, 2, 3):
        loader = make_loader(data, batch_size=10, shuffle=True, seed=4)
        set_loader_epoch(loader, epoch)
        expected.append(next(iter(loader))[0].tolist())
    assert per_epoch == expected and per_epoch[0] != per_epoch[1]


def test_seed_everything_repeats_every_rng():
    def draws():
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    seed_everything(11)
    first = draws()
    seed_everything(11)
    assert draws() == first
    seed_everything(12)
    assert draws() != first


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(FerlibError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(FerlibError, match="CUDA is not available"):
            resolve_device("cuda")


def test_evaluate_scores_and_restores_each_module_mode():
    task = ToyTask()
    task.net[2].eval()  # a submodule the task keeps in eval mode must stay so
    loader = make_loader(toy_data(32, 2), batch_size=10, shuffle=False)
    result = evaluate(task, loader, "cpu")
    assert task.net.training and task.net[0].training and not task.net[2].training
    assert result["n"] == 32 and result["logits"].shape == (32, 3) and result["features"].shape == (32, 16)
    assert result["acc"] == pytest.approx((result["preds"] == result["labels"]).mean())
    assert result["confusion"].sum() == 32
    expected_loss = F.cross_entropy(torch.from_numpy(result["logits"]), torch.from_numpy(result["labels"])).item()
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-6)
    again = evaluate(task, loader, "cpu")
    assert np.array_equal(again["logits"], result["logits"])  # eval mode: dropout off, deterministic


def test_precision_is_a_pass_through_on_cpu():
    amp = Precision(torch.device("cpu"), enabled=True)
    assert not amp.enabled
    w = nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([w], lr=0.5)
    with amp.autocast():
        loss = (2 * w).sum()
    amp.backward(loss)
    amp.step(opt)
    amp.update()
    assert w.item() == pytest.approx(0.0)


def test_jsonable_turns_nan_and_arrays_into_plain_json():
    assert jsonable({"a": np.float32(0.5), "b": float("nan"), "c": np.arange(2), 3: (np.int64(4),)}) == \
        {"a": 0.5, "b": None, "c": [0, 1], "3": [4]}


def test_fit_trains_in_train_mode_whatever_mode_the_task_arrives_in(tmp_path):
    """Dropout must be on in training: a task handed over in eval mode is put in train mode."""
    task = ToyTask()
    task.net.eval()
    modes = []
    original = task.train_step
    task.train_step = lambda batch, step: modes.append(task.net[2].training) or original(batch, step)
    fit(task, *toy_loaders(), config(tmp_path))
    assert modes and all(modes)


class NondeterministicToyTask(ToyTask):
    """A step that hits an op torch has no deterministic kernel for (as some CUDA kernels do)."""

    def train_step(self, batch, step):
        import warnings
        warnings.warn("scatter_add_cuda_kernel does not have a deterministic implementation, but you set "
                      "'torch.use_deterministic_algorithms(True, warn_only=True)'.", UserWarning)
        return super().train_step(batch, step)


def test_the_record_says_whether_the_run_was_deterministic(tmp_path):
    clean = fit(ToyTask(), *toy_loaders(), config(tmp_path / "a"))
    assert clean["determinism"] == {"requested": True, "deterministic": True, "nondeterministic_ops": {},
                                    "device_type": "cpu"}
    with pytest.warns(UserWarning, match="scatter_add_cuda_kernel"):
        flagged = fit(NondeterministicToyTask(), *toy_loaders(), config(tmp_path / "b"))
    assert flagged["determinism"]["deterministic"] is False
    assert flagged["determinism"]["nondeterministic_ops"] == {"scatter_add_cuda_kernel": 3 * 4}
    unasked = fit(ToyTask(), *toy_loaders(), config(tmp_path / "c", deterministic=False))
    assert unasked["determinism"]["requested"] is False and unasked["determinism"]["deterministic"] is False
    # a resumed run keeps what the epochs before the crash saw
    with pytest.warns(UserWarning, match="scatter_add_cuda_kernel"):
        fit(NondeterministicToyTask(), *toy_loaders(), config(tmp_path / "d"), stop_after_epoch=1)
    resumed = fit(ToyTask(), *toy_loaders(), config(tmp_path / "d"))
    assert resumed["determinism"]["nondeterministic_ops"] == {"scatter_add_cuda_kernel": 4}


def test_fit_and_test_returns_the_one_test_evaluation(tmp_path):
    from ferlib.engine import fit_and_test
    task = ToyTask()
    train, val, test = toy_loaders()
    tripwire = GuardedTestSet(test, task, total_steps=3 * 4)
    record, evaluation = fit_and_test(task, train, val, tripwire, config(tmp_path))
    assert tripwire.reads == 1
    assert evaluation["acc"] == record["test"]["acc"] and evaluation["logits"].shape == (32, 3)


def test_the_cost_section_counts_deterministic_runs():
    from ferlib.experiments.common import determinism_note
    records = [{"determinism": {"deterministic": True, "nondeterministic_ops": {}}},
               {"determinism": {"deterministic": False, "nondeterministic_ops": {"scatter_add_cuda_kernel": 3}}}]
    note = determinism_note(records)
    assert note.startswith("deterministic runs: 1 of 2") and note.endswith("scatter_add_cuda_kernel")


class PlateauTask(ScriptedTask):
    """Validation accuracy 0.5, 0.9, 0.7, 0.7, 0.7, 0.95: best at epoch 2, then three epochs without a better one."""

    script = (0.5, 0.9, 0.7, 0.7, 0.7, 0.95)


def test_early_stopping_ends_after_patience_epochs_without_improvement_and_resumes_there(tmp_path):
    data = TensorDataset(torch.arange(10), torch.arange(10) % 3)
    loader = make_loader(data, batch_size=10, shuffle=False)
    record = fit(PlateauTask(), loader, loader, loader, config(tmp_path / "a", epochs=6, patience=2), class_names=CLASSES)
    assert [row["epoch"] for row in record["history"]] == [1, 2, 3, 4]      # epochs 3 and 4 did not improve on 2
    assert record["stopped_early"] is True and record["best_epoch"] == 2 and record["test"]["acc"] == 0.9
    full = fit(PlateauTask(), loader, loader, loader, config(tmp_path / "b", epochs=6), class_names=CLASSES)
    assert len(full["history"]) == 6 and full["stopped_early"] is False and full["best_epoch"] == 6
    # a crash after epoch 3 resumes and stops where the uninterrupted run stopped
    fit(PlateauTask(), loader, loader, loader, config(tmp_path / "c", epochs=6, patience=2), stop_after_epoch=3)
    task = PlateauTask()
    resumed = fit(task, loader, loader, loader, config(tmp_path / "c", epochs=6, patience=2), class_names=CLASSES)
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3, 4] and resumed["test"]["acc"] == 0.9


def test_early_stopping_waits_for_min_epochs(tmp_path):
    data = TensorDataset(torch.arange(10), torch.arange(10) % 3)
    loader = make_loader(data, batch_size=10, shuffle=False)
    warm = fit(PlateauTask(), loader, loader, loader, config(tmp_path, epochs=6, patience=2, min_epochs=6),
               class_names=CLASSES)
    # patience alone stops after epoch 4 (above); here epochs 5 and 6 run and epoch 6 is the best
    assert len(warm["history"]) == 6 and warm["best_epoch"] == 6 and warm["stopped_early"] is False
    assert warm["test"]["acc"] == 1.0                                       # epoch 6's weights: all 10 right
