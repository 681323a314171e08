"""Face detection (MTCNN) and similarity alignment to each paper's face geometry.

The papers detect faces with MTCNN and warp them so that a few landmarks land on fixed output
positions. This module does the same with `facenet_pytorch.MTCNN`, whose wheel ships the P-, R- and
O-net weights, so nothing is ever downloaded (a test blocks the network while detecting).

- `GEOMETRIES`: each paper's output size, which of MTCNN's five landmarks it aligns and where they
  land (`Geometry.template`). Cropping (IF-GAN's random 224 crops, ADFL's 112x96 crops) happens
  later, in `ferlib.data.transforms`; `Geometry.crop` only records it.
- `FaceDetector`: MTCNN built on first use; `detect(image)` -> every `Face` (box, 5 landmarks, score).
- `align_face(image, geometry, detector)` -> `Alignment`: the warped face and a status ("ok",
  "several faces", "no face"). It never raises for an image without a face, so a dataset run lists
  such images in its report instead of stopping. `fallback_alignment` makes the "fallback" ones
  (a neighbouring frame's landmarks, or `centre_crop_resize` as the last resort).
- `similarity_transform`, `warp`, `align_with_landmarks`: the geometry, usable on their own.

Coordinates are (x, y) in pixel-index units with pixel centres at integers (numpy's, MTCNN's and
the SphereFace/ArcFace template's convention): an H x W image spans [-0.5, W - 0.5] x [-0.5, H - 0.5].
A 2x3 `matrix` maps input-image coordinates to output-image coordinates.

RAF-DB ships its own aligned 100x100 faces and the study uses them as they are
(`PRE_ALIGNED_DATASETS`); every other dataset goes through `align_face`.

    detector = FaceDetector()
    result = align_face(image, "ifgan", detector)   # result.image: 256x256x3 uint8 or None
    result.sidecar()                                  # JSON-ready record for the report
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image

from ferlib.errors import FerlibError, UnknownName

# --------------------------------------------------------------------------------------------
# Geometries
# --------------------------------------------------------------------------------------------

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # MTCNN's order, image left/right
STATUSES = ("ok", "several faces", "no face", "fallback")
PRE_ALIGNED_DATASETS = ("rafdb",)  # ship aligned faces; used as they are, never re-aligned

# The widely used SphereFace/ArcFace five-point template for 112 (high) x 96 (wide) faces, (x, y).
ARCFACE_112X96 = np.array([
    [30.2946, 51.6963],   # left eye
    [65.5318, 51.5014],   # right eye
    [48.0252, 71.7366],   # nose tip
    [33.5493, 92.3655],   # mouth, left corner
    [62.7299, 92.2041],   # mouth, right corner
])

# The study's square template, in [0, 1] units of the output side, derived from ARCFACE_112X96:
# the same five-point shape (uniformly scaled, so its proportions are unchanged), centred
# horizontally on the template's middle column (x = 48), with the eye line at SQUARE_EYE_LINE of
# the height and the mouth line SQUARE_EYE_TO_MOUTH below it. ArcFace's own 112x112 crop
# (eye line 0.46, eyes to mouth 0.36) cuts the chin off; FER needs the whole face: with the
# usual proportions (brows about half the eye-to-mouth distance above the eyes, the chin about
# 0.8 of it below the mouth) brows land near 0.25 and the chin near 0.94, so the face fills the
# crop with a small margin, and the eyes are 0.26 of the width apart.
SQUARE_EYE_LINE = 0.40
SQUARE_EYE_TO_MOUTH = 0.30


def square_template() -> np.ndarray:
    """The normalised (5, 2) square template described above; multiply by the side (see `Geometry`)."""
    eye_y = ARCFACE_112X96[:2, 1].mean()
    mouth_y = ARCFACE_112X96[3:, 1].mean()
    scale = SQUARE_EYE_TO_MOUTH / (mouth_y - eye_y)
    centred = ARCFACE_112X96 - np.array([48.0, eye_y])
    return centred * scale + np.array([0.5, SQUARE_EYE_LINE])


@dataclass(frozen=True, eq=False)  # eq=False: equal by identity (an array field has no == or hash)
class Geometry:
    """One paper's aligned face: output size, the landmarks aligned and where they land."""

    paper: str
    height: int
    width: int
    points: tuple[str, ...]          # names from LANDMARKS, in template row order
    template: np.ndarray = field(repr=False)  # (len(points), 2) output (x, y) pixel coordinates
    crop: str = ""                   # what transforms.py crops from it (recorded here, done there)
    source: str = ""                 # what the paper says and what we assumed

    @property
    def indices(self) -> list[int]:
        """Rows of MTCNN's (5, 2) landmarks that this geometry uses."""
        return [LANDMARKS.index(p) for p in self.points]

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


