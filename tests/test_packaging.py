"""The sdist and the wheel, built as a release would build them: the licence is in both,
the metadata has its SPDX expression, classifiers and extras, and the sdist holds none of
the test suite (the tests need the repository: Node packages, examples, conftest)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(
    ".git", ".nox", "node_modules", "__pycache__", "*.egg-info", "_build", "build", "dist"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("build")
    source = tmp_path_factory.mktemp("source") / "trio_sio"
    shutil.copytree(ROOT, source, ignore=SKIP)
    out = source / "dist"
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)]
    subprocess.run(command, check=True, capture_output=True)
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return sdist, wheel


def test_the_sdist_has_the_licence_and_no_tests(built: tuple[Path, Path]) -> None:
    with tarfile.open(built[0]) as sdist:
        names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"} <= set(names)
    assert "trio_sio/py.typed" in names
    assert not [name for name in names if name.startswith(("tests/", "examples/", "bench/"))]
    assert not [name for name in names if Path(name).name.startswith("test_")]


def test_the_wheel_metadata(built: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(built[1]) as wheel:
        names = wheel.namelist()
        [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(wheel.read(metadata).decode())
    assert [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
    assert "trio_sio/py.typed" in names
    assert not [name for name in names if name.startswith("tests/")]
    assert meta["License-Expression"] == "MIT"
    assert meta["License"] is None  # the deprecated free-text field is gone
    classifiers = meta.get_all("Classifier") or []
    assert {"Framework :: Trio", "Typing :: Typed"} <= set(classifiers)
    assert not [c for c in classifiers if c.startswith("License ::")]  # SPDX instead
    assert {"hypercorn", "redis", "admin", "msgpack"} <= set(meta.get_all("Provides-Extra") or [])
    assert meta["Requires-Python"] == ">=3.11"
