"""A training function module whose import reports what the job's process looks like (for the local
runner's tests): its environment, temporary folder and whether scikit-learn was imported before it.

``$WARM_PROBE_OUT`` names the JSON file written at import; with ``$WARM_PROBE_SLEEP`` set, the import
then starts a grandchild (``sleep``, its pid in the JSON) and sleeps, so the test can kill the job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

_REPORT = {
    "pid": os.getpid(),
    "env": dict(os.environ),
    "tempdir": tempfile.gettempdir(),
    "sklearn_before_the_job": "sklearn.ensemble" in sys.modules,
}
if os.environ.get("WARM_PROBE_SLEEP"):
    _REPORT["grandchild"] = subprocess.Popen(["sleep", "300"]).pid
_path = os.environ["WARM_PROBE_OUT"]
with open(f"{_path}.tmp", "w") as _handle:
    json.dump(_REPORT, _handle)
os.replace(f"{_path}.tmp", _path)
if os.environ.get("WARM_PROBE_SLEEP"):
    time.sleep(300)


def train(context: object) -> None:
    """Never reached with a probe that sleeps; otherwise the job fails on the missing input first."""
    raise ValueError("the warm probe trains nothing")
