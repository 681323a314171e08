"""IF-GAN's protocol (Sec. 4.3): where the "average identity" targets I_AE come from, and the other
datasets as extra training data. Tiny SynthFER scales at 16 px, no training."""

import dataclasses

import pytest
import torch
from conftest import notebook_parameter_names

from ferlib.data.registry import load_dataset
from ferlib.data.transforms import make_transform
from ferlib.errors import FerlibError
from ferlib.experiments import ifgan
from ferlib.experiments.common import ProtocolData, load_protocol_data, make_fold, with_extra_training_data

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16
SIX = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
SEVEN = ("neutral", *SIX)


def rafdb_config(**overrides) -> ifgan.IFGANConfig:
    """synth-rafdb at a few dozen images; the posed averaging datasets at a tenth of their size."""
    args = dict(dataset="synth-rafdb", size=SIZE, scale=0.1, scales="synth-rafdb=0.003") | overrides
    return ifgan.IFGANConfig.from_preset("smoke", **args)


def as_model_input(images) -> torch.Tensor:
    """uint8 (N,H,W,C) arrays through IF-GAN's test-time transform, as the model sees them."""
    transform = make_transform("ifgan", train=False, size=SIZE)
    return torch.stack([transform(torch.from_numpy(a).permute(2, 0, 1)) for a in images])


def test_rafdb_neutral_target_is_the_mean_of_the_posed_datasets_neutral_faces():
    cfg = rafdb_config()
    data = ifgan.load(cfg)
    fold = make_fold(data, 0, transform="ifgan", size=SIZE)
    targets = ifgan.make_task(cfg, "resnet", fold).model.averages  # what training uses
    assert fold.classes == SEVEN
    # by hand: CK+ and MMI give the first frame of every sequence labelled with a basic expression,
    # BU-3DFE the one neutral face of each subject
    neutral, expressive = [], []
    for name in ifgan.POSED:
        loaded = load_dataset(name, size=SIZE, scale=cfg.scale_for(name), seed=cfg.seed, paper="ifgan")
        m = loaded.manifest
        if name == "synth-bu3dfe":
            faces = m[m["label"] == "neutral"]
            assert len(faces) == m["subject"].nunique()
        else:
            kept = m.loc[m["label"].isin(SIX), "sequence"].unique()
            faces = m[m["sequence"].isin(kept)].sort_values(["sequence", "frame"]).groupby("sequence").head(1)
            assert len(faces) == len(kept)
            if name == "synth-ckplus":  # its contempt and unlabelled sequences give no neutral face
                assert len(kept) < m["sequence"].nunique()
        assert (faces["role"] == "neutral").all()
        neutral.append(as_model_input(loaded.images[faces.index.to_numpy()]))
        expressive.append(as_model_input(loaded.images[m.index[m["label"].isin(SIX)].to_numpy()]))
    neutral = torch.cat(neutral)
    assert torch.allclose(targets[0], neutral.mean(0), atol=1e-5)
    # not a stand-in such as the mean of the three datasets' expressive images
    assert not torch.allclose(targets[0], torch.cat(expressive).mean(0), atol=1e-3)


def test_averages_from_naming_the_dataset_under_test_is_refused():
    cfg = ifgan.IFGANConfig.from_preset("smoke", size=SIZE, scale=0.12, averages_from="synth-mmi, synth-ckplus")
    with pytest.raises(FerlibError, match=r"averages_from='synth-mmi, synth-ckplus' names synth-ckplus, the dataset "
                                          r"under test.*test subjects.*averages_from='train'"):
        ifgan.load(cfg)  # refused before any training
    with pytest.raises(FerlibError, match="names synth-rafdb, the dataset under test"):
        ifgan.averages_choice(rafdb_config(averages_from="synth-rafdb"))
    with pytest.raises(FerlibError, match="'train' .* stands alone"):
        ifgan.averages_choice(dataclasses.replace(cfg, averages_from="train,synth-mmi"))
    # other datasets are other people (every SynthFER preset its own population): allowed
    assert ifgan.averages_choice(dataclasses.replace(cfg, averages_from="synth-mmi")) == "synth-mmi"
    assert ifgan.averages_choice(dataclasses.replace(cfg, averages_from="")) == "train"


def test_a_posed_dataset_takes_rafdb_as_extra_data_without_its_neutral_images(capsys):
    cfg = ifgan.IFGANConfig.from_preset("smoke", size=SIZE, scale=0.12, scales="synth-rafdb=0.003",
                                        extra_datasets="synth-rafdb")
    data = ifgan.load(cfg)
    out = capsys.readouterr().out
    raf = load_protocol_data("synth-rafdb", "ifgan", data_root=None, size=SIZE, scale=0.003, seed=0)
    n_neutral = int((raf.manifest["label"] == "neutral").sum())
    assert n_neutral > 0
    extra = data.manifest[data.manifest["extra"]]
    assert len(extra) == len(raf.manifest) - n_neutral and set(extra["label"]) <= set(SIX)
    note = f"{n_neutral} images labelled neutral dropped, not classes of synth-ckplus"
    assert note in data.source and note in out
    fold = make_fold(data, 0, transform="ifgan", size=SIZE)  # six classes, every training row among them
    assert fold.classes == SIX and fold.manifest.loc[fold.manifest["extra"].astype(bool), "split"].eq("train").all()
    # an extra dataset with nothing of the main dataset's classes is refused
    main = load_protocol_data("synth-ckplus", "ifgan", data_root=None, size=SIZE, scale=0.12, seed=0)
    only_neutral = ProtocolData(raf.loaded, raf.protocol, raf.manifest[raf.manifest["label"] == "neutral"])
    with pytest.raises(FerlibError, match="synth-rafdb has no image of a class of synth-ckplus"):
        with_extra_training_data(main, [only_neutral])


def test_synth_rafdb_default_averages_are_the_posed_datasets_not_its_training_split():
    cfg = rafdb_config()
    assert cfg.averages_from == ""
    assert ifgan.averages_choice(cfg) == "synth-bu3dfe,synth-ckplus,synth-mmi"
    # the notebook's own run and its table row agree
    table_row = ifgan.replace_dataset(dataclasses.replace(cfg, dataset="synth-ckplus"), "synth-rafdb")
    assert ifgan.averages_choice(table_row) == ifgan.averages_choice(cfg)
    assert "averages_from" in notebook_parameter_names("ifgan")
    data = ifgan.load(cfg)
    fold = make_fold(data, 0, transform="ifgan", size=SIZE)
    targets = ifgan.fold_targets(cfg, fold)
    posed = ifgan.averages_of_datasets(dataclasses.replace(cfg, averages_from=",".join(ifgan.POSED)), fold.classes)
    assert torch.equal(targets, posed)
    assert not torch.allclose(targets, ifgan.fold_averages(fold), atol=1e-3)
    # RAF-DB's own training images do not enter: poison them, nothing changes
    train_rows = fold.manifest.index[fold.manifest["split"] == "train"]
    positions = [fold.cache.position(r) for r in train_rows]
    fold.cache.images[positions] = 255 - fold.cache.images[positions]
    assert torch.equal(ifgan.fold_targets(cfg, fold), targets)
    # "train" is RAF-DB's own training split, on request
    assert torch.equal(ifgan.fold_targets(dataclasses.replace(cfg, averages_from="train"), fold),
                       ifgan.fold_averages(fold))