def square_geometry(paper: str, side: int, points: Sequence[str], crop: str, source: str) -> Geometry:
    """A side x side geometry on the study's square template (u in [0, 1] -> u * side - 0.5 px)."""
    rows = [LANDMARKS.index(p) for p in points]
    template = square_template()[rows] * side - 0.5
    return Geometry(paper, side, side, tuple(points), template, crop, source)


SQUARE_NOTE = (f"the study's square five-point template (ArcFace's shape, eye line at {SQUARE_EYE_LINE:.0%} of the "
               f"height, mouth {SQUARE_EYE_TO_MOUTH:.0%} below it; see align.square_template)")

GEOMETRIES: dict[str, Geometry] = {
    "ifgan": square_geometry(
        "ifgan", 256, ("left_eye", "right_eye", "nose"),
        crop="random 224 crops in training, centre crop in test",
        source="IF-GAN aligns faces by the two eye centres and the nose tip to 256x256 but gives no template; "
               f"we assume {SQUARE_NOTE}, keeping its eye and nose points"),
    "adfl": Geometry(
        "adfl", 128, 110, LANDMARKS, ARCFACE_112X96 + np.array([7.0, 8.0]),
        crop="112x96 crops (four corners and centre, and mirrored) in training, centre crop in test",
        source="ADFL aligns five landmarks to 128x110 without giving the template; we assume the SphereFace/"
               "ArcFace 112x96 template shifted by (7, 8) px, so a centre 112x96 crop reproduces it exactly"),
    "eifn": square_geometry(
        "eifn", 64, LANDMARKS, crop="none (64x64 is the network input)",
        source=f"EIFN uses 64x64 aligned faces without saying how; we assume {SQUARE_NOTE}"),
    "ean": square_geometry(
        "ean", 224, LANDMARKS, crop="none (224x224 is the network input)",
        source=f"EAN uses 224x224 aligned faces without giving the template; we assume {SQUARE_NOTE}"),
    "tergan": square_geometry(
        "tergan", 75, LANDMARKS, crop="75x75 samples from the centre and corners of a rescaled face in training",
        source=f"TER-GAN uses 75x75 aligned faces without giving the template; we assume {SQUARE_NOTE}"),
    "baseline": square_geometry(
        "baseline", 64, LANDMARKS, crop="none (64x64 is the network input)",
        source=f"the study's reference pipeline, like EIFN: 64x64 on {SQUARE_NOTE}"),
}


def geometry(paper: str | Geometry) -> Geometry:
    """The `Geometry` for `paper` (a Geometry is returned as it is); `UnknownName` otherwise."""
    if isinstance(paper, Geometry):
        return paper
    if paper not in GEOMETRIES:
        raise UnknownName("alignment geometry", paper, GEOMETRIES)
    return GEOMETRIES[paper]


def as_geometry(value: str | Geometry) -> Geometry:
    """`geometry(value)`, under a name that parameters called `geometry` do not shadow."""
    return geometry(value)


# --------------------------------------------------------------------------------------------
# Similarity transform and warping
# --------------------------------------------------------------------------------------------

