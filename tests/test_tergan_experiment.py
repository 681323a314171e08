"""The TER-GAN experiment at smoke scale: the stages chain as the paper's curriculum says, the pre-training
is reused, the pairs are seeded per epoch, and no test person is in anything trained on."""

import numpy as np
import pytest
import torch

from ferlib.data.synth import IDENTITY_COLUMNS
from ferlib.data.transfer_pairs import WithIdentity, WithTargets, identity_classes
from ferlib.errors import FerlibError
from ferlib.experiments import tergan
from ferlib.experiments.common import make_fold


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    cfg = tergan.TERGANConfig.from_preset("smoke", out_dir=str(tmp_path_factory.mktemp("tergan")))
    data = tergan.load(cfg)
    other = tergan.load_pretraining(cfg, data)
    pretrained = tergan.pretrain(cfg, other, data.loaded.images.shape[-1], progress=False)
    return cfg, data, other, pretrained


def test_pretraining_reads_another_population_and_no_test_person_is_trained_on(smoke):
    cfg, data, other, _ = smoke
    assert other.protocol.dataset == "synth-bu4dfe" and data.protocol.pretrain_on == "synth-bu4dfe"
    fold = make_fold(data, 0, transform="tergan", size=cfg.size)
    test_people = set(fold.test.subject_names[s] for s in np.unique(fold.test.subjects))
    train_people = set(fold.train.subject_names[s] for s in np.unique(fold.train.subjects))
    assert test_people and not test_people & train_people
    # SynthFER's presets are different populations: same names, other faces (identity factors)
    faces = lambda manifest, people: {tuple(r) for r in manifest[manifest["subject"].isin(people)]  # noqa: E731
                                      .drop_duplicates("subject")[list(IDENTITY_COLUMNS)].itertuples(index=False)}
    tested, pretrained_on = faces(data.loaded.manifest, test_people), faces(other.loaded.manifest, set(other.manifest["subject"]))
    assert len(tested) == len(test_people) and len(pretrained_on) == other.manifest["subject"].nunique()
    assert not tested & pretrained_on


def test_pretraining_is_reused_and_its_stage_two_starts_from_stage_one(smoke):
    cfg, data, other, pretrained = smoke
    again = tergan.pretrain(cfg, other, data.loaded.images.shape[-1], progress=False)   # resumes the finished runs
    assert all(torch.equal(v, again[k]) for k, v in pretrained.items())
    # h1 and h2 hold stage 1's encoders; stage 2 moved G_es on from them
    h1 = {k[len("h1.copy."):]: v for k, v in pretrained.items() if k.startswith("h1.copy.")}
    g_es = {k[len("G_es."):]: v for k, v in pretrained.items() if k.startswith("G_es.")}
    assert h1.keys() == g_es.keys() and not all(torch.equal(h1[k], g_es[k]) for k in h1)


def test_each_method_starts_where_the_paper_says(smoke):
    cfg, _, _, pretrained = smoke
    model, fresh = tergan.starting_model(cfg, "tergan", 6, 4, 3, pretrained)
    assert fresh == ["D.identity.4.bias", "D.identity.4.weight"]          # D^i names other people
    assert all(torch.equal(v, pretrained["G_es." + k]) for k, v in model.G_es.state_dict().items())
    base, _ = tergan.starting_model(cfg, "baseline", 6, 4, 3, pretrained)
    assert all(torch.equal(v, pretrained["h1.copy." + k]) for k, v in base.G_es.state_dict().items())  # stage 1's
    assert all(torch.equal(v, pretrained["h2.copy." + k]) for k, v in base.G_et.state_dict().items())


@pytest.fixture(scope="module")
def trained(smoke):
    """Each method's fold 0 as a sweep job trains it (jobs.train: the locked pre-training, reused here)."""
    from ferlib.study.jobs import PAPERS, Job, train
    study = PAPERS["tergan"]
    out = {}
    for method in tergan.METHODS:
        job = Job("tergan", method, "synth-oulu", 0, "smoke")
        cfg = study.config_for(job, out_dir=smoke[0].out_dir)
        out[method] = (job, cfg, train(study, cfg, job, progress=False))
    return out


