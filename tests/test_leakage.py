"""No test person in anything a method trained on: SynthFER presets are separate populations of
people, and every cross-dataset path (EIFN's stage 1, IF-GAN's extra training data) keeps the
target's test subjects out.

People are compared by what they are, never by their names: pixels of their neutral faces, or
the identity factors SynthFER drew them from (two different people share none of those floats).
"""

import dataclasses

import numpy as np
import pytest
import torch

from ferlib.data import synth
from ferlib.experiments import eifn, ifgan
from ferlib.experiments.common import make_fold

pytestmark = pytest.mark.usefixtures("one_thread")

FACTORS = ["rest_mouth", "rest_brow", "rest_brow_angle", "rest_eye", "rest_lines"]


def neutral_faces(preset: str, population: str | None = None) -> dict[str, np.ndarray]:
    """Each subject's neutral frames (scale 0.2, 32 px), every frame standardised (mean 0, std 1)
    so that a preset's lighting does not hide a shared face."""
    data = synth.generate(preset, scale=0.2, size=32, seed=0, population=population)
    neutral = data.manifest[data.manifest["role"] == "neutral"]
    faces = {}
    for subject, rows in neutral.groupby("subject"):
        x = data.images[rows.index.to_numpy()].reshape(len(rows), -1).astype(float)
        faces[subject] = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    return faces


def nearest_other(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[list[str], list[str], np.ndarray]:
    """For each subject of `a` whose name `b` also has: its nearest subject among all of `b`'s (mean
    neutral faces, mean absolute difference) and that distance."""
    names_a, names_b = sorted(set(a) & set(b)), sorted(b)
    fa = np.stack([a[s].mean(0) for s in names_a])
    fb = np.stack([b[s].mean(0) for s in names_b])
    d = np.abs(fa[:, None] - fb[None]).mean(-1)
    return names_a, [names_b[i] for i in d.argmin(1)], d.min(1)


def same_person_distance(faces: dict[str, np.ndarray]) -> float:
    """The median distance between two neutral frames of one person (same preset): a near-duplicate
    in another preset would be at least this close."""
    return float(np.median([np.abs(x[0] - x[1]).mean() for x in faces.values() if len(x) > 1]))


@pytest.fixture(scope="module")
def ckplus_faces():
    return neutral_faces("ckplus")


def test_every_preset_has_its_own_population():
    codes = [p.population for p in synth.PRESETS.values()]
    assert min(codes) >= 1 and len(set(codes)) == len(codes)


def test_two_presets_share_no_face(ckplus_faces):
    """Pixel-space nearest neighbours: no synth-ckplus subject has a near-duplicate among synth-oulu's
    people, and a subject's nearest face there is its namesake no more often than chance."""
    oulu = neutral_faces("oulu")
    names, nearest, distance = nearest_other(ckplus_faces, oulu)
    same = same_person_distance(ckplus_faces)
    assert len(names) >= 16 and distance.min() > same, (distance.min(), same)
    assert sum(a == b for a, b in zip(names, nearest)) <= 2


def test_people_are_shared_only_on_request(ckplus_faces):
    """The check above can fail: rendering synth-oulu with synth-ckplus's people on purpose puts every
    subject's namesake nearest, typically closer than two frames of one person are to each other."""
    shared = neutral_faces("oulu", population="ckplus")
    names, nearest, distance = nearest_other(ckplus_faces, shared)
    assert nearest == names
    assert np.median(distance) < same_person_distance(ckplus_faces)


def identity_factors(dataset) -> set[tuple]:
    """The people in a FERDataset, as the identity factors SynthFER drew them from."""
    rows = dataset.cache.manifest.loc[dataset.index, FACTORS]
    return set(map(tuple, rows.to_numpy().round(10).tolist()))


def test_identity_factors_tell_people_apart():
    """The factor check is not vacuous: within one preset, every subject has its own factors."""
    m = synth.generate("ckplus", scale=0.2, size=16, seed=0).manifest
    per_subject = m.groupby("subject")[FACTORS].first()
    assert len(per_subject.drop_duplicates()) == len(per_subject) >= 20


@pytest.fixture(scope="module")
def eifn_stage1(tmp_path_factory):
    """EIFN on synth-ckplus with stage 1 on synth-oulu: what `pretrain` fits on, and fold 0."""
    out = tmp_path_factory.mktemp("eifn")
    cfg = eifn.EIFNConfig.from_preset("smoke", scale=0.15, size=32, methods="eifn", out_dir=str(out))
    data = eifn.load(cfg)
    other = eifn.load_pretraining(cfg, data)
    seen = []
    original = eifn.fit
    eifn.fit = lambda task, train_loader, *a, **k: seen.append(train_loader.dataset) or {}
    try:
        eifn.pretrain(cfg, "eifn", other, progress=False)
    finally:
        eifn.fit = original
    return seen[0], make_fold(data, 0, transform="eifn", size=cfg.size)


def test_eifn_stage1_never_saw_a_target_person(eifn_stage1):
    """Stage 1 (every image of the other dataset) holds none of the target's people: not the test
    fold's, and not any other fold's either (the two stages' subjects are different people)."""
    stage1, fold = eifn_stage1
    pretrained_on = identity_factors(stage1)
    assert len(pretrained_on) >= 10
    assert identity_factors(fold.test) and not identity_factors(fold.test) & pretrained_on
    everyone = identity_factors(fold.train) | identity_factors(fold.val) | identity_factors(fold.test)
    assert not everyone & pretrained_on


def test_ifgan_extra_training_data_holds_no_test_person(tmp_path):
    """IF-GAN with the other posed datasets as extra training data (they also enter I_AE): the test
    fold's people are in no training image, extra or not, and in no validation image."""
    cfg = ifgan.IFGANConfig.from_preset("smoke", scale=0.15, size=32, extra_datasets="synth-mmi,synth-bu3dfe", scales="synth-mmi=0.4",
                                        out_dir=str(tmp_path))
    assert ifgan.extra_dataset_roots("bu3dfe=/c , synth-mmi") == [("bu3dfe", "/c"), ("synth-mmi", None)]
    data = ifgan.load(cfg)
    main = ifgan.load(dataclasses.replace(cfg, extra_datasets=""))
    assert data.manifest["extra"].sum() > 0 and "extra training data: SynthFER mmi" in data.source
    assert (~data.manifest["extra"]).sum() == len(main.manifest)
    for fold in (0, 5):
        f = make_fold(data, fold, transform="ifgan", size=cfg.size)
        is_extra = f.manifest["extra"].astype(bool)
        assert (f.manifest.loc[is_extra, "split"] == "train").all()
        mm = make_fold(main, fold, transform="ifgan", size=cfg.size).manifest   # extras change no main split
        assert (f.manifest.loc[~is_extra, "split"] == mm["split"]).all()
        row = f.manifest.index[is_extra][0]          # an extra row reads its own dataset's image
        assert torch.equal(f.cache.image(row), torch.from_numpy(data.loaded.images[row]).permute(2, 0, 1))
        test, train = identity_factors(f.test), identity_factors(f.train) | identity_factors(f.train_eval)
        extra_rows = f.manifest[(f.manifest["split"] == "train") & f.manifest["extra"].astype(bool)]
        extra = set(map(tuple, f.cache.manifest.loc[extra_rows.index, FACTORS].to_numpy().round(10).tolist()))
        assert test and extra and extra <= train
        assert not test & train and not test & identity_factors(f.val)
