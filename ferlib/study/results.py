"""What the chapters show from the results registry: our numbers beside the paper's, each claim
judged, every record's staleness, the curves and the figure fold's arrays.

    frame = study_frame("ifgan")              # one row per record of the paper at the study preset
    reported_beside_ours("ifgan", frame)      # the paper's table rows, ours beside them
    judged_claims("ifgan", frame)             # each claim: the paper's difference, ours, a verdict

A record is stale when its config is no longer what the preset gives or its training fingerprint is
not the current code's (`data_manifests/fingerprints.json`, which a test keeps equal to the code);
a stale record is shown, marked "stale", never passed off as current. A fold that failed to train
(`jobs.failure_of`) is counted and named, never averaged in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ferlib.errors import FerlibError
from ferlib.study.records import REGISTRY, Job, iter_records, job_seconds

STUDY = "study"
# a chapter's parameters that choose which registry records it shows, not how anything trains
VIEW_PARAMETERS = ("study_preset", "registry")


def record_staleness(record: dict, stored: dict | None = None) -> str:
    """"" when `record` is current, else why it is stale (config or fingerprint)."""
    from ferlib.study import fingerprints
    from ferlib.study.jobs import job_config
    job = Job(**record["job"])
    stored = fingerprints.load_stored() if stored is None else stored
    extra = {k: v for k, v in record["config"].items() if k == "data_root"}
    try:
        expected = job_config(job, extra.get("data_root"))
    except FerlibError as e:
        return f"its job no longer exists ({e})"
    if record["config"] != expected:
        changed = sorted(k for k in set(expected) | set(record["config"]) if expected.get(k) != record["config"].get(k))
        return f"config differs in {', '.join(changed[:4])}"
    from ferlib.study.jobs import fingerprinted_as
    now = stored.get(fingerprints.key(*fingerprinted_as(job.paper, job.method)))
    if now is None:
        return "no stored fingerprint for its method"
    return fingerprints.compare(record["fingerprint"], now) or ""


def study_frame(paper: str, preset: str = STUDY, registry: Path | str = REGISTRY) -> pd.DataFrame:
    """One row per record of `paper` at `preset`: job, status, test metrics (%), probe, training, staleness."""
    from ferlib.data.registry import base_name
    from ferlib.study import fingerprints
    stored = fingerprints.load_stored()
    rows = []
    for r in iter_records(registry, paper, preset):
        t = r["training"]
        rows.append({**r["job"], "base": base_name(r["job"]["dataset"]), "status": r["status"],
                     "failure": r.get("failure") or "", "acc": 100 * r["test"]["acc"],
                     "macro_acc": 100 * r["test"]["macro_acc"], "chance": 100 * r["chance"],
                     "identity_probe": probe_value(r, "acc", 100), "identity_x_chance": probe_value(r, "ratio"),
                     "view_similarity": view_similarity(r),
                     "best_epoch": t["best_epoch"], "epochs_run": t["epochs_run"], "epochs_cap": t["epochs_cap"],
                     "stopped_early": t["stopped_early"], "plateau": plateau_shown(t),
                     "stale": record_staleness(r, stored), "data": r["data"],
                     "wall_time_s": job_seconds(r), "threads": r["provenance"]["threads"],
                     "cpu": r["provenance"]["cpu"], "commit": r["provenance"]["git_commit"], "record": r})
    columns = ["paper", "method", "dataset", "fold", "preset", "seed", "base", "status", "failure", "acc", "macro_acc",
               "chance", "identity_probe", "identity_x_chance", "view_similarity", "best_epoch", "epochs_run", "epochs_cap",
               "stopped_early", "plateau", "stale", "data", "wall_time_s", "threads", "cpu", "commit", "record"]
    return pd.DataFrame(rows, columns=columns)


def view_similarity(record: dict) -> float:
    """EAN's invariance measurement (`experiments.ean.view_invariance`): the mean cosine similarity (x 100)
    of a held-out person's frontal view to their other views; NaN where the record has none."""
    views = record.get("extras", {}).get("views") or {}
    value = views.get("mean_similarity")
    return np.nan if value is None else 100 * float(value)


