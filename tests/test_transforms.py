"""Per-paper transform presets: geometry scaled to the size, normalisation, determinism."""

import pytest
import torch

from ferlib.data.transforms import PRESETS, PresetTransform, TransformPreset, make_transform, ten_crop, to_model_input
from ferlib.errors import FerlibError, UnknownName

torch.set_num_threads(1)


def face(c=3, h=64, w=64, seed=0):
    return torch.randint(0, 256, (c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_uint8_becomes_float_in_minus_one_to_one():
    image = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)
    out = to_model_input(image)
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([[[-1.0, 1.0], [-0.6, -0.2]]]))  # (v/255 - 0.5) / 0.5
    with pytest.raises(FerlibError, match="uint8"):
        to_model_input(image.float())


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("train", [True, False])
def test_every_preset_outputs_its_crop_at_any_size(name, train):
    for size in (64, 112):
        t = make_transform(name, train=train, size=size)
        out = t(face())
        assert out.shape == (3, *t.output_size) and out.shape[1] == size
        assert out.dtype == torch.float32 and -1.0 <= out.min() and out.max() <= 1.0


def test_ifgan_geometry_at_paper_size_and_scaled_for_the_smoke_size():
    assert make_transform("ifgan", train=True, size=224).scale_to == (256, 256)
    t = make_transform("ifgan", train=True, size=64)
    assert t.scale_to == (73, 73) and t.crop == (64, 64)  # 256 * 64 / 224 = 73.1
    adfl = make_transform("adfl", train=True, size=112)
    assert adfl.scale_to == (128, 110) and adfl.crop == (112, 96)
    small = make_transform("adfl", train=False, size=56)
    assert small.scale_to == (64, 55) and small.crop == (56, 48)
    tergan = make_transform("tergan", train=True, size=75)
    assert tergan.scale_to == (84, 84) and tergan.crop == (75, 75)


def test_five_crop_training_samples_one_of_the_corners_or_the_centre():
    image = torch.arange(25, dtype=torch.uint8).reshape(1, 5, 5)
    t = PresetTransform(TransformPreset("t", (5, 5), (3, 3), flip=False, train_crop="five"), train=True, size=3)
    g = torch.Generator().manual_seed(0)
    t.generator = g
    seen = {tuple(t(image).flatten().tolist()) for _ in range(60)}
    corners = {tuple(to_model_input(image[:, r:r + 3, c:c + 3]).flatten().tolist()) for r, c in
               [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]}
    assert seen == corners  # all five positions, nothing in between


def test_rotation_choices_rotate_by_one_of_the_listed_angles():
    image = torch.zeros(1, 8, 8, dtype=torch.uint8)
    image[0, 0, :] = 255  # a bright top row
    t = PresetTransform(TransformPreset("t", (8, 8), (8, 8), flip=False, rotate_choices=(90,)), train=True, size=8)
    out = t(image)
    assert (out[0, :, 0] == 1).all() and (out[0, :, 1:] == -1).all()  # 90 deg anticlockwise: top row -> left column
    eifn = make_transform("eifn", train=True, size=64)
    assert eifn.scale_to == eifn.crop == (64, 64) and 15 in eifn.preset.rotate_choices


def test_greyscale_images_keep_one_channel():
    out = make_transform("ean", train=True, size=48)(face(c=1, h=48, w=48))
    assert out.shape == (1, 48, 48)


def test_training_transform_is_deterministic_under_a_seed_and_random_across_seeds():
    t = make_transform("ifgan", train=True, size=64)
    image = face()
    torch.manual_seed(3)
    a = torch.stack([t(image) for _ in range(4)])
    torch.manual_seed(3)
    b = torch.stack([t(image) for _ in range(4)])
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1]) or not torch.equal(a[1], a[2])  # flips / angles / crops vary
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(make_transform("adfl", True, 64, generator=g1)(image),
                       make_transform("adfl", True, 64, generator=g2)(image))


def test_test_transform_is_a_centre_crop_without_randomness():
    t = make_transform("baseline", train=False, size=64)
    image = face()
    assert torch.equal(t(image), t(image))
    eifn = make_transform("eifn", train=False, size=64)  # 64 -> 64: no crop, no resize at 64 px
    assert torch.equal(eifn(image), to_model_input(image))
    ean = make_transform("ean", train=False, size=64)    # 256 -> 224 at 64 px: 73 px, its centre 64
    assert ean.scale_to == (73, 73) and ean.crop == (64, 64) and torch.equal(ean(image), ean(image))


def test_ten_crop_gives_corners_centre_and_their_mirrors():
    image = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4)
    crops = ten_crop(image, (2, 2))
    assert crops.shape == (10, 1, 2, 2)
    assert crops[0].tolist() == [[[0, 1], [4, 5]]]            # top-left
    assert crops[4].tolist() == [[[5, 6], [9, 10]]]           # centre
    assert crops[5].tolist() == [[[3, 2], [7, 6]]]            # top-left of the flipped image
    out = make_transform("eifn", train=False, size=64, ten_crop=True)(face())
    assert out.shape == (10, 3, 64, 64)
    with pytest.raises(FerlibError, match="test-time"):
        make_transform("eifn", train=True, size=64, ten_crop=True)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(UnknownName) as e:
        make_transform("resnet", train=True, size=64)
    assert str(e.value) == ("unknown transform preset 'resnet'; valid transform presets are: "
                            "adfl, baseline, ean, eifn, ifgan, tergan")
