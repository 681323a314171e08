"""Claims judged as paired differences over folds (`ferlib.study.claims`): hand-computed intervals,
the verdict rule in both directions, unpaired and single folds, failed folds never averaged, the
p-values against scipy, and the chapter's table."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ferlib.errors import FerlibError
from ferlib.study.claims import (VERDICT_RULE, VERDICTS, Claim, claims_table, judge, paired_difference,
                                 signflip_p_value, verdict)

T975_2 = 4.302652729911275   # t_{0.975, 2 dof}, typed from a table, not from scipy


def sides(differences, base=80.0):
    """{fold: method}, {fold: baseline} whose per-fold differences are `differences` (points)."""
    baseline = {k: base + 1.5 * k for k in range(len(differences))}
    return {k: baseline[k] + d for k, d in enumerate(differences)}, baseline


def claim(direction=1, reported=2.7, metric="acc"):
    return Claim(paper="ifgan", text="IF-GAN beats its ResNet baseline on CK+", dataset="ckplus",
                 method="ifgan", baseline="resnet", metric=metric, direction=direction, reported=reported)


def test_hand_computed_interval_is_inconclusive():
    d = paired_difference(*sides([1.0, 2.0, 3.0]))
    half = T975_2 * 1.0 / math.sqrt(3)                     # 2.484
    assert d["n"] == 3 and d["folds"] == [0, 1, 2] and d["unpaired"] == 0
    assert d["mean"] == pytest.approx(2.0) and d["std"] == pytest.approx(1.0)
    assert d["ci_low"] == pytest.approx(2.0 - half, abs=1e-9) and d["ci_low"] == pytest.approx(-0.484, abs=1e-3)
    assert d["ci_high"] == pytest.approx(2.0 + half, abs=1e-9) and d["ci_high"] == pytest.approx(4.484, abs=1e-3)
    # t = 2 / (1 / sqrt 3) = 2 sqrt 3; with 2 dof the two-sided p is 1 - t / sqrt(t^2 + 2) = 0.0742
    assert d["p_value"] == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), abs=1e-12)
    assert d["p_value"] == pytest.approx(0.0742, abs=1e-4)
    # sign flips of (1, 2, 3): only +++ and --- reach |sum| = 6, 2 of 8
    assert d["p_signflip"] == pytest.approx(0.25)
    assert verdict(d["ci_low"], d["ci_high"], d["n"]).startswith("inconclusive")


def test_clear_support_and_clear_contradiction():
    up = judge(claim(), *sides([2.0, 3.0, 4.0, 3.0, 3.0]))
    half = stats.t.ppf(0.975, 4) * math.sqrt(0.5) / math.sqrt(5)
    assert up["mean"] == pytest.approx(3.0) and up["ci_low"] == pytest.approx(3.0 - half)
    assert up["ci_low"] > 0 and up["verdict"] == "supported"
    down = judge(claim(), *sides([-2.0, -3.0, -4.0, -3.0, -3.0]))
    assert down["ci_high"] < 0 and down["verdict"] == "contradicted"
    assert down["mean"] == pytest.approx(-3.0)                      # the raw difference, method - baseline


def test_direction_flips_the_verdict_not_the_difference():
    """Lower is the claim ("the features carry less identity"): a method probe lower than the baseline's."""
    method, baseline = sides([-5.0, -4.0, -6.0], base=40.0)
    lower = judge(claim(direction=-1, metric="identity_probe", reported=-3.0), method, baseline)
    higher = judge(claim(direction=+1, metric="identity_probe", reported=-3.0), method, baseline)
    assert lower["mean"] == higher["mean"] == pytest.approx(-5.0)  # both raw, method - baseline
    assert lower["ci_high"] < 0
    assert lower["verdict"] == "supported" and higher["verdict"] == "contradicted"
    assert verdict(1.0, 2.0, 5, direction=-1) == "contradicted"
    assert verdict(-2.0, -1.0, 5, direction=-1) == "supported"
    assert verdict(-1.0, 2.0, 5, direction=-1).startswith("inconclusive")
    table = claims_table([lower, higher])
    assert list(table["claimed"]) == ["ifgan < resnet", "ifgan > resnet"]


