"""environment.yml (conda users) must describe the same environment as pyproject.toml (pip)."""
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_packages() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(data["dependencies"])
    for extra in data["optional-dependencies"].values():
        reqs += extra
    return {_name(r) for r in reqs}


def environment_packages() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_name(r) for r in pip if not r.startswith("-")}


def test_environment_yml_lists_the_same_packages_as_pyproject():
    assert environment_packages() == pyproject_packages()


def test_environment_yml_python_matches_requires_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    major, minor = map(int, py.split("=")[1].split(".")[:2])
    req = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert req == ">=3.10" and (major, minor) >= (3, 10)


def test_every_direct_dependency_is_pinned_in_constraints():
    pins = {_name(line) for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")}
    missing = pyproject_packages() - pins
    assert not missing, f"add exact pins for {missing} to constraints.txt (make lock)"


def test_facenet_is_installed_without_deps_by_setup():
    script = (ROOT / "tools" / "setup_env.sh").read_text()
    assert "--no-deps" in script and "facenet-pytorch==2.6.0" in script


#: pip name -> conda name of the packages that tools/setup_env.sh installs with --no-deps
#: and environment.yml takes from a conda channel instead of pip.
PIP_TO_CONDA = {"easypytorch3d": "pytorch3d"}


def test_pytorch3d_is_installed_by_setup_and_listed_for_conda():
    script = (ROOT / "tools" / "setup_env.sh").read_text()
    m = re.search(r'install -q --no-deps "easypytorch3d==([0-9.]+)\.post\d+"', script)
    assert m, "tools/setup_env.sh must install easypytorch3d==X with --no-deps"
    assert "from pytorch3d import _C" in script, "setup must check that PyTorch3D's extension loads"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "pytorch3d" in env["channels"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    want = f"pytorch3d::{PIP_TO_CONDA['easypytorch3d']}={m.group(1)}"
    assert want in conda, f"environment.yml must list {want}"
    # the wheel's C++ extension only loads with the torch it was built against
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["torch"].startswith("2.12."), "easypytorch3d 0.7.9.post1 needs torch 2.12.x"
    assert "iopath" in pyproject_packages(), "PyTorch3D's runtime dependency iopath must be a direct dependency"
