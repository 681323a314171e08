"""SynthFER: procedurally rendered faces with known identity, expression and nuisance factors.

The real datasets are licence-gated; SynthFER is what runs everywhere by default. Every image is
drawn from explicit factors, so the papers' central claim (identity confounds expression; removing
or modelling identity helps) can be tested on data where the truth is known.

- Identity (fixed per subject, `Identity`): face shape and width, skin tone, hair style and
  colour, eye size and spacing, brow thickness and resting height/angle, nose length and width,
  mouth width, lip thickness, resting mouth curvature, age lines, glasses, beard, moles. The
  resting mouth curvature, brow height and angle, eye opening and age lines are additive offsets
  in expression units, uniform in [-1, 1] (`IdentityModel.rest_scale`): an offset of 1 moves the
  mouth corners as far as AU12 at full intensity (`MOUTH_UNIT`), so a resting down-turned mouth
  looks sad and low resting brows look angry, as in real people. Each subject's own expression
  style (per-AU gains, a preferred prototype variant) stays small (`style_scale`).
- Expression: FACS-like action units with intensity 0..1 (`AUS`); each class is a prototype AU
  combination (`PROTOTYPES`, after EMFACS and Lucey et al. 2010, see /work/shared/facs.md) with
  common variants (`VARIANTS`). AU4 is shared by anger, sadness, fear (and disgust), AU1+2 by
  fear and surprise, so the real datasets' confusions can arise.
- Nuisances (`Nuisance`, drawn by a preset's `NuisanceConfig`), each on/off with a strength:
  head pose, illumination direction and strength, occlusion (sunglasses, hand, mask, patch),
  blur, noise, JPEG compression, background clutter. Lab presets jitter the head a little (a
  face-aligned recording); in-the-wild presets draw everything per image.
- Presets (`PRESETS`) mimic each real protocol's structure (see each preset's description);
  `scale` multiplies the subjects (and so the images) so CI runs small.

Rendering draws polygons with PIL on a canvas 4x (2x above 96 px) larger than the output and
box-downsamples it (anti-aliasing); coordinates are quantised before drawing. Every random draw
comes from a numpy PCG64 generator seeded from (seed, subject, purpose, class, repeat), so a
subject's identity does not depend on the scale or the order of generation, and the same preset
and seed give byte-identical images (`checksum`, data_manifests/synthfer/*.yaml).

Each preset is its own population of people (`SynthPreset.population`): subject S005 of
synth-ckplus and S005 of synth-oulu are different faces, so a model pre-trained on one preset
(EIFN's stage 1, IF-GAN's extra data, TER-GAN's pre-training) has never seen the other's test
people. A caller shares people only by asking for it: `generate("oulu", population="ckplus")`.
`benchmark_render` states the speed (about 1,300 faces/s at 64 px on one core with in-the-wild
nuisances; lab presets about 2,000/s).

    data = generate("ckplus", scale=0.25, size=64, seed=0)   # in memory: images + manifest
    write(data, "out/synth-ckplus")                            # PNGs + manifest.csv
    python -m ferlib data synth ckplus --out out/synth-ckplus --scale 0.25
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from tqdm.std import tqdm

from ferlib.data.manifest import UNLABELLED, write_manifest
from ferlib.errors import FerlibError, UnknownName
from ferlib.io import atomic_write
from ferlib.labels import BASIC6, BASIC7, CKPLUS7, EXPRESSIONS, FERPLUS8

# --------------------------------------------------------------------------------------------
# Action units and expression prototypes
# --------------------------------------------------------------------------------------------

AUS = (1, 2, 4, 5, 6, 7, 9, 12, 14, 15, 17, 20, 23, 25, 26, 27)
AU_COLUMNS = tuple(f"au{n}" for n in AUS)
AU_INDEX = {au: i for i, au in enumerate(AUS)}

PROTOTYPES: dict[str, dict[int, float]] = {
    "neutral": {},
    "anger": {4: 1.0, 5: 0.5, 7: 0.8, 23: 0.9},
    "contempt": {12: 0.3, 14: 1.0},  # AU12 here stays on the AU14 side only (see render_face)
    "disgust": {9: 1.0, 4: 0.3, 15: 0.5, 17: 0.6, 25: 0.3},
    "fear": {1: 0.8, 2: 0.6, 4: 0.6, 5: 0.9, 7: 0.3, 20: 0.9, 25: 0.8, 26: 0.4},
    "happiness": {6: 0.8, 12: 1.0},
    "sadness": {1: 0.8, 4: 0.6, 15: 0.9},
    "surprise": {1: 1.0, 2: 1.0, 5: 0.6, 26: 0.9},
}
# Common variants (facs.md): a subject posing a class uses its preferred variant, if it has one.
VARIANTS: dict[str, tuple[dict[int, float], ...]] = {
    "anger": ({17: 0.6, 5: 0.0},),
    "contempt": ({12: 0.0},),
    "disgust": ({15: 0.0, 17: 0.9},),
    "fear": ({26: 0.0, 25: 1.0},),
    "happiness": ({25: 0.8}, {6: 0.2}),
    "sadness": ({15: 0.6, 17: 0.6}, {1: 0.4, 6: 0.5}),
    "surprise": ({5: 0.0}, {26: 0.0, 27: 0.7}),
}


def prototype_vector(label: str, variant: int = 0) -> np.ndarray:
    """The class's AU intensities at apex as a vector over `AUS` (variant 0 = the prototype)."""
    aus = dict(PROTOTYPES[label])
    if variant > 0:
        aus.update(VARIANTS[label][variant - 1])
    vector = np.zeros(len(AUS))
    for au, value in aus.items():
        vector[AU_INDEX[au]] = value
    return vector


# --------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------

SKIN_LIGHT, SKIN_DARK = (250, 222, 196), (92, 58, 40)
HAIR_COLOURS = ((25, 20, 18), (60, 40, 28), (110, 75, 45), (180, 140, 80), (150, 70, 35), (160, 160, 160))
IRIS_COLOURS = ((60, 40, 25), (90, 60, 35), (70, 100, 130), (80, 110, 70))
HAIR_STYLES = ("short", "long", "bald", "fringe", "side")


@dataclass(frozen=True)
class IdentityModel:
    """How subjects differ.

    rest_scale: resting mouth curvature, brow height and eye opening are uniform in
      [-rest_scale, rest_scale] expression units (brow angle in half that, age lines in
      [0, 0.6 rest_scale]). 1.0 was tuned so that all four validity numbers hold (validity.py):
      offsets of about one full expression unit drive the identity confound.
    style_scale: std of the log per-AU gains (the subject's own style; kept small, since style
      lowers accuracy but drives neither the confound nor the benefit of a neutral reference).
    variant_p: probability that a subject poses a class with a variant, not the prototype.
    """

    rest_scale: float = 1.0
    style_scale: float = 0.1
    variant_p: float = 0.25
    glasses_p: float = 0.2
    beard_p: float = 0.15
    moles_p: float = 0.3


@dataclass(frozen=True)
class Identity:
    """One subject's fixed appearance. Lengths are in face units (head half-width about 0.55);
    `rest_*` are resting-face offsets in expression units (see the module docstring)."""

    subject: str
    face_width: float
    face_length: float
    jaw_taper: float
    squareness: float
    skin: tuple[int, int, int]
    hair_style: str
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    shirt: tuple[int, int, int]
    backdrop: tuple[int, int, int]
    eye_y: float
    eye_spacing: float
    eye_width: float
    eye_open: float
    brow_gap: float
    brow_thickness: float
    nose_length: float
    nose_width: float
    mouth_y: float
    mouth_width: float
    lip_upper: float
    lip_lower: float
    rest_mouth: float
    rest_brow: float
    rest_brow_angle: float
    rest_eye: float
    rest_lines: float
    glasses: bool
    beard: bool
    moles: tuple[tuple[float, float, float], ...]
    au_gain: tuple[float, ...]
    variant: tuple[int, ...]  # preferred variant per class, indexed like EXPRESSIONS


def subject_id(index: int, width: int = 3) -> str:
    return f"S{index + 1:0{width}d}"


def rng_for(*keys: int) -> np.random.Generator:
    """A PCG64 generator seeded from a tuple of non-negative ints (seed, subject, purpose, ...)."""
    return np.random.Generator(np.random.PCG64(list(keys)))


PURPOSE_IDENTITY, PURPOSE_SEQUENCE, PURPOSE_FRAME, PURPOSE_PLAN = 1, 2, 3, 4


