"""Face detection and alignment on real photographs that ship offline with scikit-image.

`astronaut` (512x512 RGB, one upright frontal face), `camera` (512x512 grey, a man in three-quarter
view looking into a camera: a real yawed face) and `lfw_subset` (25x25 grey crops: 100 real faces,
100 non-faces). One MTCNN serves the whole file (`detector` fixture); the file runs in seconds.
"""

from __future__ import annotations

import json
import math
import socket
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data   # a dev dependency; facenet-pytorch is installed by `make` (--no-deps)

from ferlib.data import align
from ferlib.data.align import (ARCFACE_112X96, GEOMETRIES, LANDMARKS, Alignment, FaceDetector, align_face,
                               align_with_landmarks, apply_matrix, centre_crop_matrix, centre_crop_resize,
                               fallback_alignment, geometry, similarity_transform, warp)
from ferlib.errors import FerlibError, UnknownName

EYES = [LANDMARKS.index("left_eye"), LANDMARKS.index("right_eye")]


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="session")
def astronaut_face(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    return faces[0]


def rotation_matrix(degrees: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * math.cos(math.radians(degrees)), scale * math.sin(math.radians(degrees))
    return np.array([[c, -s, tx], [s, c, ty]])


def rotated_points(points: np.ndarray, degrees: float, size_in, size_out) -> np.ndarray:
    """Where PIL's `rotate(degrees, expand=True)` (counter-clockwise about the centre) moves points."""
    a = math.radians(degrees)
    x, y = points[:, 0] + 0.5 - size_in[0] / 2, points[:, 1] + 0.5 - size_in[1] / 2
    xr, yr = x * math.cos(a) + y * math.sin(a), -x * math.sin(a) + y * math.cos(a)
    return np.stack([xr + size_out[0] / 2 - 0.5, yr + size_out[1] / 2 - 0.5], axis=1)


# --------------------------------------------------------------------------------------------
# Geometries
# --------------------------------------------------------------------------------------------

def test_geometry_sizes_points_and_names():
    sizes = {name: (g.height, g.width, len(g.points)) for name, g in GEOMETRIES.items()}
    assert sizes == {"ifgan": (256, 256, 3), "adfl": (128, 110, 5), "eifn": (64, 64, 5), "ean": (224, 224, 5),
                     "tergan": (75, 75, 5), "baseline": (64, 64, 5)}
    assert GEOMETRIES["ifgan"].points == ("left_eye", "right_eye", "nose")
    for name, g in GEOMETRIES.items():
        assert g.paper == name and g.template.shape == (len(g.points), 2) and g.source and g.crop
        assert (g.template > 0).all() and (g.template[:, 0] < g.width - 1).all() and (g.template[:, 1] < g.height - 1).all()
    assert geometry("ean") is GEOMETRIES["ean"] and geometry(GEOMETRIES["ean"]) is GEOMETRIES["ean"]
    with pytest.raises(UnknownName, match="unknown alignment geometry 'sphereface'.*adfl, baseline, ean"):
        geometry("sphereface")


def test_adfl_template_is_arcface_shifted_so_centre_crops_reproduce_it():
    adfl = GEOMETRIES["adfl"]
    top, left = (adfl.height - 112) // 2, (adfl.width - 96) // 2
    assert (top, left) == (8, 7)
    np.testing.assert_allclose(adfl.template - [left, top], ARCFACE_112X96, atol=1e-12)


def test_square_templates_place_eyes_mouth_and_centre_as_documented():
    for name in ("ifgan", "eifn", "ean", "tergan", "baseline"):
        g = GEOMETRIES[name]
        side = g.height
        normalised = (g.template + 0.5) / side
        eye_line = normalised[EYES, 1].mean()
        assert eye_line == pytest.approx(0.40, abs=1e-12)
        assert abs(normalised[LANDMARKS.index("nose"), 0] - 0.5) < 0.001   # horizontally centred
        if len(g.points) == 5:
            assert normalised[3:, 1].mean() - eye_line == pytest.approx(0.30, abs=1e-12)
            # ArcFace's proportions kept: eye distance / eye-to-mouth distance
            ratio = np.diff(normalised[EYES, 0])[0] / 0.30
            arcface = (ARCFACE_112X96[1, 0] - ARCFACE_112X96[0, 0]) / (ARCFACE_112X96[3:, 1].mean() - ARCFACE_112X96[:2, 1].mean())
            assert ratio == pytest.approx(arcface, rel=1e-9)
    np.testing.assert_allclose(GEOMETRIES["eifn"].template, GEOMETRIES["baseline"].template)


# --------------------------------------------------------------------------------------------
# Similarity transform and warp
# --------------------------------------------------------------------------------------------

def test_similarity_transform_recovers_a_known_transform_exactly():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 500, size=(5, 2))
    for degrees, scale in ((37.0, 0.41), (-170.0, 2.5), (0.0, 1.0)):
        truth = rotation_matrix(degrees, scale, 12.5, -80.25)
        np.testing.assert_allclose(similarity_transform(src, apply_matrix(truth, src)), truth, atol=1e-6)
        np.testing.assert_allclose(similarity_transform(src[:2], apply_matrix(truth, src[:2])), truth, atol=1e-6)


def test_similarity_transform_is_the_least_squares_similarity():
    rng = np.random.default_rng(4)
    src = rng.uniform(0, 100, size=(7, 2))
    dst = apply_matrix(rotation_matrix(20, 1.3, 5, 6), src) + rng.normal(0, 3, size=(7, 2))
    # x' = a x - b y + tx, y' = b x + a y + ty, solved as a generic linear least-squares problem
    rows = [[x, -y, 1, 0] for x, y in src] + [[y, x, 0, 1] for x, y in src]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)[0]
    np.testing.assert_allclose(similarity_transform(src, dst), [[a, -b, tx], [b, a, ty]], atol=1e-9)


