"""The uint8 image cache and FERDataset: decode once, name corrupt files, dict samples, pairs."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import ferlib.data.cache as cache_module
from ferlib.data.cache import FERDataset, ImageCache
from ferlib.data.transforms import make_transform
from ferlib.errors import CorruptImage, FerlibError

torch.set_num_threads(1)


def sequences_manifest():
    """Two subjects x two sequences x (neutral, onset, apex) frames."""
    rows = []
    for subject in ("S1", "S2"):
        for q, label in enumerate(("anger", "happiness")):
            for frame, role in enumerate(("neutral", "onset", "apex")):
                rows.append(dict(path=f"{subject}/{q}/{frame}.png", subject=subject, sequence=f"{subject}_{q}",
                                 frame=frame, label="neutral" if role == "neutral" else label, role=role,
                                 fold=-1, split=""))
    return pd.DataFrame(rows)


def images_for(manifest, size=8, channels=3):
    """Image i is filled with the value i, so samples can be traced back to rows."""
    n = len(manifest)
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, size, size, channels)).copy()


def write_pngs(root, manifest, size=8):
    for i, rel in enumerate(manifest["path"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size, 3), 10 * i, np.uint8)).save(root / rel)


def test_from_arrays_stores_n_c_h_w_uint8_row_for_row():
    m = sequences_manifest()
    cache = ImageCache.from_arrays(images_for(m), m)
    assert cache.images.shape == (12, 3, 8, 8) and cache.images.dtype == torch.uint8
    assert int(cache.image(5)[0, 0, 0]) == 5 and cache.channels == 3
    grey = ImageCache.from_arrays(images_for(m, channels=1), m)
    assert grey.images.shape == (12, 1, 8, 8)
    with pytest.raises(FerlibError, match="12 images but 11 manifest rows"):
        ImageCache.from_arrays(images_for(m), m.iloc[:11])
    with pytest.raises(FerlibError, match="uint8"):
        ImageCache.from_arrays(images_for(m).astype(np.float32), m)


def test_from_files_decodes_resizes_and_the_second_load_reads_the_cache_file(tmp_path, monkeypatch):
    m = sequences_manifest()
    write_pngs(tmp_path / "data", m, size=16)
    first = ImageCache.from_files(tmp_path / "data", m, size=8, cache_dir=tmp_path / "cache")
    assert first.images.shape == (12, 3, 8, 8)
    assert first.images[:, 0, 0, 0].tolist() == [10 * i for i in range(12)]
    stored = list((tmp_path / "cache").iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".pt"  # one file, no temp file left

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")
    monkeypatch.setattr(cache_module, "decode_image", no_decoding)
    second = ImageCache.from_files(tmp_path / "data", m, size=8, cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, second.images)
    with pytest.raises(AssertionError, match="decoded again"):  # another size is another cache entry
        ImageCache.from_files(tmp_path / "data", m, size=4, cache_dir=tmp_path / "cache")


def test_greyscale_files_decode_to_one_channel(tmp_path):
    m = sequences_manifest().iloc[:2]
    for rel in m["path"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((48, 48), 7, np.uint8), mode="L").save(tmp_path / rel)
    assert ImageCache.from_files(tmp_path, m, size=48).images.shape == (2, 1, 48, 48)


def test_a_corrupt_image_is_named_with_what_to_do(tmp_path):
    m = sequences_manifest()
    write_pngs(tmp_path, m)
    broken = tmp_path / m["path"][4]
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(CorruptImage) as e:
        ImageCache.from_files(tmp_path, m, size=8)
    message = str(e.value)
    assert str(broken) in message and "re-extract" in message and "Traceback" not in message
    truncated = tmp_path / m["path"][6]
    truncated.write_bytes(truncated.read_bytes()[:40])
    broken.unlink()
    with pytest.raises(FerlibError, match=f"image file {broken} listed in the manifest does not exist"):
        ImageCache.from_files(tmp_path, m, size=8)
    write_pngs(tmp_path, m.iloc[:5])
    with pytest.raises(CorruptImage, match=str(truncated)):
        ImageCache.from_files(tmp_path, m, size=8)


def test_dataset_yields_dict_samples_that_trace_back_to_rows():
    m = sequences_manifest()
    cache = ImageCache.from_arrays(images_for(m), m)
    ds = FERDataset(cache, [2, 5, 8], ("anger", "happiness"))
    assert len(ds) == 3 and ds.num_subjects == 2
    sample = ds[1]
    assert set(sample) == {"image", "label", "subject", "index"}
    assert sample["image"].shape == (3, 8, 8) and sample["image"].dtype == torch.float32
    assert sample["image"][0, 0, 0].item() == pytest.approx(5 / 255 * 2 - 1)
    assert (sample["label"], sample["subject"], sample["index"]) == (1, 0, 5)
    assert ds[2]["subject"] == 1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 8, 8) and batch["label"].tolist() == [0, 1, 0]


def test_labels_come_from_a_given_manifest_and_any_label_column():
    m = sequences_manifest()
    cache = ImageCache.from_arrays(images_for(m), m)
    protocol_rows = m.loc[[2, 5]].assign(label_noisy=["happiness", "anger"])
    ds = FERDataset(cache, protocol_rows, ("anger", "happiness"), label_column="label_noisy")
    assert [ds[i]["label"] for i in range(2)] == [1, 0]
    with pytest.raises(FerlibError, match="no column 'label_flipped'"):
        FERDataset(cache, protocol_rows, ("anger", "happiness"), label_column="label_flipped")
    with pytest.raises(FerlibError, match=r"labels \['neutral'\] .* not among the classes"):
        FERDataset(cache, [0, 2], ("anger", "happiness"))
    with pytest.raises(FerlibError, match="row 99 is not in this cache"):
        FERDataset(cache, [99], ("anger",))


def test_neutral_pair_comes_from_another_sequence_of_the_same_subject():
    m = sequences_manifest()
    cache = ImageCache.from_arrays(images_for(m), m)
    ds = FERDataset(cache, [2, 5, 8, 11], ("anger", "happiness"), pair="neutral",
                    transform=make_transform("baseline", train=False, size=8))
    for i in range(4):
        sample = ds[i]
        row, partner = m.loc[sample["index"]], m.loc[sample["neutral_index"]]
        assert partner["role"] == "neutral" and partner["subject"] == row["subject"]
        assert partner["sequence"] != row["sequence"]
        assert sample["neutral"].shape == sample["image"].shape
    lonely = m[m["subject"] == "S1"].copy()
    lonely = lonely[lonely["role"] != "neutral"]
    solo_cache = ImageCache.from_arrays(images_for(lonely), lonely)
    with pytest.raises(FerlibError, match="subject 'S1' .* has none"):
        FERDataset(solo_cache, lonely.index[:1], ("anger",), pair="neutral")


def test_a_training_transform_is_applied_per_sample_and_seeded():
    m = sequences_manifest()
    images = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    ds = FERDataset(ImageCache.from_arrays(images, m), [2, 5], ("anger", "happiness"),
                    transform=make_transform("ifgan", train=True, size=14))
    torch.manual_seed(0)
    a = ds[0]["image"]
    torch.manual_seed(0)
    assert a.shape == (3, 14, 14) and torch.equal(a, ds[0]["image"])


def test_synthfer_written_as_png_decodes_back_to_the_same_bytes(tmp_path):
    synth = pytest.importorskip("ferlib.data.synth")
    from ferlib.data.manifest import read_manifest
    data = synth.generate("tiny", size=24, seed=1)
    synth.write(data, tmp_path)
    from_disk = ImageCache.from_files(tmp_path, read_manifest(tmp_path / "manifest.csv"), size=24)
    assert torch.equal(from_disk.images, ImageCache.from_arrays(data.images, data.manifest).images)