def make_identity(seed: int, index: int, model: IdentityModel = IdentityModel(), width: int = 3,
                  population: int | None = None) -> Identity:
    """Subject `index`'s identity: a function of (seed, population, index) only.

    `population` (a preset's `population` code, >= 1) names whose people these are: the same index
    in two populations is two different people. None is the population of the figures and the
    miniature layout fixtures, which belongs to no preset."""
    if population is not None and population < 1:
        raise FerlibError(f"population {population}: population codes start at 1 (None: the figures' people)")
    keys = (seed, index, PURPOSE_IDENTITY) + (() if population is None else (population,))
    rng = rng_for(*keys)
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    tone = u(0, 1)
    skin = tuple(int(round(a + (b - a) * tone)) for a, b in zip(SKIN_LIGHT, SKIN_DARK))
    hair = HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))]
    lips = (min(255, int(skin[0] * 0.85 + 40)), int(skin[1] * 0.55), int(skin[2] * 0.55))
    shirt = tuple(int(v) for v in rng.integers(30, 226, size=3))
    grey = int(rng.integers(150, 225))
    backdrop = (grey, grey, min(255, grey + int(rng.integers(0, 15))))
    r = model.rest_scale
    gains = np.exp(rng.normal(0.0, model.style_scale, len(AUS))) if model.style_scale > 0 else np.ones(len(AUS))
    variant = []
    for label in EXPRESSIONS:
        n = len(VARIANTS.get(label, ()))
        variant.append(int(rng.integers(1, n + 1)) if n and rng.random() < model.variant_p else 0)
    moles = tuple((u(-0.35, 0.35), u(-0.3, 0.5), u(0.010, 0.018)) for _ in range(int(rng.integers(1, 3)))) \
        if rng.random() < model.moles_p else ()
    return Identity(
        subject=subject_id(index, width), face_width=u(0.9, 1.1), face_length=u(0.94, 1.06),
        jaw_taper=u(0.0, 0.35), squareness=u(2.0, 2.8), skin=skin,
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))], hair=hair,
        iris=IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))], lips=lips, shirt=shirt, backdrop=backdrop,
        eye_y=u(-0.13, -0.05), eye_spacing=u(0.21, 0.27), eye_width=u(0.09, 0.12), eye_open=u(0.038, 0.055),
        brow_gap=u(0.11, 0.15), brow_thickness=u(0.03, 0.06), nose_length=u(0.14, 0.24),
        nose_width=u(0.06, 0.1), mouth_y=u(0.36, 0.42), mouth_width=u(0.14, 0.2),
        lip_upper=u(0.018, 0.035), lip_lower=u(0.025, 0.045),
        rest_mouth=u(-r, r), rest_brow=u(-r, r), rest_brow_angle=u(-r, r) * 0.5, rest_eye=u(-r, r),
        rest_lines=u(0, 0.6 * r),
        glasses=bool(rng.random() < model.glasses_p), beard=bool(rng.random() < model.beard_p), moles=moles,
        au_gain=tuple(float(g) for g in gains), variant=tuple(variant),
    )


