"""Scoring transfers against SynthFER's ground truth: the pairs, SSIM, and that the scorer ranks an oracle,
a copier and the references as it must."""

import numpy as np
import pytest
import torch

from ferlib.data.registry import load_dataset
from ferlib.errors import FerlibError
from ferlib.experiments import transfer_truth as tt

SIZE = 32


@pytest.fixture(scope="module")
def loaded():
    return load_dataset("synth-oulu", None, size=SIZE, scale=0.05, seed=0, paper="tergan")


def last_frames(loaded):
    m = loaded.manifest
    return m[(m["role"] == "apex") & (m["label"] != "neutral")].groupby("sequence").tail(1)


def test_pairs_follow_their_kind_and_are_seeded(loaded):
    rows = last_frames(loaded)
    m = loaded.manifest
    transfer = tt.draw_pairs(rows, 20, "transfer", seed=1)
    editing = tt.draw_pairs(rows, 20, "editing", seed=1)
    assert len(transfer) == 20 and len(editing) == 20
    for s, t in transfer:
        assert m.loc[s, "subject"] != m.loc[t, "subject"] and m.loc[s, "label"] != m.loc[t, "label"]
    for s, t in editing:
        assert m.loc[s, "subject"] == m.loc[t, "subject"] and m.loc[s, "label"] != m.loc[t, "label"]
    assert tt.draw_pairs(rows, 20, "transfer", seed=1) == transfer != tt.draw_pairs(rows, 20, "transfer", seed=2)
    one_person = rows[rows["subject"] == rows["subject"].iloc[0]]
    with pytest.raises(FerlibError, match="no transfer pair"):
        tt.draw_pairs(one_person, 5, "transfer")