def test_similarity_transform_never_reflects():
    src = np.array([[0.0, 0.0], [10.0, 1.0], [4.0, 8.0], [7.0, 12.0]])
    mirrored = src * [-1, 1]
    matrix = similarity_transform(src, mirrored)
    linear = matrix[:, :2]
    assert np.linalg.det(linear) > 0
    assert linear[0, 0] == pytest.approx(linear[1, 1]) and linear[0, 1] == pytest.approx(-linear[1, 0])
    # the best proper similarity does not reproduce the mirror image
    assert np.abs(apply_matrix(matrix, src) - mirrored).max() > 1


@pytest.mark.parametrize("src, dst, message", [
    ([[1.0, 2.0]], [[3.0, 4.0]], "at least 2 point pairs, got 1"),
    (np.zeros((0, 2)), np.zeros((0, 2)), "at least 2 point pairs, got 0"),
    ([[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0]], "same number of points"),
    ([[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]], [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], "src points all coincide"),
    ([[0.0, 0.0], [1.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]], "dst points all coincide"),
    ([[0.0, np.nan], [1.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]], "NaN"),
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], r"\(n, 2\) array"),
])
def test_similarity_transform_refuses_bad_points(src, dst, message):
    with pytest.raises(FerlibError, match=message):
        similarity_transform(src, dst)


def test_warp_identity_shift_and_quarter_turn_are_exact():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp(image, [[1, 0, 0], [0, 1, 0]], 20, 20), image)
    shifted = warp(image, [[1, 0, -3], [0, 1, -2]], 10, 12)    # output p shows input p + (3, 2)
    np.testing.assert_array_equal(shifted, image[2:12, 3:15])
    # np.rot90 (counter-clockwise): output (x, y) shows input (W - 1 - y, x)
    quarter = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 19.0]])
    np.testing.assert_array_equal(warp(image, quarter, 20, 20), np.rot90(image))


def test_warp_repeats_edges_outside_the_image_and_keeps_grey_single_channel():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    out = warp(image, [[1, 0, 2], [0, 1, 0]], 4, 6)     # shifted right by 2: two columns outside
    assert out.shape == (4, 6, 1)
    np.testing.assert_array_equal(out[:, :2, 0], np.repeat(image[:, :1], 2, axis=1))
    np.testing.assert_array_equal(out[:, 2:, 0], image)


def test_warp_antialiases_when_shrinking():
    checker = ((np.indices((256, 256)).sum(axis=0) % 2) * 255).astype(np.uint8)
    small = warp(checker, [[0.25, 0, 0], [0, 0.25, 0]], 64, 64)[..., 0].astype(float)
    assert abs(small.mean() - 127.5) < 2 and small[4:-4, 4:-4].std() < 2   # no moire: flat grey


def test_centre_crop_takes_the_largest_centred_crop_of_the_geometry_aspect():
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 20:60] = 200                                   # the centred 40x40 square
    matrix = centre_crop_matrix(image.shape, "eifn")
    np.testing.assert_allclose(apply_matrix(matrix, [[19.5, -0.5], [59.5, 39.5]]), [[-0.5, -0.5], [63.5, 63.5]])
    out = centre_crop_resize(image, "eifn")
    assert out.shape == (64, 64, 3)
    assert (out[:, 1:-1] == 200).all()
    tall = centre_crop_matrix((300, 300), "adfl")          # 128x110: full height, 257.8 px wide
    np.testing.assert_allclose(apply_matrix(tall, [[149.5 - 150 * 110 / 128, -0.5], [149.5 + 150 * 110 / 128, 299.5]]),
                               [[-0.5, -0.5], [109.5, 127.5]])


