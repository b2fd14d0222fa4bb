"""Process memory figures for job metrics."""

from __future__ import annotations

import resource
import sys


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
