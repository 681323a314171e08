# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The plain CNN baseline
#
# Every paper in this study claims to beat a plain CNN by dealing with identity. This chapter trains
# that plain CNN: four conv stages, global average pooling, a linear classifier, cross-entropy, no
# identity handling at all. It is also the pattern every paper's chapter follows: the data and
# protocol that ran, training with a progress bar, the results with the data that produced them,
# the figures, the identity analysis, the deviations and the cost.
#
# The question it answers for the rest of the book: how much of the subject's identity ends up in
# the features a plain expression classifier learns, and how well does it do on subjects it has
# never seen?

# %% tags=["parameters"]
dataset = "synth-ckplus"  # synth-<preset>, or a real dataset name with data_root
fold = 0                  # test fold, 0-based; the next fold validates, the other eight train
folds = ""                # "" runs `fold`; "all" runs every fold; "0,3,7" runs those
preset = "smoke"          # smoke (CPU, a minute), study (trained to its plateau) or paper (full size, GPU)
epochs = None             # None: the preset's
seed = 0
data_root = None          # root of a licensed copy of a real dataset
device = "auto"           # auto: CUDA when present, else CPU
out_dir = "results"

# %%
import time

import numpy as np
import pandas as pd
from IPython.display import display
from myst_nb import glue

from ferlib import plots
from ferlib.engine import evaluate, make_loader
from ferlib.eval import embed_2d, holdout_split, identity_probe
from ferlib.experiments import baseline
from ferlib.experiments.common import determinism_note, live_check, plan_chapter
from ferlib.labels import SHORT

pd.set_option("display.max_colwidth", None)  # tables name their data in full
started = time.perf_counter()
cfg = baseline.BaselineConfig.from_preset(preset, dataset=dataset, fold=fold, folds=folds, epochs=epochs,
                                          seed=seed, data_root=data_root, device=device, out_dir=out_dir)
plan_chapter(cfg, baseline.PAPER).show()  # a fold this protocol does not have stops here, before any training
cfg

# %% [markdown]
# ## Data
#
# The baseline protocol takes, like IF-GAN's, the last three frames of every sequence labelled with
# one of the six basic expressions, and deals the subjects into ten subject-exclusive folds (subjects
# sorted by ID, dealt in turn). For test fold *k*, fold *k*+1 selects the checkpoint and the other
# eight train. No subject is ever in two parts.

# %%
data = baseline.load(cfg)
print(f"data: {data.source}")
print(f"protocol: {data.protocol.describe()}")
print(f"{data.manifest['subject'].nunique()} subjects, {data.manifest['sequence'].nunique()} sequences, "
      f"{len(data.manifest)} images")
data.counts()

# %% [markdown]
# The last frame of each class for the five subjects with the most classes (blank where a subject
# has no sequence of that class, as in CK+):

# %%
classes_per_subject = data.manifest.groupby("subject")["label"].nunique()
subjects = sorted(classes_per_subject.sort_values(ascending=False, kind="stable").index[:5])
classes = data.protocol.classes
images = data.loaded.images
grid, pos = [], data.loaded.manifest.index.get_indexer
for s in subjects:
    rows = data.manifest[data.manifest["subject"] == s]
    for c in classes:
        hit = rows[rows["label"] == c]
        grid.append(images[pos([hit.index[-1]])[0]] if len(hit) else np.full_like(images[0], 255))
plots.image_grid(grid, row_labels=subjects, col_labels=[SHORT[c] for c in classes], ncols=len(classes))

# %% [markdown]
# ## Training
#
# Adam, cross-entropy, the study's baseline augmentation (scale, random crop, flip). The engine keeps
# the epoch with the best validation accuracy, checkpoints after every epoch (an interrupted run
# resumes when started again) and evaluates the test fold once, at the end.

# %%
# NBVAL_IGNORE_OUTPUT
result = baseline.run(cfg, data)
for f in result.folds:
    print(f"fold {f.fold}: best epoch {f.record['best_epoch']}, test accuracy {100 * f.record['test']['acc']:.1f}%, "
          f"record {cfg.out_dir}/{f.record['run_name']}/record.json")

# %% [markdown]
# Live training differs between processors in its digits (the epoch-1 loss in the 4th decimal, a test
# accuracy after 30 epochs by several points), so nbval does not compare the cells that print this
# run's numbers (they begin with `# NBVAL_IGNORE_OUTPUT`); it checks the robust facts instead:

# %%
print(live_check([f.record for f in result.folds], chance=1 / len(data.protocol.classes)))

# %%
plots.training_curves(result.folds[0].record)

# %% [markdown]
# ## Results
#
# Test accuracy on unseen subjects. There are no "reported" numbers in this chapter: each paper's
# chapter puts its own baseline's reported accuracy beside ours.