# --------------------------------------------------------------------------------------------
# Detection and alignment on real photographs
# --------------------------------------------------------------------------------------------

def test_astronaut_has_exactly_one_confident_face_with_ordered_landmarks(astronaut_face):
    face = astronaut_face
    assert face.score > 0.9
    x1, y1, x2, y2 = face.box
    lm = face.landmarks
    assert lm.shape == (5, 2)
    assert ((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2)).all()
    left_eye, right_eye, nose, mouth_left, mouth_right = lm
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    # the astronaut's face is near (225, 115) in the 512x512 photo, eyes about 42 px apart
    assert 200 < lm[:, 0].mean() < 250 and 100 < lm[:, 1].mean() < 140
    assert 35 < right_eye[0] - left_eye[0] < 50


@pytest.mark.parametrize("paper", sorted(GEOMETRIES))
def test_align_astronaut_to_each_paper(detector, astronaut, paper):
    g = GEOMETRIES[paper]
    result = align_face(astronaut, paper, detector)
    assert (result.status, result.faces, result.note) == ("ok", 1, "")
    assert result.image.shape == (g.height, g.width, 3) and result.image.dtype == np.uint8
    used = align.select_landmarks(result.face.landmarks, g)
    warped = apply_matrix(result.matrix, used)
    side = g.height
    if len(g.points) == 3:    # IF-GAN: eyes and nose fit the template within ~3 px at 256
        assert np.abs(warped - g.template).max() < 3 * side / 256
    # least squares puts the landmarks' centroid on the template's, whatever the face's shape
    np.testing.assert_allclose(warped.mean(axis=0), g.template.mean(axis=0), atol=1e-6)
    # eye distance within 15% of the template's (the astronaut smiles: her mouth is wider than ArcFace's)
    assert abs(np.diff(warped[EYES, 0])[0] / np.diff(g.template[EYES, 0])[0] - 1) < 0.15
    assert abs(warped[1, 1] - warped[0, 1]) < 0.02 * side   # eyes level
    # the image content followed the matrix: MTCNN on the aligned face finds the warped landmarks
    again = detector.detect(result.image)
    assert len(again) == 1
    assert np.abs(again[0].landmarks - apply_matrix(result.matrix, result.face.landmarks)).max() < 0.02 * side
    record = json.loads(json.dumps(result.sidecar()))
    assert record["status"] == "ok" and record["faces"] == 1 and record["note"] == ""
    assert record["geometry"] == {"paper": paper, "height": g.height, "width": g.width, "points": list(g.points)}
    assert np.array(record["matrix"]).shape == (2, 3) and np.array(record["landmarks"]).shape == (5, 2)
    assert record["score"] > 0.9 and len(record["box"]) == 4 and record["fit_error_px"] == pytest.approx(result.fit_error)


def test_align_with_landmarks_is_the_warp_step_of_align_face(detector, astronaut, astronaut_face):
    result = align_face(astronaut, "adfl", detector)
    np.testing.assert_array_equal(align_with_landmarks(astronaut, "adfl", astronaut_face.landmarks), result.image)
    np.testing.assert_array_equal(align_with_landmarks(astronaut, "ifgan", astronaut_face.landmarks[:3]),
                                  align_with_landmarks(astronaut, "ifgan", astronaut_face.landmarks))
    with pytest.raises(FerlibError, match="MTCNN's five points"):
        align_with_landmarks(astronaut, "adfl", astronaut_face.landmarks[:4])


