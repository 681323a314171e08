"""Each figure function returns a Figure with the expected axes, labels and marks, and leaks nothing."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from ferlib.plots import (confusion_heatmap, embedding_scatter, fold_bar, history_panels, image_grid, show_image,
                          to_display_image, training_curves)


@pytest.fixture(autouse=True)
def no_pyplot_leaks():
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before, "a plot function left a figure open in pyplot"


def renders(fig: Figure) -> bool:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    plt.close(fig)
    return buffer.getvalue().startswith(b"\x89PNG")


def test_confusion_heatmap_is_row_normalised_with_percent_annotations():
    counts = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    fig = confusion_heatmap(counts, ["anger", "fear", "surprise"], title="fold 0")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    assert ax.get_title() == "fold 0" and ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["anger", "fear", "surprise"]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["75%", "25%", "0%", "0%", "100%", "0%"]  # "surprise" never occurs: its row stays blank
    assert renders(fig)


def test_embedding_scatter_legend_for_few_labels_and_none_for_many():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(60, 2))
    expressions = np.array(["happiness", "sadness", "surprise"] * 20)
    fig = embedding_scatter(xy, expressions, title="by expression")
    ax = fig.axes[0]
    assert ax.get_title() == "by expression"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["happiness", "sadness", "surprise"]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 60
    assert renders(fig)

    identities = np.array([f"S{i:03d}" for i in range(60)])
    fig = embedding_scatter(torch.tensor(xy), identities, title="by identity")
    ax = fig.axes[0]
    assert ax.get_legend() is None and len(ax.collections) == 1
    assert len(np.unique(ax.collections[0].get_facecolors(), axis=0)) > 30  # a colour per identity
    assert any("60 labels" in t.get_text() for t in ax.texts)
    assert renders(fig)

    assert embedding_scatter(xy, expressions, legend=False).axes[0].get_legend() is None


def test_image_grid_takes_grey_rgb_hwc_chw_uint8_and_float():
    grey_hw = np.full((8, 8), 200, np.uint8)
    grey_chw = torch.zeros(1, 8, 8, dtype=torch.uint8)
    rgb_hwc = np.zeros((8, 8, 3), np.uint8)
    rgb_chw_float = torch.full((3, 8, 8), 0.5)
    fig = image_grid([[grey_hw, grey_chw], [rgb_hwc, rgb_chw_float]], row_labels=["grey", "rgb"],
                     col_labels=["a", "b"], title="inputs")
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"]
    assert [fig.axes[i].get_ylabel() for i in (0, 2)] == ["grey", "rgb"]
    assert fig.axes[0].images[0].get_array().shape == (8, 8)
    assert fig.axes[3].images[0].get_array().shape == (8, 8, 3)
    assert fig.axes[3].images[0].get_array()[0, 0, 0] == 128  # 0.5 in [0, 1] -> 128
    assert renders(fig)


def test_image_grid_lays_out_a_flat_batch():
    batch = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    fig = image_grid(batch, row_labels=["x", "y"])  # 6 images, 2 rows -> 3 columns
    assert len(fig.axes) == 6 and all(len(ax.images) == 1 for ax in fig.axes)
    fig = image_grid(list(batch[:5]), ncols=3)  # the last cell stays empty
    assert len(fig.axes) == 6 and len(fig.axes[5].images) == 0
    with pytest.raises(ValueError, match="3 column labels for 2 columns"):
        image_grid(batch[:4], ncols=2, col_labels=["a", "b", "c"])
    plt.close("all")


def test_to_display_image_maps_float_ranges():
    assert to_display_image(np.array([[-1.0, 1.0]]), value_range=(-1, 1)).tolist() == [[0, 255]]
    with pytest.raises(ValueError, match="got shape"):
        to_display_image(np.zeros((2, 4, 4, 4)))


def test_training_curves_plots_losses_and_validation_and_marks_the_kept_epoch():
    record = {"run_name": "baseline fold 0", "best_epoch": 2, "history": [
        {"epoch": e, "train_loss": 1 / e, "train_d_loss": 0.5, "val_loss": 1.2 / e, "val_acc": a, "val_macro_acc": a - 0.1}
        for e, a in ((1, 0.5), (2, 0.8), (3, 0.7))]}
    fig = training_curves(record)
    loss_ax, val_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()][:3] == ["loss", "d_loss", "val loss"]
    assert list(loss_ax.get_lines()[0].get_ydata()) == [1, 0.5, 1 / 3]
    assert list(val_ax.get_lines()[0].get_ydata()) == [0.5, 0.8, 0.7]
    assert list(val_ax.get_lines()[-1].get_xdata()) == [2, 2]  # the dashed line at the kept epoch
    assert fig.get_suptitle() == "baseline fold 0"
    assert renders(fig)


def test_fold_bar_draws_means_with_intervals_and_reference():
    table = pd.DataFrame({"mean": [0.7, 0.8], "ci95_low": [0.6, 0.75], "ci95_high": [0.8, 0.85], "paper": [0.9, 0.85]},
                         index=["baseline", "IF-GAN"])
    fig = fold_bar(table, reference="paper", title="CK+")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.7, 0.8])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["baseline", "IF-GAN"]
    assert ax.get_title() == "CK+" and ax.get_ylabel() == "test accuracy"
    assert renders(fig)


def test_figures_show_themselves_as_png_in_jupyter_without_pyplot():
    fig = confusion_heatmap(np.eye(2), ["anger", "fear"])
    assert fig._repr_png_().startswith(b"\x89PNG")
    plt.close(fig)


def test_show_image_keeps_the_mosaics_aspect_and_hides_axes():
    mosaic = np.zeros((20, 80, 1), np.uint8)  # grey, 4x wider than tall
    fig = show_image(mosaic, title="strip", width=8)
    width, height = fig.get_size_inches()
    assert (width, height) == (8, 2)
    ax = fig.axes[0]
    assert ax.get_title() == "strip" and not ax.axison
    assert ax.images[0].get_array().shape == (20, 80)
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_history_panels_draw_one_panel_per_column_and_one_line_per_run():
    runs = {"fold 0": [{"epoch": 1, "train_d": 3.0, "train_g": 1.0}, {"epoch": 2, "train_d": 2.5, "train_g": 1.2}],
            "fold 1": [{"epoch": 1, "train_d": 2.9}, {"epoch": 2, "train_d": 2.4}]}
    fig = history_panels(runs, ["train_d", "train_g"], title="stage 2", labels={"train_d": "D's loss"})
    d_axis, g_axis = fig.axes
    assert d_axis.get_title() == "D's loss" and g_axis.get_title() == "train_g"
    assert [list(line.get_ydata()) for line in d_axis.lines] == [[3.0, 2.5], [2.9, 2.4]]
    assert len(g_axis.lines) == 1                  # fold 1 logged no train_g: no line, no error
    assert [t.get_text() for t in g_axis.get_legend().get_texts()] == ["fold 0"]