def test_a_smoke_fold_of_each_method_trains_and_tests(smoke, trained):
    cfg = smoke[0]
    for method, (_, _, fold) in trained.items():
        history = fold.record["history"]
        assert len(history) == cfg.classifier_epochs and history[-1]["train_loss"] < history[0]["train_loss"]
        assert fold.record["test"]["n"] == len(fold.data.test) and fold.test["logits"].shape[1] == 6
        assert fold.record["config"]["stage"] == "classifier" and fold.record["config"]["method"] == method
        assert not any(p.requires_grad for p in fold.task.encoder.parameters())   # G_es detached


def test_targets_are_seeded_per_epoch_and_name_the_training_people():
    class Faces(torch.utils.data.Dataset):
        subjects = np.array([3, 3, 7, 9, 9, 9])

        def __len__(self):
            return 6

        def __getitem__(self, i):
            return {"image": torch.full((1, 2, 2), float(i)), "label": i % 2, "subject": int(self.subjects[i]),
                    "index": i}

    classes, people = identity_classes(Faces.subjects)
    assert people == 3 and classes.tolist() == [0, 0, 1, 2, 2, 2]
    pairs = WithTargets(Faces(), seed=5)
    first = [pairs.target_of(i) for i in range(6)]
    assert sorted(first) == list(range(6))                                  # every face a target once per epoch
    pairs.set_epoch(2)
    second = [pairs.target_of(i) for i in range(6)]
    pairs.set_epoch(1)
    assert [pairs.target_of(i) for i in range(6)] == first and second != first
    sample = pairs[0]
    j = first[0]
    assert sample["target"]["index"] == j and sample["target"]["identity"] == classes[j]
    assert torch.equal(sample["target"]["image"], torch.full((1, 2, 2), float(j))) and sample["identity"] == 0
    assert WithIdentity(Faces())[3]["identity"] == 2
    with pytest.raises(FerlibError, match="at least 2 training faces"):
        WithTargets(torch.utils.data.Subset(Faces(), [0]))


def test_the_ablation_drops_l_erec_alone_and_pretrains_with_its_own_losses(smoke, trained):
    from pathlib import Path

    from ferlib.models.tergan import TERMS, total_loss
    cfg, _, other, _ = smoke
    assert tergan.method_lambdas(cfg, "tergan") == tergan.method_lambdas(cfg, "baseline") == tuple(cfg.lambdas)
    ablated = tergan.method_lambdas(cfg, "tergan-no-erec")
    assert ablated[3] == 0 and ablated[:3] + ablated[4:] == tuple(cfg.lambdas[:3] + cfg.lambdas[4:])
    terms = {term: torch.tensor(float(k + 1)) for k, term in enumerate(TERMS)}   # erec = 4
    assert float(total_loss(terms, ablated)) == pytest.approx(float(total_loss(terms, cfg.lambdas)) - 4 * cfg.lambdas[3])
    stems = {m: tergan.pretrain_stem(cfg, other, m) for m in tergan.METHODS}
    assert stems["baseline"] == stems["tergan"] != stems["tergan-no-erec"]
    assert (Path(cfg.out_dir) / f"{stems['tergan-no-erec']}-stage2" / "record.json").is_file()
    assert not (Path(cfg.out_dir) / f"{stems['tergan-no-erec']}-stage1").exists()   # stage 1 is the paper's
    ablation, paper = trained["tergan-no-erec"][2].task.tergan, trained["tergan"][2].task.tergan
    assert not torch.equal(ablation.G_de.fc.weight, paper.G_de.fc.weight)          # trained apart from stage 2 on
    assert torch.equal(ablation.h1.copy.fc.weight, paper.h1.copy.fc.weight)       # the same stage 1 (same seed, data)