def expression_aus(identity: Identity, label: str, intensity: float) -> np.ndarray:
    """AU intensities (0..1, over `AUS`) of `identity` showing `label` at `intensity` (0..1)."""
    variant = identity.variant[EXPRESSIONS.index(label)]
    return np.clip(prototype_vector(label, variant) * np.asarray(identity.au_gain) * intensity, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Nuisances
# --------------------------------------------------------------------------------------------

OCCLUSIONS = ("sunglasses", "hand", "mask", "patch")


@dataclass(frozen=True)
class Nuisance:
    """Everything about one image that is neither identity nor expression. Angles in degrees;
    blur radius and noise std in output pixels and grey levels at 64 px (scaled with size);
    jpeg_quality 0 = no compression; clutter 0..1 = how many background shapes; `seed` drives the
    random parts (clutter shapes, noise, hand and patch placement)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    light_azimuth: float = 0.0
    light_strength: float = 0.0
    brightness: float = 1.0
    occlusion: str = ""
    blur: float = 0.0
    noise: float = 0.0
    jpeg_quality: int = 0
    clutter: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    zoom: float = 1.0
    background: tuple[int, int, int] | None = None  # None: the identity's backdrop
    seed: int = 0


@dataclass(frozen=True)
class NuisanceConfig:
    """A preset's nuisance distribution. Pose stds in degrees (clipped at 2.5 std and +-75);
    each of occlusion/blur/noise/jpeg/clutter is on with its probability `*_p`, then drawn with
    a strength up to its `*_max`. `per_image`: draw per image (in-the-wild) rather than once per
    sequence with a small per-frame jitter (lab recordings)."""

    yaw_std: float = 2.0
    pitch_std: float = 2.0
    roll_std: float = 1.5
    frame_jitter: float = 0.4
    light_p: float = 0.0
    light_max: float = 0.0
    brightness: tuple[float, float] = (0.95, 1.05)
    occlusion_p: float = 0.0
    occlusions: tuple[str, ...] = OCCLUSIONS
    blur_p: float = 0.0
    blur_max: float = 1.2
    noise_p: float = 0.0
    noise_max: float = 12.0
    jpeg_p: float = 0.0
    jpeg_range: tuple[int, int] = (25, 90)
    clutter_p: float = 0.0
    shift_std: float = 0.015
    zoom_std: float = 0.025
    per_image: bool = False


LAB = NuisanceConfig(yaw_std=1.0, pitch_std=1.0, roll_std=0.5, shift_std=0.004, zoom_std=0.006, brightness=(0.97, 1.03))
WILD = NuisanceConfig(yaw_std=20.0, pitch_std=10.0, roll_std=8.0, light_p=0.8, light_max=0.8,
                      brightness=(0.6, 1.25), occlusion_p=0.25, blur_p=0.3, noise_p=0.3, jpeg_p=0.5,
                      clutter_p=0.9, shift_std=0.03, zoom_std=0.05, per_image=True)


def clipped_normal(rng: np.random.Generator, std: float, limit: float = 75.0) -> float:
    return float(np.clip(rng.normal(0.0, std), -min(2.5 * std, limit), min(2.5 * std, limit))) if std > 0 else 0.0


def sample_nuisance(cfg: NuisanceConfig, rng: np.random.Generator) -> Nuisance:
    """One draw from `cfg` (a whole sequence's, or one image's when cfg.per_image)."""
    light_on = rng.random() < cfg.light_p
    occluded = rng.random() < cfg.occlusion_p
    blurred, noisy, compressed, cluttered = (rng.random() < p for p in (cfg.blur_p, cfg.noise_p, cfg.jpeg_p, cfg.clutter_p))
    return Nuisance(
        yaw=round(clipped_normal(rng, cfg.yaw_std), 2), pitch=round(clipped_normal(rng, cfg.pitch_std), 2),
        roll=round(clipped_normal(rng, cfg.roll_std), 2),
        light_azimuth=round(float(rng.uniform(0, 360)), 1) if light_on else 0.0,
        light_strength=round(float(rng.uniform(0.2, 1.0)) * cfg.light_max, 3) if light_on else 0.0,
        brightness=round(float(rng.uniform(*cfg.brightness)), 3),
        occlusion=cfg.occlusions[int(rng.integers(len(cfg.occlusions)))] if occluded else "",
        blur=round(float(rng.uniform(0.3, 1.0)) * cfg.blur_max, 2) if blurred else 0.0,
        noise=round(float(rng.uniform(0.2, 1.0)) * cfg.noise_max, 2) if noisy else 0.0,
        jpeg_quality=int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1)) if compressed else 0,
        clutter=round(float(rng.uniform(0.3, 1.0)), 2) if cluttered else 0.0,
        shift_x=round(clipped_normal(rng, cfg.shift_std, 0.1), 4), shift_y=round(clipped_normal(rng, cfg.shift_std, 0.1), 4),
        zoom=round(1.0 + clipped_normal(rng, cfg.zoom_std, 0.15), 4), seed=int(rng.integers(2**31)),
    )


def jitter_frame(base: Nuisance, cfg: NuisanceConfig, rng: np.random.Generator) -> Nuisance:
    """A lab sequence's frame: the sequence's nuisances plus a small head motion and new noise."""
    j = cfg.frame_jitter
    return replace(base, yaw=round(base.yaw + clipped_normal(rng, j), 2), pitch=round(base.pitch + clipped_normal(rng, j), 2),
                   roll=round(base.roll + clipped_normal(rng, j / 2), 2), seed=int(rng.integers(2**31)))


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

HEAD_A, HEAD_B, HEAD_C = 0.55, 0.75, 0.55  # head ellipsoid semi-axes (x, y, depth) before identity scaling
PX_PER_UNIT = 0.6                            # image sides per face unit: forehead to chin fill 0.9 of the image
CENTRE_Y = 0.5                               # the head's centre, as a fraction of the image height
# How far one expression unit moves a feature (face units): AU12/AU15 at 1 and a resting mouth
# offset of 1 move the mouth corners alike; likewise the brows (AU1/AU4) and the upper lids (AU5).
MOUTH_UNIT, BROW_UNIT, EYE_UNIT = 0.12, 0.075, 0.035
T5, T7, T9, T11 = (np.linspace(-1, 1, k) for k in (5, 7, 9, 11))
U7 = np.linspace(0, 1, 7)
ANGLES = np.linspace(0, 2 * np.pi, 13)[:-1]
COS12, SIN12 = np.cos(ANGLES), np.sin(ANGLES)
RIM = np.linspace(0, 2 * np.pi, 41)[:-1]
RIM_COS, RIM_SIN = np.cos(RIM), np.sin(RIM)
TOP = np.linspace(math.pi, 2 * math.pi, 13)
TOP_COS, TOP_SIN = np.cos(TOP), np.sin(TOP)
EYE_WHITE, MOUTH_INSIDE, TEETH, PUPIL = (238, 236, 230), (70, 25, 30), (235, 232, 220), (15, 12, 10)


@lru_cache(maxsize=65536)
def scaled(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    """Colour `c` times `f`, clipped to 0..255."""
    return tuple(min(255, max(0, int(round(v * f)))) for v in c)


def ink(skin: tuple[int, int, int], darkness: float, strength: float) -> tuple[int, int, int]:
    """A crease's colour: skin darkened by `darkness` as `strength` (0..1) grows (1/32 steps)."""
    return scaled(skin, 1.0 - darkness * round(min(1.0, max(0.0, strength)) * 32) / 32)


def band(x: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The closed outline between two curves over the same x (upper left to right, lower back)."""
    return np.concatenate([x, x[::-1]]), np.concatenate([upper, lower[::-1]])


class Sketch:
    """Shapes in face units, transformed to the canvas in one go, then drawn in order.

    `surface` shapes lie on the head ellipsoid and turn with the head in 3D (pose); `shell`
    shapes (outline, hair, neck) scale with the head's silhouette; `screen` shapes are already
    in image units (-1..1 across the image), e.g. clutter, a hand or a patch.
    """

    FRAMES = {"surface": 0, "shell": 1, "screen": 2}

    def __init__(self):
        self.shapes: list[tuple[int, str, dict]] = []
        self.xs: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []

    def curve(self, frame: str, kind: str, x, y, **style) -> None:
        """Add a polygon, a polyline or an ellipse (two corner points) from coordinate arrays
        (or sequences of floats)."""
        self.shapes.append((self.FRAMES[frame], kind, style))
        self.xs.append(x)
        self.ys.append(y)

    def add(self, frame: str, kind: str, points, **style) -> None:
        """Like `curve`, from a list of (x, y) points."""
        x, y = zip(*points)
        self.curve(frame, kind, x, y, **style)

    def draw(self, draw: ImageDraw.ImageDraw, canvas: int, head: tuple[float, float, float], n: Nuisance) -> None:
        if not self.shapes:
            return
        a, b, c = head
        yaw, pitch, roll = (math.radians(v) for v in (n.yaw, n.pitch, n.roll))
        cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
        scale = canvas * PX_PER_UNIT * n.zoom
        ox, oy = canvas * (0.5 + n.shift_x), canvas * (CENTRE_Y + n.shift_y)
        counts = np.array([len(v) for v in self.xs])
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        codes = np.repeat([s[0] for s in self.shapes], counts)
        depth = np.repeat([s[2].get("depth", 0.0) for s in self.shapes], counts)
        x, y = np.concatenate(self.xs).astype(float), np.concatenate(self.ys).astype(float)
        surface, screen = codes == 0, codes == 2
        # surface: points on the head ellipsoid (plus a feature's own depth), rotated in 3D
        z = c * np.sqrt(np.maximum(1.0 - (x / a) ** 2 - (y / b) ** 2, 0.0)) + depth
        z1 = z * cy - x * sy
        z2 = y * sp + z1 * cp
        # shell: the head's silhouette under yaw and pitch is a wider or taller ellipse
        kx, ky = math.sqrt(cy * cy + (c / a) ** 2 * sy * sy), math.sqrt(cp * cp + (c / b) ** 2 * sp * sp)
        xs = np.where(surface, x * cy + z * sy, x * kx)
        ys = np.where(surface, y * cp - z1 * sp, y * ky)
        px = np.where(screen, canvas * (0.5 + 0.5 * x), ox + scale * (xs * cr - ys * sr))
        py = np.where(screen, canvas * (0.5 + 0.5 * y), oy + scale * (xs * sr + ys * cr))
        # quantised to 1/4 canvas pixel: ulp-level differences in the maths cannot move a pixel
        flat = (np.round(np.stack([px, py], 1) * 4) / 4).ravel().tolist()
        facing = (np.add.reduceat(np.where(surface, z2, 1.0), starts) / counts).tolist()
        for (frame, kind, style), k0, k, f in zip(self.shapes, starts.tolist(), counts.tolist(), facing):
            if frame == 0 and f < 0.02 and style.get("hide", True):
                continue  # turned away from the camera
            xy = flat[2 * k0:2 * (k0 + k)]
            if kind == "polygon":
                draw.polygon(xy, fill=style.get("fill"), outline=style.get("outline"))
            elif kind == "line":
                draw.line(xy, fill=style["fill"], width=max(1, int(round(style.get("width", 0.01) * scale))), joint="curve")
            else:  # ellipse from two corner points
                x0, y0, x1, y1 = xy
                draw.ellipse((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), fill=style.get("fill"))


def head_outline(idn: Identity, jaw_drop: float) -> tuple[np.ndarray, np.ndarray]:
    """The head's rim (superellipse with a tapered jaw; the chin lowers with the jaw)."""
    a, b = HEAD_A * idn.face_width, HEAD_B * idn.face_length
    e = 2.0 / idn.squareness
    x = a * np.sign(RIM_COS) * np.abs(RIM_COS) ** e
    y = b * np.sign(RIM_SIN) * np.abs(RIM_SIN) ** e
    lower = np.maximum(y / b, 0.0)
    x = x * (1 - idn.jaw_taper * lower * lower)
    if jaw_drop > 0:
        y = y + jaw_drop * np.minimum(np.maximum((y - idn.mouth_y + 0.1) / (b - idn.mouth_y + 0.1), 0.0), 1.0)
    return x, y


def add_hair(sk: Sketch, idn: Identity, back: bool) -> None:
    a, b = HEAD_A * idn.face_width, HEAD_B * idn.face_length
    style, colour = idn.hair_style, idn.hair
    if style == "bald":
        return
    if back:
        if style == "long":
            sk.add("shell", "polygon", [(-1.12 * a, -0.2), (-1.08 * a, -0.75 * b), (0, -1.1 * b), (1.08 * a, -0.75 * b),
                                        (1.12 * a, -0.2), (1.2 * a, 0.95), (-1.2 * a, 0.95)], fill=scaled(colour, 0.85))
        return
    hairline = {"short": -0.52, "long": -0.5, "fringe": -0.36, "side": -0.48}[style]
    xs = T9[::-1] * a * 1.02
    r = np.abs(T9)
    ys = np.minimum(hairline - 0.06 * r * r + 0.3 * r ** 4 + (0.12 * T9[::-1] if style == "side" else 0.0), -0.1)
    sk.curve("shell", "polygon", np.concatenate([1.07 * a * TOP_COS, xs]), np.concatenate([1.09 * b * TOP_SIN - 0.02, ys]),
             fill=colour)


def add_eye(sk: Sketch, idn: Identity, s: int, au: dict) -> None:
    cx, cy, hw = s * idn.eye_spacing, idn.eye_y, idn.eye_width
    up = idn.eye_open + EYE_UNIT * (au[5] + idn.rest_eye - 0.45 * au[7] - 0.25 * au[6] - 0.15 * au[4] - 0.15 * au[9])
    lo = 0.8 * idn.eye_open + EYE_UNIT * (0.25 * au[5] + 0.3 * idn.rest_eye - 0.5 * au[7] - 0.55 * au[6] - 0.15 * au[9])
    up, lo = max(up, 0.004), max(lo, 0.003)
    bell = 1 - T9 * T9
    x = cx + hw * T9
    upper = cy - up * bell * (1 + 0.15 * s * T9)
    lower = cy + lo * bell
    sk.curve("surface", "polygon", *band(x, upper, lower), fill=EYE_WHITE)
    for radius, colour in ((0.04, idn.iris), (0.017, PUPIL)):  # iris and pupil, clipped by the lids
        px, py = cx + radius * COS12, cy + radius * SIN12
        u = np.minimum(np.maximum((px - cx) / hw, -1.0), 1.0)
        inside = 1 - u * u
        py = np.minimum(np.maximum(py, cy - up * inside * (1 + 0.15 * s * u)), cy + lo * inside)
        sk.curve("surface", "polygon", px, py, fill=colour)
    sk.curve("surface", "line", x, upper, fill=scaled(idn.hair, 0.4), width=0.014)
    crease = min(1.0, max(au[6], 0.6 * au[7]) + 0.5 * idn.rest_lines)  # AU6/AU7 (and age): lower-lid crease
    if crease > 0.03:
        sk.curve("surface", "line", x[1:-1], lower[1:-1] + 0.03 - 0.01 * au[6], fill=ink(idn.skin, 0.45, crease), width=0.012)
    feet = min(1.0, au[6] + 0.6 * idn.rest_lines)  # AU6 (and age): crow's feet
    if feet > 0.03:
        colour, ox = ink(idn.skin, 0.5, feet), cx + s * (hw + 0.015)
        for dy in (-0.025, 0.0, 0.025):
            sk.add("surface", "line", [(ox, cy + dy * 0.5), (ox + s * 0.05, cy + dy * 1.6)], fill=colour, width=0.01)


def add_brow(sk: Sketch, idn: Identity, s: int, au: dict) -> None:
    base = idn.eye_y - idn.brow_gap
    rest, angle = idn.rest_brow, 0.5 * idn.rest_brow_angle
    inner_y = base - BROW_UNIT * (au[1] - 0.8 * au[4] - 0.3 * au[9] + rest + angle)
    outer_y = base + 0.015 - BROW_UNIT * (au[2] + 0.3 * au[1] - 0.25 * au[4] + rest - angle)
    inner_x = s * (idn.eye_spacing - 0.085 + 0.03 * au[4])
    outer_x = s * (idn.eye_spacing + 0.125)
    arch = 0.025 + 0.03 * au[2] - 0.01 * au[4]
    x = inner_x + (outer_x - inner_x) * U7
    y = inner_y + (outer_y - inner_y) * U7 - arch * 4 * U7 * (1 - U7)
    half = 0.5 * idn.brow_thickness * (1 - 0.45 * U7)
    sk.curve("surface", "polygon", *band(x, y - half, y + half), fill=scaled(idn.hair, 0.6))


def add_forehead_lines(sk: Sketch, idn: Identity, au: dict) -> None:
    raised = min(1.0, max(au[1], au[2]) + idn.rest_lines)
    if raised > 0.03:  # AU1/AU2: horizontal forehead wrinkles
        colour, y0 = ink(idn.skin, 0.4, raised), idn.eye_y - idn.brow_gap - 0.12
        for k in range(2):
            sk.curve("surface", "line", 0.2 * T5, y0 - 0.05 * k + 0.03 * T5 * T5, fill=colour, width=0.01)
    frown = min(1.0, au[4] + 0.5 * idn.rest_lines)
    if frown > 0.03:  # AU4 (and age): vertical lines between the brows
        colour, y0 = ink(idn.skin, 0.45, frown), idn.eye_y - idn.brow_gap
        for dx in (-0.025, 0.025):
            sk.add("surface", "line", [(dx, y0 - 0.04), (dx * 1.3, y0 + 0.03)], fill=colour, width=0.011)


def add_nose(sk: Sketch, idn: Identity, au: dict) -> None:
    tip_y = idn.eye_y + idn.nose_length + 0.08
    w = idn.nose_width + 0.02 * au[9]
    lift = 0.022 * au[9]
    sk.add("surface", "line", [(0.03, idn.eye_y + 0.03), (0.04, tip_y - 0.05)], fill=scaled(idn.skin, 0.78), width=0.012, depth=0.08)
    sk.add("surface", "line", [(-w, tip_y - 0.02 - lift), (-0.5 * w, tip_y + 0.02 - lift), (0, tip_y + 0.028 - lift),
                               (0.5 * w, tip_y + 0.02 - lift), (w, tip_y - 0.02 - lift)],
           fill=scaled(idn.skin, 0.62), width=0.014, depth=0.1)
    nostril = scaled(idn.skin, 0.4)
    for s in (-1, 1):
        sk.add("surface", "ellipse", [(s * 0.45 * w - 0.02, tip_y - 0.003 - lift), (s * 0.45 * w + 0.02, tip_y + 0.017 - lift)],
               fill=nostril, depth=0.1)
    if au[9] > 0.03:  # AU9: wrinkles across the bridge
        colour = ink(idn.skin, 0.45, au[9])
        for k in range(3):
            y = idn.eye_y + 0.03 + 0.025 * k
            sk.add("surface", "line", [(-0.04, y), (0.0, y - 0.008), (0.04, y)], fill=colour, width=0.009, depth=0.04)


def jaw_drop(au: dict) -> float:
    return 0.045 * au[26] + 0.09 * au[27]


def add_mouth(sk: Sketch, idn: Identity, au: dict, one_sided_12: bool) -> float:
    """Lips, teeth, mouth opening and the creases around the mouth; returns the mouth's centre y."""
    gap = 0.025 * au[25] + 0.075 * au[26] + 0.15 * au[27]
    my = idn.mouth_y - 0.015 * au[17] + 0.3 * gap
    rest = idn.rest_mouth  # positive: up-turned corners at rest
    hw_common = idn.mouth_width + 0.05 * au[20] - 0.03 * au[23] - 0.03 * au[27] - 0.01 * au[17] - 0.02 * au[26]
    corner = {}
    for s in (-1, 1):
        a12 = au[12] if not one_sided_12 or s == 1 else 0.0
        a14 = au[14] if s == 1 else 0.0
        lift = a12 + rest - 0.95 * au[15] - 0.15 * au[20] + 0.3 * a14  # y grows downwards
        corner[s] = (hw_common + 0.035 * a12 - 0.015 * a14, -MOUTH_UNIT * lift)
    right = T11 >= 0
    x = T11 * np.where(right, corner[1][0], corner[-1][0])
    bell = 1 - T11 * T11
    mid = my + T11 * T11 * np.where(right, corner[1][1], corner[-1][1])
    thin = max(0.2, 1 - 0.65 * au[23] - 0.3 * au[20] - 0.2 * au[12])
    ut, lt = idn.lip_upper * thin, idn.lip_lower * (thin + 0.35 * au[17])
    line_up = mid - (0.5 * gap + 0.02 * au[9]) * bell
    line_lo = mid + 0.5 * gap * bell
    top = line_up - ut * bell ** 0.7 * (1 - 0.3 * np.exp(-(T11 / 0.18) ** 2))
    bottom = line_lo + lt * bell ** 0.8
    if gap > 0.003:
        sk.curve("surface", "polygon", *band(x, line_up, line_lo), fill=MOUTH_INSIDE)
        sk.curve("surface", "polygon", *band(x, line_up, np.minimum(line_up + min(0.5 * gap, 0.03) * bell, line_lo)), fill=TEETH)
    sk.curve("surface", "polygon", *band(x, top, line_up), fill=idn.lips)
    sk.curve("surface", "polygon", *band(x, line_lo, bottom), fill=scaled(idn.lips, 1.08))
    if gap <= 0.003:
        sk.curve("surface", "line", x, mid, fill=scaled(idn.lips, 0.55), width=0.008)
    fold = max(0.0 if one_sided_12 else au[12], au[9], 0.5 * au[6], 0.6 * au[20]) + 0.7 * idn.rest_lines  # nasolabial folds
    tip_y = idn.eye_y + idn.nose_length + 0.08
    for s in (-1, 1):
        strength = min(1.0, max(fold, au[14] if s == 1 else 0.0))
        if strength > 0.03:
            hw_s, dy_s = corner[s]
            sk.add("surface", "line", [(s * (idn.nose_width + 0.03), tip_y - 0.02), (s * (hw_s + 0.03), (tip_y + my + dy_s) / 2),
                                       (s * (hw_s + 0.04), my + dy_s + 0.02)], fill=ink(idn.skin, 0.4, strength), width=0.011)
    if au[14] > 0.03:  # AU14: dimple at the tightened corner
        hw_s, dy_s = corner[1]
        sk.add("surface", "line", [(hw_s + 0.01, my + dy_s - 0.02), (hw_s + 0.025, my + dy_s + 0.01)],
               fill=ink(idn.skin, 0.55, au[14]), width=0.012)
    if au[17] > 0.03:  # AU17: chin boss
        sk.curve("surface", "line", 0.07 * T5, my + 0.1 + jaw_drop(au) - 0.03 * (1 - T5 * T5), fill=ink(idn.skin, 0.4, au[17]),
                 width=0.01)
    return my


def add_beard(sk: Sketch, idn: Identity, my: float, jaw: float) -> None:
    x, y = head_outline(idn, jaw)
    keep = y > my - 0.12
    x, y = x[keep], y[keep]
    order = np.argsort(-x)
    inner_x = np.array([-0.19, 0.0, 0.19, 0.2, 0.12, 0.0, -0.12, -0.2])
    inner_y = my + np.array([0.06, 0.08 + 0.6 * jaw, 0.06, -0.06, -0.05, -0.06, -0.05, -0.06])
    sk.curve("surface", "polygon", np.concatenate([0.98 * x[order], inner_x]), np.concatenate([0.98 * y[order], inner_y]),
             fill=scaled(idn.hair, 0.9), hide=False)


def add_glasses(sk: Sketch, idn: Identity, tinted: bool) -> None:
    frame = (20, 20, 25)
    w, h = idn.eye_width + 0.045, 0.075
    for s in (-1, 1):
        cx, cy = s * idn.eye_spacing, idn.eye_y
        box = [(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy + h * 0.9), (cx - w, cy + h * 0.9)]
        if tinted:
            sk.add("surface", "polygon", box, fill=(28, 30, 36), outline=frame)
        else:
            sk.add("surface", "line", box + [box[0]], fill=frame, width=0.012)
        sk.add("surface", "line", [(cx + s * w, cy - h * 0.6), (s * HEAD_A * idn.face_width * 0.98, cy - 0.05)], fill=frame,
               width=0.012, hide=False)
    inner = idn.eye_spacing - w
    sk.add("surface", "line", [(-inner, idn.eye_y - 0.03), (inner, idn.eye_y - 0.03)], fill=frame, width=0.014, depth=0.03)


def add_mask(sk: Sketch, idn: Identity, my: float, jaw: float) -> None:
    top = idn.eye_y + idn.nose_length * 0.55 + 0.05
    a = HEAD_A * idn.face_width
    side = 0.85 * a * (1 - idn.jaw_taper * 0.5)
    sk.add("surface", "polygon", [(-0.98 * a, top + 0.04), (-0.4, top - 0.02), (0, top - 0.04), (0.4, top - 0.02), (0.98 * a, top + 0.04),
                                  (side, my + 0.15), (0, HEAD_B * idn.face_length + jaw - 0.04), (-side, my + 0.15)],
           fill=(176, 205, 225), hide=False)
    for k in range(3):
        sk.add("surface", "line", [(-0.3, top + 0.08 + 0.07 * k), (0.3, top + 0.08 + 0.07 * k)], fill=(140, 170, 195), width=0.01,
               hide=False)


def add_screen_occluder(sk: Sketch, kind: str, skin, rng: np.random.Generator) -> None:
    """A hand or a random patch, in image units (-1..1), placed by `rng`."""
    if kind == "patch":
        w, h = rng.uniform(0.35, 0.7, size=2)
        x0, y0 = rng.uniform(-0.6, 0.6 - w), rng.uniform(-0.5, 0.8 - h)
        fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
        sk.add("screen", "polygon", [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)], fill=fill)
        return
    cx, cy = rng.uniform(-0.35, 0.35), rng.uniform(0.05, 0.55)
    tone, r = scaled(skin, round(float(rng.uniform(0.85, 1.0)), 2)), 0.28
    outline = scaled(tone, 0.7)
    sk.add("screen", "polygon", [(cx - 0.18, cy + 0.1), (cx + 0.18, cy + 0.1), (cx + 0.22, 1.0), (cx - 0.22, 1.0)], fill=tone)
    sk.add("screen", "ellipse", [(cx - r, cy - r * 0.8), (cx + r, cy + r * 0.8)], fill=tone)
    for k in range(4):
        fx = cx - 0.21 + 0.14 * k
        sk.add("screen", "polygon", [(fx - 0.055, cy), (fx - 0.055, cy - r - 0.22 + 0.04 * abs(k - 1.5)),
                                     (fx + 0.055, cy - r - 0.22 + 0.04 * abs(k - 1.5)), (fx + 0.055, cy)], fill=tone, outline=outline)


def add_clutter(sk: Sketch, amount: float, rng: np.random.Generator) -> None:
    """Background shapes: rectangles, ellipses and thick lines in random colours."""
    count = int(round(4 + 10 * amount))
    kinds = rng.integers(3, size=count)
    corners = rng.uniform(-1, 1, size=(count, 2))
    sizes = rng.uniform(0.1, 0.8, size=(count, 2))
    fills = rng.integers(0, 256, size=(count, 3)).tolist()
    for kind, (x0, y0), (w, h), fill in zip(kinds.tolist(), corners.tolist(), sizes.tolist(), fills):
        if kind == 0:
            sk.add("screen", "polygon", [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)], fill=tuple(fill))
        elif kind == 1:
            sk.add("screen", "ellipse", [(x0, y0), (x0 + w, y0 + h)], fill=tuple(fill))
        else:
            sk.add("screen", "line", [(x0, y0), (x0 + w, y0 - h)], fill=tuple(fill), width=0.05)


