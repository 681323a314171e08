"""The study's figures. Every function returns a `matplotlib.figure.Figure`.

Figures are built without pyplot, so they never pile up in pyplot's figure list and never show
twice in a notebook. They are `StudyFigure`s, which render themselves as PNG in Jupyter: show one
by making it the cell's last expression or with `display(fig)`; save it with `fig.savefig(path)`.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.figure import Figure

from ferlib.eval import as_numpy, normalise_rows


class StudyFigure(Figure):
    """A Figure that Jupyter shows as a PNG without any pyplot backend being active."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


def confusion_heatmap(cm, class_names: Sequence[str], title: str = "", cell_size: float = 0.6) -> Figure:
    """Row-normalised confusion matrix (rows = true class) as a heatmap annotated in percent.

    `cm` may hold counts or rows that are already normalised; rows of absent classes stay blank.
    """
    cm = normalise_rows(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {k} class names")
    side = max(3.5, cell_size * k + 1.5)
    fig = StudyFigure(figsize=(side + 0.8, side), layout="constrained")
    ax = fig.add_subplot()
    annot = np.where(np.isnan(cm), "", np.char.add(np.round(100 * np.nan_to_num(cm)).astype(int).astype(str), "%"))
    sns.heatmap(100 * cm, ax=ax, annot=annot, fmt="", vmin=0, vmax=100, cmap="Blues", square=True,
                xticklabels=list(class_names), yticklabels=list(class_names), annot_kws={"fontsize": 8},
                cbar_kws={"label": "% of true class", "shrink": 0.8})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.tick_params(axis="x", labelrotation=45)
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_title(title)
    return fig


def embedding_scatter(xy, labels, title: str = "", legend: bool = True, max_legend: int = 20,
                      point_size: float = 8.0) -> Figure:
    """2-D points coloured by a label (expression names, subject IDs...).

    Up to `max_legend` distinct labels get categorical colours and a legend (when `legend`);
    more (e.g. hundreds of identities) get a continuous colormap and no legend.
    """
    xy, labels = as_numpy(xy), as_numpy(labels)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(labels):
        raise ValueError(f"need (n, 2) points and n labels, got {xy.shape} and {len(labels)}")
    names, codes = np.unique(labels, return_inverse=True)
    fig = StudyFigure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    categorical = len(names) <= max_legend
    if categorical:
        palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
        for i, name in enumerate(names):
            mask = codes == i
            ax.scatter(xy[mask, 0], xy[mask, 1], s=point_size, color=palette(i), label=str(name), linewidths=0)
        if legend:
            ax.legend(markerscale=2, fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:  # spread neighbouring label indices around the colormap so nearby clusters differ
        hues = (codes * 0.6180339887) % 1.0
        ax.scatter(xy[:, 0], xy[:, 1], s=point_size, c=colormaps["turbo"](hues), linewidths=0)
        ax.text(0.99, 0.01, f"{len(names)} labels, one colour each", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return fig


def to_display_image(image, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """HxW (grey) or HxWx3 uint8 from uint8/float, HWC or CHW, 1 or 3 channels.

    Float images are mapped from `value_range` (e.g. (-1, 1) for tanh outputs) and clipped.
    """
    a = as_numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"an image must be HxW, HxWxC or CxHxW with C in (1, 3); got shape {a.shape}")
    if a.dtype != np.uint8:
        lo, hi = value_range
        a = np.clip((a.astype(np.float64) - lo) / (hi - lo), 0, 1)
        a = np.round(255 * a).astype(np.uint8)
    return a


def image_grid(images, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
               ncols: int | None = None, title: str = "", cell_size: float = 1.4,
               value_range: tuple[float, float] = (0.0, 1.0)) -> Figure:
    """Images in a grid. `images`: a list of rows (each a list of images), or a flat sequence /
    an (N, ...) array laid out `ncols` per row (default: len(col_labels), else
    ceil(N / len(row_labels)), else up to 8). Grey or RGB, uint8 or float (see `to_display_image`)."""
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], (list, tuple)):
        rows = [list(r) for r in images]
    else:
        flat = list(images)
        if ncols is None:
            ncols = (len(col_labels) if col_labels else
                     math.ceil(len(flat) / len(row_labels)) if row_labels else min(8, len(flat)))
        rows = [flat[i:i + ncols] for i in range(0, len(flat), ncols)]
    nrows, ncols = len(rows), max(len(r) for r in rows)
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"{len(row_labels)} row labels for {nrows} rows")
    if col_labels is not None and len(col_labels) != ncols:
        raise ValueError(f"{len(col_labels)} column labels for {ncols} columns")
    fig = StudyFigure(figsize=(cell_size * ncols + (0.8 if row_labels else 0), cell_size * nrows + (0.4 if title else 0)),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r in range(nrows):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(rows[r]):
                image = to_display_image(rows[r][c], value_range)
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
            if r == 0 and col_labels is not None:
                ax.set_title(str(col_labels[c]), fontsize=9)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[r]), fontsize=9, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    return fig