def test_a_sweep_record_keeps_the_stages_the_pretraining_and_the_truth(trained, tmp_path):
    from ferlib.study.jobs import study_record, text_image
    from ferlib.study.records import iter_records, write_record
    job, cfg, fold = trained["tergan"]
    assert job.fold == 0 and job.seed == 0                       # the figure fold
    record = study_record(job, cfg, fold, {"paper": "tergan", "method": "tergan", "steps": 0, "losses": []}, 1.0)
    assert record["job"]["paper"] == "tergan" and record["extras"]["pretrained_on"].startswith("synth-bu4dfe (data ")
    assert set(record["extras"]["stages"]) == {"stage2"} and len(record["extras"]["stages"]["stage2"]) == cfg.epochs
    assert record["identity_probe"]["acc"] is not None          # on f(e), the features the classifier reads
    # the record's history is the classifier's run: its cap, not the fold stages' epochs
    assert record["training"]["epochs_cap"] == cfg.classifier_epochs != cfg.epochs
    assert len(record["training"]["history"]) == cfg.classifier_epochs
    out = record["extras"]
    assert {(r["method"], r["feature"]) for r in out["probes"]} == {("TER-GAN", "f(e)"), ("TER-GAN", "f(i)")}
    truth = out["truth"]
    assert set(truth) == {"judges", "transfer", "editing"}
    assert 0 <= truth["judges"]["expression judge on real test faces %"] <= 100
    for kind in ("transfer", "editing"):
        scores = truth[kind]["scores"]
        assert set(scores) == {"TER-GAN", "copy x_t", "copy x_s", "blend", "truth"}
        assert scores["truth"]["l1"] == 0 and scores["truth"]["ssim"] == pytest.approx(1.0)
        assert {"l1", "ssim", "expression judge %", "identity judge %"} <= set(scores["TER-GAN"])
        grid = truth[kind]["grid"]                       # the figure fold's Fig. 3 / Fig. 4, as PNG text
        people = fold.data.manifest.loc[fold.data.manifest["split"] == "test", "subject"].nunique()
        targets = 1 if kind == "editing" else min(3, people - 1)
        assert len(grid["generated"]) == len(grid["truth"]) == len(grid["target"]) == targets
        assert all(len(row) == len(grid["source"]) == len(grid["source_label"]) for row in grid["generated"])
        assert text_image(grid["generated"][0][0]).shape == (cfg.size, cfg.size, 3)
        rows, names, columns = tergan.grid_images(grid)   # the chapter's layout: sources on top, x_bar / truth rows
        assert len(rows) == 1 + 2 * targets and names[:2] == ["x_s", "x_t 1 / x_bar"] and columns[0] == "x_t"
        assert all(len(r) == 1 + len(grid["source"]) for r in rows) and columns[1:] == grid["source_label"]
        assert np.array_equal(rows[1][0], text_image(grid["target"][0]))
        assert np.array_equal(rows[2][1], text_image(grid["truth"][0][0]))
    assert list(out["lambdas"]) == list(cfg.lambdas)                  # the weights it trained with
    write_record(record, tmp_path)
    assert [r["job"] for r in iter_records(tmp_path)] == [record["job"]]
    baseline = study_record(*trained["baseline"], {"paper": "tergan", "method": "baseline", "steps": 0, "losses": []}, 1.0)
    assert set(baseline["extras"]["stages"]) == {"stage1"} and "truth" not in baseline["extras"]
    ablation = study_record(*trained["tergan-no-erec"], {"paper": "tergan", "method": "tergan-no-erec", "steps": 0,
                                                        "losses": []}, 1.0)
    assert ablation["extras"]["lambdas"][3] == 0 and set(ablation["extras"]["truth"]) == {"judges", "transfer", "editing"}


def test_the_live_check_reads_the_classifiers_and_the_baselines_stage_one(trained):
    from ferlib.experiments.common import MethodsResult
    folds = [trained[m][2] for m in tergan.METHODS]
    records = tergan.live_records(MethodsResult(trained["tergan"][1], folds))
    names = [r["run_name"] for r in records]
    assert names == [folds[0].record["run_name"] + " (stage1)", *[f.record["run_name"] for f in folds]]
    assert records[0]["history"] == folds[0].record["stages"]["stage1"]


