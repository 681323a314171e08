"""SynthFER: structure, factors, determinism, rendering, files and checksums."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ferlib.cli import main as cli_main
from ferlib.data import synth
from ferlib.data.manifest import REQUIRED_COLUMNS, ROLES, read_manifest, validate_manifest
from ferlib.errors import FerlibError, UnknownName
from ferlib.labels import BASIC6, EXPRESSIONS

CHECKSUMS = Path(__file__).resolve().parents[1] / "data_manifests" / "synthfer"
FACTOR_COLUMNS = synth.AU_COLUMNS + ("intensity", "intensity_level", "yaw", "pitch", "roll", "light_azimuth",
                                     "light_strength", "occlusion", "blur", "noise", "jpeg_quality", "clutter", "expression")


@pytest.fixture(scope="module")
def tiny():
    return synth.generate("tiny", size=32, seed=0)


def test_tiny_images_and_manifest_follow_the_contract(tiny):
    n = len(tiny.manifest)
    assert tiny.images.shape == (n, 32, 32, 3) and tiny.images.dtype == np.uint8
    validate_manifest(tiny.manifest)
    assert set(REQUIRED_COLUMNS + FACTOR_COLUMNS) <= set(tiny.manifest.columns)
    assert (tiny.manifest["fold"] == -1).all() and (tiny.manifest["split"] == "").all()
    assert tiny.classes == ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
    assert set(tiny.manifest["role"]) <= set(ROLES)
    assert tiny.manifest["occlusion"].map(type).eq(str).all()


def test_paths_sequences_and_frames(tiny):
    m = tiny.manifest
    assert m["path"].is_unique
    for path, subject, sequence, frame in zip(m["path"], m["subject"], m["sequence"], m["frame"]):
        assert path == f"{subject}/{sequence}/frame_{frame:03d}.png"
        assert re.fullmatch(r"S\d{3}_[a-z]+_\d+", sequence) and sequence.startswith(subject + "_")
    assert m.groupby("sequence")["subject"].nunique().eq(1).all()  # a sequence ID names one subject
    first = m[m["frame"] == 0]
    assert (first["role"] == "neutral").all() and (first["label"] == "neutral").all()
    assert (first[list(synth.AU_COLUMNS)] == 0).all().all()
    # tiny: every subject poses every class once
    expressive = m[m["role"] != "neutral"]
    assert expressive.groupby("subject")["label"].nunique().eq(7).all()


def test_onset_apex_sequences_rise_to_their_apex(tiny):
    for _, seq in tiny.manifest.groupby("sequence"):
        intensity = seq.sort_values("frame")["intensity"].to_numpy()
        assert np.all(np.diff(intensity) >= 0)
        assert seq.sort_values("frame")["role"].iloc[-1] == "apex"
        assert intensity[-1] >= 0.75  # peak intensity is drawn from (0.8, 1.0) times the profile


def test_mmi_sequences_fall_after_the_apex():
    _, roles = synth.intensity_profile("onset_apex_offset", 15)
    p, _ = synth.intensity_profile("onset_apex_offset", 15)
    assert roles[0] == "neutral" and roles[-1] == "offset"
    apex = [i for i, r in enumerate(roles) if r == "apex"]
    assert apex and min(apex) > 0 and max(apex) < 14
    assert p[apex].min() >= 0.95 and p[-1] < 0.5
    middle = (14 - 3) // 2 + 1  # the baseline protocol's "middle 3" of the 14 expressive frames
    assert all(roles[i] == "apex" for i in range(middle, middle + 3))


def test_ckplus_structure_at_scale_one():
    plans = synth.plan_sequences(synth.PRESETS["ckplus"], 1.0, seed=0)
    labelled = [p for p in plans if p.labelled]
    assert len(plans) == 593 and len(labelled) == 327
    counts = {c: sum(p.expression == c for p in labelled) for c in synth.PRESETS["ckplus"].classes}
    assert counts == {"anger": 45, "contempt": 18, "disgust": 59, "fear": 25, "happiness": 69, "sadness": 28, "surprise": 83}
    assert 115 <= len({p.subject for p in plans}) <= 123
    pairs = [(p.subject, p.expression) for p in labelled]
    assert len(pairs) == len(set(pairs))  # at most one labelled sequence per subject and class, as CK+
    assert all(10 <= p.frames <= 24 for p in plans)


def test_unlabelled_sequences_hide_their_class():
    m = synth.generate("ckplus", scale=0.05, size=16, seed=0).manifest
    hidden = m[(m["label"] == "") & (m["role"] != "neutral")]
    assert len(hidden) > 0
    assert hidden["sequence"].str.contains("_unlabelled_").all()
    assert set(hidden["expression"]) <= set(synth.PRESETS["ckplus"].classes)


def test_preset_summary_matches_the_real_structures():
    table = synth.preset_summary()
    assert table.loc["ckplus", "sequences"] == 593 and table.loc["ckplus", "labelled sequences"] == 327
    assert table.loc["oulu", "subjects"] == 80 and table.loc["oulu", "sequences"] == 480
    assert table.loc["mmi", "subjects"] == 30 and table.loc["mmi", "sequences"] == 208
    assert table.loc["bu3dfe", "images"] == 100 * (6 * 4 + 1)
    assert table.loc["bu4dfe", "sequences"] == 606
    assert table.loc["rafdb", "images"] == 15339
    assert table.loc["ferplus", "classes"] == 8 and table.loc["ferplus", "native px"] == 48


def test_rafdb_class_imbalance_is_raf_dbs():
    counts = synth.PRESETS["rafdb"].class_counts()
    assert max(counts, key=counts.get) == "happiness" and min(counts, key=counts.get) == "fear"
    assert counts["disgust"] < counts["sadness"] < counts["happiness"] and sum(counts.values()) == 15339


def test_scale_changes_the_number_of_subjects_not_their_identity():
    small, large = synth.generate("oulu", scale=0.03, size=24, seed=3), synth.generate("oulu", scale=0.05, size=24, seed=3)
    assert small.manifest["subject"].nunique() == 2 and large.manifest["subject"].nunique() == 4
    n = len(small.manifest)
    assert small.manifest["path"].tolist() == large.manifest["path"].iloc[:n].tolist()
    assert np.array_equal(small.images, large.images[:n])  # the same subjects render the same faces
    assert synth.make_identity(3, 1) == synth.make_identity(3, 1)
    assert synth.make_identity(3, 1) != synth.make_identity(4, 1)


def test_same_seed_same_bytes_other_seed_other_bytes(tiny):
    again = synth.generate("tiny", size=32, seed=0)
    assert synth.checksum(again) == synth.checksum(tiny)
    assert again.manifest.equals(tiny.manifest)
    assert synth.checksum(synth.generate("tiny", size=32, seed=1)) != synth.checksum(tiny)


@pytest.mark.parametrize("preset", ["tiny", "ckplus", "rafdb"])
def test_stored_checksums_still_match(preset):
    stored = yaml.safe_load((CHECKSUMS / f"{preset}.yaml").read_text())
    record = synth.manifest_record(stored["preset"], stored["scale"], stored["size"], stored["seed"])
    assert record == stored, f"SynthFER {preset} changed; if on purpose, regenerate (see data_manifests/synthfer/{preset}.yaml)"


def test_every_preset_has_a_checksum_file():
    assert sorted(p.stem for p in CHECKSUMS.glob("*.yaml")) == sorted(synth.PRESETS)


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(UnknownName, match=r"unknown SynthFER preset 'ckplsu'; valid SynthFER presets are: .*ckplus"):
        synth.generate("ckplsu")


@pytest.mark.parametrize("kwargs, message", [({"scale": 0}, "scale 0 must be a positive number"),
                                             ({"size": 4}, "size 4 px is out of range")])
def test_bad_scale_or_size_says_what_to_use(kwargs, message):
    with pytest.raises(FerlibError, match=message):
        synth.generate("tiny", **kwargs)


def test_ferplus_is_48px_greyscale_with_8_classes():
    data = synth.generate("ferplus", scale=0.001, seed=0)
    assert data.images.shape[1:] == (48, 48, 1)
    assert data.classes == EXPRESSIONS and len(data.classes) == 8
    assert (data.manifest["role"] == "single").all() and data.manifest["subject"].is_unique


def test_rafdb_images_carry_in_the_wild_nuisances():
    m = synth.generate("rafdb", scale=0.01, size=16, seed=0).manifest
    assert len(m) == sum(synth.PRESETS["rafdb"].class_counts(0.01).values())
    assert m["yaw"].abs().max() > 20 and m["light_strength"].gt(0).mean() > 0.5
    assert set(m["occlusion"]) - {""} <= set(synth.OCCLUSIONS) and m["occlusion"].ne("").mean() > 0.1
    assert m["jpeg_quality"].gt(0).mean() > 0.3 and m["clutter"].gt(0).mean() > 0.7


def test_bu3dfe_has_four_levels_and_one_neutral_per_subject():
    m = synth.generate("bu3dfe", scale=0.02, size=16, seed=0).manifest
    neutral = m[m["label"] == "neutral"]
    assert neutral["subject"].is_unique and neutral["subject"].nunique() == m["subject"].nunique() == 2
    expressive = m[m["label"] != "neutral"]
    assert sorted(expressive["intensity_level"].unique()) == [1, 2, 3, 4]
    assert expressive.groupby("sequence")["frame"].apply(list).map(lambda f: f == [0, 1, 2, 3]).all()


def test_pairs_give_frontal_profile_occluded_and_relit_views():
    m = synth.generate("pairs", scale=0.04, size=16, seed=0).manifest
    views = m.groupby("sequence")["view"].apply(tuple)
    assert views.map(lambda v: v == synth.VIEWS).all()
    assert m.loc[m["view"] == "profile", "yaw"].abs().min() >= 60
    assert (m.loc[m["view"] == "frontal", ["yaw", "light_strength"]] == 0).all().all()
    assert m.loc[m["view"] == "occluded", "occlusion"].isin(synth.OCCLUSIONS).all()
    assert m.groupby("sequence")[list(synth.AU_COLUMNS)].nunique().eq(1).all().all()  # one expression per pair set


# --- rendering ---------------------------------------------------------------------------------

IDN = synth.make_identity(0, 4)


def changed_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.abs(a.astype(int) - b.astype(int)).sum(axis=(1, 2)) > 0)


def test_action_units_move_the_right_part_of_the_face():
    neutral = synth.render_face(IDN, {}, size=64)
    smile = synth.render_face(IDN, {12: 1.0}, size=64)
    brows = synth.render_face(IDN, {1: 1.0, 2: 1.0}, size=64)
    assert changed_rows(neutral, smile).min() > 32  # the mouth is in the lower half
    assert changed_rows(neutral, brows).max() < 32  # the brows (and forehead lines) in the upper half


def test_contempt_is_one_sided():
    neutral = synth.render_face(IDN, {}, size=64).astype(int)
    contempt = synth.render_face(IDN, synth.expression_aus(IDN, "contempt", 1.0), size=64, one_sided_12=True).astype(int)
    diff = np.abs(contempt - neutral).sum(axis=(0, 2))
    assert diff[32:].sum() > 3 * diff[:32].sum()  # AU14 (and its AU12) on the image's right side


def test_a_resting_offset_is_an_expression_unit():
    # an up-turned resting mouth (+0.95 units) plus a full AU15 (corners down by 0.95 units) is the
    # mouth of a subject without offset at rest: identity and expression move the same corners
    up = synth.replace(IDN, rest_mouth=0.95)
    flat = synth.replace(IDN, rest_mouth=0.0)
    assert np.array_equal(synth.render_face(up, {15: 1.0}, size=64), synth.render_face(flat, {}, size=64))
    assert not np.array_equal(synth.render_face(up, {}, size=64), synth.render_face(flat, {}, size=64))


def test_identity_offsets_are_about_one_expression_unit():
    offsets = np.array([[i.rest_mouth, i.rest_brow, i.rest_eye] for i in (synth.make_identity(0, k) for k in range(200))])
    assert np.abs(offsets).max() <= 1.0 and 0.4 < np.abs(offsets).mean() < 0.6  # uniform in [-1, 1]
    gains = np.array([synth.make_identity(0, k).au_gain for k in range(200)])
    assert 0.05 < np.log(gains).std() < 0.15  # the subject's own style stays small


def test_render_face_shapes_and_au_input_checks():
    assert synth.render_face(IDN, np.zeros(len(synth.AUS)), size=48, greyscale=True).shape == (48, 48, 1)
    assert synth.render_face(IDN, {}, size=128).shape == (128, 128, 3)
    with pytest.raises(FerlibError, match="AU10 is not rendered"):
        synth.render_face(IDN, {10: 1.0})
    with pytest.raises(FerlibError, match="expected 16, one per AU"):
        synth.render_face(IDN, np.zeros(3))
    with pytest.raises(FerlibError, match="unknown occlusion 'scarf'"):
        synth.render_face(IDN, {}, synth.Nuisance(occlusion="scarf"))


@pytest.mark.parametrize("nuisance", [
    synth.Nuisance(yaw=40), synth.Nuisance(pitch=20), synth.Nuisance(roll=15),
    synth.Nuisance(light_azimuth=0, light_strength=1.0), synth.Nuisance(blur=1.0), synth.Nuisance(noise=10),
    synth.Nuisance(jpeg_quality=20), synth.Nuisance(clutter=1.0)] + [synth.Nuisance(occlusion=o) for o in synth.OCCLUSIONS])
def test_each_nuisance_changes_the_image(nuisance):
    plain = synth.render_face(IDN, {}, size=32)
    assert not np.array_equal(synth.render_face(IDN, {}, nuisance, size=32), plain)


def test_light_from_the_right_brightens_the_right_side():
    lit = synth.render_face(IDN, {}, synth.Nuisance(light_azimuth=0, light_strength=1.0), size=32).astype(int)
    plain = synth.render_face(IDN, {}, size=32).astype(int)
    gain = lit - plain
    assert gain[:, 24:].mean() > 10 and gain[:, :8].mean() < -10


def test_benchmark_reports_a_rate():
    assert synth.benchmark_render(n=20, size=32) > 100  # the real figure (>= 1000/s at 64 px) is benchmarks/run.py's


# --- files ---------------------------------------------------------------------------------------

def test_write_gives_pngs_and_a_manifest(tmp_path, tiny):
    manifest_path = synth.write(tiny, tmp_path / "out")
    assert manifest_path == tmp_path / "out" / "manifest.csv"
    back = read_manifest(manifest_path)
    assert back["path"].tolist() == tiny.manifest["path"].tolist()
    for i in (0, len(back) - 1):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / back["path"][i])), tiny.images[i])
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_write_greyscale_round_trips(tmp_path):
    data = synth.generate("ferplus", scale=0.0005, size=24, seed=0)
    synth.write(data, tmp_path)
    image = np.asarray(Image.open(tmp_path / data.manifest["path"][0]))
    assert image.shape == (24, 24) and np.array_equal(image, data.images[0, :, :, 0])


def test_cli_writes_the_preset(tmp_path, capsys):
    assert cli_main(["data", "synth", "tiny", "--out", str(tmp_path), "--size", "16", "--seed", "2"]) == 0
    m = read_manifest(tmp_path / "manifest.csv")
    assert len(m) == len(list(tmp_path.rglob("*.png"))) == len(synth.generate("tiny", size=16, seed=2).manifest)
    assert "wrote" in capsys.readouterr().out


def test_cli_unknown_preset_is_a_user_error(tmp_path, capsys):
    assert cli_main(["data", "synth", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown SynthFER preset 'nope'" in capsys.readouterr().err


def test_pictures_for_the_datasheet():
    grid = synth.expression_grid(subjects=2, classes=BASIC6, size=16)
    assert grid.shape == (2 * 16 + 2, 6 * 16 + 5 * 2, 3)
    strip, roles = synth.sequence_strip("mmi", frames=9, size=16)
    assert strip.shape[1] == 9 * 16 + 8 * 2 and roles[0] == "neutral" and roles[-1] == "offset"
    names = [name for name, _ in synth.nuisance_examples(size=16)]
    assert set(synth.OCCLUSIONS) <= set(names) and "clutter" in names


def test_render_like_redraws_an_image_byte_for_byte_and_keeps_its_factors():
    data = synth.generate("oulu", scale=0.05, size=32, seed=0)
    assert len(data.factors) == len(data.images)
    for i in range(0, len(data.images), 11):
        assert np.array_equal(synth.render_like(data, i), data.images[i])
    m = data.manifest
    assert np.allclose(data.factors[5].aus, m.loc[5, list(synth.AU_COLUMNS)].to_numpy(dtype=float), atol=1e-4)


def test_transfer_truth_is_the_target_person_with_the_source_action_units(monkeypatch):
    data = synth.generate("oulu", scale=0.05, size=32, seed=0)
    m = data.manifest
    source = int(np.flatnonzero((m["label"] == "happiness").to_numpy())[-1])
    target = int(np.flatnonzero(((m["label"] == "sadness") & (m["subject"] != m.loc[source, "subject"])).to_numpy())[-1])
    drawn = {}
    real_render = synth.render_face

    def spy(identity, aus, nuisance, size, greyscale=False, one_sided_12=False):
        drawn.update(identity=identity, aus=np.asarray(aus), nuisance=nuisance)
        return real_render(identity, aus, nuisance, size, greyscale, one_sided_12)

    monkeypatch.setattr(synth, "render_face", spy)
    truth = synth.transfer_truth(data, source, target)
    assert drawn["identity"] == data.factors[target].identity and drawn["identity"].subject == m.loc[target, "subject"]
    assert np.array_equal(drawn["aus"], data.factors[source].aus)            # the source's action units
    assert drawn["nuisance"] == data.factors[target].nuisance                # the target's pose and light
    assert not np.array_equal(drawn["aus"], data.factors[target].aus)
    # the truth looks like the target person far more than like the source person
    gap = lambda a, b: np.abs(a.astype(int) - b.astype(int)).mean()  # noqa: E731
    assert gap(truth, data.images[target]) < 0.25 * gap(truth, data.images[source])
    assert np.array_equal(synth.transfer_truth(data, target, target), data.images[target])   # its own AUs: itself
