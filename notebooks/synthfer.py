# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # SynthFER: the embedded dataset
#
# The seven datasets the five papers use (CK+, MMI, Oulu-CASIA, BU-3DFE, BU-4DFE, RAF-DB, FERPlus)
# are licence-gated, so this study runs everywhere on **SynthFER**: faces drawn procedurally from
# known factors. Each subject has a fixed identity (face shape, skin, hair, eyes, brows, nose,
# mouth, glasses, beard, moles) including a *resting face* (mouth-corner curvature, brow height and
# angle, eye opening, age lines) that overlaps with expressions on purpose, as real people's faces
# do: a resting down-turned mouth looks sad. Expressions are FACS-like action units (AU1 ... AU27)
# with intensities, combined into the EMFACS prototypes of the eight classes, with a small
# per-subject style. Nuisances (pose, light, occlusion, blur, noise, JPEG, clutter) are switched on
# per preset. Presets copy each real protocol's structure: subjects, classes, sequences, frames and
# class imbalance.
#
# Because the factors are known, the papers' central claim (identity confounds expression;
# removing or modelling identity helps) can be checked for real. The last section measures the
# four numbers that make SynthFER a fair testbed; they come from training, so they are records in the
# results registry (`python -m ferlib sweep --papers synthfer`), rendered here. Everything here is
# computed by `ferlib.data.synth` and `ferlib.data.validity`; nothing is typed in.

# %% tags=["parameters"]
preset = "ckplus"          # the preset whose factor distributions are shown
scale = 1.0                # its scale (1.0 = the real dataset's size)
size = 64                  # image side in pixels for the pictures
seed = 0
registry = None             # the results registry holding the validity records (None: data_manifests/reproduced)

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from ferlib import plots
from ferlib.data import synth, validity
from ferlib.labels import SHORT
from ferlib.study import records, results
from ferlib.study.sweep import VALIDITY_SEEDS

pd.set_option("display.precision", 1)




# %% [markdown]
# ## Presets
#
# Each preset at scale 1 (counted from its sequence plan; nothing is rendered). CK+'s sequences
# without an emotion label are there too (label ""). `sessions` is not a real dataset:
# it exists for the identity-confound measurement below. `pairs` holds EAN-style views of one
# identity and expression (frontal, profile, occluded, relit); `tiny` is for tests.

# %%
summary = synth.preset_summary(1.0)
summary

# %%
for name, p in synth.PRESETS.items():
    print(f"{name:9s} {p.description}")

# %% [markdown]
# ## Gallery: subjects x expressions
#
# Six subjects (rows) posing the eight classes at full intensity. Read each row against its own
# neutral face: resting offsets make some subjects look sad or angry at rest.

# %%
plots.show_image(synth.expression_grid(subjects=6, size=size, seed=seed), " | ".join(SHORT[c] for c in synth.EXPRESSIONS))

# %% [markdown]
# ## Sequences
#
# CK+-like (`ckplus`, `oulu`, `bu4dfe`): a neutral first frame rising to the apex. MMI-like
# (`mmi`): onset, apex, offset. BU-3DFE-like (`bu3dfe`): four intensity levels.

# %%
strip, roles = synth.sequence_strip("ckplus", subject=2, label="surprise", frames=10, size=size, seed=seed)
display(plots.show_image(strip, "ckplus, surprise: " + " ".join(roles)))
strip, roles = synth.sequence_strip("mmi", subject=3, label="happiness", frames=12, size=size, seed=seed)
display(plots.show_image(strip, "mmi, happiness: " + " ".join(roles)))
strip, roles = synth.sequence_strip("bu3dfe", subject=1, label="anger", frames=4, size=size, seed=seed)
plots.show_image(strip, "bu3dfe, anger, intensity levels 1-4", width=5)

# %% [markdown]
# ## Nuisances
#
# Each nuisance on its own, one subject smiling. Presets draw them with their own probabilities
# and strengths (`NuisanceConfig`): lab presets only jitter the head slightly; `rafdb` and
# `ferplus` draw everything per image.

# %%
examples = synth.nuisance_examples(size=size, seed=seed)
fig, axes = plt.subplots(2, 8, figsize=(14, 4.2))
for ax, (name, image) in zip(axes.flat, examples):
    ax.imshow(image)
    ax.set_title(name, fontsize=8)
for ax in axes.flat:
    ax.set_axis_off()
plt.show()

# %%
pairs = synth.generate("pairs", scale=0.05, size=size, seed=seed)
display(plots.show_image(synth.mosaic(pairs.images[:16], 8), "pairs: frontal, profile, occluded, relit (two expressions of one subject)"))
rafdb = synth.generate("rafdb", scale=0.1, size=size, seed=seed)
plots.show_image(synth.mosaic(rafdb.images[:16], 8), "rafdb: in-the-wild single images")

# %% [markdown]
# ## Factor distributions
#
# Class counts per preset at scale 1 (sequences for the sequence presets, images for the
# single-image ones): CK+'s, MMI's and RAF-DB's imbalance; the balanced lab designs.

# %%
presets = [n for n in synth.PRESETS if n != "tiny"]
fig, axes = plt.subplots(1, len(presets), figsize=(16, 2.8), sharey=False)
for ax, name in zip(axes, presets):
    counts = synth.PRESETS[name].class_counts(1.0)
    ax.bar([SHORT[c] for c in counts], list(counts.values()), color="tab:blue")
    ax.set_title(name, fontsize=9)
    ax.tick_params(labelsize=7, rotation=90)