def fake_frame(folds=(0, 1, 2), failed=()):
    """A study frame of TER-GAN records whose truth scores are given: x_bar beats every reference by 5."""
    import pandas as pd
    rows = []
    for f in folds:
        scores = {"TER-GAN": {"l1": 0.10, "ssim": 0.60 + 0.01 * f, "expression judge %": 50.0 + f, "identity judge %": 60.0},
                  "copy x_t": {"l1": 0.12, "ssim": 0.55, "expression judge %": 10.0, "identity judge %": 100.0},
                  "copy x_s": {"l1": 0.30, "ssim": 0.20, "expression judge %": 100.0, "identity judge %": 5.0},
                  "blend": {"l1": 0.15, "ssim": 0.40, "expression judge %": 30.0, "identity judge %": 50.0},
                  "truth": {"l1": 0.0, "ssim": 1.0, "expression judge %": 80.0, "identity judge %": 90.0}}
        truth = {kind: {"pairs": 64, "scores": scores} for kind in ("transfer", "editing")}
        truth["judges"] = {"expression judge on real test faces %": 90.0 + f}
        stages = {"stage2": [{"epoch": 1, "train_d": 3.0 - f}]}
        rows.append({"method": "tergan", "dataset": "synth-oulu", "fold": f, "seed": 0,
                     "status": "failed to train" if f in failed else "ok", "stale": "",
                     "record": {"extras": {"truth": truth, "stages": stages}}})
        ablated = {kind: {"pairs": 64, "scores": {name: dict(v) for name, v in scores.items()}} for kind in truth
                   if kind != "judges"}
        ablated["transfer"]["scores"]["TER-GAN"]["ssim"] -= 0.02        # the ablation: 2 points of SSIM worse
        rows.append({"method": "tergan-no-erec", "dataset": "synth-oulu", "fold": f, "seed": 0, "status": "ok",
                     "stale": "", "record": {"extras": {"truth": ablated}}})
    rows.append({"method": "baseline", "dataset": "synth-oulu", "fold": 0, "seed": 0, "status": "ok", "stale": "",
                 "record": {"extras": {}}})
    return pd.DataFrame(rows)


def test_the_truth_table_and_claims_read_the_records():
    table = tergan.truth_table(fake_frame())
    assert list(table["answer"].astype(str))[:6] == list(tergan.ANSWERS) and list(table["kind"])[:6] == ["transfer"] * 6
    ablation = table[(table["kind"] == "transfer") & (table["answer"] == "TER-GAN without L_erec")].iloc[0]
    assert ablation["SSIM to truth (x 100)"].startswith("59.0 ± 1.0")       # its own x_bar; one row per answer
    assert len(table) == 2 * len(tergan.ANSWERS)
    row = table[(table["kind"] == "transfer") & (table["answer"] == "TER-GAN")].iloc[0]
    assert row["SSIM to truth (x 100)"].startswith("61.0 ± 1.0") and row["pairs per fold"] == 64
    claims = tergan.judged_truth_claims(fake_frame(), "synth-oulu")
    assert len(claims) == len(tergan.TRUTH_CLAIMS)
    first = claims.iloc[0]                               # SSIM 60-62 vs 55 on three folds: +6.0
    assert first["our difference (pts)"] == 6.0 and first["verdict"] == "supported"
    assert claims.iloc[3]["our difference (pts)"] == 55.0 and claims.iloc[3]["verdict"] == "supported"
    assert claims.iloc[6]["claim"].startswith("ablation") and claims.iloc[6]["our difference (pts)"] == -2.0
    assert claims.iloc[6]["verdict"] == "contradicted"
    failed = tergan.judged_truth_claims(fake_frame(failed=(1,)), "synth-oulu")
    assert failed["verdict"].str.startswith("failed to train").all()
    # TER-GAN failing on a fold the ablation never ran fails TER-GAN's claims, not the ablation's
    beyond = tergan.judged_truth_claims(fake_frame(folds=(0, 1, 2, 5), failed=(5,)).query("not (method == "
                                        "'tergan-no-erec' and fold == 5)"), "synth-oulu")
    assert beyond["verdict"].iloc[:6].str.startswith("failed to train").all()
    assert beyond["verdict"].iloc[6] == "contradicted" and beyond["paired folds"].iloc[6] == 3
    assert tergan.truth_table(fake_frame().iloc[-1:]).empty          # no TER-GAN record: nothing to show


def test_the_chapter_reads_stage_curves_and_judges_from_the_records():
    frame = fake_frame(folds=(2, 0))
    assert tergan.stage_histories(frame, "tergan", "stage2") == {"fold 0": [{"epoch": 1, "train_d": 3.0}],
                                                                 "fold 2": [{"epoch": 1, "train_d": 1.0}]}
    assert tergan.stage_histories(frame, "baseline", "stage1") == {}
    judges = tergan.judge_accuracy(frame)
    assert list(judges["fold"]) == [0, 2] and list(judges["expression judge on real test faces %"]) == [90.0, 92.0]
    assert list(judges["truth's identity judge % (editing)"]) == [90.0, 90.0]