def test_interval_touching_zero_and_bad_direction():
    assert verdict(0.0, 3.0, 5).startswith("inconclusive")
    assert verdict(-3.0, 0.0, 5).startswith("inconclusive")
    assert verdict(None, None, 5).startswith("inconclusive")
    for bad in (0, 2, True):
        with pytest.raises(FerlibError, match="direction"):
            verdict(1.0, 2.0, 5, direction=bad)
        with pytest.raises(FerlibError, match="direction"):
            claim(direction=bad)


def test_unpaired_folds_are_ignored_and_counted():
    method = {k: 90.0 + k for k in range(5)}                            # folds 0..4
    baseline = {k: 88.0 + k + (0.5 if k % 2 else -0.5) for k in range(1, 6)}   # folds 1..5
    d = paired_difference(method, baseline)
    assert d["n"] == 4 and d["folds"] == [1, 2, 3, 4]
    assert d["unpaired"] == 2 and d["unpaired_folds"] == [0, 5]
    assert d["differences"] == pytest.approx([1.5, 2.5, 1.5, 2.5])
    assert d["mean"] == pytest.approx(2.0)
    row = judge(claim(), method, baseline)
    assert row["n"] == 4 and row["unpaired"] == 2
    assert claims_table([row])["unpaired folds"].iloc[0] == 2


def test_one_fold_or_none_gives_no_interval():
    one = judge(claim(), {3: 97.0}, {3: 94.0, 4: 93.0})
    assert one["n"] == 1 and one["mean"] == pytest.approx(3.0) and one["unpaired"] == 1
    assert all(math.isnan(one[k]) for k in ("std", "ci_low", "ci_high", "p_value", "p_signflip"))
    assert one["verdict"].startswith("inconclusive") and "n=1" in one["verdict"]
    assert one["reported_in_ci"] is None
    none = judge(claim(), {1: 97.0}, {2: 94.0})
    assert none["n"] == 0 and math.isnan(none["mean"]) and none["verdict"].startswith("inconclusive")
    assert claims_table([one])["our 95% interval"].iloc[0] == "none"


def test_failed_folds_give_failed_to_train_and_never_a_mean():
    method, baseline = sides([2.0, 3.0, 4.0, 3.0, 3.0])
    del method[3]                                                  # fold 3 of the method failed to train
    row = judge(claim(), method, baseline, failed_method=(3,))
    assert row["verdict"].startswith("failed to train")
    assert "ifgan on 1 of 5 folds (3)" in row["verdict"] and "resnet" not in row["verdict"]
    assert row["n"] is None and all(math.isnan(row[k]) for k in ("mean", "std", "ci_low", "ci_high", "p_value"))
    both = judge(claim(), method, {k: v for k, v in baseline.items() if k not in (0, 4)},
                 failed_method=[3], failed_baseline=[4, 0])
    assert "ifgan on 1 of 5 folds (3)" in both["verdict"] and "resnet on 2 of 5 folds (0, 4)" in both["verdict"]
    table = claims_table([row, judge(claim(), *sides([1.0, 2.0, 3.0]))])     # a failed row beside one that ran
    assert math.isnan(table["our difference (pts)"].iloc[0]) and pd.isna(table["paired folds"].iloc[0])
    assert table["verdict"].iloc[0] == row["verdict"]
    assert table["paired folds"].iloc[1] == 3 and str(table["paired folds"].dtype) == "Int64"


def test_a_failed_value_passed_as_a_number_is_refused():
    with pytest.raises(FerlibError, match="fold 2"):
        paired_difference({1: 90.0, 2: float("nan")}, {1: 89.0, 2: 88.0})