plt.tight_layout()
plt.show()
pd.DataFrame({n: synth.PRESETS[n].class_counts(1.0) for n in presets}).fillna(0).astype(int)

# %% [markdown]
# The chosen preset's factors, from its manifest: AU intensities of its expressive frames, and the
# identity table's resting offsets (uniform in [-1, 1] expression units). Pose and light are shown
# for `rafdb`, where they vary.

# %%
data = synth.generate(preset, scale=scale, size=size, seed=seed)
m = data.manifest
print(f"{preset}: {len(m)} images, {m['subject'].nunique()} subjects, {m['sequence'].nunique()} sequences, "
      f"images {data.images.shape[1]}x{data.images.shape[2]}x{data.images.shape[3]}")
m["label"].replace("", "(unlabelled)").value_counts().rename("images").to_frame().T

# %%
expressive = m[m["role"] != "neutral"]
fig, axes = plt.subplots(2, 8, figsize=(16, 4), sharex=True)
for ax, column in zip(axes.flat, synth.AU_COLUMNS):
    values = expressive.loc[expressive[column] > 0, column]
    ax.hist(values, bins=20, range=(0, 1), color="tab:orange")
    ax.set_title(f"{column.upper()} ({len(values)} frames > 0)", fontsize=8)
    ax.tick_params(labelsize=7)
plt.tight_layout()
plt.show()

# %%
fig, axes = plt.subplots(1, 7, figsize=(16, 2.4))
for ax, column in zip(axes[:4], ["rest_mouth", "rest_brow", "rest_eye", "rest_lines"]):
    ax.hist(data.identities[column], bins=20, color="tab:green")
    ax.set_title(f"{preset}: {column}", fontsize=8)
r = rafdb.manifest
for ax, column in zip(axes[4:], ["yaw", "pitch", "light_strength"]):
    ax.hist(r[column], bins=30, color="tab:purple")
    ax.set_title(f"rafdb: {column}", fontsize=8)
plt.tight_layout()
plt.show()
print("rafdb occlusions:", r["occlusion"].replace("", "none").value_counts().to_dict())
print(f"rafdb: blur on {r['blur'].gt(0).mean():.0%}, noise on {r['noise'].gt(0).mean():.0%}, "
      f"JPEG on {r['jpeg_quality'].gt(0).mean():.0%}, clutter on {r['clutter'].gt(0).mean():.0%} of the images")

# %% [markdown]
# ## Validity: is SynthFER a fair testbed?
#
# A fixed reference recipe (`PlainCNN`, width 16, 32 px, Adam with cosine decay, 40 epochs, no
# augmentation or regularisation: it fits its training set) measures four numbers per seed; each
# seed renders its own data and draws its own split:
#
# - **(a) identity confound** (`gap`): accuracy on held-out *sequences* of seen subjects minus
#   accuracy on unseen subjects, on `sessions` (each subject poses each class in three sequences
#   under different light; a quarter of the subjects is unseen; each seen subject gives one whole
#   sequence per class to the test). On `ckplus` itself a held-out sequence is always a class its
#   subject never shows in training, and a model that fits its training set learns "this person is
#   never angry": that gap is negative, so `ckplus` cannot measure (a).
# - **(b) identity removal can help** (`oracle_gain`): a model fed [frame, a neutral frame of the
#   same subject from another sequence] minus the plain model, both trained on three quarters of
#   the `ckplus` subjects and tested on the rest.
# - **(c) not saturated** (`baseline_acc`): that plain subject-independent model's accuracy on `ckplus`.
# - **(d) identity is recoverable** (`probe_ratio`): a logistic-regression probe on the (a) model's
#   penultimate features names the subject of held-out sequences, over chance (1 / subjects).
#
# Frames: the last 3 of each sequence labelled with one of the six basic classes (the baseline
# protocol's rule).

# The numbers are records of the results registry, one per seed (seeds 0, 1 and 2), each written by
# `python -m ferlib sweep --papers synthfer --preset study` with the recipe below. A record made by
# other code (its training fingerprint or config differs from the current code's) is marked stale.

# %%
cfg = validity.ValidityConfig(seeds=VALIDITY_SEEDS)
pd.Series({k: str(v) for k, v in validity.config_record(cfg).items()}, name="value").to_frame()

# %%
found = list(records.iter_records(registry or records.REGISTRY, "synthfer", "study"))
missing = sorted(set(VALIDITY_SEEDS) - {r["job"]["seed"] for r in found})
if missing:
    print(f"no validity record for seed(s) {missing}: run `python -m ferlib sweep --papers synthfer --preset study`")
per_seed = pd.DataFrame([{**r["result"], "stale": results.record_staleness(r) or "no"} for r in found])
if len(per_seed):
    display(per_seed.drop(columns="seconds").set_index("seed").round(1))
    minutes = sum(r["provenance"]["wall_time_s"] for r in found) / 60
    print(f"{len(found)} records, commit(s) {', '.join(sorted({r['provenance']['git_commit'][:8] for r in found}))}, "
          f"{', '.join(sorted({r['provenance']['cpu'] for r in found}))}, "
          f"{', '.join(sorted({str(r['provenance']['threads']) for r in found}))} thread(s), {minutes:.1f} min of training")

# %%
if len(per_seed):
    table = validity.summarize(per_seed)
    display(table.round(1))
    for name, row in table.iterrows():
        verdict = "PASS" if row["passed"] else "FAIL"
        print(f"{verdict}  {row['meaning']}: mean {row['mean']:.1f} (95% CI {row['ci_low']:.1f} to "
              f"{row['ci_high']:.1f}, {row['seeds']} seeds)")
