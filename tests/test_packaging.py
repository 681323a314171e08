"""The set-up promises of the README hold: same pins everywhere, CI runs the README's command."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return dict(r.split("#")[0].strip().split("==") for r in reqs)


def environment_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return dict(p.split("==") for p in pip if "==" in p)


def test_every_dependency_is_pinned_exactly():
    for req in pyproject_pins():
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+", req), req


def test_environment_yml_has_the_same_pins_as_pyproject():
    assert environment_pins() == pyproject_pins()


def test_torch_pair_is_the_one_that_installs_here():
    pins = pyproject_pins()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["jupyter-book"].startswith("1."), "jupyter-book 2.x cannot build offline"


def test_constraints_agree_with_the_pins():
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    locked = dict(l.split("==") for l in lines if "==" in l and not l.startswith("#"))
    norm = lambda n: n.lower().replace("_", "-")
    locked = {norm(k): v for k, v in locked.items()}
    for name, version in pyproject_pins().items():
        assert locked[norm(name)] == version, name


def test_readme_gives_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    block = setup.split("```bash", 1)[1].split("```", 1)[0]
    commands = [l.split("#")[0].strip() for l in block.strip().splitlines()]
    assert commands == ["make book", "make test"]
    ci = [l for l in (ROOT / ".ci/run").read_text().splitlines() if l and not l.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"]


def test_packages_installed_without_their_dependencies_are_pinned_alike_everywhere():
    """facenet-pytorch's declared pins are stale: pyproject lists it apart, the Makefile installs
    exactly that list with --no-deps, environment.yml says to, and constraints.txt locks it."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ferlib"]["install-without-dependencies"]
    assert listed == ["facenet-pytorch==2.6.0"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^NO_DEPS\s*:=\s*" + re.escape(" ".join(listed)) + r"\s*$", makefile, re.M)
    assert re.search(r"pip install .*--no-deps \$\(NO_DEPS\)", makefile)
    assert all(f"pip install --no-deps {p}" in (ROOT / "environment.yml").read_text() for p in listed)
    assert all(p in (ROOT / "constraints.txt").read_text().splitlines() for p in listed)
    assert not any(p.split("==")[0] in pyproject_pins() for p in listed), "it must not be an ordinary dependency"
