"""Packaging review: what a new user gets from the sdist and the wheel, and whether the
pyproject's floors (build backend, torch) hold for what the code uses."""
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _floor(requirements: list[str], name: str) -> tuple[int, ...]:
    """The ``>=`` floor of ``name`` in a list of PEP 508 strings; (0,) when it has none."""
    for requirement in requirements:
        match = re.match(rf"\s*{re.escape(name)}\s*(?:\[[^]]*\])?\s*(.*)", requirement)
        if match and not re.match(r"[A-Za-z0-9_.-]", match.group(1)[:1] or " "):
            floor = re.search(r">=\s*([0-9][0-9.]*)", match.group(1))
            return _version(floor.group(1)) if floor else (0,)
    raise AssertionError(f"{name} is not among {requirements}")


def test_build_backend_floor_reads_the_spdx_license_string():
    # license = "MIT" (a PEP 639 SPDX expression) is read by setuptools 77 and later; 64..76 stop
    # with "`project.license` must be valid exactly by one definition" (a --no-build-isolation
    # build, a distribution's packager, an offline mirror holding an older setuptools)
    if not isinstance(PYPROJECT["project"].get("license"), str):
        pytest.skip("project.license is not an SPDX string")
    assert _floor(PYPROJECT["build-system"]["requires"], "setuptools") >= (77,)


#: torch APIs the code calls unguarded, with the first torch release that has them
TORCH_APIS = [
    (r"torch\.amp\.GradScaler\(", (2, 3), "torch.amp.GradScaler(device) (amp=fp16 runs)"),
    (r"torch\._foreach_norm\([^)]*\bdtype=", (2, 4),
     "torch._foreach_norm(..., dtype=) (find's gradient-noise measurement, on by default)"),
]


def test_torch_floor_covers_the_torch_apis_the_code_calls():
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src" / "lrkit").rglob("*.py"))
    floor = _floor(PYPROJECT["project"]["dependencies"], "torch")
    used = [(api, needs, why) for api, needs, why in TORCH_APIS if re.search(api, source)]
    assert used, "none of the listed APIs is used any more: update TORCH_APIS"
    too_old = [f"{why} needs torch>={'.'.join(map(str, needs))}" for _, needs, why in used
               if floor < needs]
    assert not too_old, f"pyproject says torch>={'.'.join(map(str, floor))}, but " + "; ".join(too_old)


_COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".hypothesis", ".lrkit", ".pytest_cache",
                                      "build", "dist", "*.egg-info", "__pycache__", "lrkit-demo",
                                      "lrkit-report", "out", "lrkit-out", "*.journal")

_BUILD = textwrap.dedent("""
    import sys, tarfile
    from pathlib import Path
    from setuptools import build_meta
    out = Path(sys.argv[1])
    sdist = out / build_meta.build_sdist(str(out))
    with tarfile.open(sdist) as tar:
        tar.extractall(out / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter")
                                            else {}))
    import os
    os.chdir(next((out / "unpacked").iterdir()))
    print(sdist.name, build_meta.build_wheel(str(out)))
""")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The sdist of a copy of the working tree, and the wheel built from that sdist (as
    ``python -m build`` does), both with the setuptools installed here."""
    import setuptools

    if _version(setuptools.__version__) < _floor(PYPROJECT["build-system"]["requires"],
                                                 "setuptools"):
        pytest.skip(f"setuptools {setuptools.__version__} here is below the build-system floor")
    base = tmp_path_factory.mktemp("packaging")
    tree, out = base / "tree", base / "out"
    shutil.copytree(ROOT, tree, ignore=_COPY_IGNORE)
    out.mkdir()
    done = subprocess.run([sys.executable, "-c", _BUILD, str(out)], cwd=tree,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    sdist_name, wheel_name = done.stdout.split()[-2:]
    with tarfile.open(out / sdist_name) as tar:
        sdist = [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]
    with zipfile.ZipFile(out / wheel_name) as whl:
        wheel = {name: whl.read(name).decode("utf-8") if name.endswith(
            ("METADATA", "entry_points.txt")) else None for name in whl.namelist()}
    return sdist, wheel


def _modules() -> set[str]:
    src = ROOT / "src"
    return {p.relative_to(src).as_posix() for p in (src / "lrkit").rglob("*.py")}


def test_sdist_ships_no_partial_test_suite_and_builds_the_whole_wheel(built):
    sdist, wheel = built
    # without MANIFEST.in setuptools put tests/test*.py in the sdist, but not tests/conftest.py,
    # tests/__init__.py or the test subfolders: a suite that cannot run, and nothing a user needs
    assert not [name for name in sdist if name.startswith(("tests/", "benchmarks/", ".lrkit"))]
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= set(sdist)
    assert _modules() <= {name[len("src/"):] for name in sdist if name.startswith("src/")}

    # the wheel (built from that sdist): every module, schedules.families included, and only lrkit
    dist_info = "lrkit-" + PYPROJECT["project"]["version"] + ".dist-info/"
    assert {n for n in wheel if n.endswith(".py")} == _modules()
    assert not [n for n in wheel if not n.startswith(("lrkit/", dist_info))]
    assert "lrkit/schedules/families/wsd.py" in wheel and "lrkit/__main__.py" in wheel
    assert re.search(r"^lrkit = lrkit\.cli:main$", wheel[dist_info + "entry_points.txt"], re.M)
    metadata = wheel[dist_info + "METADATA"]
    assert "LICENSE" in sdist and dist_info + "licenses/LICENSE" in wheel  # the MIT text
    for line in ("License-Expression: MIT", "License-File: LICENSE", "Requires-Python: >=3.10",
                 "Description-Content-Type: text/markdown"):
        assert line in metadata.splitlines(), line
    # every extra the README and docs tell people to install is one the wheel provides
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {extra.strip() for doc in docs
             for group in re.findall(r"lrkit\[([^\]]+)\]", doc.read_text(encoding="utf-8"))
             for extra in group.split(",")}
    provided = set(re.findall(r"^Provides-Extra: (\S+)$", metadata, re.M))
    assert named and named <= provided, named - provided


def test_a_missing_extra_is_named_by_the_schedule_yaml_writer_and_the_hf_callback(monkeypatch):
    # to_yaml raised a bare ModuleNotFoundError; the callback said "pip install transformers"
    import lrkit.adapters.huggingface as hf
    from lrkit.errors import LrkitError
    from lrkit.schedules import cosine, spec

    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(LrkitError, match=r"pip install 'lrkit\[yaml\]'"):
        spec.to_yaml(cosine(100))
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.setattr(hf, "_CLASS", None)
    with pytest.raises(LrkitError, match=r"pip install 'lrkit\[huggingface\]'"):
        hf.MonitorCallback


def test_recommend_yaml_without_pyyaml_is_refused_before_measuring(monkeypatch, capsys):
    # it measured the whole recipe (about 5 s) and only then failed to write it
    from lrkit.cli import main

    monkeypatch.setitem(sys.modules, "yaml", None)
    import importlib

    package = importlib.import_module("lrkit.recommend")  # (lrkit.recommend is the function)
    monkeypatch.setattr(package, "recommend",
                        lambda *a, **k: pytest.fail("measured before the check"))
    assert main(["recommend", "wine-logreg", "--yaml", "recipe.yaml"]) == 2
    assert "pip install 'lrkit[yaml]'" in capsys.readouterr().err