def supersample_for(size: int) -> int:
    """Canvas factor: 4x up to 96 px, 2x above (at least 192 px of canvas either way)."""
    return 4 if size <= 96 else 2


def au_dict(aus) -> dict[int, float]:
    """{AU number: intensity clipped to 0..1} from a vector over `AUS` or a partial dict."""
    if isinstance(aus, dict):
        out = dict.fromkeys(AUS, 0.0)
        for k, v in aus.items():
            if int(k) not in AU_INDEX:
                raise FerlibError(f"AU{k} is not rendered; SynthFER's action units are {', '.join(f'AU{a}' for a in AUS)}")
            out[int(k)] = min(1.0, max(0.0, float(v)))
        return out
    values = np.asarray(aus, dtype=float).ravel()
    if len(values) != len(AUS):
        raise FerlibError(f"got {len(values)} AU intensities; expected {len(AUS)}, one per AU in {AUS}")
    return dict(zip(AUS, np.minimum(np.maximum(values, 0.0), 1.0).tolist()))


def render_face(identity: Identity, aus, nuisance: Nuisance = Nuisance(), size: int = 64, greyscale: bool = False,
                one_sided_12: bool = False) -> np.ndarray:
    """One face as a (size, size, 3) uint8 array, or (size, size, 1) when `greyscale`.

    aus: AU intensities 0..1, a vector over `AUS` or a dict {au number: intensity}.
    one_sided_12: AU12 on the AU14 side only (contempt).
    """
    au, idn, n = au_dict(aus), identity, nuisance
    if n.occlusion not in ("",) + OCCLUSIONS:
        raise FerlibError(f"unknown occlusion {n.occlusion!r}; valid occlusions are '' (none), {', '.join(OCCLUSIONS)}")
    ss = supersample_for(size)
    canvas = size * ss
    image = Image.new("RGB", (canvas, canvas), n.background or idn.backdrop)
    rng = rng_for(n.seed, 7)
    sk = Sketch()
    if n.clutter > 0:
        add_clutter(sk, n.clutter, rng)
    add_hair(sk, idn, back=True)
    sk.add("shell", "polygon", [(-0.17, 0.4), (0.17, 0.4), (0.19, 1.2), (-0.19, 1.2)], fill=scaled(idn.skin, 0.85))
    sk.add("shell", "polygon", [(-0.95, 1.3), (-0.8, 0.95), (-0.2, 0.82), (0, 0.9), (0.2, 0.82), (0.8, 0.95), (0.95, 1.3)],
           fill=idn.shirt)
    jaw = jaw_drop(au)
    sk.curve("shell", "polygon", *head_outline(idn, jaw), fill=idn.skin)
    for x, y, r in idn.moles:
        sk.add("surface", "ellipse", [(x - r, y - r), (x + r, y + r)], fill=scaled(idn.skin, 0.45))
    add_forehead_lines(sk, idn, au)
    for s in (-1, 1):
        add_eye(sk, idn, s, au)
        add_brow(sk, idn, s, au)
    add_nose(sk, idn, au)
    my = add_mouth(sk, idn, au, one_sided_12)
    if idn.beard and n.occlusion != "mask":
        add_beard(sk, idn, my, jaw)
    add_hair(sk, idn, back=False)
    if idn.glasses or n.occlusion == "sunglasses":
        add_glasses(sk, idn, tinted=n.occlusion == "sunglasses")
    if n.occlusion == "mask":
        add_mask(sk, idn, my, jaw)
    elif n.occlusion in ("hand", "patch"):
        add_screen_occluder(sk, n.occlusion, idn.skin, rng)
    sk.draw(ImageDraw.Draw(image), canvas, (HEAD_A * idn.face_width, HEAD_B * idn.face_length, HEAD_C), n)
    return finish(image.reduce(ss), n, size, greyscale, rng)


