"""Process memory figures for job metrics, and the memory a job may still take for its batches."""

from __future__ import annotations

import os
import resource
import sys

#: cgroup files holding the container's memory limit and use (v2, then v1).
CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Read from ``VmHWM`` in ``/proc/self/status`` where there is one: ``getrusage``'s ``ru_maxrss`` is
    carried over from the parent across ``fork`` + ``exec`` on Linux, so a runtime started by a big
    process would report the parent's peak. Elsewhere ``ru_maxrss`` is used.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def available_bytes(cgroup_files: tuple[tuple[str, str], ...] = CGROUP_FILES) -> int | None:
    """Memory this process may still take: the smaller of the container's headroom (cgroup limit
    minus use) and the machine's ``MemAvailable``; ``None`` where neither can be read."""
    found = []
    for limit_path, usage_path in cgroup_files:
        limit, usage = _read_int(limit_path), _read_int(usage_path)
        # cgroup v1 reports "no limit" as a huge number (close to 2**63).
        if limit is not None and usage is not None and limit < 1 << 60:
            found.append(max(0, limit - usage))
            break
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    return min(found) if found else None


def _read_int(path: str) -> int | None:
    """An integer file's value (``None`` when missing, unreadable or ``max``)."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None