def as_points(points: Any, what: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise FerlibError(f"{what} must be an (n, 2) array of (x, y) points, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise FerlibError(f"{what} contains NaN or infinite coordinates: {array.tolist()}")
    return array


def similarity_transform(src: Any, dst: Any) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) that maps `src` onto `dst` best.

    Least squares over n >= 2 point pairs, as Umeyama (1991) with the reflection excluded. In 2-D
    that solution has a closed form: with the points as complex numbers z (src) and w (dst),
    centred, the map z -> a z + t has a = sum(w conj(z)) / sum(|z|^2); a's modulus is the scale
    and its angle the rotation, so a reflection or a shear can never come out. Raises FerlibError
    for fewer than 2 points, mismatched shapes, or points that coincide (no scale or angle defined).
    """
    src, dst = as_points(src, "src points"), as_points(dst, "dst points")
    if src.shape != dst.shape:
        raise FerlibError(f"src and dst must hold the same number of points, got {len(src)} and {len(dst)}")
    if len(src) < 2:
        raise FerlibError(f"a similarity transform needs at least 2 point pairs, got {len(src)}")
    z, w = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    zc, wc = z - z.mean(), w - w.mean()
    spread_src = np.sqrt(np.mean(np.abs(zc) ** 2))
    spread_dst = np.sqrt(np.mean(np.abs(wc) ** 2))
    tolerance = 1e-9 * max(1.0, np.abs(z).max(), np.abs(w).max())
    if spread_src <= tolerance or spread_dst <= tolerance:
        raise FerlibError(f"degenerate points for a similarity transform: the {'src' if spread_src <= tolerance else 'dst'} "
                          "points all coincide, so no scale or rotation is defined; give distinct landmarks")
    a = np.sum(wc * np.conj(zc)) / np.sum(np.abs(zc) ** 2)
    t = w.mean() - a * z.mean()
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]])


def apply_matrix(matrix: Any, points: Any) -> np.ndarray:
    """`points` (n, 2) mapped by the 2x3 `matrix`."""
    matrix, points = as_matrix(matrix), as_points(points, "points")
    return points @ matrix[:, :2].T + matrix[:, 2]


def as_matrix(matrix: Any) -> np.ndarray:
    array = np.asarray(matrix, dtype=np.float64)
    if array.shape != (2, 3) or not np.isfinite(array).all():
        raise FerlibError(f"an alignment matrix must be a finite 2x3 array, got shape {array.shape}")
    if abs(np.linalg.det(array[:, :2])) < 1e-12:
        raise FerlibError("the alignment matrix is singular (its 2x2 part has determinant 0); it cannot be inverted")
    return array


def as_image(image: Any) -> np.ndarray:
    """`image` as an (H, W, C) uint8 array (greyscale (H, W) gets C = 1); FerlibError if it is not one."""
    if not isinstance(image, np.ndarray):
        raise FerlibError(f"expected an image as a numpy array (H, W) or (H, W, C), got {type(image).__name__}; "
                          "decode files first, e.g. np.asarray(PIL.Image.open(path))")
    if image.dtype != np.uint8:
        raise FerlibError(f"expected a uint8 image, got dtype {image.dtype}; convert with "
                          "np.clip(image, 0, 255).astype(np.uint8) (scale floats in [0, 1] by 255 first)")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise FerlibError(f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}")
    return image


# Shrinking by more than this with plain bilinear sampling skips source pixels (aliasing): below
# it, `warp` first resizes the source with an antialiasing filter to the warp's own scale.
PRESHRINK_BELOW = 0.75


def warp(image: np.ndarray, matrix: Any, height: int, width: int) -> np.ndarray:
    """The (height, width, C) uint8 image whose pixel p shows `image` at matrix^-1 p (bilinear).

    Outside the source, edge pixels are repeated: a constant fill would draw a hard, pose-dependent
    border (a rotated face gets dark corners) that a network could learn instead of the face. When
    the matrix shrinks the face by more than 1/PRESHRINK_BELOW, the source is first downsampled
    with torch's antialiased bilinear resize, so small geometries (64, 75 px) do not alias.
    """
    image, matrix = as_image(image), as_matrix(matrix)
    if height < 1 or width < 1:
        raise FerlibError(f"warp output size must be at least 1x1, got {height}x{width}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise FerlibError(f"cannot warp an empty image of shape {image.shape}")
    source = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float()
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if scale < PRESHRINK_BELOW:
        h, w = image.shape[:2]
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        source = nnf.interpolate(source, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
        sx, sy = new_w / w, new_h / h   # x -> (x + 0.5) * s - 0.5 under the half-pixel convention
        unshrink = np.array([[1 / sx, 0.0, 0.5 / sx - 0.5], [0.0, 1 / sy, 0.5 / sy - 0.5]])
        matrix = compose(matrix, unshrink)
    inverse = invert(matrix)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    h, w = source.shape[2:]
    grid = torch.stack(((2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1), dim=-1)[None].float()
    out = nnf.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of `outer` after `inner` (p -> outer(inner(p)))."""
    full = lambda m: np.vstack([m, [0.0, 0.0, 1.0]])  # noqa: E731
    return (full(outer) @ full(inner))[:2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]


def select_landmarks(landmarks: Any, geometry: Geometry) -> np.ndarray:
    """The geometry's rows of `landmarks`: MTCNN's five (5, 2), or already its own k (k, 2)."""
    points = as_points(landmarks, "landmarks")
    if len(points) == len(LANDMARKS):
        return points[geometry.indices]
    if len(points) == len(geometry.points):
        return points
    raise FerlibError(f"landmarks must be MTCNN's five points ({', '.join(LANDMARKS)}) or the {geometry.paper} "
                      f"geometry's {len(geometry.points)} ({', '.join(geometry.points)}); got {len(points)}")


def alignment_matrix(landmarks: Any, geometry: Geometry | str) -> np.ndarray:
    """The 2x3 similarity mapping `landmarks` (image coordinates) onto the geometry's template."""
    geometry = as_geometry(geometry)
    return similarity_transform(select_landmarks(landmarks, geometry), geometry.template)


def align_with_landmarks(image: np.ndarray, geometry: Geometry | str, landmarks: Any) -> np.ndarray:
    """Warp `image` so that `landmarks` land on the geometry's template (the warp step of `align_face`)."""
    geometry = as_geometry(geometry)
    return warp(image, alignment_matrix(landmarks, geometry), geometry.height, geometry.width)


def centre_crop_matrix(shape: Sequence[int], geometry: Geometry | str) -> np.ndarray:
    """2x3 matrix taking the largest centred crop of an image of `shape` with the geometry's aspect
    ratio onto the geometry's output (a uniform scale and a shift)."""
    geometry = as_geometry(geometry)
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise FerlibError(f"cannot crop an empty image of shape {tuple(shape)}")
    aspect = geometry.width / geometry.height
    crop_h, crop_w = (h, h * aspect) if h * aspect <= w else (w / aspect, w)
    x0, y0 = (w - crop_w) / 2, (h - crop_h) / 2
    s = geometry.height / crop_h
    # crop edges [x0 - 0.5, x0 + crop_w - 0.5] -> [-0.5, width - 0.5]
    return np.array([[s, 0.0, (0.5 - x0) * s - 0.5], [0.0, s, (0.5 - y0) * s - 0.5]])


def centre_crop_resize(image: np.ndarray, geometry: Geometry | str) -> np.ndarray:
    """The last-resort fallback: the largest centred crop with the geometry's aspect ratio, resized
    to its size. Right only when the face is roughly centred and fills the frame (lab datasets)."""
    image = as_image(image)
    geometry = as_geometry(geometry)
    return warp(image, centre_crop_matrix(image.shape, geometry), geometry.height, geometry.width)


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------

INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"


@dataclass(frozen=True, eq=False)
class Face:
    """One MTCNN detection: box (x1, y1, x2, y2), landmarks (5, 2) in LANDMARKS order, score in [0, 1]."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray = field(repr=False)
    score: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def detection_rgb(image: np.ndarray) -> np.ndarray:
    """MTCNN takes RGB: grey is repeated to three channels, alpha dropped."""
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.array(image[:, :, :3], copy=True)  # a writable copy: torch warns on read-only arrays


class FaceDetector:
    """MTCNN (facenet-pytorch) with its shipped weights, built on the first `detect`.

    Small images: MTCNN scans a pyramid of scales from faces of `min_face_size` (20 px) up to
    the whole image, so a face filling a 48x48 FER2013 image or a 25x25 thumbnail gets only one or
    two pyramid levels. Images whose shorter side is below `min_side` (160 px) are upsampled
    (bilinear) to it before detection and the results mapped back to the original pixels: on the
    100 real 25x25 faces of scikit-image's `lfw_subset` this finds all 100 (98 when upsampling only
    to 48 or 96 px) and nothing in its 100 non-faces. The upsampled long side is capped at
    `max_upsampled_side`, so a thin strip cannot exhaust memory.
    """

    def __init__(self, device: str | torch.device = "cpu", min_face_size: int = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), min_side: int = 160, max_upsampled_side: int = 2048):
        if min_face_size < 12:
            raise FerlibError(f"min_face_size {min_face_size} is below MTCNN's 12 px window; use 12 or more (default 20)")
        if min_side < min_face_size:
            raise FerlibError(f"min_side {min_side} must be at least min_face_size {min_face_size}")
        self.device = torch.device(device)
        self.min_face_size, self.thresholds = int(min_face_size), tuple(float(t) for t in thresholds)
        self.min_side, self.max_upsampled_side = int(min_side), int(max_upsampled_side)
        self._mtcnn = None

    @property
    def mtcnn(self):
        """The facenet_pytorch.MTCNN, imported and built on first use (weights from its package folder)."""
        if self._mtcnn is None:
            try:
                with warnings.catch_warnings():  # its tqdm.auto import warns when ipywidgets is absent
                    warnings.filterwarnings("ignore", message="IProgress not found")
                    from facenet_pytorch.models.mtcnn import MTCNN
            except ImportError as error:
                raise FerlibError(f"face detection needs facenet-pytorch (MTCNN and its weights ship in the wheel), "
                                  f"which could not be imported ({error}); install it with `{INSTALL_HINT}`") from None
            self._mtcnn = MTCNN(keep_all=True, min_face_size=self.min_face_size, thresholds=list(self.thresholds),
                                device=self.device).eval()
        return self._mtcnn

    def upsampling(self, height: int, width: int) -> float:
        """The factor applied before detection: 1, or enough to bring the shorter side to `min_side`."""
        short, long = min(height, width), max(height, width)
        if short >= self.min_side:
            return 1.0
        return max(1.0, min(self.min_side / short, self.max_upsampled_side / long))

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face in `image` ((H, W), (H, W, 1), (H, W, 3) or RGBA uint8), by score, then area, descending."""
        rgb = detection_rgb(as_image(image))
        h, w = rgb.shape[:2]
        if h == 0 or w == 0:
            return []
        factor = self.upsampling(h, w)
        if factor > 1:
            size = (max(1, round(h * factor)), max(1, round(w * factor)))
            tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
            big = nnf.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
            rgb = big[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        if min(rgb.shape[:2]) < self.min_face_size:
            return []  # too small for MTCNN's pyramid even after upsampling
        with torch.inference_mode():
            boxes, scores, points = self.mtcnn.detect(rgb, landmarks=True)
        if boxes is None:
            return []
        sy, sx = rgb.shape[0] / h, rgb.shape[1] / w   # back to original pixels: x = (x' + 0.5) / s - 0.5
        faces = []
        for box, score, landmarks in zip(boxes, scores, points):
            box = np.asarray(box, dtype=np.float64)
            landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
            box = (box + 0.5) / np.array([sx, sy, sx, sy]) - 0.5
            landmarks = (landmarks + 0.5) / np.array([sx, sy]) - 0.5
            faces.append(Face(tuple(float(v) for v in box), landmarks, float(score)))
        return sorted(faces, key=lambda f: (f.score, f.area), reverse=True)


# --------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------

@dataclass
class Alignment:
    """The result of aligning one image: the face (or None) and what happened, for the report."""

    image: np.ndarray | None         # aligned uint8 (height, width, C), None when status is "no face"
    status: str                      # one of STATUSES
    geometry: Geometry
    face: Face | None = None         # the detection used (None: no face, or a fallback)
    faces: int = 0                   # how many faces the detector found
    note: str = ""
    matrix: np.ndarray | None = None  # 2x3, input image -> aligned image

    @property
    def fit_error(self) -> float | None:
        """RMS distance (output px) between the used landmarks, warped, and the template: how far
        this face's shape is from the template's (a poorly fitted face shows a large value)."""
        if self.face is None or self.matrix is None:
            return None
        warped = apply_matrix(self.matrix, select_landmarks(self.face.landmarks, self.geometry))
        return float(np.sqrt(np.mean(np.sum((warped - self.geometry.template) ** 2, axis=1))))

    def sidecar(self) -> dict[str, Any]:
        """A JSON-serialisable record: status, note, detection, geometry and the matrix."""
        face = self.face
        return {
            "status": self.status,
            "note": self.note,
            "faces": int(self.faces),
            "box": None if face is None else [float(v) for v in face.box],
            "landmarks": None if face is None else np.asarray(face.landmarks, dtype=float).tolist(),
            "score": None if face is None else float(face.score),
            "fit_error_px": self.fit_error,
            "geometry": {"paper": self.geometry.paper, "height": self.geometry.height, "width": self.geometry.width,
                         "points": list(self.geometry.points)},
            "matrix": None if self.matrix is None else np.asarray(self.matrix, dtype=float).tolist(),
        }


# MTCNN's landmarks are trained on mostly upright faces: on the astronaut photo rotated in-plane by
# 45 degrees they are up to 9 px off (interocular 42 px; 22 px at 60 degrees), against 1-2 px
# upright; re-detected upright they are within 2 px again (tests/test_align.py). A face tilted by more
# than REFINE_ROLL_ABOVE degrees is therefore warped upright onto a DETECTION_SIDE crop (the
# square template at half scale: the face fills the middle half, with context around it), detected
# again there, and its landmarks mapped back; one pass brings the tilt within MTCNN's good range.
REFINE_ROLL_ABOVE = 10.0
DETECTION_SIDE = 256


def roll_degrees(landmarks: Any) -> float:
    """In-plane tilt of a face (degrees, clockwise in the image = positive): the rotation of the
    similarity that maps its five landmarks onto the square template, negated."""
    matrix = similarity_transform(as_points(landmarks, "landmarks"), square_template())
    return -math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))