def finish(image: Image.Image, n: Nuisance, size: int, greyscale: bool, rng: np.random.Generator) -> np.ndarray:
    """Illumination, blur, noise, JPEG and greyscale at output resolution."""
    if n.light_strength > 0 or n.brightness != 1.0:
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        az = math.radians(n.light_azimuth)
        k = 0.6 * n.light_strength
        gain = n.brightness * (1.0 + k * math.cos(az) * ramp[None, :] + k * math.sin(az) * ramp[:, None])
        pixels = np.asarray(image, dtype=np.float32) * gain[:, :, None]
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    if n.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(n.blur * size / 64))
    if n.noise > 0:
        noise = np.rint(rng.normal(0.0, n.noise, (size, size, 3))).astype(np.int16)
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
    if n.jpeg_quality > 0:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(n.jpeg_quality))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if greyscale:
        return np.asarray(image.convert("L"))[:, :, None]
    return np.asarray(image)


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

DYNAMICS = ("onset_apex", "onset_apex_offset", "levels", "single", "pairs")


@dataclass(frozen=True)
class SynthPreset:
    """The structure of one SynthFER dataset at scale 1.

    subjects: subjects at scale 1 (single-image presets: one new subject per image).
    classes: class names in canonical order (ferlib.labels).
    counts: sequences (or images) per class at scale 1, same order as `classes`; None = every
      subject poses every class `repeats` times.
    dynamics: onset_apex (CK+/Oulu/BU-4DFE: neutral first frame rising to an apex plateau),
      onset_apex_offset (MMI: rises, holds, falls), levels (BU-3DFE: intensity levels 1..4 plus
      one neutral image per subject), single (in-the-wild single images), pairs (EAN-style views:
      frontal, profile, occluded, relit of one identity and expression).
    frames: (min, max) frames per sequence; peak: (min, max) apex intensity per sequence.
    repeat_classes: a subject may pose a class more than once (MMI).
    unlabelled: extra sequences at scale 1 that pose a random class but carry no label (label
      "", column `expression` keeps the truth), as CK+'s 266 sequences without an emotion label.
    population: the preset's own people: every preset has a different code, so no two presets
      share a person (see the module docstring).
    """

    name: str
    description: str
    subjects: int
    classes: tuple[str, ...]
    dynamics: str
    counts: tuple[int, ...] | None = None
    repeats: int = 1
    repeat_classes: bool = False
    unlabelled: int = 0
    frames: tuple[int, int] = (1, 1)
    peak: tuple[float, float] = (0.8, 1.0)
    nuisances: NuisanceConfig = LAB
    greyscale: bool = False
    native_size: int = 64
    identity: IdentityModel = field(default_factory=IdentityModel)
    population: int = 0   # whose people these are (make_identity); unique per preset, >= 1

    def class_counts(self, scale: float = 1.0) -> dict[str, int]:
        """Planned sequences (images for single/pairs... per class) at `scale`."""
        if self.counts is None:
            n = scaled_subjects(self.subjects, scale)
            return {c: n * self.repeats for c in self.classes}
        return {c: max(1, int(round(k * scale))) for c, k in zip(self.classes, self.counts)}


