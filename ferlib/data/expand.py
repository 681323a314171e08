"""A training split expanded by its transform's variants: each (image, variant) pair once per epoch.

ADFL trains on ten crops of every aligned face and EIFN on 14 rotated and flipped copies of every
face; the papers' epochs are passes over that expanded set (and EIFN's "lr / 10 every 20 epochs" is
counted in them). Drawing one random variant per image per epoch instead makes an epoch 10x (14x)
shorter than the paper's. `ExpandedDataset` is the expanded set itself: sample i is variant
`i % K` of image `i // K` (K = the transform's `variants()`), so a shuffled pass over it (the
engine's `EpochSampler`) visits every (image, variant) pair exactly once, in random order.

    train = ExpandedDataset(fold_data.train)   # len == K * len(fold_data.train)
    fold_data = expand_fold(fold_data, cfg.expand)   # the same, on a FoldData, when the config says so
"""

from __future__ import annotations

import dataclasses

import numpy as np
from torch.utils.data import Dataset

from ferlib.data.cache import FERDataset
from ferlib.errors import FerlibError


class ExpandedDataset(Dataset):
    """`base` (a FERDataset with a training PresetTransform) with every variant of every image.

    Sample i: `base`'s sample i // K with its image made as variant i % K (and the neutral partner,
    when `base` pairs one, as the same variant), plus "variant": i % K. The per-sample arrays
    (`labels`, `subjects`, `index`) are `base`'s repeated K times, so code that reads them (identity
    classes, class counts) sees the expanded set; `subject_names`, `classes` and `cache` are `base`'s.
    """

    def __init__(self, base: FERDataset):
        transform = base.transform
        if transform is None or not hasattr(transform, "variants") or not getattr(transform, "train", False):
            raise FerlibError("ExpandedDataset needs a FERDataset with a training transform from "
                              "ferlib.data.transforms.make_transform(..., train=True)")
        self.base, self.transform = base, transform
        self.variants = transform.variants()     # FerlibError when they are not finitely many
        self.k = len(self.variants)
        self.cache, self.classes, self.pair = base.cache, base.classes, base.pair
        self.subject_names = base.subject_names
        self.labels = np.repeat(base.labels, self.k)
        self.subjects = np.repeat(base.subjects, self.k)
        self.index = np.repeat(base.index, self.k)

    @property
    def num_subjects(self) -> int:
        return self.base.num_subjects

    def __len__(self) -> int:
        return self.k * len(self.base)

    def locate(self, i: int) -> tuple[int, int]:
        """(position in `base`, variant index) of sample i."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} of an expanded set of {len(self)}")
        return divmod(int(i), self.k)

    def __getitem__(self, i: int) -> dict:
        row, variant = self.locate(i)
        base = self.base
        image = lambda position: self.transform.apply_variant(base.cache.images[position], variant)  # noqa: E731
        sample = {"image": image(base.rows[row]), "label": int(base.labels[row]),
                  "subject": int(base.subjects[row]), "index": int(base.index[row]), "variant": variant}
        if base.neutral_partner is not None:
            position = base.neutral_partner[row]
            sample["neutral"] = image(position)
            sample["neutral_index"] = int(base.cache.manifest.index[position])
        return sample


def expand_if(base: FERDataset, expand: bool) -> FERDataset | ExpandedDataset:
    """`base` expanded by its transform's variants when `expand`, else `base` (one random draw per
    image per epoch)."""
    return ExpandedDataset(base) if expand else base


def expand_fold(fold_data, expand: bool):
    """A FoldData (`ferlib.experiments.common`) with its training split expanded when `expand`; its
    validation, test and train_eval splits are untouched."""
    return dataclasses.replace(fold_data, train=ExpandedDataset(fold_data.train)) if expand else fold_data


__all__ = ["ExpandedDataset", "expand_if", "expand_fold"]