def replicate_keys(frame: pd.DataFrame):
    """How a claim pairs two methods' records: by fold, or, where the records span several seeds (EAN's
    replicates of one official split), by (fold, seed) written "fold f seed s"."""
    if frame["seed"].nunique() > 1:
        return lambda group: [f"fold {f} seed {s}" for f, s in zip(group["fold"], group["seed"])]
    return lambda group: list(group["fold"])


def probe_value(record: dict, key: str, scale: float = 1.0) -> float:
    """The record's identity-probe `key` (times `scale`), NaN where the probe was not measurable."""
    value = record["identity_probe"].get(key)
    return np.nan if value is None else scale * value


def summary_cell(values: list[float], failed: int, stale: int) -> str:
    """"81.0 ± 3.1 [78.8, 83.2] (n=10)", with failed and stale folds named, never averaged in."""
    from ferlib.eval import aggregate_folds
    if not values:
        text = "no fold trained" if failed else "not run"
    else:
        a = aggregate_folds(values)
        text = (f"{a['mean']:.1f} (n=1, no spread)" if a["n"] < 2 else
                f"{a['mean']:.1f} ± {a['std']:.1f} [{a['ci95_low']:.1f}, {a['ci95_high']:.1f}] (n={a['n']})")
    if failed:
        text += f"; failed to train on {failed} fold{'s' if failed > 1 else ''}"
    if stale:
        text += f"; {stale} stale"
    return text


def plateau_shown(training: dict) -> bool:
    """Whether a record's training showed its plateau: it stopped early on the validation patience, or
    its last `patience` epochs (up to the cap) gave no new best, the same evidence without the stop."""
    idle = training["epochs_run"] - training["best_epoch"]
    return bool(training["stopped_early"]) or idle >= training["patience"] > 0


def caps_text(capped: pd.DataFrame) -> str:
    """The epoch cap(s) of `capped`'s folds, as the tables print them: "40", or "40/60" when they differ. A
    fold that did not stop early ran every epoch of its run: its epochs run are its cap (the cap of the
    run its history is from: a paper's last stage, when its stages differ)."""
    return "/".join(str(int(c)) for c in sorted(set(capped["epochs_run"])))


def plateau_cell(group: pd.DataFrame) -> str:
    """How many of `group`'s folds showed their plateau (`plateau_shown`), and how many ran to the epoch
    cap still improving within their patience, whose plateau is not shown: "6 of 10; 4 at the 40-epoch
    cap (plateau not shown)"."""
    if group.empty:
        return "no current record"
    shown, n = int(group["plateau"].sum()), len(group)
    if shown == n:
        return f"{shown} of {n}"
    capped = group[~group["plateau"].astype(bool)]
    return f"{shown} of {n}; {n - shown} at the {caps_text(capped)}-epoch cap (plateau not shown)"


def late_gain(record: dict, last: int = 10) -> float:
    """How much a record's best validation accuracy rose in its last `last` epochs (points): 0 for a
    fold that stopped on its plateau, positive for one still improving at the cap."""
    curve = [h["val_acc"] for h in record["training"]["history"]]
    return 100 * (max(curve) - max(curve[:-last])) if len(curve) > last else float("nan")


def undertrained_line(frame: pd.DataFrame, titles: dict[str, str] | None = None) -> str:
    """One line naming each (method, dataset) of the current records with folds that ran to the epoch
    cap instead of stopping on their validation plateau, with their mean best epoch and how much their
    validation accuracy still rose in the last 10 epochs: those numbers are of an under-trained model."""
    current = frame[frame["stale"] == ""]
    parts = []
    for (method, dataset), group in current.groupby(["method", "dataset"], sort=False):
        capped = group[~group["plateau"].astype(bool)]
        if capped.empty:
            continue
        gains = [g for g in (late_gain(r) for r in capped["record"]) if not np.isnan(g)]
        rise = (f"validation accuracy still +{np.mean(gains):.1f} points (at most +{np.max(gains):.1f}) in the last 10 "
                f"epochs" if gains else "too few epochs to measure a late rise")
        parts.append(f"{(titles or {}).get(method, method)} on {dataset}: {len(capped)} of {len(group)} folds at the "
                     f"{caps_text(capped)}-epoch cap, best epoch "
                     f"{capped['best_epoch'].mean():.1f} on average, {rise}")
    if not parts:
        return ("Trained to plateau: every current record showed its plateau (stopped early, or its patience ran "
                "out at the cap).")
    return "Under-trained (the plateau is not shown; the model may still be improving): " + "; ".join(parts) + "."


