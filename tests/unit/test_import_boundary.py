"""The plane boundary is a lint rule: ``lint-imports`` (contracts in ``pyproject.toml``) fails on a
forbidden import between the runtime, its contract and the control plane.

Each test lints a copy of the package in a temporary directory, with or without a sample violation
added, so the real tree is never changed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGE = "airflow_ai_provider"
PACKAGE_DIR = Path(importlib.util.find_spec(PACKAGE).origin).parent
"""The package the tests import: the source tree, or the installed wheel's copy (scripts/test_newest.sh)."""


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The package and ``pyproject.toml`` copied to ``tmp_path``, ready to lint there."""
    shutil.copytree(PACKAGE_DIR, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the package copy under ``root`` (wide lines: one import per line)."""
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def add_module(root: Path, dotted: str, source: str) -> None:
    """Write module ``dotted`` (creating packages on the way) into the copy under ``root``."""
    *packages, name = dotted.split(".")
    folder = root.joinpath(*packages)
    folder.mkdir(parents=True, exist_ok=True)
    for depth in range(1, len(packages) + 1):
        init = root.joinpath(*packages[:depth], "__init__.py")
        if not init.exists():
            init.write_text('"""Sample package."""\n')
    (folder / f"{name}.py").write_text(f'"""Sample violation."""\n\n{source}\n')


def test_the_unmodified_package_keeps_every_contract(copy: Path) -> None:
    result = lint(copy)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("module", "source", "contract", "violation"),
    [
        pytest.param(
            f"{PACKAGE}.runtime.sample_violation",
            f"from {PACKAGE}.operators import base",
            "The runtime imports neither Airflow nor the control plane",
            f"{PACKAGE}.runtime.sample_violation -> {PACKAGE}.operators.base",
            id="runtime-imports-an-operator",
        ),
        pytest.param(
            f"{PACKAGE}.runtime.storage.sample_violation",
            "import airflow.sdk",
            "The runtime imports neither Airflow nor the control plane",
            # External packages are reported by their top-level name.
            f"{PACKAGE}.runtime.storage.sample_violation -> airflow (l.3)",
            id="runtime-imports-airflow",
        ),
        pytest.param(
            f"{PACKAGE}.operators.sample_violation",
            f"from {PACKAGE}.runtime.storage import parse_uri",
            "The control plane imports from the runtime only its contract",
            f"{PACKAGE}.operators.sample_violation -> {PACKAGE}.runtime.storage",
            id="operator-imports-runtime-storage",
        ),
        pytest.param(
            f"{PACKAGE}.brand_new.deep.sample_violation",
            f"from {PACKAGE}.runtime import tracking",
            "The control plane imports from the runtime only its contract",
            f"{PACKAGE}.brand_new.deep.sample_violation -> {PACKAGE}.runtime.tracking",
            id="a-new-control-plane-package-is-covered-without-listing-it",
        ),
        pytest.param(
            f"{PACKAGE}.runtime.contract.sample_violation",
            f"from {PACKAGE}.runtime import storage",
            "The runtime's contract imports nothing else of the package",
            f"{PACKAGE}.runtime.contract.sample_violation -> {PACKAGE}.runtime.storage",
            id="contract-imports-runtime-storage",
        ),
    ],
)
def test_a_forbidden_import_breaks_the_lint_naming_the_contract_and_the_import(
    copy: Path, module: str, source: str, contract: str, violation: str
) -> None:
    add_module(copy, module, source)

    result = lint(copy)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout, result.stdout
    assert violation in result.stdout, result.stdout


def test_the_control_plane_may_import_the_contract(copy: Path) -> None:
    add_module(
        copy,
        f"{PACKAGE}.operators.sample_contract_user",
        f"from {PACKAGE}.runtime.contract import spec\nfrom {PACKAGE}.runtime.contract.errors import JobInputError",
    )

    result = lint(copy)

    assert "The control plane imports from the runtime only its contract" in result.stdout, result.stdout
    assert "sample_contract_user" not in result.stdout, result.stdout
