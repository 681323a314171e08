"""Schedules that mean what the papers mean: ADFL's and EIFN's epochs are passes over their expanded
training sets (ten crops, 14 rotated and flipped copies), so the paper presets visit every (image,
variant) pair once per epoch and the smoke presets draw one per image; EIFN's stage 1 is keyed on
the data it trains on."""

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ferlib.data.cache import FERDataset, ImageCache
from ferlib.data.expand import ExpandedDataset, expand_if
from ferlib.data.transforms import (PresetTransform, make_transform, random_int, random_uniform,
                                    to_model_input)
from ferlib.engine import make_loader, set_loader_epoch
from ferlib.errors import FerlibError

pytestmark = pytest.mark.usefixtures("one_thread")


def face(c=3, h=128, w=110, seed=0):
    return torch.randint(0, 256, (c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- the variants


def test_adfls_ten_training_variants_are_the_ten_crops_of_sec_3_1():
    train = make_transform("adfl", train=True, size=112)
    image = face()
    variants = torch.stack([train.apply_variant(image, k) for k in range(len(train.variants()))])
    ten = make_transform("adfl", train=False, size=112, ten_crop=True)(image)
    assert len(train.variants()) == 10 and torch.equal(variants, ten)   # corners, centre, then the mirror's
    g = torch.Generator().manual_seed(0)
    train.generator = g
    drawn = {tuple(train(image).flatten().tolist()[:50]) for _ in range(80)}
    assert drawn == {tuple(v.flatten().tolist()[:50]) for v in variants}   # a random draw is one of the ten


def test_eifns_fourteen_training_variants_are_seven_angles_and_their_mirrors():
    train = make_transform("eifn", train=True, size=64)
    assert [(v.flip, v.angle) for v in train.variants()] == [
        (flip, float(a)) for flip in (False, True) for a in (-15, -10, -5, 0, 5, 10, 15)]
    image = face(h=64, w=64)
    images = [train.apply_variant(image, k) for k in range(14)]
    assert len({tuple(x.flatten().tolist()) for x in images}) == 14
    mirrored = F.horizontal_flip(image)
    expected = to_model_input(F.rotate(mirrored, 10.0, interpolation=InterpolationMode.BILINEAR))
    assert torch.equal(images[7 + 5], expected)                          # mirror first, then +10 degrees


def test_continuous_draws_cannot_be_listed():
    with pytest.raises(FerlibError, match="continuous angle"):
        make_transform("ifgan", train=True, size=64).variants()
    with pytest.raises(FerlibError, match="random position"):
        make_transform("baseline", train=True, size=64).variants()


def old_random_draw(t: PresetTransform, image: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The training transform as it was before variants existed: flip, angle, crop, in that order."""
    image = F.resize(image, list(t.scale_to), interpolation=InterpolationMode.BILINEAR, antialias=True)
    preset = t.preset
    if preset.flip and torch.rand((), generator=g).item() < 0.5:
        image = F.horizontal_flip(image)
    angle = 0.0
    if preset.rotate_choices:
        angle = float(preset.rotate_choices[random_int(len(preset.rotate_choices) - 1, g)])
    elif preset.rotate_degrees:
        angle = random_uniform(-preset.rotate_degrees, preset.rotate_degrees, g)
    if angle:
        image = F.rotate(image, angle, interpolation=InterpolationMode.BILINEAR)
    top, left = t.crop_position(g)
    return to_model_input(F.crop(image, top, left, t.crop[0], t.crop[1]))


@pytest.mark.parametrize("name", ["ifgan", "adfl", "eifn", "tergan"])
def test_the_random_draw_is_the_same_as_before(name):
    t = make_transform(name, train=True, size=48, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    image = face(h=64, w=64)
    for _ in range(6):
        assert torch.equal(t(image), old_random_draw(t, image, g))


# ----------------------------------------------------------------------------- the expanded set


def tiny_split(n=5, transform="eifn", size=16):
    images = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    manifest = pd.DataFrame({"path": [f"{i}.png" for i in range(n)], "subject": [f"S{i % 3}" for i in range(n)],
                             "sequence": [f"q{i}" for i in range(n)], "frame": 1, "label": "happiness",
                             "role": "single", "fold": -1, "split": ""})
    cache = ImageCache.from_arrays(images.numpy(), manifest)
    return FERDataset(cache, manifest.index[::-1], ["happiness"],
                      transform=make_transform(transform, train=True, size=size))


def test_one_epoch_of_the_expanded_set_visits_each_image_and_variant_exactly_once():
    base = tiny_split()
    expanded = ExpandedDataset(base)
    assert len(expanded) == 14 * len(base) and expanded.k == 14
    assert list(expanded.subjects) == list(np.repeat(base.subjects, 14))
    loader = make_loader(expanded, 8, shuffle=True, seed=3)
    orders = []
    for epoch in (1, 2):
        set_loader_epoch(loader, epoch)
        pairs = [(int(i), int(v)) for batch in loader for i, v in zip(batch["index"], batch["variant"])]
        assert sorted(pairs) == sorted((int(i), v) for i in base.index for v in range(14))  # each pair once
        orders.append(pairs)
    assert orders[0] != orders[1]                                         # in a new order every epoch
    sample = expanded[3 * 14 + 9]
    assert sample["index"] == base.index[3] and sample["variant"] == 9
    assert torch.equal(sample["image"], base.transform.apply_variant(base.cache.images[base.rows[3]], 9))
    assert expand_if(base, False) is base


# ----------------------------------------------------------------------------- the presets' epochs


def captured_fold(module, monkeypatch, cfg, method):
    """Run `module.run_fold` with `train_fold` replaced: the FoldData and task it would train."""
    seen = {}

    def fake_train_fold(task, fold_data, cfg_, run_name, config, **kwargs):
        seen.update(task=task, data=fold_data, config=config)
        return {}, {}

    monkeypatch.setattr(module, "train_fold", fake_train_fold)
    module.run_fold(cfg, module.load(cfg), 0, method, progress=False)
    return seen


@pytest.mark.parametrize("preset, crops", [("paper", 10), ("smoke", 1)])
def test_an_adfl_epoch_is_ten_crops_of_every_training_image_in_the_paper_preset(monkeypatch, preset, crops):
    from ferlib.experiments import adfl
    cfg = adfl.ADFLConfig.from_preset(preset, size=24, width=4, scale=0.3, table_datasets="")
    seen = captured_fold(adfl, monkeypatch, cfg, "baseline")
    n = int((seen["data"].manifest["split"] == "train").sum())            # training images, neutral included
    assert len(seen["data"].train) == crops * n
    # Sec. 3.1: about 100 epochs of batch 64 over the ten crops of every image: 100 x ceil(10 N / 64) steps
    steps = len(make_loader(seen["data"].train, adfl.PRESETS[preset]["batch_size"], shuffle=True))
    assert steps == math.ceil(crops * n / adfl.PRESETS[preset]["batch_size"])
    assert seen["config"]["expand"] is (preset == "paper")
    assert not isinstance(seen["data"].val, ExpandedDataset) and not isinstance(seen["data"].test, ExpandedDataset)


@pytest.mark.parametrize("preset, copies", [("paper", 14), ("smoke", 1)])
def test_an_eifn_epoch_is_fourteen_copies_of_every_training_image_in_the_paper_preset(monkeypatch, preset, copies):
    from ferlib.experiments import eifn
    cfg = eifn.EIFNConfig.from_preset(preset, size=32, width_divisor=16, identity_dim=8, scale=0.3,
                                      table_datasets="")
    seen = captured_fold(eifn, monkeypatch, cfg, "eifn")
    n = int((seen["data"].manifest["split"] == "train").sum())
    assert len(seen["data"].train) == copies * n
    batch, lr_step = eifn.PRESETS[preset]["batch_size"], eifn.PRESETS[preset]["lr_step"]
    steps_per_epoch = len(make_loader(seen["data"].train, batch, shuffle=True))
    assert steps_per_epoch == math.ceil(copies * n / batch)
    # the engine steps the scheduler once per epoch: the lr drops after lr_step x ceil(14 N / 100) SGD steps
    optimizer, scheduler = seen["task"].optimizers["sgd"], seen["task"].schedulers["sgd"]
    lr_at_step = []
    for _ in range(3 * lr_step):
        lr_at_step += [optimizer.param_groups[0]["lr"]] * steps_per_epoch
        optimizer.step()
        scheduler.step()
    drops = [t for t in range(1, len(lr_at_step)) if lr_at_step[t] < lr_at_step[t - 1]]
    assert drops == [lr_step * steps_per_epoch, 2 * lr_step * steps_per_epoch]
    if preset == "paper":
        assert lr_step == 20 and drops[0] == 20 * math.ceil(14 * n / 100)
    # the fold's subjects are still the identity classes, once each
    assert seen["task"].model.identity.fc2.out_features == len(np.unique(seen["data"].train.subjects))


@pytest.mark.parametrize("preset, copies", [("paper", 14), ("smoke", 1)])
def test_eifn_stage_1_expands_the_pretraining_set_in_the_paper_preset(monkeypatch, preset, copies):
    from ferlib.experiments import eifn
    cfg = eifn.EIFNConfig.from_preset(preset, size=32, width_divisor=16, identity_dim=8, scale=0.3)
    other = eifn.load_pretraining(cfg, eifn.load(cfg))
    seen = {}
    monkeypatch.setattr(eifn, "fit", lambda task, train, val, test, engine, config: seen.update(
        train=train, val=val, engine=engine, task=task))
    eifn.pretrain(cfg, "eifn", other, progress=False)
    assert len(seen["train"].dataset) == copies * len(other.manifest)
    assert seen["val"] is None and seen["task"].schedulers == {}          # no validation, no schedule
    assert seen["engine"].epochs == cfg.pretrain_epochs


def test_presets_set_expansion_and_every_preset_states_it():
    from ferlib.experiments import adfl, eifn
    for presets in (adfl.PRESETS, eifn.PRESETS):
        assert all("expand" in p for p in presets.values())
        assert presets["paper"]["expand"] is True and presets["smoke"]["expand"] is False
    assert "expand" in eifn.PRETRAIN_FIELDS


# ----------------------------------------------------------------------------- EIFN's stage-1 key


def test_eifn_stage_1_is_keyed_on_the_data_it_trains_on(tmp_path, monkeypatch):
    from ferlib.data.registry import LoadedDataset
    from ferlib.experiments import eifn
    cfg = eifn.EIFNConfig.from_preset("smoke", pretrain_epochs=1, scale=0.2, size=32, identity_dim=8,
                                      out_dir=str(tmp_path), pretrain_root=str(tmp_path / "a"))
    other = eifn.load_pretraining(cfg, eifn.load(cfg))
    name = lambda c, o=other: eifn.pretrain_run_name(c, "eifn", o)  # noqa: E731
    same_root = dataclasses.replace(cfg, pretrain_root=str(tmp_path / "x" / ".." / "a"), fold=4, epochs=2)
    assert name(same_root) == name(cfg)                                  # the same data: the same run
    assert name(dataclasses.replace(cfg, pretrain_root=str(tmp_path / "b"))) != name(cfg)
    assert name(dataclasses.replace(cfg, pretrain_root=None)) != name(cfg)
    images = other.loaded.images.copy()
    images[0, 0, 0, 0] ^= 1
    changed = dataclasses.replace(other, loaded=LoadedDataset(images, other.loaded.manifest, other.loaded.classes,
                                                              other.source))
    assert name(cfg, changed) != name(cfg)                               # other images at the same root
    relabelled = dataclasses.replace(other, loaded=dataclasses.replace(other.loaded, source="another source"))
    assert name(cfg, relabelled) != name(cfg)

    # through the engine: the same root resumes the finished stage 1, another root trains its own
    runs = lambda: sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("eifn-pretrain-"))  # noqa: E731
    first = eifn.pretrain(cfg, "eifn", other, progress=False)
    record = lambda c: json.loads((tmp_path / name(c) / "record.json").read_text())  # noqa: E731
    assert record(cfg)["config"]["pretrain_root"] == str((tmp_path / "a").resolve())
    assert record(cfg)["config"]["pretrain_source"] == other.source
    again = eifn.pretrain(same_root, "eifn", other, progress=False)
    assert runs() == [name(cfg)] and record(cfg)["resumed_from_epoch"] == 1
    assert all(torch.equal(first[k], again[k]) for k in first)
    elsewhere = dataclasses.replace(cfg, pretrain_root=str(tmp_path / "b"))
    eifn.pretrain(elsewhere, "eifn", other, progress=False)
    assert runs() == sorted([name(cfg), name(elsewhere)]) and record(elsewhere)["resumed_from_epoch"] == 0


def test_stage_2_records_which_stage_1_it_started_from(monkeypatch):
    from ferlib.experiments import eifn
    cfg = eifn.EIFNConfig.from_preset("smoke", methods="efn", scale=0.2, size=32, identity_dim=8, table_datasets="")
    configs = []
    monkeypatch.setattr(eifn, "pretrain", lambda cfg_, method, other, progress=True: None)
    monkeypatch.setattr(eifn, "train_fold", lambda task, fold_data, cfg_, run_name, config, **kw: (
        configs.append(config), ({}, {}))[1])
    data = eifn.load(cfg)
    eifn.run(cfg, data, progress=False)
    other = eifn.load_pretraining(cfg, data)
    assert configs[0]["pretrained_on"] == eifn.pretrain_run_name(cfg, "efn", other)