def upright_landmarks(image: np.ndarray, face: Face, detector: FaceDetector) -> np.ndarray | None:
    """`face`'s landmarks re-detected on an upright, scale-normalised crop around it, in `image`'s
    coordinates; None when the detector finds no face in that crop."""
    template = (square_template() * 0.5 + 0.25) * DETECTION_SIDE - 0.5
    matrix = similarity_transform(face.landmarks, template)
    crop = warp(image, matrix, DETECTION_SIDE, DETECTION_SIDE)
    faces = detector.detect(crop)
    if not faces:
        return None
    centre = template.mean(axis=0)
    nearest = min(faces, key=lambda f: np.linalg.norm(f.landmarks.mean(axis=0) - centre))
    return apply_matrix(invert(matrix), nearest.landmarks)


def refine(image: np.ndarray, face: Face, detector: FaceDetector) -> tuple[Face, str]:
    """`face`, with upright-refined landmarks when it is tilted by more than REFINE_ROLL_ABOVE; a note."""
    roll = roll_degrees(face.landmarks)
    if abs(roll) <= REFINE_ROLL_ABOVE:
        return face, ""
    landmarks = upright_landmarks(image, face, detector)
    if landmarks is None:
        return face, f"face tilted {roll:.0f} deg; re-detection on the upright crop found nothing, landmarks unrefined"
    return (Face(face.box, landmarks, face.score),
            f"face tilted {roll:.0f} deg; landmarks re-detected on an upright crop")


