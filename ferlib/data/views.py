"""Views of the same people for EAN's invariant feature generator (Sec. 2.2): frontal, profile,
frontal occluded and frontal relit images of one identity, from a population that is not the FER
data's.

    views = load_views("synth-pairs", size=48, channels=3)       # SynthFER's `pairs` preset
    views = load_views("cfp", data_root=..., size=48, channels=1)  # CFP (Sengupta et al.), real

`ViewsData` holds the images and one row per image: subject, view, expression label (SynthFER's
pairs pose one expression per group of four views; CFP has none: ""), group (the four views of one
expression of one person; CFP: all of one person's images, frontal and profile). `split_people` keeps some people out of training
for the invariance measurement (Fig. 4) and the identity probe. `WithViews` pairs each FER training
image with one view image, so a mini-batch of the FER data carries a mini-batch of views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ferlib.data.transforms import make_transform, to_model_input
from ferlib.errors import FerlibError

VIEWS = ("frontal", "profile", "occluded", "relit")
VIEW_SETS = ("synth-pairs", "cfp")


@dataclass
class ViewsData:
    images: np.ndarray          # (N, H, W, C) uint8
    manifest: pd.DataFrame      # subject, view, label ("" when unknown), group; row i = image i
    source: str

    def subset(self, subjects) -> "ViewsData":
        keep = self.manifest["subject"].isin(set(subjects)).to_numpy()
        return ViewsData(self.images[keep], self.manifest[keep].reset_index(drop=True), self.source)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Grey images repeated to RGB, RGB ones averaged to grey (the FER data's channels)."""
    if images.shape[-1] == channels:
        return images
    if images.shape[-1] == 1:
        return np.repeat(images, channels, axis=-1)
    return images.mean(axis=-1, keepdims=True).round().astype(np.uint8)


def load_views(name: str = "synth-pairs", data_root: str | None = None, size: int = 48, channels: int = 3,
               scale: float = 1.0, seed: int = 0) -> ViewsData:
    """The views set `name` at `size` px with `channels` channels (see the module docstring)."""
    if name == "synth-pairs":
        from ferlib.data.registry import load_dataset
        loaded = load_dataset(name, None, size=size, scale=scale, seed=seed)
        m = loaded.manifest
        if "view" not in m.columns:
            raise FerlibError("SynthFER's pairs preset has no `view` column: the renderer is older than this code")
        manifest = pd.DataFrame({"subject": m["subject"].astype(str).to_numpy(), "view": m["view"].astype(str).to_numpy(),
                                 "label": m["label"].astype(str).to_numpy(), "group": m["sequence"].astype(str).to_numpy()})
        images, source = loaded.images, loaded.source
    elif name == "cfp":
        if data_root is None:
            raise FerlibError("views='cfp' needs views_root: the folder holding cfp-dataset/ (Sengupta et al., "
                              "request it at http://www.cfpw.io/); or use views='synth-pairs'")
        from ferlib.data.adapters import cfp
        images, m = cfp.load(data_root, size, greyscale=channels == 1)[:2]
        manifest = pd.DataFrame({"subject": m["subject"].astype(str).to_numpy(), "view": m["view"].astype(str).to_numpy(),
                                 "label": "", "group": m["subject"].astype(str).to_numpy()})   # CFP: all of a person
        source = f"CFP from {data_root}, {size} px"
    else:
        raise FerlibError(f"views set {name!r}: choose one of {', '.join(VIEW_SETS)}")
    bad = sorted(set(manifest["view"]) - set(VIEWS))
    if bad:
        raise FerlibError(f"views set {name}: unknown views {bad}; expected {', '.join(VIEWS)}")
    return ViewsData(convert_channels(images, channels), manifest, source)


def split_people(views: ViewsData, held_out: float = 0.2, seed: int = 0) -> tuple[ViewsData, ViewsData]:
    """(training people, held-out people): a seeded share of the people never seen in training."""
    people = np.array(sorted(views.manifest["subject"].unique()))
    if len(people) < 3:
        raise FerlibError(f"the views set has {len(people)} people: at least 3 are needed (2 to train on, 1 held out)")
    order = np.random.default_rng(seed).permutation(len(people))
    n_out = min(len(people) - 2, max(1, round(held_out * len(people))))
    out = set(people[order[:n_out]])
    return views.subset([p for p in people if p not in out]), views.subset(sorted(out))


class ViewsDataset(Dataset):
    """The views as samples: image, identity (class among this set's people), frontal / profile flags."""

    def __init__(self, views: ViewsData, transform=None):
        self.views, self.transform = views, transform
        m = views.manifest
        self.people = sorted(m["subject"].unique())
        person = {p: i for i, p in enumerate(self.people)}
        self.identity = np.array([person[s] for s in m["subject"]], dtype=np.int64)
        self.frontal = (m["view"] == "frontal").to_numpy()
        self.profile = (m["view"] == "profile").to_numpy()

    def __len__(self) -> int:
        return len(self.identity)

    def __getitem__(self, i: int) -> dict:
        image = torch.from_numpy(np.ascontiguousarray(self.views.images[i])).permute(2, 0, 1)
        return {"image": to_model_input(image) if self.transform is None else self.transform(image),
                "identity": int(self.identity[i]), "frontal": bool(self.frontal[i]), "profile": bool(self.profile[i])}


class WithViews(Dataset):
    """A FER training set whose sample i also carries a view image, under "views": each FER mini-batch
    brings as many view images. The views are dealt in passes: pass c is a permutation drawn from
    (seed, c), and epoch e's samples take the next len(fer) views of the sequence of passes, so every view
    is used once per pass whichever set is larger. `set_epoch` (called by the engine before each epoch)
    makes the pairing a function of the epoch: a resumed run pairs as an uninterrupted one."""

    def __init__(self, fer: Dataset, views: ViewsDataset, seed: int = 0):
        self.fer, self.views, self.seed = fer, views, seed
        for name in ("labels", "subjects", "index", "subject_names", "classes"):
            if hasattr(fer, name):
                setattr(self, name, getattr(fer, name))
        self.passes: dict[int, np.ndarray] = {}
        self.set_epoch(1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def view_of(self, i: int) -> int:
        """The view paired with FER sample i in the current epoch."""
        position = (self.epoch - 1) * len(self.fer) + i
        which, offset = divmod(position, len(self.views))
        if which not in self.passes:
            self.passes = {k: v for k, v in self.passes.items() if k >= which - 1}   # keep the current two
            self.passes[which] = np.random.default_rng([self.seed, which]).permutation(len(self.views))
        return int(self.passes[which][offset])

    def __len__(self) -> int:
        return len(self.fer)

    def __getitem__(self, i: int) -> dict:
        return self.fer[i] | {"views": self.views[self.view_of(i)]}


def view_transform(size: int, train: bool):
    return make_transform("ean", train=train, size=size)