def scaled_subjects(subjects: int, scale: float) -> int:
    return max(2, int(round(subjects * scale)))


PRESETS: dict[str, SynthPreset] = {p.name: p for p in (
    SynthPreset(
        "ckplus", "CK+-like: 123 subjects, 593 posed sequences of which 327 carry a label (CK+'s class counts, at "
        "most one per subject and class) and 266 none (label \"\"), neutral first frame rising to the apex over "
        "10-24 frames, frontal lab recordings. Colour (CK+ is mostly greyscale).",
        subjects=123, classes=CKPLUS7, dynamics="onset_apex", counts=(45, 18, 59, 25, 69, 28, 83), unlabelled=266,
        frames=(10, 24), population=1),
    SynthPreset(
        "mmi", "MMI-like: 30 subjects, 208 frontal sequences onset-apex-offset over 14-30 frames (IF-GAN's subset "
        "class counts, approximately); a subject may pose a class more than once.",
        subjects=30, classes=BASIC6, dynamics="onset_apex_offset", counts=(32, 31, 28, 42, 32, 43), repeat_classes=True,
        frames=(14, 30), peak=(0.7, 1.0), population=2),
    SynthPreset(
        "oulu", "Oulu-CASIA VIS strong-light-like: 80 subjects x 6 expressions, neutral to apex over 9-18 frames, "
        "frontal, strong frontal light.",
        subjects=80, classes=BASIC6, dynamics="onset_apex", frames=(9, 18),
        nuisances=replace(LAB, brightness=(1.05, 1.15)), population=3),
    SynthPreset(
        "bu3dfe", "BU-3DFE-like: 100 subjects x 6 expressions x 4 intensity levels (frames 0..3 = levels 1..4, "
        "intensity 0.25..1) plus one neutral image per subject (2,500 images), frontal renders on black.",
        subjects=100, classes=BASIC6, dynamics="levels", frames=(4, 4), peak=(1.0, 1.0), population=4),
    SynthPreset(
        "bu4dfe", "BU-4DFE-like: 101 subjects x 6 expressions, one sequence each from neutral to apex over "
        "12-24 frames (the rising half of BU-4DFE's neutral-apex-neutral sequences).",
        subjects=101, classes=BASIC6, dynamics="onset_apex", frames=(12, 24), population=5),
    SynthPreset(
        "rafdb", "RAF-DB basic-like: 15,339 single in-the-wild images with RAF-DB's class counts (happiness most "
        "frequent, fear and disgust rare), each a different person, with pose, illumination, occlusion, blur, "
        "noise, JPEG and background clutter.",
        subjects=15339, classes=BASIC7, dynamics="single", counts=(3204, 867, 877, 355, 5957, 2460, 1619),
        peak=(0.35, 1.0), nuisances=WILD, population=6),
    SynthPreset(
        "ferplus", "FERPlus-like: about 35,000 single 48x48 greyscale in-the-wild images, 8 classes with FERPlus's "
        "majority-vote class counts (approximate), each a different person.",
        subjects=35488, classes=FERPLUS8, dynamics="single", counts=(12906, 3111, 216, 248, 819, 9355, 4371, 4462),
        peak=(0.35, 1.0), nuisances=replace(WILD, occlusion_p=0.15, clutter_p=0.5), greyscale=True, native_size=48, population=7),
    SynthPreset(
        "pairs", "EAN-style views: 60 subjects x 7 classes, each as 4 images of the same identity and expression "
        "at apex: frontal, profile (yaw 60-75 degrees), frontal occluded, frontal relit (column `view`).",
        subjects=60, classes=BASIC7, dynamics="pairs", frames=(4, 4), peak=(0.8, 1.0), population=8),
    SynthPreset(
        "sessions", "The identity-confound preset: 80 subjects x 6 expressions x 3 recording sessions under different "
        "lights (as Oulu-CASIA VIS records each expression under strong, weak and dark light), neutral to apex over "
        "5-8 frames, so that a seen subject's held-out sequence has its class in training (see validity.py).",
        subjects=80, classes=BASIC6, dynamics="onset_apex", repeats=3, frames=(5, 8),
        nuisances=replace(LAB, light_p=1.0, light_max=0.6, brightness=(0.6, 1.15)), population=9),
    SynthPreset(
        "tiny", "A handful of subjects and short sequences for tests: 6 subjects x 7 classes (CK+'s), 4-6 frames.",
        subjects=6, classes=CKPLUS7, dynamics="onset_apex", frames=(4, 6), population=10),
)}

BLACK = (8, 8, 10)
VIEWS = ("frontal", "profile", "occluded", "relit")


def get_preset(name: str) -> SynthPreset:
    if name not in PRESETS:
        raise UnknownName("SynthFER preset", name, PRESETS)
    return PRESETS[name]


# --------------------------------------------------------------------------------------------
# Sequence plans and intensity profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequencePlan:
    subject: int      # subject index (0-based)
    expression: str   # the class posed
    labelled: bool    # False: the manifest's label is "" (CK+'s sequences without an emotion label)
    repeat: int       # 1-based: the subject's n-th sequence of this class (or n-th unlabelled one)
    frames: int

    @property
    def name(self) -> str:
        """The sequence ID's tail: "anger_1", or "unlabelled_2" (IDs never reveal a hidden class)."""
        return f"{self.expression if self.labelled else 'unlabelled'}_{self.repeat}"

    @property
    def key(self) -> int:
        """The class code that seeds this sequence's random draws (8 for unlabelled)."""
        return EXPRESSIONS.index(self.expression) if self.labelled else len(EXPRESSIONS)