def test_ssim_is_one_for_identical_images_and_falls_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert np.allclose(tt.ssim(x, x), 1.0)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    noisier = (x + 0.8 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert (tt.ssim(x, noisier) < tt.ssim(x, noisy)).all() and (tt.ssim(x, noisy) < 0.99).all()


class Answers(torch.nn.Module):
    """A stand-in generator: answers with x_t, x_s, or with whatever `oracle` holds (in pair order)."""

    def __init__(self, mode, oracle=None):
        super().__init__()
        self.mode, self.oracle, self.served = mode, oracle, 0

    def transfer(self, x_s, x_t):
        if self.mode == "oracle":
            out = self.oracle[self.served:self.served + len(x_s)]
            self.served += len(x_s)
            return out
        return x_t if self.mode == "target" else x_s


def test_the_scorer_ranks_an_oracle_first_and_a_copier_as_its_reference(loaded):
    pairs = tt.draw_pairs(last_frames(loaded), 12, "transfer", seed=0)
    truth = tt.model_inputs(tt.truth_of(loaded.synth, pairs), SIZE)
    oracle = tt.score(Answers("oracle", truth), loaded, pairs, SIZE, batch=5)["scores"]["TER-GAN"]
    assert oracle["l1"] == pytest.approx(0.0, abs=1e-7) and oracle["ssim"] == pytest.approx(1.0)
    copier = tt.score(Answers("target").train(), loaded, pairs, SIZE)
    assert copier["scores"]["TER-GAN"] == copier["scores"]["copy x_t"]
    assert tt.score(Answers("source"), loaded, pairs, SIZE)["scores"]["TER-GAN"] == copier["scores"]["copy x_s"]
    # the truth is the target person: copying the target is far closer to it than copying the source
    assert copier["scores"]["copy x_t"]["l1"] < 0.5 * copier["scores"]["copy x_s"]["l1"]
    assert copier["pairs"] == 12
    # where between the inputs an answer lies: copying x_t is 0 from x_t, the blend halfway
    scores = copier["scores"]
    assert scores["copy x_t"]["l1 to x_t"] == 0 and scores["copy x_s"]["l1 to x_s"] == 0
    assert scores["blend"]["l1 to x_t"] == pytest.approx(scores["copy x_s"]["l1 to x_t"] / 2, rel=1e-5)
    table = tt.scores_table({"transfer": copier})
    assert list(table["answer"]) == ["TER-GAN", "copy x_t", "copy x_s", "blend", "truth"]


def test_the_grids_put_every_source_on_every_target_with_its_truth(loaded):
    rows = last_frames(loaded)
    m = loaded.manifest
    sources, targets = tt.grid_rows(rows, "transfer", seed=0)
    assert 1 <= len(targets) <= 3 and len(sources) == rows["label"].nunique()
    assert sorted(m.loc[sources, "label"]) == sorted(rows["label"].unique())
    assert not set(m.loc[sources, "subject"]) & set(m.loc[targets, "subject"])
    images = tt.grid(Answers("target"), loaded, sources, targets, SIZE)
    assert images["generated"].shape == images["truth"].shape == (len(targets), len(sources), 3, SIZE, SIZE)
    for k, t in enumerate(targets):               # a copier of x_t answers target k in every row-k cell
        assert torch.equal(images["generated"][k], images["target"][k].expand(len(sources), -1, -1, -1))
        for j, s in enumerate(sources):
            assert torch.equal(images["truth"][k, j], tt.model_inputs(tt.truth_of(loaded.synth, [(s, t)]), SIZE)[0])
    model = Answers("source").train()
    copies = tt.grid(model, loaded, sources, targets, SIZE)  # a copier of x_s: column j is source j
    assert model.training                                    # its mode back after the eval-mode pass
    for k in range(len(targets)):
        assert torch.equal(copies["generated"][k], copies["source"])
    with pytest.raises(FerlibError, match="grid kind"):
        tt.grid_rows(rows, "swap")
    edit_sources, (person,) = tt.grid_rows(rows, "editing", seed=0)
    assert set(m.loc[edit_sources, "subject"]) == {m.loc[person, "subject"]}
    assert m.loc[person, "label"] not in set(m.loc[edit_sources, "label"]) and len(edit_sources) >= 1


def test_a_real_dataset_has_no_truth_and_says_so(loaded):
    import dataclasses
    real_like = dataclasses.replace(loaded, synth=None)
    with pytest.raises(FerlibError, match="can only be looked at"):
        tt.score(Answers("target"), real_like, [(0, 1)], SIZE)


def test_judges_read_expression_and_identity_and_score_the_answers(loaded):
    m = loaded.manifest
    rows = m[(m["label"] != "neutral") & (m["role"] == "apex")]
    images = tt.model_inputs(loaded.images[rows.index.to_numpy()], SIZE)
    classes = sorted(rows["label"].unique())
    expression = tt.fit_judge(images, rows["label"].map(classes.index).to_numpy(), len(classes))
    people = sorted(rows["subject"].unique())
    identity = tt.fit_judge(images, rows["subject"].map(people.index).to_numpy(), len(people))
    pairs = tt.draw_pairs(last_frames(loaded), 30, "transfer", seed=0)
    judges = {"expression": (expression, [classes.index(m.loc[s, "label"]) for s, _ in pairs]),
              "identity": (identity, [people.index(m.loc[t, "subject"]) for _, t in pairs])}
    scores = tt.score(Answers("target"), loaded, pairs, SIZE, judges=judges)["scores"]
    # copying the target keeps the person and never the (different) source expression, copying the source
    # the reverse; the truth is the target person (what its expression reads as depends on how well a judge
    # trained on 4 people generalises: the experiment reports it beside the answers)
    assert scores["copy x_t"]["identity judge %"] >= scores["copy x_s"]["identity judge %"] + 40
    assert scores["copy x_s"]["expression judge %"] >= scores["copy x_t"]["expression judge %"] + 40
    assert scores["truth"]["identity judge %"] >= scores["copy x_s"]["identity judge %"] + 40
    assert scores["TER-GAN"] == scores["copy x_t"]              # this stand-in generator copies the target
