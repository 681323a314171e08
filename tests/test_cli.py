"""`python -m ferlib`: help works, `data synth` writes, user errors are one `error:` line."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import ferlib.data
from ferlib.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("ckplus", "mmi", "oulu", "bu3dfe", "bu4dfe", "rafdb", "ferplus", "tiny")

# A stand-in for ferlib.data.synth with its contract (PRESETS, generate, write).
FAKE_SYNTH = textwrap.dedent("""
    import sys, types
    from pathlib import Path
    import numpy as np, pandas as pd
    import ferlib.data
    from ferlib.errors import UnknownName

    synth = types.ModuleType("ferlib.data.synth")
    synth.PRESETS = dict.fromkeys(%r)

    def generate(preset, scale=1.0, size=64, seed=0, progress=False):
        if preset not in synth.PRESETS:
            raise UnknownName("SynthFER preset", preset, synth.PRESETS)
        n, size = max(1, round(4 * scale)), size or 64
        manifest = pd.DataFrame([dict(path=f"img/{i}.png", subject="S1", sequence="S1_0", frame=i,
                                      label="anger", role="apex", fold=-1, split="") for i in range(n)])
        return types.SimpleNamespace(images=np.zeros((n, size, size, 3), np.uint8), manifest=manifest,
                                     classes=("anger",), progress=progress)

    def write(data, out_dir):
        out = Path(out_dir)
        if out.is_file():
            raise FileExistsError(17, "File exists", str(out))
        out.mkdir(parents=True, exist_ok=True)
        data.manifest.to_csv(out / "manifest.csv", index=False)
        return out / "manifest.csv"

    synth.generate, synth.write = generate, write
""" % (PRESETS,))
INSTALL_FAKE_SYNTH = FAKE_SYNTH + 'sys.modules["ferlib.data.synth"] = synth\nferlib.data.synth = synth\n'


@pytest.fixture
def fake_synth(monkeypatch):
    namespace = {}
    exec(FAKE_SYNTH, namespace)
    module = namespace["synth"]
    monkeypatch.setitem(sys.modules, "ferlib.data.synth", module)
    monkeypatch.setattr(ferlib.data, "synth", module, raising=False)
    return module


def run_cli(*args, prelude=""):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = prelude + "\nimport sys\nfrom ferlib.cli import main\nsys.exit(main(sys.argv[1:]))" if prelude else None
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "ferlib", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands():
    top = run_cli("--help")
    assert top.returncode == 0 and "data" in top.stdout and "usage: python -m ferlib" in top.stdout
    data = run_cli("data", "--help")
    assert data.returncode == 0 and "synth" in data.stdout
    synth = run_cli("data", "synth", "--help")
    assert synth.returncode == 0
    for option in ("--out", "--scale", "--size", "--seed", "PRESET".lower()):
        assert option in synth.stdout


def test_a_group_without_a_command_shows_its_help_and_exits_2(capsys):
    assert main(["data"]) == 2
    assert "synth" in capsys.readouterr().err


def test_data_synth_parses_its_options():
    args = build_parser().parse_args(["data", "synth", "ckplus", "--out", "d", "--scale", "0.25", "--size", "32", "--seed", "7"])
    assert (args.preset, str(args.out), args.scale, args.size, args.seed) == ("ckplus", "d", 0.25, 32, 7)
    assert build_parser().parse_args(["data", "synth", "ferplus", "--out", "d"]).size is None  # the preset's own size
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["data", "synth", "ckplus", "--out", "d", "--scale", "-1"])
    assert e.value.code == 2


def test_data_synth_writes_with_a_progress_bar_and_reports(fake_synth, tmp_path, capsys):
    calls = []
    generate = fake_synth.generate
    fake_synth.generate = lambda *a, **k: calls.append(k) or generate(*a, **k)
    assert main(["data", "synth", "tiny", "--out", str(tmp_path / "out"), "--scale", "0.5", "--size", "16"]) == 0
    assert calls == [dict(scale=0.5, size=16, seed=0, progress=True)]
    assert len(pd.read_csv(tmp_path / "out" / "manifest.csv")) == 2
    assert "wrote 2 PNGs of SynthFER tiny (scale 0.5, 16 px, seed 0) under" in capsys.readouterr().out


def test_unknown_preset_is_one_error_line_listing_the_valid_ones(fake_synth, tmp_path, capsys):
    assert main(["data", "synth", "ckplus2", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: unknown SynthFER preset 'ckplus2'; valid SynthFER presets are: {', '.join(sorted(PRESETS))}\n"
    assert captured.out == ""


def test_unwritable_out_is_an_error_line_not_a_traceback(fake_synth, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    assert main(["data", "synth", "tiny", "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write SynthFER to {tmp_path / 'taken'}") and err.count("\n") == 1


def test_in_a_real_process_the_error_is_one_stderr_line_without_traceback(tmp_path):
    result = run_cli("data", "synth", "nope", "--out", str(tmp_path), prelude=INSTALL_FAKE_SYNTH)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: unknown SynthFER preset 'nope'; valid SynthFER presets are: {', '.join(sorted(PRESETS))}"]
    assert "Traceback" not in result.stderr + result.stdout


def test_with_the_real_renderer_python_m_ferlib_data_synth_works(tmp_path):
    pytest.importorskip("ferlib.data.synth")
    bad = run_cli("data", "synth", "nope", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and bad.stderr.startswith("error: unknown SynthFER preset 'nope'")
    assert "ckplus" in bad.stderr and "tiny" in bad.stderr  # the valid presets are listed
    good = run_cli("data", "synth", "tiny", "--out", str(tmp_path / "tiny"), "--size", "32")
    assert good.returncode == 0, good.stderr
    manifest = pd.read_csv(tmp_path / "tiny" / "manifest.csv", keep_default_na=False)
    assert len(manifest) > 0 and (tmp_path / "tiny" / manifest["path"][0]).is_file()
