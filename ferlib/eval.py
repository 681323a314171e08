"""Scores and analyses shared by every chapter.

Classification metrics (accuracy, per-class accuracy, confusion matrix), the identity-leakage
probe, fold aggregation with a 95% t-interval, and 2-D embeddings (t-SNE, UMAP) of features.
Inputs may be numpy arrays, lists or tensors; predictions may be class indices (1-D) or logits
(2-D, argmax taken).
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from ferlib.errors import FerlibError, UnknownName

EMBEDDINGS = ("tsne", "umap")


def as_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def as_predictions(preds_or_logits) -> np.ndarray:
    """Class indices from class indices (1-D) or logits/scores (2-D)."""
    values = as_numpy(preds_or_logits)
    return values.argmax(1) if values.ndim == 2 else values.astype(np.int64)


def accuracy(preds_or_logits, labels) -> float:
    """Fraction of correct predictions."""
    preds, labels = as_predictions(preds_or_logits), as_numpy(labels).astype(np.int64)
    if len(preds) != len(labels):
        raise FerlibError(f"{len(preds)} predictions but {len(labels)} labels; both must describe the same images")
    if len(labels) == 0:
        return float("nan")
    return float((preds == labels).mean())


def confusion_matrix(preds_or_logits, labels, num_classes: int, normalise: bool = False) -> np.ndarray:
    """Counts `cm[true, predicted]`; with `normalise`, each row divided by its total (rows of
    classes absent from `labels` are NaN)."""
    preds, labels = as_predictions(preds_or_logits), as_numpy(labels).astype(np.int64)
    for name, values in (("label", labels), ("prediction", preds)):
        if len(values) and (values.min() < 0 or values.max() >= num_classes):
            raise FerlibError(f"a {name} is outside 0..{num_classes - 1} (got {values.min()}..{values.max()}); "
                              "check num_classes against the protocol's classes")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return normalise_rows(cm) if normalise else cm


def normalise_rows(cm) -> np.ndarray:
    """Each row divided by its sum; all-zero rows become NaN."""
    cm = as_numpy(cm).astype(np.float64)
    totals = cm.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, cm / np.where(totals > 0, totals, 1), np.nan)


def per_class_accuracy(preds_or_logits, labels, num_classes: int) -> np.ndarray:
    """Recall of each class (the confusion matrix's normalised diagonal); NaN for absent classes."""
    return np.diag(confusion_matrix(preds_or_logits, labels, num_classes, normalise=True)).copy()


# ----------------------------------------------------------------------------- identity leakage

def holdout_split(subjects: Sequence, test_fraction: float = 0.3, seed: int = 0,
                  groups: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) that hold out images of every subject, for `identity_probe`.

    Each subject with at least two images (two groups, when `groups` such as sequence IDs are
    given: then whole groups are held out, so near-identical frames of one sequence never sit on
    both sides) puts about `test_fraction` of them, at least one, in test and keeps at least one in
    train. Subjects with a single image or group stay in train.
    """
    subjects = as_numpy(subjects)
    groups = as_numpy(groups) if groups is not None else np.arange(len(subjects))
    rng = np.random.default_rng(seed)
    test = np.zeros(len(subjects), dtype=bool)
    for subject in np.unique(subjects):
        rows = np.flatnonzero(subjects == subject)
        units = np.unique(groups[rows])
        if len(units) < 2:
            continue
        k = min(len(units) - 1, max(1, round(test_fraction * len(units))))
        held = rng.choice(units, size=k, replace=False)
        test[rows[np.isin(groups[rows], held)]] = True
    return np.flatnonzero(~test), np.flatnonzero(test)


def identity_probe(train_feats, train_subjects, test_feats, test_subjects, seed: int = 0,
                   C: float = 1.0, max_iter: int = 2000) -> dict:
    """How well a linear classifier recovers the subject from expression features.

    Fits standardised features + multinomial logistic regression on `train_feats` and scores it on
    `test_feats`: held-out images of the SAME subjects (see `holdout_split`). Returns
    acc, chance (the share of the most common subject among the test images: the best constant
    guess; 1/#subjects when balanced), ratio = acc / chance (1 = no identity information),
    n_subjects, n_train, n_test.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(test_feats) == 0:
        raise FerlibError("identity_probe got no test images; hold some images of each subject out with holdout_split")
    x_train, x_test = as_numpy(train_feats).reshape(len(train_feats), -1), as_numpy(test_feats).reshape(len(test_feats), -1)
    y_train, y_test = as_numpy(train_subjects).astype(str), as_numpy(test_subjects).astype(str)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise FerlibError(f"identity_probe: {len(x_train)}/{len(x_test)} feature rows but "
                          f"{len(y_train)}/{len(y_test)} subjects (train/test); they must match")
    unseen = sorted(map(str, set(y_test) - set(y_train)))
    if unseen:
        raise FerlibError(f"identity_probe: test subjects {unseen[:5]} have no training images; the probe needs "
                          "held-out images of TRAINING subjects (see holdout_split)")
    subjects, counts = np.unique(y_train, return_counts=True)
    if len(subjects) < 2:
        raise FerlibError("identity_probe needs at least two subjects")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    acc = float((model.predict(x_test) == y_test).mean())
    _, test_counts = np.unique(y_test, return_counts=True)
    chance = float(test_counts.max() / len(y_test))
    return {"acc": acc, "chance": chance, "ratio": acc / chance, "n_subjects": int(len(subjects)),
            "n_train": int(len(y_train)), "n_test": int(len(y_test))}


# ----------------------------------------------------------------------------- folds

def aggregate_folds(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean, sample standard deviation and the t-interval of the mean over folds.

    Keys: mean, std, ci95_low, ci95_high, n. With one value, std and the interval are NaN.
    """
    from scipy import stats

    x = np.asarray(as_numpy(values), dtype=np.float64).ravel()
    if len(x) == 0:
        raise FerlibError("aggregate_folds got no values: no fold finished; run at least one fold")
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan, "n": 1}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=len(x) - 1)) * std / math.sqrt(len(x))
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half, "n": int(len(x))}


# ----------------------------------------------------------------------------- embeddings

def embed_2d(features, method: str = "tsne", seed: int = 0, **kwargs) -> np.ndarray:
    """A (n, 2) embedding of (n, d) features by t-SNE or UMAP, reproducible for a seed.

    t-SNE: features above 50 dimensions are first reduced to 50 by PCA; perplexity defaults to
    min(30, (n - 1) / 3). UMAP: n_neighbors defaults to min(15, n - 1); umap is imported only
    here (its first import takes ~20 s). Extra keyword arguments go to TSNE / UMAP.
    """
    x = as_numpy(features).astype(np.float32).reshape(len(features), -1)
    n = len(x)
    if method not in EMBEDDINGS:
        raise UnknownName("embedding method", method, EMBEDDINGS)
    if n < 4:
        raise FerlibError(f"embed_2d needs at least 4 points, got {n}")
    if method == "tsne":
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        if x.shape[1] > 50 and n > 50:
            x = PCA(n_components=50, random_state=seed).fit_transform(x)
        kwargs.setdefault("perplexity", max(1.0, min(30.0, (n - 1) / 3)))
        return TSNE(n_components=2, init="pca", random_state=seed, **kwargs).fit_transform(x).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba / n_jobs notices on import and with a fixed seed
        import umap

        kwargs.setdefault("n_neighbors", max(2, min(15, n - 1)))
        return umap.UMAP(n_components=2, random_state=seed, **kwargs).fit_transform(x).astype(np.float32)
