"""Source and target faces for expression transfer (TER-GAN): every training sample x_s also brings a
target x_t, a face of one of the same split's people, drawn anew each epoch.

    pairs = WithTargets(fold.train, seed=0)       # sample i: fold.train[i] | {"target": {...}}

The target of sample i in epoch e is sample `permutation(seed, e)[i]` of the same dataset, so every
face is a target once per epoch, the pairing is a function of (seed, epoch) and a resumed run pairs
as an uninterrupted one (the engine calls `set_epoch` before each epoch). A target's "identity" is its
person's class among the people of this dataset (`identity_classes`): what D^i learns to name.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from ferlib.errors import FerlibError


def identity_classes(subjects) -> tuple[np.ndarray, int]:
    """(identity class 0..P-1 of each sample, P): the samples' subject indices renumbered among
    the people present."""
    subjects = np.asarray(subjects)
    people, classes = np.unique(subjects, return_inverse=True)
    return classes.astype(np.int64), len(people)


class WithIdentity(Dataset):
    """A dataset whose samples also carry "identity": their person's class among its people."""

    def __init__(self, source: Dataset):
        self.source = source
        self.identity, self.num_identities = identity_classes(source.subjects)
        for name in ("labels", "subjects", "index", "subject_names", "classes"):
            if hasattr(source, name):
                setattr(self, name, getattr(source, name))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        return self.source[i] | {"identity": int(self.identity[i])}


class WithTargets(WithIdentity):
    """A dataset whose sample i also carries a target face under "target": image, identity, label, index."""

    def __init__(self, source: Dataset, seed: int = 0):
        if len(source) < 2:
            raise FerlibError(f"expression transfer needs at least 2 training faces to pair; got {len(source)}")
        super().__init__(source)
        self.seed = seed
        self.set_epoch(1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.source))

    def target_of(self, i: int) -> int:
        return int(self.order[i])

    def __getitem__(self, i: int) -> dict:
        j = self.target_of(i)
        target = self.source[j]
        return self.source[i] | {"identity": int(self.identity[i]),
                                 "target": {"image": target["image"], "identity": int(self.identity[j]),
                                            "label": target["label"], "index": target["index"]}}