def show_image(image, title: str = "", width: float = 12.0) -> Figure:
    """One image (e.g. a SynthFER mosaic) as a figure without axes, `width` inches wide."""
    image = to_display_image(image)
    h, w = image.shape[:2]
    fig = StudyFigure(figsize=(width, width * h / w), layout="constrained")
    ax = fig.subplots()
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def training_curves(record: dict) -> Figure:
    """Training losses and validation metrics per epoch from a run record; the kept epoch dashed."""
    history = pd.DataFrame(record["history"])
    fig = StudyFigure(figsize=(9, 3.4), layout="constrained")
    loss_ax, val_ax = fig.subplots(1, 2)
    for column in [c for c in history.columns if c.startswith("train_")]:
        loss_ax.plot(history["epoch"], history[column], marker=".", label=column.removeprefix("train_"))
    if "val_loss" in history:
        loss_ax.plot(history["epoch"], history["val_loss"], marker=".", linestyle=":", label="val loss")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="losses")
    loss_ax.legend(fontsize=8, frameon=False)
    for column, label in (("val_acc", "val accuracy"), ("val_macro_acc", "val mean per-class acc")):
        if column in history:
            val_ax.plot(history["epoch"], history[column], marker=".", label=label)
    val_ax.set(xlabel="epoch", ylabel="accuracy", title="validation", ylim=(0, 1))
    best = record.get("best_epoch")
    if best is not None:
        for ax in (loss_ax, val_ax):
            ax.axvline(best, color="grey", linestyle="--", linewidth=1, label="kept epoch" if ax is val_ax else None)
    val_ax.legend(fontsize=8, frameon=False)
    fig.suptitle(record.get("run_name", ""))
    return fig


def fold_bar(table: pd.DataFrame, value: str = "mean", low: str = "ci95_low", high: str = "ci95_high",
             reference: str | None = None, title: str = "", ylabel: str = "test accuracy") -> Figure:
    """One bar per row of `table` (index = method names) with its 95% interval as error bars;
    an optional `reference` column (e.g. the paper's reported number) drawn as a black tick."""
    names = [str(i) for i in table.index]
    mean = table[value].to_numpy(dtype=float)
    err = None
    if low in table and high in table:
        lower = np.nan_to_num(mean - table[low].to_numpy(dtype=float))
        upper = np.nan_to_num(table[high].to_numpy(dtype=float) - mean)
        err = np.vstack([lower, upper])
    fig = StudyFigure(figsize=(max(3.5, 0.8 * len(names) + 1.5), 3.5), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x, mean, yerr=err, capsize=4, color=colormaps["tab10"](0), alpha=0.85, label=value)
    if reference is not None and reference in table:
        ax.scatter(x, table[reference].to_numpy(dtype=float), marker="_", s=600, color="black", zorder=3,
                   label=reference)
        ax.legend(fontsize=8, frameon=False)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(ylabel=ylabel, title=title)
    return fig