@pytest.mark.parametrize("degrees", [45, -45])
def test_alignment_undoes_a_45_degree_in_plane_rotation(detector, astronaut, astronaut_face, degrees):
    pil = Image.fromarray(astronaut)
    rotated = pil.rotate(degrees, resample=Image.BILINEAR, expand=True)
    truth = rotated_points(astronaut_face.landmarks, degrees, pil.size, rotated.size)
    # roll is clockwise-positive: PIL's counter-clockwise rotation by d degrees lowers it by exactly d
    assert align.roll_degrees(truth) == pytest.approx(align.roll_degrees(astronaut_face.landmarks) - degrees, abs=1e-6)
    result = align_face(np.asarray(rotated), "ean", detector)
    assert (result.status, result.faces) == ("ok", 1)
    assert "landmarks re-detected on an upright crop" in result.note
    # refined landmarks within 3 px of where the rotation moved the upright ones (unrefined MTCNN: up to 9 px)
    assert np.linalg.norm(result.face.landmarks - truth, axis=1).max() < 3
    again = detector.detect(result.image)[0].landmarks
    assert abs(again[1, 1] - again[0, 1]) < 2                # eyes level in the aligned 224x224 face
    upright = align_face(astronaut, "ean", detector).image.astype(float)
    centre = slice(40, 184)
    difference = np.abs(result.image[centre, centre] - upright[centre, centre]).mean()
    shifted = np.abs(np.roll(upright, 10, axis=1)[centre, centre] - upright[centre, centre]).mean()
    assert difference < 10 < shifted                          # same face, same place (shifted by 10 px: 32)


def test_mirrored_photo_gives_mirrored_landmarks_in_image_left_right_order(detector, astronaut, astronaut_face):
    mirrored = astronaut[:, ::-1]
    faces = detector.detect(mirrored)
    assert len(faces) == 1
    expected = astronaut_face.landmarks * [-1, 1] + [astronaut.shape[1] - 1, 0]
    expected = expected[[1, 0, 2, 4, 3]]                      # image-left comes first again
    assert np.abs(faces[0].landmarks - expected).max() < 4
    aligned = align_face(mirrored, "ean", detector).image[:, ::-1].astype(float)
    upright = align_face(astronaut, "ean", detector).image.astype(float)
    assert np.abs(aligned[40:184, 40:184] - upright[40:184, 40:184]).mean() < 16


def test_a_real_three_quarter_view_greyscale_face(detector):
    camera = skimage_data.camera()                            # (512, 512) grey; the man looks into a camera
    assert camera.ndim == 2
    result = align_face(camera, "eifn", detector)
    assert (result.status, result.faces) == ("ok", 1) and result.face.score > 0.9
    assert result.image.shape == (64, 64, 1)
    x1, y1, x2, y2 = result.face.box
    assert 150 < x1 < x2 < 300 and 80 < y1 < y2 < 250
    np.testing.assert_array_equal(align_face(camera[:, :, None], "eifn", detector).image, result.image)


def test_tiny_images_are_upsampled_for_detection(detector, astronaut, astronaut_face):
    lfw = (skimage_data.lfw_subset() * 255).round().astype(np.uint8)  # rows 0-99 faces, 100-199 not
    assert lfw.shape == (200, 25, 25)
    assert [len(detector.detect(lfw[i])) for i in range(0, 100, 5)] == [1] * 20
    assert [len(detector.detect(lfw[i])) for i in range(100, 200, 5)] == [0] * 20
    crop = astronaut[30:230, 125:325]                         # 200x200 around the face, then 48x48 like FER2013
    small = np.asarray(Image.fromarray(crop).resize((48, 48), Image.BILINEAR))
    faces = detector.detect(small)
    assert len(faces) == 1
    back = (faces[0].landmarks + 0.5) * 200 / 48 - 0.5 + [125, 30]
    assert np.abs(back - astronaut_face.landmarks).max() < 4  # < 1 px at 48x48
    assert align_face(small, "baseline", detector).image.shape == (64, 64, 3)


def test_two_faces_are_reported_and_the_larger_is_aligned(detector, astronaut):
    pair = np.zeros((512, 768, 3), dtype=np.uint8)
    pair[:, :512] = astronaut
    pair[128:384, 512:] = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.BILINEAR))
    result = align_face(pair, "ean", detector)
    assert (result.status, result.faces) == ("several faces", 2)
    assert result.note.startswith("2 faces found; aligned the largest")
    assert result.face.box[2] < 512                           # the full-size astronaut, not the half-size one
    assert result.image.shape == (224, 224, 3)
    assert json.loads(json.dumps(result.sidecar()))["status"] == "several faces"


@pytest.mark.parametrize("name, image", [
    ("grey", np.full((256, 256, 3), 128, dtype=np.uint8)),
    ("noise", np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)),
    ("one pixel", np.zeros((1, 1), dtype=np.uint8)),
    ("empty", np.zeros((0, 5, 3), dtype=np.uint8)),
    ("coffee cup", None),
])
def test_images_without_a_face_are_reported_not_raised(detector, name, image):
    image = skimage_data.coffee() if image is None else image
    result = align_face(image, "ean", detector)
    assert (result.status, result.faces, result.image, result.face, result.matrix) == ("no face", 0, None, None, None)
    assert "found no face" in result.note
    record = json.loads(json.dumps(result.sidecar()))
    assert record["status"] == "no face" and record["box"] is None and record["matrix"] is None


