"""The package layout holds what docs/architecture.md promises: one small module per responsibility."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: The package the tests import: the source tree, or the installed wheel (scripts/test_newest.sh).
PACKAGE = Path(importlib.util.find_spec("airflow_ai_provider").origin).parent
ARCHITECTURE = REPO / "docs" / "architecture.md"
#: "About 400 lines at most": a module past this has more than one job to do.
MAX_LINES = 420
MODULES = sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_every_module_has_a_one_line_docstring_naming_its_responsibility(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{_name(path)} has no module docstring"
    first = docstring.splitlines()[0]
    assert first.endswith("."), f"{_name(path)}: the docstring's first line is not one sentence: {first!r}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_module_is_over_about_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{_name(path)} has {lines} lines: split it by responsibility"


def test_the_architecture_page_lists_every_module_with_its_responsibility():
    page = ARCHITECTURE.read_text()
    listed = set(re.findall(r"`(airflow_ai_provider/[\w/]+\.py)`", page))
    present = {_name(path) for path in MODULES}
    assert not present - listed, f"docs/architecture.md does not list {sorted(present - listed)}"
    assert not listed - present, (
        f"docs/architecture.md lists modules that do not exist: {sorted(listed - present)}"
    )
    for path in MODULES:
        first = ast.get_docstring(ast.parse(path.read_text())).splitlines()[0]
        assert first in page, f"docs/architecture.md does not give {_name(path)}'s line: {first!r}"
