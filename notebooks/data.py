# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Bring your own data
#
# Every number elsewhere in this book was produced on SynthFER, the embedded synthetic data, because
# the datasets the five papers used are licence-gated and cannot be shipped. If you hold a licensed
# copy of one of them, this page is how to run the study on it: who to ask for each dataset, the
# layout the study reads (your copy exactly as its owners distribute it, nothing renamed), the one
# command that prepares it for a paper, the counts that command should report, and the command that
# runs a paper's chapter on it.
#
# Preparing a dataset for a paper does three things and can be interrupted and restarted at any point:
#
# 1. **Manifest.** An adapter lists the copy (which subject, sequence, frame and label each image is)
#    and the paper's protocol picks its frames, classes and subject-exclusive folds. The counts it
#    finds are printed beside the ones the paper implies; a difference is shown, never hidden.
# 2. **Alignment.** MTCNN (the detector the papers used; its weights ship inside the
#    `facenet-pytorch` wheel, nothing is downloaded) finds the face and five landmarks, and a
#    similarity transform maps them onto the paper's face geometry. An image with no face or
#    several faces is listed in a report, never a crash.
# 3. **Cache.** The aligned faces are stored as one uint8 tensor with the manifest beside it; the
#    notebooks read that folder through `-p data_root`.
#
# The whole page is generated from `data_manifests/`, the same files the code reads, so it cannot
# drift from what the code does.

# %% tags=["parameters"]
demo_dataset = "ckplus"   # which miniature layout the demonstration below builds
demo_paper = "ifgan"      # whose protocol and face geometry it prepares for

# %%
import contextlib
import io
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from ferlib import plots
from ferlib.cli import main as ferlib_command
from ferlib.data import align, guide
from ferlib.data.layouts import build_layout
from ferlib.data.prepare import load_prepared
from ferlib.data.registry import REAL_DATASETS

pd.set_option("display.max_colwidth", None)

# %% [markdown]
# ## The datasets and who to ask
#
# None of these can be downloaded by the study: each owner licenses them to researchers, usually
# for non-commercial research and after a signed agreement.

# %%
Markdown(guide.markdown_table(guide.dataset_table().reset_index()))

# %% [markdown]
# ## Every paper's protocol, and the counts to expect
#
# One row per paper and dataset. The expected counts are the papers' own numbers (or what their
# description implies, such as 309 sequences x 3 frames = 927 images); where the papers are vague the
# protocol file's notes say what the study chose. `python -m ferlib data manifest` prints the same
# numbers beside what it finds in your copy, per class and fold.

# %%
Markdown(guide.markdown_table(guide.protocol_table()))

# %% [markdown]
# ## Dataset by dataset
#
# For each dataset: the owner, the layout the adapter expects under the folder you pass as `--root`,
# one command per paper that prepares it, and the command that runs that paper's chapter on the
# result. A chapter runs on real data with `-p dataset <name> -p data_root <cache folder>`; every
# table it prints then names that data.

# %%
for name in REAL_DATASETS:
    display(Markdown(guide.dataset_section(name)))

# %% [markdown]
# ## Alignment on real photographs
#
# The detector and the alignment are tested on real photographs that ship, offline, inside
# scikit-image: the astronaut (frontal) and the cameraman (a three-quarter view), and both rotated by
# 45 degrees. Each column is one paper's face geometry at its own size: IF-GAN 256x256 from the eyes
# and nose tip, ADFL 128x110 from five landmarks, EIFN 64x64, EAN 224x224, TER-GAN 75x75. A
# similarity transform undoes in-plane rotation and scale; it cannot undo a turned head (yaw), which
# stays visible in the cameraman's row.

# %%
alignment_examples = align.examples_on_photographs(("ifgan", "adfl", "eifn", "ean", "tergan"))
plots.image_grid([row for _, row in alignment_examples], row_labels=[name for name, _ in alignment_examples],
                 col_labels=["IF-GAN", "ADFL", "EIFN", "EAN", "TER-GAN"], title="MTCNN + similarity alignment")

# %% [markdown]
# ## Trying it without the data
#
# The study's tests build miniature copies of each layout, filled with SynthFER faces and with the
# traps real copies contain (unlabelled sequences, contempt, sequences too short for the protocol, a
# subject with no labelled sequence, a corrupt image, Windows line endings, unrelated files). The
# same builders let you try the commands before your licence arrives. Here, a miniature copy of the
# dataset named in the parameters goes through the two commands exactly as a real copy would.

# %%
workdir = Path(tempfile.mkdtemp(prefix="ferlib-byod-"))
fixture = build_layout(demo_dataset, workdir / demo_dataset)
tree = sorted(p.relative_to(fixture.root).as_posix() for p in fixture.root.rglob("*") if p.is_file())
subject = fixture.expected.get("subjects_sample") or sorted({Path(p).parts[1] for p in tree if len(Path(p).parts) > 2})[1]
print(f"{len(tree)} files in the miniature {demo_dataset} layout; those of subject {subject}:")
print("\n".join("  " + p for p in tree if f"/{subject}/" in f"/{p}"))


# %%
def run(*argv: str) -> None:
    """Run `python -m ferlib ...` in this kernel and show what it prints (progress bars aside)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = ferlib_command(list(argv))
    text = out.getvalue().replace(str(workdir), "<workdir>")
    print(f"$ python -m ferlib {' '.join(argv).replace(str(workdir), '<workdir>')}\n{text}exit code {code}")


run("data", "manifest", demo_dataset, "--root", str(fixture.root), "--protocol", demo_paper)

# %% [markdown]
# The findings list what the adapter skipped and why. The tables compare with the paper's counts for
# the real dataset, so on a miniature copy every difference is large; on your copy they should be
# zero, and where they are not, the findings say which files account for it.

# %%
cache = workdir / f"{demo_dataset}-{demo_paper}-cache"
run("data", "prepare", demo_dataset, "--root", str(fixture.root), "--protocol", demo_paper, "--cache", str(cache))

# %% [markdown]
# The aligned faces as the notebooks will read them: the last selected frame of the first eight
# sequences. MTCNN was trained on photographs, and SynthFER's drawn faces often defeat it, so many of
# these frames take the fallback path (the landmarks of the nearest frame of the same sequence where a
# face was found, else a centred crop). The report lists every such image, every image that could not
# be decoded, and everything the adapter skipped; on a real copy, read it before trusting the counts.

# %%
prepared = load_prepared(cache)
shown = prepared.manifest.groupby("sequence", sort=False).tail(1).index[:8]
plots.image_grid(prepared.images[shown], col_labels=list(prepared.manifest.loc[shown, "label"]),
                 title=f"{demo_dataset} (miniature, SynthFER faces), aligned for {demo_paper}")

# %%
print(prepared.report.assign(kind=prepared.report["problem"].str.split(":").str[0])
      .groupby(["stage", "kind"]).size().to_string())
prepared.report.head(12)

# %% [markdown]
# Running the same `prepare` again does nothing (the cache is finished), and a run killed halfway
# continues where it stopped and ends with the same bytes as a clean run: the tests check both.