# %%
# NBVAL_IGNORE_OUTPUT
summary = result.summary.assign(method="plain CNN (baseline)", data=result.source, preset=cfg.preset)
table = summary[["method", "data", "preset", "folds", "mean", "std", "ci95_low", "ci95_high"]].copy()
for c in ["mean", "std", "ci95_low", "ci95_high"]:
    table[c] = (100 * table[c]).round(1)
glue("baseline_acc", float(table["mean"].iloc[0]), display=False)
table.rename(columns={"mean": "test acc. % (mean)", "std": "std", "ci95_low": "95% CI low",
                      "ci95_high": "95% CI high"})

# %% [markdown]
# The baseline reaches {glue:text}`baseline_acc:.1f`% on the held-out subjects of this data.
# Per class, and where the errors go (rows: true class, row-normalised):

# %%
# NBVAL_IGNORE_OUTPUT
first = result.folds[0]
per_class = pd.Series(first.record["test"]["per_class_acc"]).mul(100).round(1).rename("test acc. %")
per_class.to_frame().T

# %%
plots.confusion_heatmap(first.test["confusion"], [SHORT[c] for c in classes],
                        title=f"test fold {first.fold}: {result.source}")

# %% [markdown]
# ## Identity analysis
#
# The same two views for every method in this book.
#
# **Identity-leakage probe.** A linear classifier (standardised features, logistic regression) learns to
# name the subject from the features the expression classifier uses. It is trained on some sequences of
# the training subjects and scored on their other, held-out sequences (whole sequences, so near-identical
# frames never sit on both sides). The ratio to chance says how much identity the features carry:
# 1 means none. Raw pixels are the reference: how much identity the images themselves carry to a
# linear reader. Because held-out sequences show a different expression than the training ones, a
# representation that only encodes expression scores *below* chance.

# %%
# NBVAL_IGNORE_OUTPUT
probe_rows = []
train_eval = first.data.train_eval
feats = evaluate(first.task, make_loader(train_eval, 256, shuffle=False), first.task.device)["features"]
pixels = np.stack([train_eval[i]["image"].numpy().ravel() for i in range(len(train_eval))])
subjects_tr, sequences_tr = train_eval.subjects, first.data.sequences(train_eval)
tr, te = holdout_split(subjects_tr, test_fraction=0.3, seed=cfg.seed, groups=sequences_tr)
for name, x in [("raw pixels", pixels), ("baseline features", feats)]:
    p = identity_probe(x[tr], subjects_tr[tr], x[te], subjects_tr[te], seed=cfg.seed)
    probe_rows.append({"representation": name, "probe acc. %": round(100 * p["acc"], 1),
                       "chance %": round(100 * p["chance"], 1), "ratio to chance": round(p["ratio"], 2),
                       "subjects": p["n_subjects"], "train / test images": f"{p['n_train']} / {p['n_test']}"})
probe = pd.DataFrame(probe_rows)
print(f"data: {result.source}; test fold {first.fold}")
probe

# %% [markdown]
# **t-SNE of the test subjects' features**, coloured by expression (first) and by identity (second).
# Clusters by colour in the second mean the features group images by who is in them.

# %%
xy = embed_2d(first.test["features"], method="tsne", seed=cfg.seed)
test_subjects = np.array(first.data.test.subject_names)[first.data.test.subjects]
display(plots.embedding_scatter(xy, [classes[i] for i in first.test["labels"]], title="by expression"))
plots.embedding_scatter(xy, test_subjects, title="by identity", legend=False)

# %% [markdown]
# ## Deviations
#
# - This chapter is the study's reference recipe, not a paper: the plain CNN, its widths and its
#   schedule are the study's choices. Each paper's own baseline (ResNet-101, VGG-Face, ...) is
#   configured in that paper's chapter.
# - The data is SynthFER unless `dataset` names a real dataset with `data_root`; SynthFER numbers
#   are not comparable with numbers on real data.
# - The `smoke` preset uses half the subjects of the ckplus-like preset at 48 px and a narrow network
#   so the chapter runs on a CPU in minutes; `paper` runs the whole preset at 96 px.
# - One fold runs by default; `-p folds all` runs all ten and the table reports mean, std and the
#   95% confidence interval.

# %% [markdown]
# ## Cost

# %%
# NBVAL_IGNORE_OUTPUT
n_params = sum(p.numel() for p in first.task.model.parameters())
history = pd.DataFrame(first.record["history"])
print(f"parameters: {n_params:,}")
print(f"device: {first.record['device']}")
print(f"training throughput: {history['images_per_s'].median():.0f} images/s (median over epochs)")
print(f"training wall time per fold: {first.record['wall_time_s']:.1f} s")
print(determinism_note([f.record for f in result.folds]))
print(f"chapter wall time: {time.perf_counter() - started:.1f} s")