@pytest.mark.parametrize("n", [2, 3, 5, 10, 12])
def test_p_values_against_scipy(n):
    rng = np.random.default_rng(n)
    baseline = dict(enumerate(rng.uniform(60, 90, n)))
    method = {k: v + rng.normal(1.0, 2.0) for k, v in baseline.items()}
    d = paired_difference(method, baseline)
    a, b = np.array([method[k] for k in range(n)]), np.array([baseline[k] for k in range(n)])
    assert d["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    exact = stats.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                                   n_resamples=np.inf, alternative="two-sided")
    assert d["p_signflip"] == pytest.approx(exact.pvalue, rel=1e-9)
    # the primary p-value and the interval are the same t model: p < 0.05 exactly when 0 is outside
    assert (d["p_value"] < 0.05) == (d["ci_low"] > 0 or d["ci_high"] < 0)


def test_signflip_is_not_computed_above_its_limit():
    assert math.isnan(signflip_p_value(np.arange(1.0, 14.0)))     # 13 folds
    assert not math.isnan(paired_difference(*sides(list(np.linspace(1, 3, 13))))["p_value"])


def test_claims_table_is_readable_and_rounded():
    row = judge(claim(reported=2.7), *sides([1.0, 2.0, 3.0]))
    table = claims_table([row])
    assert list(table.columns) == ["claim", "dataset", "metric", "claimed", "paper's difference (pts)",
                                   "our difference (pts)", "our 95% interval", "paper's in our interval",
                                   "paired folds", "unpaired folds", "p (paired t)", "p (sign-flip, exact)",
                                   "verdict"]
    r = table.iloc[0]
    assert r["claim"] == "IF-GAN beats its ResNet baseline on CK+" and r["claimed"] == "ifgan > resnet"
    assert r["paper's difference (pts)"] == 2.7 and r["our difference (pts)"] == 2.0
    assert r["our 95% interval"] == "[-0.5, 4.5]" and r["paper's in our interval"] == "yes"
    assert r["paired folds"] == 3 and r["unpaired folds"] == 0
    assert r["p (paired t)"] == 0.0742 and r["p (sign-flip, exact)"] == 0.25
    assert r["verdict"].startswith("inconclusive")
    unreported = claims_table([judge(claim(reported=None), *sides([1.0, 2.0, 3.0]))]).iloc[0]
    assert math.isnan(unreported["paper's difference (pts)"]) and unreported["paper's in our interval"] == ""
    assert list(claims_table([]).columns) == list(table.columns)


def test_verdict_rule_is_one_sentence_naming_every_verdict():
    assert VERDICT_RULE.count(". ") == 0 and VERDICT_RULE.endswith(".")
    for v in VERDICTS:
        assert v in VERDICT_RULE
    assert "95%" in VERDICT_RULE and "points" in VERDICT_RULE


def test_the_findings_table_names_a_claim_whose_fold_failed_to_train(tmp_path):
    """The introduction's findings on a registry holding ADFL's synth-mmi records, one of whose folds failed
    to train: that claim reads "failed to train" with no difference, the others keep their numbers."""
    import shutil
    from ferlib.study.records import REGISTRY, read_record
    from ferlib.study.results import findings, findings_markdown
    source = REGISTRY / "adfl" / "study" / "synth-mmi"
    statuses = [read_record(p)["status"] for p in sorted(source.rglob("*.json"))]
    assert "ok" in statuses and any(s != "ok" for s in statuses)      # the committed case this test is about
    shutil.copytree(source, tmp_path / "adfl" / "study" / "synth-mmi")
    table = findings(("adfl",), registry=tmp_path)
    mmi = table[table["claim"] == "ADFL beats its baseline on mmi"].iloc[0]
    assert mmi["verdict on SynthFER"].startswith("failed to train") and mmi["ours on SynthFER (pts)"] == "not computed"
    assert (table[table["claim"] != mmi["claim"]]["ours on SynthFER (pts)"] == "no paired folds yet").all()
    assert "failed to train" in findings_markdown(("adfl",), registry=tmp_path)


def test_the_findings_table_says_one_paired_fold_has_no_interval(tmp_path):
    """IF-GAN's committed fold-1 records alone (given the current preset's config, so that neither is
    stale whatever the preset has become since): one paired fold, a difference and no interval."""
    import json
    from ferlib.study.jobs import job_config
    from ferlib.study.records import REGISTRY, Job, read_record
    from ferlib.study.results import findings
    for method in ("ifgan", "resnet"):
        record = json.loads((REGISTRY / "ifgan" / "study" / "synth-ckplus" / method / "fold1-seed0.json").read_text())
        record["config"] = job_config(Job(**record["job"]), None)
        (tmp_path / "ifgan" / "study" / "synth-ckplus" / method).mkdir(parents=True)
        (tmp_path / "ifgan" / "study" / "synth-ckplus" / method / "fold1-seed0.json").write_text(json.dumps(record))
    accuracy = {m: 100 * read_record(tmp_path / "ifgan" / "study" / "synth-ckplus" / m / "fold1-seed0.json")
                ["test"]["acc"] for m in ("ifgan", "resnet")}
    table = findings(("ifgan",), registry=tmp_path)
    row = table[table["claim"] == "IF-GAN beats its ResNet baseline on ckplus"].iloc[0]
    assert row["ours on SynthFER (pts)"] == f"{accuracy['ifgan'] - accuracy['resnet']:+.1f}, no interval (n=1)"
    assert row["verdict on SynthFER"].startswith("inconclusive")


def test_plateau_cell_counts_folds_that_stopped_early_and_names_the_cap_of_the_others():
    from ferlib.study.results import plateau_cell
    group = pd.DataFrame({"plateau": [True, False, True, False], "epochs_run": [30, 40, 35, 40]})
    assert plateau_cell(group) == "2 of 4; 2 at the 40-epoch cap (plateau not shown)"
    assert plateau_cell(group.assign(plateau=True)) == "4 of 4"
    assert plateau_cell(group.assign(plateau=[True, True, True, False])) == \
        "3 of 4; 1 at the 40-epoch cap (plateau not shown)"
    assert plateau_cell(group.assign(plateau=False, epochs_run=[40, 60, 40, 60])) == \
        "0 of 4; 4 at the 40/60-epoch cap (plateau not shown)"
    assert plateau_cell(group.iloc[:0]) == "no current record"


def test_a_fold_whose_patience_ran_out_at_the_cap_showed_its_plateau():
    from ferlib.study.results import plateau_shown
    ran_out = {"stopped_early": False, "epochs_run": 40, "best_epoch": 24, "patience": 16}
    assert plateau_shown(ran_out) and plateau_shown({**ran_out, "best_epoch": 20})
    assert not plateau_shown({**ran_out, "best_epoch": 25})             # a new best 15 epochs before the cap
    assert plateau_shown({**ran_out, "best_epoch": 39, "stopped_early": True, "epochs_run": 39})


def test_the_claims_table_says_which_side_reached_its_plateau(tmp_path):
    """The fold-1 records of IF-GAN and ResNet: the claims table and the findings carry, before the
    verdict, each side's count of folds that showed their plateau, read from the records' training."""
    import json
    from ferlib.study.jobs import job_config
    from ferlib.study.records import REGISTRY, Job
    from ferlib.study.results import findings, judged_claims, plateau_shown, study_frame
    stopped = {}
    for method in ("ifgan", "resnet"):
        record = json.loads((REGISTRY / "ifgan" / "study" / "synth-ckplus" / method / "fold1-seed0.json").read_text())
        record["config"] = job_config(Job(**record["job"]), None)
        stopped[method] = plateau_shown(record["training"])
        (tmp_path / "ifgan" / "study" / "synth-ckplus" / method).mkdir(parents=True)
        (tmp_path / "ifgan" / "study" / "synth-ckplus" / method / "fold1-seed0.json").write_text(json.dumps(record))
    cap = record["training"]["epochs_cap"]
    expected = " | ".join(f"{m} 1 of 1" if stopped[m] else f"{m} 0 of 1; 1 at the {cap}-epoch cap (plateau not shown)"
                         for m in ("ifgan", "resnet"))
    table = judged_claims("ifgan", study_frame("ifgan", registry=tmp_path))
    assert list(table.columns)[-2:] == ["trained to plateau", "verdict"]
    row = table[table["claim"] == "IF-GAN beats its ResNet baseline on ckplus"].iloc[0]
    assert row["trained to plateau"] == expected
    assert "ifgan-noattention no current record" in table["trained to plateau"].str.cat()
    found = findings(("ifgan",), registry=tmp_path)
    assert found.loc[found["claim"] == row["claim"], "trained to plateau"].iloc[0] == expected


def test_the_undertrained_line_names_folds_at_the_cap_with_their_late_gain():
    from ferlib.study.results import late_gain, undertrained_line

    def record(curve):
        return {"training": {"history": [{"val_acc": v} for v in curve]}}
    rising = [0.1 + 0.01 * e for e in range(40)]                        # +10 points in the last 10 epochs
    flat = [min(0.5, 0.1 + 0.05 * e) for e in range(40)]                # at 0.5 from epoch 8 on
    assert late_gain(record(rising)) == pytest.approx(10.0) and late_gain(record(flat)) == 0.0
    frame = pd.DataFrame({"method": ["ifgan", "ifgan", "resnet"], "dataset": ["synth-ckplus"] * 3,
                          "stale": ["", "", ""], "plateau": [False, False, True], "epochs_run": [40, 40, 31],
                          "best_epoch": [40, 30, 20], "record": [record(rising), record(flat), record(flat)]})
    line = undertrained_line(frame, {"ifgan": "IF-GAN"})
    assert line.count("IF-GAN on synth-ckplus: 2 of 2 folds at the 40-epoch cap") == 1 and "resnet" not in line
    assert "best epoch 35.0 on average, validation accuracy still +5.0 points (at most +10.0)" in line
    assert undertrained_line(frame.assign(plateau=True)).startswith("Trained to plateau")
    assert undertrained_line(frame.assign(stale="config differs")).startswith("Trained to plateau")
    short = frame.assign(record=[record(rising[:8])] * 3)               # 8 epochs: no last-10 window
    assert "too few epochs to measure a late rise" in undertrained_line(short) and "nan" not in undertrained_line(short)


def test_a_dataset_with_one_image_per_person_has_its_identity_probe_named_not_measurable(tmp_path):
    """RAF-DB-like data (every training subject one photograph): identity_leakage has nothing to hold
    out, says so instead of failing after training, and the tables name it instead of averaging NaN."""
    import json
    from types import SimpleNamespace
    from ferlib.experiments.common import identity_leakage
    from ferlib.study.jobs import job_config
    from ferlib.study.records import REGISTRY, Job
    from ferlib.study.results import ours, study_frame
    split = SimpleNamespace(subjects=np.array([f"P{i}" for i in range(6)]))
    data = SimpleNamespace(train_eval=split, sequences=lambda s: np.arange(len(s.subjects)))
    probe = identity_leakage(task=None, data=data)     # no task needed: nothing is evaluated
    assert probe["acc"] is None and probe["ratio"] is None and "one per person" in probe["unmeasured"]
    for method in ("ifgan", "resnet"):
        record = json.loads((REGISTRY / "ifgan" / "study" / "synth-ckplus" / method / "fold1-seed0.json").read_text())
        record["config"] = job_config(Job(**record["job"]), None)
        if method == "resnet":
            record["identity_probe"] = {k: probe[k] for k in ("acc", "chance", "ratio", "unmeasured")}
        (tmp_path / "ifgan" / "study" / "synth-ckplus" / method).mkdir(parents=True)
        (tmp_path / "ifgan" / "study" / "synth-ckplus" / method / "fold1-seed0.json").write_text(json.dumps(record))
    frame = study_frame("ifgan", registry=tmp_path)
    cells = ours(frame, "identity_probe").set_index("method")["cell"]
    assert cells["resnet"] == "not measurable on 1 fold: " + probe["unmeasured"]
    assert cells["ifgan"].endswith("(n=1, no spread)")


def test_a_fold_at_its_cap_is_named_with_the_cap_of_the_run_its_history_is_from():
    """TER-GAN's record is its classifier's run (40 epochs), not its fold stages' (cfg.epochs = 20): a fold
    that ran to the end names the classifier's cap, from the epochs it ran."""
    from ferlib.study.results import caps_text
    assert caps_text(pd.DataFrame({"epochs_run": [40, 40], "epochs_cap": [20, 20]})) == "40"
