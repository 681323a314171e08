"""SCN: the rank regularisation and the relabelling on hand-built cases, the logit weighting, and the
label table that relabelling changes from `relabel_epoch` on (and only then)."""

import pytest
import torch

from ferlib.engine import Precision
from ferlib.errors import FerlibError
from ferlib.models.scn import SCN, SCNTask, rank_regularisation, relabel

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rank_regularisation_by_hand():
    # beta 0.7 of 5: the top 3 (mean 0.8) against the other 2 (mean 0.15): 0.65 apart, beyond the margin
    assert rank_regularisation(torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7]), 0.7, 0.15).item() == 0.0
    # beta 0.5 of 4: top 2 mean 0.5, bottom 2 mean 0.475: 0.15 - 0.025
    assert rank_regularisation(torch.tensor([0.5, 0.45, 0.5, 0.5]), 0.5, 0.15).item() == pytest.approx(0.125)
    with pytest.raises(FerlibError, match="both groups"):
        rank_regularisation(torch.tensor([0.5]), 0.7)


def test_rank_regularisation_pushes_the_groups_apart():
    w = torch.tensor([0.5, 0.45, 0.5, 0.5], requires_grad=True)
    rank_regularisation(w, 0.5, 0.15).backward()
    ordered = torch.argsort(w.detach(), descending=True)
    assert (w.grad[ordered[:2]] < 0).all() and (w.grad[ordered[2:]] > 0).all()


def test_relabel_by_hand():
    # softmax rows: [0.7, 0.2, 0.1] label 1 (0.7 - 0.2 = 0.5 > 0.2: relabel to 0); [0.45, 0.35, 0.2] label 1
    # (0.1: keep); [0.6, 0.3, 0.1] label 0 (its own class is the max: keep)
    p = torch.tensor([[0.7, 0.2, 0.1], [0.45, 0.35, 0.2], [0.6, 0.3, 0.1]])
    new, changed = relabel(p.log(), torch.tensor([1, 1, 0]), margin=0.2)
    assert new.tolist() == [0, 1, 0] and changed.tolist() == [True, False, False]


def make_task(relabel_epoch=2):
    model = SCN(3, train_index=torch.tensor([10, 11, 12, 13, 14, 15]), train_labels=torch.tensor([0, 1, 2, 0, 1, 2]),
                width_divisor=16)
    task = SCNTask(model, lr=0.01, lr_step=10, relabel_epoch=relabel_epoch)
    task.amp = Precision(torch.device("cpu"), False)
    return task


def test_logits_are_weighted_by_the_importance_and_prediction_uses_fc():
    task = make_task()
    x = torch.randn(6, 3, 48, 48)
    task.model.eval()
    weights, logits, features = task.model(x)
    assert weights.shape == (6, 1) and ((weights > 0) & (weights < 1)).all()
    assert torch.allclose(logits, weights * task.model.fc(features))
    predicted, _, _ = task.predict({"image": x, "label": None})
    assert torch.equal(predicted.argmax(1), logits.argmax(1))


def test_relabelling_starts_at_its_epoch_and_persists_in_the_label_table():
    task = make_task(relabel_epoch=2)
    batch = {"image": torch.randn(6, 3, 48, 48), "label": torch.zeros(6, dtype=torch.long),
             "index": torch.tensor([10, 11, 12, 13, 14, 15])}
    task.model.train()
    # a head that makes class 2 near-certain for every image: every label but the 2s is relabelled
    with torch.no_grad():
        task.model.fc.weight.zero_()
        task.model.fc.bias.copy_(torch.tensor([0.0, 0.0, 50.0]))
        task.model.importance[0].weight.zero_()
        task.model.importance[0].bias.fill_(5.0)
    task.optimizers["net"].param_groups[0]["lr"] = 0.0     # keep the head as set
    logged = task.train_step(batch, 0)                     # epoch 1: no relabelling yet
    assert logged["relabelled"] == 0 and task.model.labels[10:16].tolist() == [0, 1, 2, 0, 1, 2]
    task.schedulers["net"].step()                          # epoch 2
    logged = task.train_step(batch, 1)
    assert logged["relabelled"] == 4 and task.model.labels[10:16].tolist() == [2] * 6
    assert task.model.given[10:16].tolist() == [0, 1, 2, 0, 1, 2]     # the labels as given are kept
    assert "labels" in task.model.state_dict()              # checkpointed: a resumed run keeps them


def test_a_batch_image_outside_the_training_table_is_refused():
    task = make_task()
    with pytest.raises(FerlibError, match="label table"):
        task.model.current_labels(torch.tensor([3]))


def test_relabel_summary_scores_the_relabelling_against_the_clean_labels():
    from types import SimpleNamespace

    import pandas as pd

    from ferlib.experiments.ean import relabel_summary
    classes = ("a", "b", "c")
    model = SCN(3, train_index=torch.tensor([0, 1, 2, 3]), train_labels=torch.tensor([0, 2, 2, 1]), width_divisor=16)
    # clean labels a b c b (0 1 2 1), given 0 2 2 1: row 1 is the one flipped label
    model.labels.copy_(torch.tensor([1, 1, 2, 1]))   # SCN changed row 0 (clean -> wrong) and row 1 (noisy -> clean)
    manifest = pd.DataFrame({"label": ["a", "b", "c", "b"]}, index=[0, 1, 2, 3])
    fold = SimpleNamespace(task=SimpleNamespace(model=model),
                           data=SimpleNamespace(train=SimpleNamespace(index=[0, 1, 2, 3]), manifest=manifest,
                                                classes=classes))
    assert relabel_summary(fold) == {"changed": 2, "changed_to_clean": 1, "noisy": 1, "noisy_repaired": 1,
                                     "clean_corrupted": 1, "train_images": 4}