class FixedDetector:
    """Stands in for FaceDetector: returns the given faces, whatever the image."""

    def __init__(self, faces):
        self.faces = faces

    def detect(self, image):
        return list(self.faces)


def test_largest_face_wins_ties_go_to_the_score_and_degenerate_landmarks_are_reported(astronaut, astronaut_face):
    lm = astronaut_face.landmarks
    small = align.Face((0.0, 0.0, 10.0, 10.0), lm, 0.99)
    big_low, big_high = align.Face(astronaut_face.box, lm, 0.80), align.Face(astronaut_face.box, lm + 1, 0.95)
    result = align_face(astronaut, "eifn", FixedDetector([small, big_low, big_high]))
    assert (result.status, result.faces, result.face) == ("several faces", 3, big_high)
    assert result.note.startswith("3 faces found; aligned the largest")
    point = align.Face((5.0, 5.0, 9.0, 9.0), np.full((5, 2), 7.0), 0.9)
    odd = align_face(astronaut, "eifn", FixedDetector([point]))
    assert (odd.status, odd.faces, odd.image, odd.matrix) == ("no face", 1, None, None)
    assert "cannot be aligned" in odd.note and "coincide" in odd.note


@pytest.mark.parametrize("bad, message", [
    ([[0, 1], [2, 3]], "numpy array"),
    (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
    (np.zeros((8, 8, 2), dtype=np.uint8), r"shape \(H, W\)"),
    (np.zeros((2, 8, 8, 3), dtype=np.uint8), r"shape \(H, W\)"),
])
def test_bad_arguments_raise_ferlib_errors(detector, bad, message):
    with pytest.raises(FerlibError, match=message):
        align_face(bad, "ean", detector)


def test_fallbacks_use_given_landmarks_or_the_centre_crop(detector, astronaut, astronaut_face):
    with_landmarks = fallback_alignment(astronaut, "adfl", astronaut_face.landmarks, note="landmarks of frame 3")
    assert (with_landmarks.status, with_landmarks.note, with_landmarks.face) == ("fallback", "landmarks of frame 3", None)
    np.testing.assert_array_equal(with_landmarks.image, align_face(astronaut, "adfl", detector).image)
    crop = fallback_alignment(astronaut, "adfl")
    assert crop.status == "fallback" and "centred crop" in crop.note
    np.testing.assert_array_equal(crop.image, centre_crop_resize(astronaut, "adfl"))
    record = json.loads(json.dumps(crop.sidecar()))
    assert record["status"] == "fallback" and record["box"] is None and np.array(record["matrix"]).shape == (2, 3)
    assert isinstance(crop, Alignment) and crop.fit_error is None


def test_detection_never_touches_the_network(monkeypatch, astronaut):
    def refuse(*args, **kwargs):
        raise AssertionError("face detection tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    with pytest.raises(AssertionError):                       # the block is in force
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    fresh = FaceDetector()                                    # builds MTCNN, loading pnet/rnet/onet, here
    faces = fresh.detect(astronaut)
    assert len(faces) == 1 and faces[0].score > 0.9


def test_missing_facenet_pytorch_names_the_install_command(monkeypatch, astronaut):
    for module in ("facenet_pytorch", "facenet_pytorch.models", "facenet_pytorch.models.mtcnn"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(FerlibError, match=r"pip install --no-deps facenet-pytorch==2\.6\.0"):
        FaceDetector().detect(astronaut)


def test_detector_arguments_are_checked():
    with pytest.raises(FerlibError, match="min_face_size 8"):
        FaceDetector(min_face_size=8)
    with pytest.raises(FerlibError, match="min_side 16 must be at least min_face_size 20"):
        FaceDetector(min_side=16)
    assert FaceDetector().upsampling(48, 48) == pytest.approx(160 / 48)
    assert FaceDetector().upsampling(480, 640) == 1.0
    assert FaceDetector().upsampling(10, 4000) == 1.0          # capped: the long side may not grow past 2048


def test_every_example_photograph_yields_a_face_in_every_papers_geometry(detector):
    papers = ("ifgan", "adfl", "eifn", "ean", "tergan")
    rows = align.examples_on_photographs(papers, detector)
    assert [name for name, _ in rows] == ["astronaut", "cameraman", "astronaut, rotated 45°", "cameraman, rotated 45°"]
    for name, images in rows:
        for paper, image in zip(papers, images):
            g = align.geometry(paper)
            assert image is not None and image.shape == (g.height, g.width, 3), (name, paper)
