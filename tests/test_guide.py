"""The "Bring your own data" page's command lines, generated from the protocols."""

from ferlib.data import guide


def test_a_pretraining_only_dataset_points_the_chapter_at_it_as_pretrain_root():
    assert guide.pretrained_by("bu4dfe", "tergan") == "oulu"
    assert guide.notebook_command("bu4dfe", "tergan") == (
        "papermill notebooks/tergan.ipynb -p dataset oulu -p data_root ~/ferlib-cache/oulu-tergan "
        "-p pretrain_root ~/ferlib-cache/bu4dfe-tergan")
    assert guide.notebook_command("oulu", "tergan") == \
        "papermill notebooks/tergan.ipynb -p dataset oulu -p data_root ~/ferlib-cache/oulu-tergan"
    # EIFN's CK+ and Oulu-CASIA pre-train each other: each is a chapter dataset of its own
    assert guide.pretrained_by("ckplus", "eifn") is None and guide.pretrained_by("oulu", "eifn") is None
    assert "-p dataset ckplus" in guide.notebook_command("ckplus", "eifn")
