"""benchmarks/run.py runs and prints its table (a quick, few-step version)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_table_has_a_row_per_part():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [l for l in out.splitlines() if l.startswith("| ") and not l.startswith("| what") and "---" not in l]
    assert [r.split("|")[1].strip() for r in rows] == [
        "SynthFER render", "cached loader", "train baseline (PlainCNN), paper preset",
        "train baseline (PlainCNN), smoke preset", "train IF-GAN (G + D + E), paper preset",
        "train IF-GAN (G + D + E), smoke preset", "train ADFL baseline (S + B_e, AM-Softmax), paper preset",
        "train ADFL (S + B_e + B_n + B_r), paper preset", "train ADFL baseline (S + B_e, AM-Softmax), smoke preset",
        "train ADFL (S + B_e + B_n + B_r), smoke preset", "train EIFN (I + E + bilinear + identity head), paper preset",
        "train EIFN (I + E + bilinear + identity head), smoke preset",
        *(f"train EAN paper: {parts}, {preset} preset" for preset in ("paper", "smoke")
          for parts in ("ResNet-18 baseline", "SCN (ResNet-18)", "EAN (G_enc + D_m + graph + GCN)")),
        *(f"train TER-GAN paper: {parts}, {preset} preset" for preset in ("paper", "smoke")
          for parts in ("stage 1: G_es + G_et as classifiers", "stage 2: G_es + G_et + G_de + D + D_es + D_et"))]
    for row in rows:
        assert float(row.split("|")[3].replace(",", "")) > 0
