"""Expression transfer and editing scored against SynthFER's ground truth (beyond TER-GAN's paper).

SynthFER knows the true answer of every transfer: the target person, in the target image's pose, light
and other conditions, showing the source image's action units (`synth.transfer_truth`). So a generated
x_bar can be scored by its distance to that truth, where the paper could only show pictures. Beside it,
two trivial references that any method must beat to have transferred anything (and the truth itself,
which shows what the judges below can tell at best):

    copy x_t   answer with the target image itself (right person, wrong expression)
    copy x_s   answer with the source image itself (right expression, wrong person)
    blend      answer with the pixel average of x_s and x_t: what TER-GAN's two pixel losses ask for at
               once (L_irec pulls x_bar to x_t and L_erec to x_s, Eqs. 6-7); a ghosted double exposure

Pairs are drawn among the test split's people only (never trained on): for transfer a source and a
target of different people showing different expressions; for editing two images of one person
showing different expressions. Every image goes through the test-time transform the model saw, and the
truth through the same one, so the scores compare like with like: L1 (mean absolute difference in the
model's [-1, 1] units) and SSIM (Wang et al. 2004: Gaussian window, sigma 1.5, over the colour channels).
Two judges trained on real images only (`fit_judge`: the study's plain CNN) read each answer: an
expression judge (is it the source's expression?) and an identity judge of the test people (is it the
target person?).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ferlib.data import synth
from ferlib.data.transforms import make_transform
from ferlib.engine import eval_mode
from ferlib.errors import FerlibError

KINDS = ("transfer", "editing")


def draw_pairs(rows: pd.DataFrame, n: int, kind: str = "transfer", seed: int = 0) -> list[tuple[int, int]]:
    """Up to `n` (source, target) row labels of `rows` (a split's manifest rows: subject, label): for
    "transfer" different people, for "editing" one person; different labels either way. Seeded."""
    if kind not in KINDS:
        raise FerlibError(f"pair kind {kind!r}: choose {' or '.join(KINDS)}")
    index = rows.index.to_numpy()
    subjects, labels = rows["subject"].astype(str).to_numpy(), rows["label"].astype(str).to_numpy()
    same_person = subjects[:, None] == subjects[None, :]
    allowed = (labels[:, None] != labels[None, :]) & (same_person if kind == "editing" else ~same_person)
    candidates = np.argwhere(allowed)
    if len(candidates) == 0:
        raise FerlibError(f"no {kind} pair in these {len(rows)} images: {kind} needs two images of "
                          f"{'one person' if kind == 'editing' else 'different people'} with different expressions")
    chosen = np.random.default_rng(seed).permutation(len(candidates))[:n]
    return [(int(index[i]), int(index[j])) for i, j in candidates[np.sort(chosen)]]


def model_inputs(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, size, size) in [-1, 1] through TER-GAN's test-time transform."""
    transform = make_transform("tergan", train=False, size=size)
    return torch.stack([transform(torch.from_numpy(np.ascontiguousarray(i)).permute(2, 0, 1)) for i in images])


def ssim(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-image SSIM of (N, C, H, W) images in [-1, 1] (data range 2), channels as channels."""
    from skimage.metrics import structural_similarity
    a, b = a.detach().float().cpu().numpy(), b.detach().float().cpu().numpy()
    return np.array([structural_similarity(x, y, channel_axis=0, data_range=2.0, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False) for x, y in zip(a, b)])


def pixel_scores(answer: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """L1 (mean |answer - truth| over pixels and images, [-1, 1] units) and mean SSIM."""
    return {"l1": float((answer - truth).abs().mean()), "ssim": float(ssim(answer, truth).mean())}


def truth_of(data: synth.SynthData, pairs: list[tuple[int, int]]) -> np.ndarray:
    """The true answer of each (source, target) pair, at the rendering's size."""
    return np.stack([synth.transfer_truth(data, s, t) for s, t in pairs])


def fit_judge(images: torch.Tensor, labels, num_classes: int, epochs: int = 30, seed: int = 0, width: int = 8,
              lr: float = 3e-3, batch: int = 64):
    """A judge: the study's plain CNN trained with cross-entropy on real images (N, C, H, W) and their
    labels (expression classes, or people), independent of the networks it will judge. Returns a function
    images -> predicted class indices."""
    from ferlib.models.baseline import PlainCNN
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = PlainCNN(num_classes, images.shape[1], width)
    labels = torch.as_tensor(np.array(labels), dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for chunk in torch.randperm(len(images), generator=generator).split(batch):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(images[chunk]), labels[chunk]).backward()
            opt.step()
    model.eval()

    @torch.no_grad()
    def predict(x: torch.Tensor) -> np.ndarray:
        return torch.cat([model(part).argmax(1) for part in x.split(256)]).numpy()

    predict.model = model
    return predict


@torch.no_grad()
def score(model, loaded, pairs: list[tuple[int, int]], size: int, device: torch.device | str = "cpu",
          batch: int = 64, judges: dict | None = None) -> dict:
    """TER-GAN's x_bar and the two references against the truth of each pair: {answer: {l1, ssim}}, and
    with `judges` ({name: (predict, expected class per pair)}, e.g. an expression judge expecting the
    source's expression and an identity judge expecting the target person) each answer's accuracy under
    each judge; each answer's L1 to either input (where between x_t and x_s it lies). The figures' images
    are `grid`'s. `loaded` must keep its SynthFER rendering (`LoadedDataset.synth`)."""
    data = loaded.synth
    if data is None:
        raise FerlibError("ground truth needs SynthFER rendered at a square size (LoadedDataset.synth); a real "
                          "dataset has none: its transfers can only be looked at")
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    x_s, x_t = model_inputs(loaded.images[sources], size), model_inputs(loaded.images[targets], size)
    truth = model_inputs(truth_of(data, pairs), size)
    with eval_mode([model]):
        generated = torch.cat([model.transfer(x_s[k:k + batch].to(device), x_t[k:k + batch].to(device)).cpu()
                               for k in range(0, len(pairs), batch)])
    answers = {"TER-GAN": generated, "copy x_t": x_t, "copy x_s": x_s, "blend": (x_s + x_t) / 2, "truth": truth}
    scores = {name: pixel_scores(images, truth) | {"l1 to x_t": float((images - x_t).abs().mean()),
                                                   "l1 to x_s": float((images - x_s).abs().mean())}
              for name, images in answers.items()}
    for judge, (predict, expected) in (judges or {}).items():
        expected = np.asarray(expected)
        for name, images in answers.items():
            scores.setdefault(name, {})[f"{judge} judge %"] = float(100 * (predict(images) == expected).mean())
    return {"pairs": len(pairs), "scores": scores}


def grid_rows(rows: pd.DataFrame, kind: str = "transfer", seed: int = 0, targets: int = 3
              ) -> tuple[list[int], list[int]]:
    """The rows of a figure grid among `rows` (a split's manifest rows): (sources, targets). "transfer"
    (the paper's Fig. 3): one image of each of up to `targets` people, and one image per expression of the
    other people; "editing" (Fig. 4): one image of one person, and that person's other expressions."""
    if kind not in KINDS:
        raise FerlibError(f"grid kind {kind!r}: choose {' or '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    people = list(rng.permutation(sorted(rows["subject"].astype(str).unique())))
    if kind == "editing":
        own = rows[rows["subject"].astype(str) == people[0]]
        target = int(own.index[0])
        sources = own[own["label"] != own.loc[target, "label"]].groupby("label", sort=True).head(1)
        return [int(i) for i in sources.index], [target]
    if len(people) < 2:
        raise FerlibError(f"a transfer grid needs two people; these {len(rows)} images show {len(people)}")
    chosen = people[:min(targets, len(people) - 1)]
    picked = rows["subject"].astype(str).isin(chosen)
    target_rows = [int(rows[rows["subject"].astype(str) == p].index[0]) for p in chosen]
    sources = rows[~picked].groupby("label", sort=True).head(1)
    return [int(i) for i in sources.index], target_rows


@torch.no_grad()
def grid(model, loaded, sources: list[int], targets: list[int], size: int, device: torch.device | str = "cpu"
         ) -> dict[str, torch.Tensor]:
    """Every source onto every target: the inputs (S and T images) and x_bar and the truth, (T, S, C, H, W)."""
    pairs = [(s, t) for t in targets for s in sources]
    x_s, x_t = model_inputs(loaded.images[sources], size), model_inputs(loaded.images[targets], size)
    truth = model_inputs(truth_of(loaded.synth, pairs), size)
    with eval_mode([model]):
        generated = torch.cat([model.transfer(x_s.to(device), x_t[k:k + 1].expand_as(x_s).to(device)).cpu()
                               for k in range(len(targets))])
    shape = (len(targets), len(sources), *x_s.shape[1:])
    return {"source": x_s, "target": x_t, "generated": generated.reshape(shape), "truth": truth.reshape(shape)}


def scores_table(results: dict[str, dict]) -> pd.DataFrame:
    """{kind: score()} -> one row per (kind, answer): pairs, L1, SSIM."""
    rows = [{"pairs": r["pairs"], "kind": kind, "answer": answer, "L1 to truth": s.get("l1"),
             "SSIM to truth": s.get("ssim"), **{k: v for k, v in s.items() if k.endswith("judge %")}}
            for kind, r in results.items() for answer, s in r["scores"].items()]
    return pd.DataFrame(rows)