def ours(frame: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Per (method, dataset): the folds that trained, their mean / std / 95% interval of `metric` (%),
    how many failed to train and how many records are stale, and the data and preset."""
    from ferlib.eval import aggregate_folds
    rows = []
    for (method, base), group in frame.groupby(["method", "base"], sort=False):
        trained = group[group["status"] == "ok"]
        ok = trained[trained[metric].notna()]     # the identity probe is not measurable on every dataset
        a = aggregate_folds(ok[metric]) if len(ok) else {"mean": np.nan, "std": np.nan, "ci95_low": np.nan,
                                                          "ci95_high": np.nan, "n": 0}
        failed, stale = int((group["status"] != "ok").sum()), int((group["stale"] != "").sum())
        rows.append({"method": method, "dataset": base, "mean": a["mean"], "std": a["std"], "ci95_low": a["ci95_low"],
                     "ci95_high": a["ci95_high"], "folds": a["n"], "failed": failed, "stale": stale,
                     "plateau": plateau_cell(group[group["stale"] == ""]),
                     "cell": summary_cell(list(ok[metric]), failed, stale) if len(ok) or trained.empty
                     else not_measured_cell(trained), "data": group["data"].iloc[0],
                     "preset": group["preset"].iloc[0]})
    return pd.DataFrame(rows, columns=["method", "dataset", "mean", "std", "ci95_low", "ci95_high", "folds", "failed",
                                       "stale", "plateau", "cell", "data", "preset"])


def not_measured_cell(trained: pd.DataFrame) -> str:
    """What a table shows where its metric was measured on none of the folds that trained."""
    why = trained["record"].iloc[0]["identity_probe"].get("unmeasured") or "the metric was not recorded"
    return f"not measurable on {len(trained)} fold{'s' if len(trained) > 1 else ''}: {why}"


def reported_beside_ours(paper: str, frame: pd.DataFrame, titles: dict[str, str] | None = None) -> pd.DataFrame:
    """The paper's table rows ("reported") with ours from the registry beside them (mean ± std
    [95% interval] (n folds), failed and stale folds named), the data and the preset."""
    from ferlib.reported import load_reported
    table = load_reported(paper).merge(ours(frame), on=["method", "dataset"], how="left")
    ran = table["cell"].notna()
    out = pd.DataFrame({
        "table": table["table"], "dataset": table["dataset"],
        "method": table["method"].map(lambda m: (titles or {}).get(m, m)),
        "reported": table["reported"].map(lambda v: f"{v:.2f} (reported)"),
        "ours (registry)": table["cell"].where(ran, "not in the registry"),
        "trained to plateau": table["plateau"].where(ran, ""),
        "our data": table["data"].where(ran, ""), "preset": table["preset"].where(ran, ""),
    })
    return out


# ----------------------------------------------------------------------------- claims

def paper_claims(paper: str):
    """The paper's claims (`claims:` in data_manifests/reported/<paper>.yaml), each a `Claim`; the
    reported difference is the paper's own table difference where both numbers are reported."""
    from ferlib.reported import REPORTED_DIR, load_reported
    from ferlib.study.claims import Claim
    raw = yaml.safe_load((REPORTED_DIR / f"{paper}.yaml").read_text())
    reported = load_reported(paper).set_index(["method", "dataset"])["reported"]
    claims = []
    for entry in raw.get("claims", []):
        datasets = entry.get("datasets") or sorted({d for (m, d) in reported.index if m == entry["method"]})
        for dataset in datasets:
            difference = entry.get("reported")
            if difference is None and entry.get("metric", "acc") == "acc":
                pair = [(entry["method"], dataset), (entry["baseline"], dataset)]
                if all(p in reported.index for p in pair):
                    difference = round(float(reported[pair[0]] - reported[pair[1]]), 2)
            claims.append(Claim(paper=paper, text=entry["text"].format(dataset=dataset), dataset=dataset,
                                method=entry["method"], baseline=entry["baseline"],
                                metric=entry.get("metric", "acc"), direction=int(entry.get("direction", 1)),
                                reported=difference))
    return claims


