"""requirements.txt, environment.yml and pyproject.toml must describe one environment.

Three files list minillm's dependencies (pip users, conda users, `pip install minillm[dev]`); these tests
keep them from drifting apart, and check that every range admits the torch builds we promise to support.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
# The builds the README promises: the pinned CPU wheel and CUDA wheels of the same release.
SUPPORTED_TORCH = ["2.13.0", "2.13.0+cpu", "2.13.0+cu128", "2.13.0+cu126"]

Reqs = dict[str, str]  # canonical package name -> specifier, e.g. {"torch": ">=2.5"}
# Packages whose environment marker excludes this machine (e.g. triton off Linux): listed, but not installed here.
NOT_FOR_THIS_PLATFORM: set[str] = set()


def as_reqs(lines: list[str], source: str) -> Reqs:
    reqs: Reqs = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name in reqs:
            raise AssertionError(f"{source} lists {name} twice")
        reqs[name] = str(req.specifier)
        if req.marker is not None and not req.marker.evaluate():
            NOT_FOR_THIS_PLATFORM.add(name)
    return reqs


def requirements_txt() -> dict[str, Reqs]:
    """Sections of requirements.txt, split at its '# --- name ---' comment lines."""
    sections: dict[str, list[str]] = {}
    current = None
    for raw in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        header = re.fullmatch(r"#\s*---\s*(\w+)\s*---\s*", raw.strip())
        if header:
            current = sections.setdefault(header.group(1), [])
            continue
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if current is None:
            raise AssertionError(f"requirements.txt: {line!r} comes before any '# --- section ---' header")
        current.append(line)
    return {name: as_reqs(lines, f"requirements.txt [{name}]") for name, lines in sections.items()}


def environment_yml() -> tuple[list[str], Reqs]:
    """(conda dependencies, pip dependencies) of environment.yml.

    A small reader for this file's simple layout, so the test needs no YAML library."""
    conda, pip = [], []
    in_pip = False
    for raw in (REPO_ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        item = re.fullmatch(r"(\s*)-\s+(.+)", line)
        if item is None:
            continue
        indent, value = len(item.group(1)), item.group(2).strip()
        if value == "pip:":
            in_pip, pip_indent = True, indent
        elif in_pip and indent > pip_indent:
            pip.append(value)
        else:
            in_pip = False
            conda.append(value)
    return conda, as_reqs(pip, "environment.yml pip")


def pyproject() -> dict:
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_requirements_txt_has_runtime_and_dev_sections() -> None:
    sections = requirements_txt()
    assert set(sections) == {"runtime", "book", "dev"}
    for must in ("torch", "numpy", "regex", "tokenizers", "safetensors", "tqdm"):
        assert must in sections["runtime"], f"requirements.txt runtime section lacks {must}"
    for must in ("jupyterlab", "ipywidgets", "matplotlib", "nbformat"):
        assert must in sections["book"], f"requirements.txt book section lacks {must}"
        assert must not in sections["runtime"], f"{must} is the textbook's, not the library's: `pip install minillm` must not pull it"
    for must in ("pytest", "pytest-xdist", "nbval", "playwright"):
        assert must in sections["dev"], f"requirements.txt dev section lacks {must}"


def test_pyproject_equals_requirements_txt() -> None:
    sections, project = requirements_txt(), pyproject()["project"]
    assert as_reqs(project["dependencies"], "pyproject dependencies") == sections["runtime"]
    extras = project["optional-dependencies"]
    assert as_reqs(extras["book"], "pyproject [book]") == sections["book"]
    assert as_reqs(extras["dev"], "pyproject [dev]") == sections["dev"]
    assert "triton" in sections["runtime"], "the kernels chapter and tests need triton (Linux-only marker)"


def test_environment_yml_equals_requirements_txt() -> None:
    sections = requirements_txt()
    conda, pip = environment_yml()
    assert pip == {**sections["runtime"], **sections["book"], **sections["dev"]}
    assert "python=3.11" in conda and "pip" in conda
    assert re.search(r"^name:\s*minillm\s*$", (REPO_ROOT / "environment.yml").read_text(), re.M)


def test_python_version_floor() -> None:
    assert pyproject()["project"]["requires-python"] == ">=3.10"


@pytest.mark.parametrize("torch_version", SUPPORTED_TORCH)
def test_torch_range_admits_cpu_and_cuda_builds(torch_version: str) -> None:
    for source, reqs in [("requirements.txt", requirements_txt()["runtime"]), ("environment.yml", environment_yml()[1])]:
        spec = Requirement(f"torch{reqs['torch']}").specifier
        assert spec.contains(Version(torch_version)), f"{source}: torch{reqs['torch']} rejects {torch_version}"


def test_installed_packages_satisfy_ranges() -> None:
    # The environment running these tests was built from these files, so it must satisfy them;
    # a failure means a range was raised above what `make` installs (or the venv is stale: `make clean`).
    wanted = {name: spec for section in requirements_txt().values() for name, spec in section.items()}
    problems = []
    for name, spec in wanted.items():
        if name in NOT_FOR_THIS_PLATFORM:
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}{spec}: not installed")
            continue
        if not Requirement(f"{name}{spec}").specifier.contains(Version(installed), prereleases=True):
            problems.append(f"{name}{spec}: installed {installed}")
    assert not problems, "environment does not satisfy requirements.txt:\n" + "\n".join(problems)


def test_package_is_installed_from_this_checkout() -> None:
    # `make` installs minillm editable; the tests must exercise this tree, not some other copy.
    import minillm

    assert Path(minillm.__file__).resolve().parent == REPO_ROOT / "minillm"