def align_face(image: np.ndarray, geometry: Geometry | str, detector: FaceDetector,
               refine_tilted: bool = True) -> Alignment:
    """Detect faces in `image` and warp one onto `geometry`'s template.

    No face: status "no face", image None. One: "ok". Several: "several faces", aligned on the
    largest (box area, then score) and the note says so. A face tilted by more than
    REFINE_ROLL_ABOVE degrees gets its landmarks re-detected upright first (`refine`; the note
    says so) unless `refine_tilted` is False. Raises FerlibError only for bad arguments (not a
    uint8 image array, unknown geometry), never for what the image shows.
    """
    geometry = as_geometry(geometry)
    image = as_image(image)
    faces = detector.detect(image)
    if not faces:
        return Alignment(None, "no face", geometry,
                         note=f"MTCNN found no face in the {image.shape[1]}x{image.shape[0]} image")
    face = max(faces, key=lambda f: (f.area, f.score))
    notes = []
    if len(faces) > 1:
        x1, y1, x2, y2 = face.box
        notes.append(f"{len(faces)} faces found; aligned the largest ({x2 - x1:.0f}x{y2 - y1:.0f} px at "
                     f"({x1:.0f}, {y1:.0f}), score {face.score:.3f})")
    if refine_tilted and np.ptp(face.landmarks, axis=0).max() > 0:
        face, note = refine(image, face, detector)
        notes.append(note)
    try:
        matrix = alignment_matrix(face.landmarks, geometry)
    except FerlibError as error:   # landmarks that coincide: a detection that cannot be aligned
        return Alignment(None, "no face", geometry, faces=len(faces),
                         note=f"MTCNN found {len(faces)} face(s) but the landmarks of the largest cannot be "
                              f"aligned ({error})")
    aligned = warp(image, matrix, geometry.height, geometry.width)
    status = "ok" if len(faces) == 1 else "several faces"
    return Alignment(aligned, status, geometry, face, len(faces), note="; ".join(n for n in notes if n), matrix=matrix)