def judged_claims(paper: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Each claim of `paper` judged on the registry's current folds (`claims.judge`), as the chapter's
    table, with how many of each side's folds showed their plateau (`plateau_cell`) before the verdict."""
    from ferlib.study.claims import claims_table, judge
    rows, plateaus = [], []
    keys = replicate_keys(frame)
    for claim in paper_claims(paper):
        def side(method):
            group = frame[(frame["method"] == method) & (frame["base"] == claim.dataset) & (frame["stale"] == "")]
            ok = group[group["status"] == "ok"]
            return (dict(zip(keys(ok), ok[claim.metric])), tuple(keys(group[group["status"] != "ok"])),
                    f"{method} {plateau_cell(group)}")
        (values_m, failed_m, plateau_m), (values_b, failed_b, plateau_b) = side(claim.method), side(claim.baseline)
        rows.append(judge(claim, values_m, values_b, failed_method=failed_m, failed_baseline=failed_b))
        plateaus.append(f"{plateau_m} | {plateau_b}")
    table = claims_table(rows)
    table.insert(len(table.columns) - 1, "trained to plateau", plateaus)
    return table


# ----------------------------------------------------------------------------- figures' data

def averaged_probes(frame: pd.DataFrame, dataset: str, titles: dict[str, str] | None = None,
                    keep: tuple[str, ...] = ()) -> tuple[pd.DataFrame, str]:
    """The probe rows (`common.probe_rows`: identity and expression probes per method and feature) of every
    current record that trained on `dataset` (its `extras["probes"]`; a row shared by several records of
    one fold, such as raw pixels, once per fold), averaged over the folds, with their count and the
    columns `keep` (e.g. "dims") of their first row; and a line naming the records left out (failed to
    train, stale)."""
    rows = frame[frame["dataset"] == dataset]
    used = rows[(rows["status"] == "ok") & (rows["stale"] == "")]
    left = [f"{(titles or {}).get(r.method, r.method)} fold {r.fold} ({'stale' if r.stale else r.status})"
            for r in rows.itertuples() if r.Index not in used.index]
    found = [{**p, "fold": r.fold} for r in used.itertuples() for p in r.record["extras"].get("probes", [])]
    numbers = ["identity probe %", "identity x chance", "expression probe %", "expression x chance"]
    columns = ["method", "feature", *keep, "folds", *numbers]
    if not found:
        return pd.DataFrame(columns=columns), "; ".join(left)
    table = pd.DataFrame(found).drop_duplicates(["method", "feature", "fold"])
    order = list(dict.fromkeys(zip(table["method"], table["feature"])))
    grouped = table.groupby(["method", "feature"], sort=False)
    out = grouped[numbers].mean().round(2).join(grouped["fold"].nunique().rename("folds"))
    for column in keep:
        out = out.join(grouped[column].first())
    return out.loc[order].reset_index()[columns], "; ".join(left)


def figure_record(frame: pd.DataFrame, method: str, dataset: str) -> dict | None:
    """The record of `method` on `dataset` that keeps the figures' arrays (its embedding fold)."""
    from ferlib.study.jobs import EMBEDDING_FOLD
    rows = frame[(frame["method"] == method) & (frame["dataset"] == dataset) & (frame["fold"] == EMBEDDING_FOLD)]
    return None if rows.empty else rows.iloc[0]["record"]


def summed_confusion(frame: pd.DataFrame, method: str, dataset: str) -> tuple[np.ndarray, list[str]] | None:
    """The test confusion matrices of every fold that trained, summed (each test person once)."""
    rows = frame[(frame["method"] == method) & (frame["dataset"] == dataset) & (frame["status"] == "ok")]
    if rows.empty:
        return None
    total = sum(np.asarray(r["test"]["confusion"]) for r in rows["record"])
    return total, list(rows.iloc[0]["record"]["test"]["class_names"])


def provenance_line(frame: pd.DataFrame) -> str:
    """Where the records come from, in one sentence (count, commits, CPUs, threads, total time)."""
    if frame.empty:
        return "The registry holds no record of this paper at the study preset yet."
    commits = sorted({c[:8] for c in frame["commit"] if c})
    hours = (frame["wall_time_s"] * frame["threads"]).sum() / 3600
    return (f"{len(frame)} records ({int((frame['status'] == 'ok').sum())} trained, "
            f"{int((frame['status'] != 'ok').sum())} failed to train, {int((frame['stale'] != '').sum())} stale), "
            f"made by `python -m ferlib sweep --papers {frame['paper'].iloc[0]} --preset {frame['preset'].iloc[0]}` "
            f"at commit(s) {', '.join(commits)} on {', '.join(sorted(set(frame['cpu'])))}, "
            f"{hours:.1f} core-hours of training in all.")


def registry_cost(frame: pd.DataFrame, titles: dict[str, str] | None = None,
                  speed: str = "training images/s (median)") -> pd.DataFrame:
    """Per dataset and method, as the records say: folds, epochs run, training images/s (median over
    epochs of training images / epoch time, under the column `speed`), wall time per fold and in all,
    threads and CPU."""
    rows = []
    for (dataset, method), group in frame.groupby(["dataset", "method"], sort=False):
        speeds = [r["training"]["train_images"] / h["epoch_time_s"] for r in group["record"]
                  for h in r["training"]["history"] if h.get("epoch_time_s")]
        rows.append({"dataset": dataset, "method": (titles or {}).get(method, method), "records": len(group),
                     "epochs run (median)": float(group["epochs_run"].median()),
                     speed: round(float(np.median(speeds))) if speeds else np.nan,
                     "wall time per fold (median, s)": round(float(group["wall_time_s"].median()), 1),
                     "wall time in all (min)": round(float(group["wall_time_s"].sum()) / 60, 1),
                     "threads": ", ".join(str(t) for t in sorted(set(group["threads"]))),
                     "cpu": ", ".join(sorted(set(group["cpu"])))})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the introduction's findings

PAPER_TITLES = {"ifgan": "IF-GAN", "adfl": "ADFL", "eifn": "EIFN", "ean": "EAN", "tergan": "TER-GAN"}


def findings(papers=tuple(PAPER_TITLES), preset: str = STUDY, registry: Path | str = REGISTRY) -> pd.DataFrame:
    """Every claim of the papers present: the paper's difference, ours on SynthFER (paired over folds,
    95% interval, n) and the verdict, and the verdict on real data ("pending real data": no licensed
    dataset has run). Our columns come from the registry's current records only."""
    rows = []
    for paper in papers:
        table = judged_claims(paper, study_frame(paper, preset, registry))
        for _, row in table.iterrows():
            if pd.isna(row["paired folds"]):       # a fold failed to train: never a difference (the verdict says so)
                ours_text = "not computed"
            elif not row["paired folds"]:
                ours_text = "no paired folds yet"
            elif row["our 95% interval"] == "none":  # one paired fold: a difference, no interval
                ours_text = f"{row['our difference (pts)']:+.1f}, no interval (n={row['paired folds']})"
            else:
                ours_text = (f"{row['our difference (pts)']:+.1f} {row['our 95% interval']} "
                             f"(n={row['paired folds']})")
            reported = row["paper's difference (pts)"]
            rows.append({"paper": PAPER_TITLES.get(paper, paper), "claim": row["claim"],
                         "paper's difference (pts)": "" if pd.isna(reported) else f"{reported:+.1f}",
                         "ours on SynthFER (pts)": ours_text, "trained to plateau": row["trained to plateau"],
                         "verdict on SynthFER": row["verdict"],
                         "verdict on real data": "pending real data"})
    return pd.DataFrame(rows)


def findings_markdown(papers=tuple(PAPER_TITLES), preset: str = STUDY, registry: Path | str = REGISTRY) -> str:
    """`findings` as the markdown the introduction includes (book/findings.md, written by `make book`)."""
    from ferlib.study.claims import VERDICT_RULE
    table = findings(papers, preset, registry)
    counts = table["verdict on SynthFER"].str.split(" ").str[0].value_counts()
    summary = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    return ("<!-- written by `python -m ferlib registry findings --out book/findings.md` from the results "
            "registry; do not edit -->\n\n"
            f"{len(table)} claims ({summary}), from the `{preset}` records in `data_manifests/reproduced/`. "
            f"{VERDICT_RULE}\n\n" + table.to_markdown(index=False, disable_numparse=True) + "\n")
