"""Markers match folders: every test of the suite carries the marker of its folder and no other.

The suite is collected in a subprocess (``pytest --collect-only``) with a small plugin that reports
each collected test's markers, so the check covers every test file, not only those of this session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

FOLDER_MARKERS = {"unit": set(), "integration": {"integration"}, "podman": {"podman"}, "e2e": {"e2e"}}
"""What each folder under ``tests/`` means, as ``pytest -m`` selects it."""

_REPORTER = """
import json, os


def pytest_collection_finish(session):
    rows = [[item.nodeid, sorted({mark.name for mark in item.iter_markers()})] for item in session.items]
    with open(os.environ["MARKER_REPORT"], "w") as report:
        json.dump(rows, report)
"""


def collected_markers(tmp_path: Path) -> list[tuple[str, set[str]]]:
    """Every test the suite collects, with the names of its markers."""
    (tmp_path / "marker_report.py").write_text(_REPORTER)
    report = tmp_path / "markers.json"
    env = {
        **os.environ,
        "MARKER_REPORT": str(report),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)]),
    }
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "marker_report"]
    command += ["-p", "no:cacheprovider", "--continue-on-collection-errors", "tests"]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return [(nodeid, set(names)) for nodeid, names in json.loads(report.read_text())]


def test_every_collected_test_carries_the_marker_of_its_folder_and_no_other(tmp_path: Path) -> None:
    folder_marks = set().union(*FOLDER_MARKERS.values())
    seen: dict[str, int] = {}
    wrong = []
    for nodeid, names in collected_markers(tmp_path):
        parts = nodeid.split("::")[0].split("/")
        folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else "(none)"
        seen[folder] = seen.get(folder, 0) + 1
        if names & folder_marks != FOLDER_MARKERS.get(folder):
            wrong.append(f"{nodeid}: {sorted(names & folder_marks)} in {folder}")

    assert wrong == [], "\n".join(wrong)
    assert set(seen) == set(FOLDER_MARKERS), f"tests collected per folder: {seen}"
