"""Throughput and memory of the study's moving parts, on the CPU or on a GPU when present.

    python benchmarks/run.py            # the table for this machine
    python benchmarks/run.py --quick    # one step per row, paper presets on a batch of 2 (the tests)

Rows: SynthFER rendering (images/s on one core), the cached loader (images/s through
FERDataset + DataLoader with the baseline transform), and one row per method: training images/s
at its `paper` preset's resolution and batch size (a few steps on the CPU; more on a GPU), with
peak memory. Methods add themselves to `METHODS`.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ferlib.data import synth  # noqa: E402
from ferlib.data.cache import FERDataset, ImageCache  # noqa: E402
from ferlib.data.transforms import make_transform  # noqa: E402
from ferlib.engine import Precision, resolve_device  # noqa: E402
from ferlib.experiments import adfl, baseline, ean, eifn, ifgan, tergan  # noqa: E402
from ferlib.experiments.common import load_protocol_data  # noqa: E402


@dataclass
class Row:
    what: str
    setting: str
    images_per_s: float
    peak_memory_mib: float

    def line(self) -> str:
        rate = f"{self.images_per_s:,.0f}" if self.images_per_s >= 10 else f"{self.images_per_s:.2f}"
        return f"| {self.what} | {self.setting} | {rate} | {self.peak_memory_mib:,.0f} |"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mib()


def bench_render(quick: bool) -> Row:
    torch.set_num_threads(1)
    n = 200 if quick else 1000
    rate = synth.benchmark_render(n=n, size=64)
    return Row("SynthFER render", "64 px, 1 core", rate, peak_rss_mib())


def bench_loader(quick: bool) -> Row:
    data = load_protocol_data("synth-ckplus", "baseline", data_root=None, size=64, scale=0.5, seed=0)
    cache = ImageCache.from_arrays(data.loaded.images, data.loaded.manifest)
    ds = FERDataset(cache, data.manifest, data.protocol.classes, transform=make_transform("baseline", train=True, size=64))
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, num_workers=0)
    n, t0 = 0, time.perf_counter()
    for epoch in range(1 if quick else 3):
        for batch in loader:
            n += len(batch["label"])
    return Row("cached loader", "64 px, baseline train transform, batch 64", n / (time.perf_counter() - t0), peak_rss_mib())


def bench_training(name: str, make_task, input_shape, batch_size: int, device: torch.device, steps: int,
                   warm_up: bool = True, batch_hook=None) -> Row:
    """Train `steps` steps on random data shaped like the paper preset's input, after one untimed warm-up
    step unless `warm_up` is False; `batch_hook` adds what a task needs beyond image, label and subject."""
    task = make_task()
    task.device, task.amp = device, Precision(device, enabled=True)  # what `fit` would set
    for m in task.modules.values():
        m.to(device).train()
    c, h, w = input_shape
    gen = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.rand(batch_size, c, h, w, generator=gen).to(device),
        "label": torch.randint(0, 7, (batch_size,), generator=gen).to(device),
        "subject": torch.randint(0, 10, (batch_size,), generator=gen).to(device),
    }
    if batch_hook is not None:
        batch = batch_hook(batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if warm_up:
        task.train_step(batch, 0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for step in range(steps):
        task.train_step(batch, step + 1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    rate = steps * batch_size / (time.perf_counter() - t0)
    return Row(f"train {name}", f"{h}x{w}, batch {batch_size}, {device.type}", rate, peak_memory_mib(device))


def method_rows(device: torch.device, quick: bool) -> list[Row]:
    """One row per method and preset. `quick` on the CPU (the tests) checks that every row runs, not its
    speed: one step without warm-up, and the paper presets (a 224 px ResNet-101 + U-Net, two VGG-16s)
    on a batch of 2; `make benchmark` uses each preset's batch."""
    tiny = quick and device.type == "cpu"
    steps = (1 if quick else 5) if device.type == "cpu" else 50

    def batch_of(cfg, preset):
        return min(cfg.batch_size, 2) if tiny and preset == "paper" else cfg.batch_size

    def row(name, make_task, shape, cfg, preset, batch_hook=None):
        return bench_training(name, make_task, shape, batch_of(cfg, preset), device, steps, warm_up=not tiny,
                              batch_hook=batch_hook)

    rows = []
    for preset in ("paper", "smoke"):
        cfg = baseline.BaselineConfig.from_preset(preset)
        rows.append(row(f"baseline (PlainCNN), {preset} preset",
                        lambda: baseline.make_task(cfg, num_classes=7, in_channels=3), (3, cfg.size, cfg.size), cfg, preset))
    for preset in ("paper", "smoke"):
        cfg = ifgan.IFGANConfig.from_preset(preset)
        rows.append(row(f"IF-GAN (G + D + E), {preset} preset", lambda: ifgan.build_task(cfg, "ifgan", num_classes=7),
                        (3, cfg.size, cfg.size), cfg, preset))
    for preset in ("paper", "smoke"):
        cfg = adfl.ADFLConfig.from_preset(preset)
        classes = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
        for method, parts in (("baseline", "baseline (S + B_e, AM-Softmax)"), ("adfl", "(S + B_e + B_n + B_r)")):
            rows.append(row(f"ADFL {parts}, {preset} preset", lambda: adfl.build_task(cfg, method, classes),
                            (3, *cfg.crop_size), cfg, preset))
    for preset in ("paper", "smoke"):
        cfg = eifn.EIFNConfig.from_preset(preset)
        rows.append(row(f"EIFN (I + E + bilinear + identity head), {preset} preset",
                        lambda: eifn.build_task(cfg, "eifn", 7, torch.arange(10), 3, "ckplus", lr_step=cfg.lr_step),
                        (3, cfg.size, cfg.size), cfg, preset))
    for preset in ("paper", "smoke"):
        cfg = ean.EANConfig.from_preset(preset, graph_start=0)   # the graph phase: the costlier step
        index = torch.arange(max(cfg.batch_size, 2))
        for method, parts in (("baseline", "ResNet-18 baseline"), ("scn", "SCN (ResNet-18)"),
                              ("ean", "EAN (G_enc + D_m + graph + GCN)")):
            rows.append(row(f"EAN paper: {parts}, {preset} preset",
                            lambda: ean.build_task(cfg, method, 7, 3, index, index % 7, 10),
                            (3, cfg.size, cfg.size), cfg, preset, lambda b: ean.self_views_batch(b, 10)))
    for preset in ("paper", "smoke"):
        from ferlib.models.tergan import StageOneTask, TERGANTask
        cfg = tergan.TERGANConfig.from_preset(preset)
        for method, parts in (("baseline", "stage 1: G_es + G_et as classifiers"),
                              ("tergan", "stage 2: G_es + G_et + G_de + D + D_es + D_et")):
            def make(cfg=cfg, method=method):
                model = tergan.build_model(cfg, 7, 10, 3)     # the batch: 7 labels, 10 people
                return (StageOneTask(model, cfg.lr, cfg.betas) if method == "baseline"
                        else TERGANTask(model, cfg.lr, cfg.betas, cfg.lambdas))
            rows.append(row(f"TER-GAN paper: {parts}, {preset} preset", make, (3, cfg.size, cfg.size), cfg, preset,
                            tergan.reversed_pairs_batch))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one step per row, paper presets on a batch of 2 (the tests)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu or cuda")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    rows = [bench_render(args.quick)]
    torch.set_num_threads(threads)
    rows.append(bench_loader(args.quick))
    rows += method_rows(device, args.quick)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
    print(f"device: {name}; torch {torch.__version__}")
    print("| what | setting | images/s | peak memory (MiB) |")
    print("| --- | --- | ---: | ---: |")
    for row in rows:
        print(row.line())


if __name__ == "__main__":
    main()