def fold_curves(frame: pd.DataFrame, metric: str = "val_acc", titles: dict[str, str] | None = None,
                dataset: str | None = None) -> Figure:
    """The plateau, shown: `metric` per epoch of every fold's record (one line each), one panel per
    method, each fold's kept epoch marked with a dot; failed folds dashed. `frame` is
    `ferlib.study.results.study_frame`'s (its `record` column holds the curves)."""
    rows = frame if dataset is None else frame[frame["dataset"] == dataset]
    methods = list(dict.fromkeys(rows["method"]))
    fig = StudyFigure(figsize=(3.6 * max(1, len(methods)), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(1, len(methods)), sharey=True, squeeze=False)[0])
    for ax, method in zip(axes, methods):
        for _, row in rows[rows["method"] == method].sort_values("fold").iterrows():
            history = pd.DataFrame(row["record"]["training"]["history"])
            colour = colormaps["tab10"](int(row["fold"]) % 10)
            style = "-" if row["status"] == "ok" else "--"
            ax.plot(history["epoch"], history[metric], style, color=colour, linewidth=1, alpha=0.8)
            best = history[history["epoch"] == row["best_epoch"]]
            ax.plot(best["epoch"], best[metric], "o", color=colour, markersize=4)
        ax.set(title=(titles or {}).get(method, method), xlabel="epoch", ylim=(0, 1))
    axes[0].set_ylabel(metric.replace("_", " "))
    if dataset:
        fig.suptitle(f"{dataset}: {metric.replace('_', ' ')} of every fold (dot: the kept epoch)")
    return fig


def history_panels(histories: dict, columns: Sequence[str], title: str = "",
                   labels: dict[str, str] | None = None) -> Figure:
    """One panel per history column (`columns`, e.g. a GAN's losses), one line per run of `histories`
    ({name, e.g. "fold 3": list of per-epoch rows with "epoch"}): the plateau of a run without a
    validation metric, shown."""
    fig = StudyFigure(figsize=(3.2 * len(columns), 2.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(columns), squeeze=False)[0])
    for ax, column in zip(axes, columns):
        for k, (name, rows) in enumerate(histories.items()):
            history = pd.DataFrame(rows)
            if column in history:
                ax.plot(history["epoch"], history[column], color=colormaps["tab10"](k % 10), linewidth=1,
                        alpha=0.8, label=str(name))
        ax.set(title=(labels or {}).get(column, column), xlabel="epoch")
    axes[-1].legend(fontsize=7, frameon=False, loc="upper right")
    if title:
        fig.suptitle(title)
    return fig


def association_graph(images, adjacency, labels: Sequence[str], predicted: Sequence[str] | None = None,
                      title: str = "", min_weight: float = 0.05) -> Figure:
    """EAN's Fig. 1: faces of one batch on a circle, a line between two faces for each association
    coefficient A(i, j) >= `min_weight`, its width and opacity the coefficient, the coefficient written
    at the line's middle. Under each face its label (and the prediction made with the graph)."""
    a = as_numpy(adjacency).astype(float)
    n = len(images)
    if a.shape != (n, n):
        raise ValueError(f"adjacency of shape {a.shape} for {n} images")
    angles = np.pi / 2 - 2 * np.pi * np.arange(n) / n
    xy = np.stack([np.cos(angles), np.sin(angles)], 1)
    fig = StudyFigure(figsize=(7.5, 7.5), layout="constrained")
    ax = fig.add_subplot()
    for i in range(n):
        for j in range(i + 1, n):
            w = float(a[i, j])
            if w >= min_weight:
                (x0, y0), (x1, y1) = xy[i], xy[j]
                ax.plot([x0, x1], [y0, y1], color="tab:blue", lw=0.5 + 3 * w, alpha=0.2 + 0.7 * w, zorder=1)
                ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{w:.2f}", fontsize=7, ha="center", va="center",
                        color="tab:blue", zorder=2, bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))
    size = 0.22
    for k in range(n):
        image = to_display_image(images[k])
        x, y = xy[k]
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255,
                  extent=(x - size, x + size, y - size, y + size), zorder=3)
        text = labels[k] if predicted is None else f"{labels[k]}\n(graph: {predicted[k]})"
        ax.text(x, y - size - 0.05, text, ha="center", va="top", fontsize=8, zorder=4)
    ax.set_xlim(-1.4, 1.4)
    ax.set_ylim(-1.5, 1.35)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def grouped_bars(table: pd.DataFrame, groups: Sequence[str], title: str = "", ylabel: str = "",
                 ylim: tuple[float, float] | None = None) -> Figure:
    """One bar per (row, column in `groups`) of `table`, grouped by column, a colour per row (its index)."""
    fig = StudyFigure(figsize=(1.6 + 1.5 * len(groups), 3.6), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(table))
    for k, (name, row) in enumerate(table.iterrows()):
        ax.bar(np.arange(len(groups)) + (k - (len(table) - 1) / 2) * width, [row[g] for g in groups], width,
               label=str(name))
    ax.set_xticks(np.arange(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return fig
