"""Dataset names and load_dataset: SynthFER in memory; real datasets stop with a useful message."""

import sys
import types

import numpy as np
import pandas as pd
import pytest

import ferlib.data
from ferlib.data.registry import DATASETS, REAL_DATASETS, LoadedDataset, dataset_names, load_dataset
from ferlib.errors import DatasetNotFound, UnknownName

FAKE_PRESETS = ("ckplus", "mmi", "oulu", "bu3dfe", "bu4dfe", "rafdb", "ferplus", "tiny")


@pytest.fixture
def fake_synth(monkeypatch):
    """A stand-in for ferlib.data.synth with its contract (PRESETS, generate): registry tests do
    not depend on the renderer."""
    module = types.ModuleType("ferlib.data.synth")
    module.PRESETS = {name: object() for name in FAKE_PRESETS}
    module.calls = []

    def generate(preset, scale=1.0, size=64, seed=0, progress=False):
        if preset not in module.PRESETS:
            raise UnknownName("SynthFER preset", preset, module.PRESETS)
        module.calls.append((preset, scale, size, seed))
        manifest = pd.DataFrame([dict(path=f"{i}.png", subject="S1", sequence="S1_0", frame=i, label="anger",
                                      role="apex", fold=-1, split="") for i in range(3)])
        return types.SimpleNamespace(images=np.zeros((3, size, size, 3), np.uint8), manifest=manifest,
                                     classes=("anger",))
    module.generate = generate
    monkeypatch.setitem(sys.modules, "ferlib.data.synth", module)
    monkeypatch.setattr(ferlib.data, "synth", module, raising=False)
    return module


# Each dataset's example files, as the owners distribute them (the brief's layouts).
EXAMPLE_FILES = {
    "ckplus": ["cohn-kanade-images/S005/001/S005_001_00000001.png", "Emotion/S005/001/S005_001_00000011_emotion.txt"],
    "oulu": ["OriginalImg/VL/Strong/P001/Anger/000.jpeg"],
    "mmi": ["Sessions/1766/session.xml", "Sessions/1766/S001-001.avi"],
    "bu3dfe": ["F0001/F0001_AN04WH_F2D.bmp"],
    "bu4dfe": ["F001/Angry/000.jpg"],
    "rafdb": ["basic/EmoLabel/list_patition_label.txt", "basic/Image/aligned/train_00001_aligned.jpg"],
    "ferplus": ["fer2013.csv", "fer2013new.csv"],
}

OWNERS = {  # where to request each dataset: words the message must carry
    "ckplus": ["Jeffrey Cohn", "University of Pittsburgh", "CK+ agreement"],
    "mmi": ["mmifacedb.eu", "iBUG", "Imperial College"],
    "oulu": ["University of Oulu", "CMVS"],
    "bu3dfe": ["Binghamton University", "Lijun Yin"],
    "bu4dfe": ["Binghamton University", "Lijun Yin"],
    "rafdb": ["whdeng.cn/RAF", "Beijing University of Posts and Telecommunications"],
    "ferplus": ["github.com/microsoft/FERPlus", "Kaggle", "FER2013"],
}


def make_layout(root, name):
    for rel in EXAMPLE_FILES[name]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    return root


def test_every_real_dataset_is_described():
    assert tuple(DATASETS) == REAL_DATASETS == ("ckplus", "mmi", "oulu", "bu3dfe", "bu4dfe", "rafdb", "ferplus")
    for name, info in DATASETS.items():
        assert info.name == name and info.layout.startswith("<data_root>/")
        assert set(info.classes) <= set(info.label_map.values())
        for words in OWNERS[name]:
            assert words in info.request or words in info.owner, (name, words)
    assert DATASETS["ckplus"].label_map[2] == "contempt" and DATASETS["rafdb"].label_map[7] == "neutral"
    assert DATASETS["ckplus"].facts["labelled_sequences"] == 327


@pytest.mark.parametrize("name", REAL_DATASETS)
def test_no_data_root_names_the_dataset_the_layout_where_to_request_and_the_synth_alternative(name):
    with pytest.raises(DatasetNotFound) as e:
        load_dataset(name)
    message, info = str(e.value), DATASETS[name]
    assert message.startswith(f"{info.display_name} ({name}): no data_root was given")
    assert info.layout in message and EXAMPLE_FILES[name][0].split("/")[0] in message
    for words in OWNERS[name]:
        assert words in message
    assert f"synth-{name}" in message and "Traceback" not in message


def test_ckplus_message_shows_the_owners_file_names():
    with pytest.raises(DatasetNotFound) as e:
        load_dataset("ckplus", data_root=None)
    for path in EXAMPLE_FILES["ckplus"]:
        assert path in str(e.value)


def test_missing_file_and_wrong_roots_say_what_is_wrong(tmp_path):
    with pytest.raises(DatasetNotFound, match=f"CK\\+ \\(ckplus\\): data_root {tmp_path / 'nope'} does not exist"):
        load_dataset("ckplus", data_root=tmp_path / "nope")
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(DatasetNotFound, match="is a file, not a folder"):
        load_dataset("oulu", data_root=tmp_path / "file.txt")
    make_layout(tmp_path / "oulu_root", "oulu")  # Oulu's layout is not CK+'s
    with pytest.raises(DatasetNotFound) as e:
        load_dataset("ckplus", data_root=str(tmp_path / "oulu_root"))
    assert f"{tmp_path / 'oulu_root' / 'cohn-kanade-images'} is missing" in str(e.value)
    assert "Jeffrey Cohn" in str(e.value) and DATASETS["ckplus"].layout in str(e.value)
    half = make_layout(tmp_path / "half", "ferplus")
    (half / "fer2013new.csv").unlink()
    with pytest.raises(DatasetNotFound, match="fer2013new.csv.* is missing"):
        load_dataset("ferplus", data_root=half)


def test_synth_names_generate_in_memory_with_a_source_sentence(fake_synth):
    loaded = load_dataset("synth-ckplus", scale=0.25, size=32, seed=4)
    assert isinstance(loaded, LoadedDataset) and loaded.images.shape == (3, 32, 32, 3)
    assert loaded.source == "SynthFER ckplus preset, scale 0.25, 32 px, seed 4 (synthetic)"
    assert fake_synth.calls == [("ckplus", 0.25, 32, 4)]
    assert load_dataset("synth-tiny", data_root="/ignored").classes == ("anger",)


def test_unknown_dataset_lists_every_valid_name(fake_synth):
    for bad in ("ck+", "synth-ck", "synth-"):
        with pytest.raises(UnknownName) as e:
            load_dataset(bad)
        message = str(e.value)
        assert message.startswith(f"unknown dataset {bad!r}; valid datasets are: ")
        for name in REAL_DATASETS + tuple(f"synth-{p}" for p in FAKE_PRESETS):
            assert name in message
    assert dataset_names()[:7] == list(REAL_DATASETS) and "synth-tiny" in dataset_names()


def test_with_the_real_renderer_synth_datasets_load():
    synth = pytest.importorskip("ferlib.data.synth")
    loaded = load_dataset("synth-tiny", size=32)
    assert loaded.images.dtype == np.uint8 and loaded.images.shape[1:3] == (32, 32)
    assert len(loaded.images) == len(loaded.manifest) and "(synthetic)" in loaded.source
    assert set(f"synth-{p}" for p in synth.PRESETS) <= set(dataset_names())