def fallback_alignment(image: np.ndarray, geometry: Geometry | str, landmarks: Any = None,
                       note: str = "") -> Alignment:
    """A "fallback" Alignment for an image where detection failed: warped with `landmarks` from
    elsewhere (e.g. a neighbouring frame of the same sequence) when given, else `centre_crop_resize`.
    `note` should say where the landmarks came from; the sidecar records the matrix used."""
    geometry = as_geometry(geometry)
    image = as_image(image)
    if landmarks is not None:
        matrix = alignment_matrix(landmarks, geometry)
        note = note or "aligned with landmarks from elsewhere (detection failed on this image)"
    else:
        matrix = centre_crop_matrix(image.shape, geometry)
        note = note or "no landmarks: largest centred crop, resized (centre_crop_resize)"
    return Alignment(warp(image, matrix, geometry.height, geometry.width), "fallback", geometry,
                     note=note, matrix=matrix)


def example_photographs() -> list[tuple[str, np.ndarray]]:
    """Real face photographs that ship offline inside scikit-image (a dev dependency): the
    astronaut (frontal, colour) and the cameraman (three-quarter view, grey), each also rotated
    by 45 degrees. For demonstrations and tests of the detector on real faces."""
    try:
        from skimage import data
    except ImportError:
        raise FerlibError("the example photographs come with scikit-image: pip install scikit-image==0.26.0") from None
    photos = [("astronaut", data.astronaut()), ("cameraman", np.repeat(data.camera()[:, :, None], 3, axis=-1))]
    rotated = [(f"{name}, rotated 45°", np.asarray(Image.fromarray(photo).rotate(45, Image.Resampling.BILINEAR,
                                                                                  expand=True, fillcolor=(128,) * 3)))
               for name, photo in photos]
    return photos + rotated


def examples_on_photographs(papers: Sequence[str], detector: FaceDetector | None = None
                            ) -> list[tuple[str, list[np.ndarray]]]:
    """For each example photograph, its face aligned to each paper's geometry (None where no face)."""
    detector = detector or FaceDetector()
    rows = []
    for name, photo in example_photographs():
        rows.append((name, [align_face(photo, geometry(paper), detector).image for paper in papers]))
    return rows