def plan_sequences(preset: SynthPreset, scale: float, seed: int) -> list[SequencePlan]:
    """Which subject poses which class, how often and over how many frames."""
    rng = rng_for(seed, 0, PURPOSE_PLAN)
    lo, hi = preset.frames
    plans: list[tuple[int, str, bool]] = []
    if preset.dynamics == "single":
        counts = preset.class_counts(scale)
        labels = [c for c in preset.classes for _ in range(counts[c])]
        order = rng.permutation(len(labels))  # which subject (image) shows which class
        plans = [(int(i), labels[k], True) for i, k in enumerate(order)]
    elif preset.counts is None:
        n = scaled_subjects(preset.subjects, scale)
        plans = [(s, c, True) for s in range(n) for c in preset.classes for _ in range(preset.repeats)]
    else:
        n = scaled_subjects(preset.subjects, scale)
        for c, k in preset.class_counts(scale).items():
            if preset.repeat_classes:
                chosen = rng.integers(n, size=k)
            else:
                chosen = rng.choice(n, size=min(k, n), replace=False)
            plans += [(int(s), c, True) for s in chosen]
        for _ in range(int(round(preset.unlabelled * scale))):
            plans.append((int(rng.integers(n)), preset.classes[int(rng.integers(len(preset.classes)))], False))
        plans.sort(key=lambda p: (p[0], not p[2], preset.classes.index(p[1])))
    seen: dict[tuple[int, str], int] = {}
    out = []
    for s, c, labelled in plans:
        counter = (s, c if labelled else "")
        seen[counter] = seen.get(counter, 0) + 1
        out.append(SequencePlan(s, c, labelled, seen[counter], int(rng.integers(lo, hi + 1))))
    return out


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def intensity_profile(dynamics: str, frames: int) -> tuple[np.ndarray, list[str]]:
    """Expression intensity (0..1) and role of each frame of one sequence."""
    t = np.arange(frames, dtype=float)
    if dynamics == "onset_apex":
        plateau = max(1, frames // 5)
        p = smoothstep(t / max(1, frames - 1 - plateau))
        roles = ["neutral"] + ["apex" if v >= 0.95 else "onset" for v in p[1:]]
    elif dynamics == "onset_apex_offset":
        rise = max(2, int(round(frames * 0.35)))
        fall_start = frames - rise
        p = np.where(t <= rise, smoothstep(t / rise), np.where(t < fall_start, 1.0, 1.0 - 0.9 * smoothstep((t - fall_start + 1) / rise)))
        roles = ["neutral"] + ["apex" if v >= 0.95 and i <= fall_start else ("onset" if i < rise else "offset")
                               for i, v in zip(range(1, frames), p[1:])]
    elif dynamics == "levels":
        p = (t + 1) / frames
        roles = ["onset"] * (frames - 1) + ["apex"]
    elif dynamics == "single":
        p, roles = np.ones(frames), ["single"] * frames
    elif dynamics == "pairs":
        p, roles = np.ones(frames), ["apex"] * frames
    else:
        raise FerlibError(f"unknown dynamics {dynamics!r}; valid: {', '.join(DYNAMICS)}")
    return p, roles


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFactors:
    """Everything one image was drawn from: render_face(identity, aus, nuisance, one_sided_12=...)."""

    identity: Identity
    aus: np.ndarray
    nuisance: Nuisance
    one_sided_12: bool


@dataclass
class SynthData:
    """Rendered images (N,H,W,C) uint8 with their manifest (row i = image i) and class names.

    identities: one row per subject with its identity factors (resting offsets, accessories).
    factors: what drew each image, in memory only (see `render_like`): its person, exact action units,
    nuisances and whether AU12 was one-sided.
    """

    images: np.ndarray
    manifest: pd.DataFrame
    classes: tuple[str, ...]
    identities: pd.DataFrame = field(default_factory=pd.DataFrame)
    preset: str = ""
    scale: float = 1.0
    size: int = 64
    seed: int = 0
    population: str = ""   # whose people: the preset's own name unless `generate` was asked for another's
    factors: list[ImageFactors] = field(default_factory=list, repr=False)


IDENTITY_COLUMNS = ("rest_mouth", "rest_brow", "rest_brow_angle", "rest_eye", "rest_lines", "glasses", "beard", "hair_style")


def pair_views(base: Nuisance, rng: np.random.Generator) -> list[tuple[str, Nuisance]]:
    """EAN-style views of one expression: frontal, profile, occluded, relit."""
    frontal = replace(base, yaw=0.0, pitch=0.0, roll=0.0, light_strength=0.0, occlusion="")
    side = 1 if rng.random() < 0.5 else -1
    return [
        ("frontal", frontal),
        ("profile", replace(frontal, yaw=round(side * float(rng.uniform(60, 75)), 2), seed=base.seed + 1)),
        ("occluded", replace(frontal, occlusion=OCCLUSIONS[int(rng.integers(len(OCCLUSIONS)))], seed=base.seed + 2)),
        ("relit", replace(frontal, light_azimuth=round(float(rng.uniform(0, 360)), 1),
                          light_strength=round(float(rng.uniform(0.6, 1.0)), 3), seed=base.seed + 3)),
    ]


def sequence_images(preset: SynthPreset, idn: Identity, plan: SequencePlan, seed: int):
    """(view, intensity, role, aus, nuisance) for each frame of one planned sequence."""
    rng = rng_for(seed, plan.subject, PURPOSE_SEQUENCE, plan.key, plan.repeat)
    peak = float(rng.uniform(*preset.peak))
    base = sample_nuisance(preset.nuisances, rng)
    if preset.dynamics == "levels":
        base = replace(base, background=BLACK)
    profile, roles = intensity_profile(preset.dynamics, plan.frames)
    if preset.dynamics == "pairs":
        views = pair_views(base, rng)
    elif preset.nuisances.per_image:
        views = [("", base)] * plan.frames
    else:
        frame_rng = rng_for(seed, plan.subject, PURPOSE_FRAME, plan.key, plan.repeat)
        views = [("", base if f == 0 else jitter_frame(base, preset.nuisances, frame_rng)) for f in range(plan.frames)]
    for f in range(plan.frames):
        intensity = float(profile[f]) * peak
        yield views[f][0], intensity, roles[f], expression_aus(idn, plan.expression, intensity), views[f][1]


def generate(preset: str, scale: float = 1.0, size: int | None = None, seed: int = 0, progress: bool = False,
             population: str | None = None) -> SynthData:
    """Render a SynthFER preset in memory.

    scale multiplies the subjects (and images); size is the image side in pixels (None: the
    preset's native size, 64, or 48 for ferplus); the same arguments give byte-identical images.
    population: None renders the preset's own people; another preset's name renders that preset's
    people instead (sharing identities between two datasets on purpose). Unknown presets raise
    `UnknownName`.
    """
    p = get_preset(preset)
    people = p.population if population is None else get_preset(population).population
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise FerlibError(f"SynthFER scale {scale!r} must be a positive number (1.0 = the real dataset's size)")
    size = p.native_size if size is None else int(size)
    if not 8 <= size <= 512:
        raise FerlibError(f"SynthFER size {size} px is out of range; use 8..512 (64 on the CPU, up to 256 on a GPU)")
    plans = plan_sequences(p, scale, seed)
    n_subjects = max(pl.subject for pl in plans) + 1
    width = max(3, len(str(n_subjects)))
    identities: dict[int, Identity] = {}
    total = sum(pl.frames for pl in plans) + (len({pl.subject for pl in plans}) if p.dynamics == "levels" else 0)
    channels = 1 if p.greyscale else 3
    images = np.empty((total, size, size, channels), dtype=np.uint8)
    rows: list[dict] = []
    factors: list[ImageFactors] = []
    bar = tqdm(total=total, desc=f"SynthFER {preset}", unit="img", disable=not progress)

    def emit(idn: Identity, sequence: str, frame: int, label: str, expression: str, role: str, intensity: float,
             aus: np.ndarray, n: Nuisance, view: str) -> None:
        i = len(rows)
        images[i] = render_face(idn, aus, n, size, p.greyscale, one_sided_12=expression == "contempt")
        factors.append(ImageFactors(idn, np.asarray(aus, dtype=float).copy(), n, expression == "contempt"))
        row = {"path": f"{idn.subject}/{sequence}/frame_{frame:03d}.png", "subject": idn.subject, "sequence": sequence,
               "frame": frame, "label": label, "role": role, "fold": -1, "split": "", "expression": expression,
               "intensity": round(intensity, 4), "intensity_level": level_of(intensity, p.dynamics, frame)}
        row.update({c: round(float(v), 4) for c, v in zip(AU_COLUMNS, aus)})
        row.update({"yaw": n.yaw, "pitch": n.pitch, "roll": n.roll, "light_azimuth": n.light_azimuth,
                    "light_strength": n.light_strength, "brightness": n.brightness, "occlusion": n.occlusion,
                    "blur": n.blur, "noise": n.noise, "jpeg_quality": n.jpeg_quality, "clutter": n.clutter, "view": view})
        row.update({c: getattr(idn, c) for c in IDENTITY_COLUMNS})
        rows.append(row)
        bar.update(1)

    for plan in plans:
        if plan.subject not in identities:
            idn = identities[plan.subject] = make_identity(seed, plan.subject, p.identity, width, people)
            if p.dynamics == "levels":  # BU-3DFE: one neutral image per subject
                n = replace(sample_nuisance(p.nuisances, rng_for(seed, plan.subject, PURPOSE_SEQUENCE, 0, 0)), background=BLACK)
                emit(idn, f"{idn.subject}_neutral_1", 0, "neutral", "neutral", "neutral", 0.0, np.zeros(len(AUS)), n, "")
        idn = identities[plan.subject]
        sequence = f"{idn.subject}_{plan.name}"
        for f, (view, intensity, role, aus, n) in enumerate(sequence_images(p, idn, plan, seed)):
            label = "neutral" if role == "neutral" else (plan.expression if plan.labelled else UNLABELLED)
            emit(idn, sequence, f, label, "neutral" if role == "neutral" else plan.expression, role, intensity, aus, n, view)
    bar.close()
    manifest = pd.DataFrame(rows)
    table = pd.DataFrame([{"subject": i.subject, **{c: getattr(i, c) for c in IDENTITY_COLUMNS},
                           "face_width": i.face_width, "eye_spacing": i.eye_spacing, "mouth_width": i.mouth_width}
                          for _, i in sorted(identities.items())])
    return SynthData(images, manifest, tuple(p.classes), table, preset, float(scale), size, seed,
                     preset if population is None else population, factors)


def render_like(data: SynthData, index: int, aus=None, one_sided_12: bool | None = None,
                identity: Identity | None = None) -> np.ndarray:
    """Image `index` of `data` drawn again: byte-identical by default; with `aus` (and `one_sided_12`) the
    same person under the same pose, light and other nuisances showing other action units; with
    `identity` another person in the same conditions."""
    if not data.factors:
        raise FerlibError("this SynthData keeps no factors (a loaded copy): render it with synth.generate")
    f = data.factors[index]
    return render_face(f.identity if identity is None else identity, f.aus if aus is None else aus, f.nuisance,
                       data.size, get_preset(data.preset).greyscale,
                       one_sided_12=f.one_sided_12 if one_sided_12 is None else one_sided_12)


def transfer_truth(data: SynthData, source: int, target: int) -> np.ndarray:
    """The true answer of moving image `source`'s expression onto image `target`'s person (TER-GAN's
    transfer, or its editing when both are one person): the target's identity, pose, light and other
    nuisances with the source's action units."""
    f = data.factors[source]
    return render_like(data, target, aus=f.aus, one_sided_12=f.one_sided_12)


def level_of(intensity: float, dynamics: str, frame: int) -> int:
    """BU-3DFE-like intensity level 1..4 (0 = neutral): the frame's level for `levels`, else
    the quartile of the expression intensity."""
    if intensity <= 0.0:
        return 0
    if dynamics == "levels":
        return frame + 1
    return int(min(4, max(1, math.ceil(intensity * 4 - 1e-9))))


# --------------------------------------------------------------------------------------------
# Output: files, checksums, benchmark
# --------------------------------------------------------------------------------------------


def write(data: SynthData, out_dir) -> Path:
    """Write each image as a PNG at `out_dir / manifest.path` and `out_dir/manifest.csv`; return
    the manifest's path. Every file is written atomically (temp file, then rename)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for image, rel in zip(data.images, data.manifest["path"]):
        picture = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        atomic_write(out / rel, lambda f: picture.save(f, format="PNG"))
    return write_manifest(data.manifest, out / "manifest.csv")


def checksum(data: SynthData) -> str:
    """sha256 over the images' shape, dtype and bytes (hex)."""
    h = hashlib.sha256()
    h.update(f"{tuple(data.images.shape)}|{data.images.dtype}".encode())
    h.update(np.ascontiguousarray(data.images).tobytes())
    return h.hexdigest()


CHECKSUM_DIR = Path(__file__).resolve().parents[2] / "data_manifests" / "synthfer"
CHECKSUM_SCALES = {"ckplus": 0.05, "mmi": 0.1, "oulu": 0.05, "bu3dfe": 0.05, "bu4dfe": 0.05, "rafdb": 0.01,
                   "ferplus": 0.005, "pairs": 0.05, "sessions": 0.05, "tiny": 1.0}  # CI-sized renders, 32 px, seed 0


def manifest_record(preset: str, scale: float, size: int, seed: int) -> dict:
    """What `data_manifests/synthfer/<preset>.yaml` stores: settings, counts and the sha256."""
    data = generate(preset, scale=scale, size=size, seed=seed)
    m = data.manifest
    return {"preset": preset, "scale": float(scale), "size": int(size), "seed": int(seed), "n_images": int(len(m)),
            "n_subjects": int(m["subject"].nunique()), "n_sequences": int(m["sequence"].nunique()),
            "class_counts": {c: int((m["label"] == c).sum()) for c in EXPRESSIONS if (m["label"] == c).any()},
            "unlabelled": int((m["label"] == UNLABELLED).sum()), "sha256": checksum(data)}


def save_manifest_record(record: dict, directory=CHECKSUM_DIR) -> Path:
    """Write `record` as `<directory>/<preset>.yaml`, atomically."""
    import yaml

    def dump(f) -> None:
        f.write("# SynthFER checksum, checked by tests/test_synth.py. After an intended change to the renderer,\n"
                "# regenerate all with: python -c 'from ferlib.data import synth; synth.write_checksums()'\n")
        yaml.safe_dump(record, f, sort_keys=False)

    return atomic_write(Path(directory) / f"{record['preset']}.yaml", dump, text=True)


def write_checksums(directory=CHECKSUM_DIR, size: int = 32, seed: int = 0) -> list[Path]:
    """Regenerate every preset's checksum file at its CI scale (`CHECKSUM_SCALES`)."""
    return [save_manifest_record(manifest_record(p, CHECKSUM_SCALES[p], size, seed), directory) for p in PRESETS]


def benchmark_render(n: int = 500, size: int = 64) -> float:
    """Images per second of `render_face` on this thread: n faces of varied identities, classes
    and in-the-wild nuisances (the rafdb preset's mix: pose, light, occlusion, blur, noise, JPEG,
    clutter). Call torch.set_num_threads(1) first to state a one-core number."""
    rng = rng_for(12345, 0, PURPOSE_PLAN)
    idns = [make_identity(12345, i) for i in range(20)]
    jobs = []
    for i in range(n):
        label = EXPRESSIONS[i % len(EXPRESSIONS)]
        jobs.append((idns[i % 20], expression_aus(idns[i % 20], label, float(rng.uniform(0.3, 1.0))),
                     sample_nuisance(WILD, rng), label == "contempt"))
    start = time.perf_counter()
    for idn, aus, nuisance, one_sided in jobs:
        render_face(idn, aus, nuisance, size, one_sided_12=one_sided)
    return n / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# Pictures for the datasheet
# --------------------------------------------------------------------------------------------


def mosaic(images, columns: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Images (same shape, H x W x C uint8) tiled row by row into one uint8 array."""
    images = [np.asarray(i) for i in images]
    h, w, c = images[0].shape
    rows = -(-len(images) // columns)
    out = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, c), fill, dtype=np.uint8)
    for k, image in enumerate(images):
        r, q = divmod(k, columns)
        out[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = image
    return out


def expression_grid(subjects: int = 6, classes=EXPRESSIONS, size: int = 64, seed: int = 0,
                    intensity: float = 1.0) -> np.ndarray:
    """A subjects x classes mosaic of frontal faces at `intensity` (rows: subjects S001...)."""
    faces = []
    for index in range(subjects):
        idn = make_identity(seed, index)
        faces += [render_face(idn, expression_aus(idn, c, intensity), size=size, one_sided_12=c == "contempt") for c in classes]
    return mosaic(faces, len(classes))


def sequence_strip(preset: str = "ckplus", subject: int = 0, label: str = "happiness", frames: int = 10, size: int = 64,
                   seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """One sequence of `preset`'s dynamics as a strip, and each frame's role."""
    p = get_preset(preset)
    idn = make_identity(seed, subject, p.identity, population=p.population)
    plan = SequencePlan(subject, label, True, 1, frames)
    images, roles = [], []
    for _, _, role, aus, n in sequence_images(p, idn, plan, seed):
        images.append(render_face(idn, aus, n, size, one_sided_12=label == "contempt"))
        roles.append(role)
    return mosaic(images, len(images)), roles


def nuisance_examples(size: int = 64, seed: int = 0, subject: int = 1, label: str = "happiness") -> list[tuple[str, np.ndarray]]:
    """(name, image) for each nuisance on its own at a clear strength, one identity and expression."""
    idn = make_identity(seed, subject)
    aus = expression_aus(idn, label, 1.0)
    settings = [("none", Nuisance()), ("yaw 35", Nuisance(yaw=35)), ("yaw 70 (profile)", Nuisance(yaw=70)),
                ("pitch 20", Nuisance(pitch=20)), ("roll 15", Nuisance(roll=15)),
                ("light 60 deg", Nuisance(light_azimuth=60, light_strength=0.9)), ("dim", Nuisance(brightness=0.55))]
    settings += [(o, Nuisance(occlusion=o, seed=seed + 3)) for o in OCCLUSIONS]
    settings += [("blur 1.2", Nuisance(blur=1.2)), ("noise 15", Nuisance(noise=15, seed=seed)),
                 ("JPEG q15", Nuisance(jpeg_quality=15)), ("clutter", Nuisance(clutter=1.0, seed=seed + 5))]
    return [(name, render_face(idn, aus, n, size)) for name, n in settings]


def preset_summary(scale: float = 1.0) -> pd.DataFrame:
    """Subjects, sequences, images and classes of every preset at `scale`, from the plans
    (nothing is rendered). Single-image presets count each image as its own sequence."""
    rows = []
    for name, p in PRESETS.items():
        plans = plan_sequences(p, scale, 0)
        subjects = len({pl.subject for pl in plans})
        images = sum(pl.frames for pl in plans) + (subjects if p.dynamics == "levels" else 0)
        neutral = subjects if p.dynamics == "levels" else 0  # BU-3DFE's one-image neutral sequences
        rows.append({"preset": name, "subjects": subjects, "sequences": len(plans) + neutral,
                     "labelled sequences": sum(pl.labelled for pl in plans), "images": images,
                     "classes": len(p.classes), "dynamics": p.dynamics, "native px": p.native_size,
                     "colour": "grey" if p.greyscale else "RGB"})
    return pd.DataFrame(rows).set_index("preset")
