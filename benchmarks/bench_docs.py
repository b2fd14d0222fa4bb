"""Shared by the benchmarks: describe the machine and replace one section of docs/performance.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def machine_line() -> str:
    """Date, CPU model, core count and Python version, for the record next to the figures."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"Measured {dt.date.today().isoformat()} on {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}."
    )


def replace_section(heading: str, body: str, path: Path = DOC_PATH) -> None:
    """Replace the ``## heading`` section of ``path`` (or append it), leaving other sections alone."""
    text = path.read_text() if path.exists() else "# Performance\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {heading}"), None)
    section = [f"## {heading}", "", *body.strip().splitlines(), ""]
    if start is None:
        lines = [*lines, "", *section]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = [*lines[:start], *section, *lines[end:]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
