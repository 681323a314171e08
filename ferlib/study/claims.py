"""Each paper's claim judged as a paired difference over folds.

A claim ("IF-GAN beats its ResNet baseline on CK+") compares a method with a baseline on the same
folds of the same data. For each fold k both sides trained on, d_k = method_k - baseline_k, in
points (percentage points: the caller passes 97.5, not 0.975; `results.study_frame` already gives
its metrics in %). We report the mean of d, its sample standard deviation, the 95% t-interval of
the mean (scipy.stats.t, n - 1 degrees of freedom), and a two-sided p-value.

The primary p-value is the paired t-test's (two-sided; equal to scipy.stats.ttest_rel on the two
sides), the same model as the interval, so p < 0.05 exactly when the interval excludes 0. Beside it
`p_signflip` is the exact two-sided sign-flip permutation p-value (every one of the 2^n sign
patterns of d, n <= SIGNFLIP_MAX_N; NaN above), which assumes no normality; its smallest possible
value is 2 / 2^n (0.25 with 3 folds), so with few folds it can never be small.

A claim has a direction: +1 when it says the method is higher (accuracy), -1 when it says the
method is lower (an identity probe's accuracy: "the features carry less identity"). The differences
we report stay raw, method - baseline, like the paper's; only the verdict is oriented, by
VERDICT_RULE, on direction * d:

    supported      the 95% interval of direction * d lies entirely above 0,
    contradicted   it lies entirely below 0,
    inconclusive   otherwise, and always with fewer than 2 paired folds (no interval),
    failed to train  any fold of either side failed: nothing is averaged, the verdict names the
                   side(s), how many folds and which.

Every verdict string starts with one of VERDICTS; what follows in parentheses explains it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ferlib.errors import FerlibError

CONFIDENCE = 0.95
SIGNFLIP_MAX_N = 12          # the exact sign-flip p-value enumerates 2^n patterns: 4096 at most
VERDICTS = ("supported", "contradicted", "inconclusive", "failed to train")
VERDICT_RULE = (
    "A claim is supported when the 95% t-interval of its paired per-fold difference (method minus "
    "baseline, in points, oriented so that positive is the claim's direction) lies entirely above 0, "
    "contradicted when it lies entirely below 0, and inconclusive otherwise, including with fewer than "
    "two paired folds, which give no interval; a claim with any fold of either side that failed to "
    "train is reported as failed to train and never averaged."
)


@dataclass(frozen=True)
class Claim:
    """One claim of a paper: `method` beats `baseline` on `dataset` in `metric`, in `direction`."""

    paper: str
    text: str                       # "IF-GAN beats the ResNet baseline on CK+"
    dataset: str                    # the base dataset name, e.g. "ckplus"
    method: str                     # method names as in the registry
    baseline: str
    metric: str = "acc"             # which values the caller passes (points): "acc", "identity_probe", ...
    direction: int = +1             # +1: the claim is method > baseline; -1: method < baseline
    reported: float | None = None   # the paper's difference in points (method - baseline), None if none

    def __post_init__(self):
        _check_direction(self.direction, f"claim {self.text!r}")


def _check_direction(direction, where: str = "verdict") -> None:
    if direction not in (1, -1) or isinstance(direction, bool):
        raise FerlibError(f"{where}: direction must be +1 (method higher is the claim) or -1 (method lower), "
                          f"got {direction!r}")


def _values(values: Mapping[int, float], side: str) -> dict[int, float]:
    out = {}
    for fold, v in values.items():
        v = float(v)
        if not math.isfinite(v):
            raise FerlibError(f"paired_difference: the {side} value of fold {fold} is {v}; pass only folds "
                              f"that trained (a failed fold goes to judge's failed_{side})")
        out[fold] = v
    return out


def signflip_p_value(d: np.ndarray) -> float:
    """Exact two-sided sign-flip permutation p-value of mean(d) = 0 (NaN for n < 2 or n > SIGNFLIP_MAX_N)."""
    n = len(d)
    if n < 2 or n > SIGNFLIP_MAX_N:
        return math.nan
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    stats = np.abs(signs @ d)
    observed = abs(float(d.sum()))
    return float(np.mean(stats >= observed - 1e-9 * max(1.0, observed)))


def paired_difference(method_values: Mapping[int, float], baseline_values: Mapping[int, float]) -> dict:
    """The per-fold difference method - baseline (points) over the folds both sides have.

    Keys: n (paired folds), mean, std (ddof=1), ci_low, ci_high (95% t-interval), p_value (paired
    t-test, two-sided), p_signflip (exact, n <= SIGNFLIP_MAX_N), folds (the paired folds, sorted),
    differences (d per paired fold), unpaired (how many folds only one side has), unpaired_folds.
    With n < 2, std, the interval and the p-values are NaN (n = 0: the mean too).
    """
    from scipy import stats

    a, b = _values(method_values, "method"), _values(baseline_values, "baseline")
    folds = sorted(set(a) & set(b))
    unpaired = sorted(set(a) ^ set(b))
    d = np.array([a[k] - b[k] for k in folds], dtype=np.float64)
    n = len(d)
    out = {"n": n, "mean": float(d.mean()) if n else math.nan, "std": math.nan, "ci_low": math.nan,
           "ci_high": math.nan, "p_value": math.nan, "p_signflip": math.nan, "folds": folds,
           "differences": [float(x) for x in d], "unpaired": len(unpaired), "unpaired_folds": unpaired}
    if n < 2:
        return out
    mean, std = float(d.mean()), float(d.std(ddof=1))
    se = std / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=n - 1)) * se
    if se > 0:
        p = float(2 * stats.t.sf(abs(mean) / se, df=n - 1))
    else:                    # every d the same: p 0 if that is not 0 (as ttest_rel), undefined if all 0
        p = 0.0 if mean != 0 else math.nan
    out.update(std=std, ci_low=mean - half, ci_high=mean + half, p_value=p, p_signflip=signflip_p_value(d))
    return out


def verdict(ci_low: float | None, ci_high: float | None, n: int, direction: int = +1) -> str:
    """The verdict (VERDICT_RULE) of a raw method - baseline interval [ci_low, ci_high] over n folds."""
    _check_direction(direction)
    if n < 2:
        return ("inconclusive (no paired folds)" if n == 0 else
                "inconclusive (n=1: one fold gives no interval)")
    if ci_low is None or ci_high is None or math.isnan(ci_low) or math.isnan(ci_high):
        return "inconclusive (no interval)"
    low, high = (ci_low, ci_high) if direction == 1 else (-ci_high, -ci_low)
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "inconclusive (the 95% interval contains 0)"


def _failed_note(name: str, failed: list, trained: Iterable) -> str:
    total = len(set(failed) | set(trained))
    return (f"{name} on {len(failed)} of {total} fold{'s' if total != 1 else ''} "
            f"({', '.join(str(f) for f in failed)})")


def judge(claim: Claim, method_values: Mapping[int, float], baseline_values: Mapping[int, float],
          failed_method: Iterable[int] = (), failed_baseline: Iterable[int] = ()) -> dict:
    """One row of the claims table: the claim, the paper's difference, ours (paired_difference) and
    the verdict. `*_values`: {fold: metric in points} of the folds that trained; `failed_*`: the folds
    of each side that failed to train. Any failed fold: verdict "failed to train (...)", no statistic."""
    failed_m, failed_b = sorted(set(failed_method)), sorted(set(failed_baseline))
    row = {"paper": claim.paper, "claim": claim.text, "dataset": claim.dataset, "method": claim.method,
           "baseline": claim.baseline, "metric": claim.metric, "direction": claim.direction,
           "reported": claim.reported}
    if failed_m or failed_b:
        notes = ([_failed_note(claim.method, failed_m, method_values)] if failed_m else []) + \
                ([_failed_note(claim.baseline, failed_b, baseline_values)] if failed_b else [])
        row.update(n=None, mean=math.nan, std=math.nan, ci_low=math.nan, ci_high=math.nan, p_value=math.nan,
                   p_signflip=math.nan, folds=[], unpaired=None, reported_in_ci=None,
                   failed_method=failed_m, failed_baseline=failed_b,
                   verdict=f"failed to train ({'; '.join(notes)})")
        return row
    diff = paired_difference(method_values, baseline_values)
    inside = None
    if claim.reported is not None and diff["n"] >= 2:
        inside = bool(diff["ci_low"] <= claim.reported <= diff["ci_high"])
    row.update({k: diff[k] for k in ("n", "mean", "std", "ci_low", "ci_high", "p_value", "p_signflip", "folds",
                                      "unpaired")},
               reported_in_ci=inside, failed_method=[], failed_baseline=[],
               verdict=verdict(diff["ci_low"], diff["ci_high"], diff["n"], claim.direction))
    return row


def _points(x) -> float:
    return math.nan if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 1)


def _p(x) -> float:
    return math.nan if x is None or math.isnan(x) else float(f"{x:.3g}")


def claims_table(rows: list[dict]) -> pd.DataFrame:
    """The chapter's table of judged claims (rows from `judge`): differences method - baseline in
    points to 1 decimal, p-values to 3 significant digits; print VERDICT_RULE under it."""
    columns = ["claim", "dataset", "metric", "claimed", "paper's difference (pts)", "our difference (pts)",
               "our 95% interval", "paper's in our interval", "paired folds", "unpaired folds",
               "p (paired t)", "p (sign-flip, exact)", "verdict"]
    out = []
    for r in rows:
        has_ci = not (math.isnan(r["ci_low"]) or math.isnan(r["ci_high"]))
        inside = r.get("reported_in_ci")
        out.append({
            "claim": r["claim"], "dataset": r["dataset"], "metric": r["metric"],
            "claimed": f"{r['method']} {'>' if r['direction'] == 1 else '<'} {r['baseline']}",
            "paper's difference (pts)": _points(r["reported"]),
            "our difference (pts)": _points(r["mean"]),
            "our 95% interval": f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}]" if has_ci else "none",
            "paper's in our interval": "" if inside is None else ("yes" if inside else "no"),
            "p (paired t)": _p(r["p_value"]), "p (sign-flip, exact)": _p(r["p_signflip"]),
            "verdict": r["verdict"],
        })
    table = pd.DataFrame(out, columns=columns)
    for column, key in (("paired folds", "n"), ("unpaired folds", "unpaired")):   # counts; <NA> when failed
        table[column] = pd.array([None if r[key] is None else int(r[key]) for r in rows], dtype="Int64")
    return table
