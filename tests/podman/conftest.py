"""Fixtures that run pod manifests with ``podman kube play``: the podman command line, the locally
built runtime image, and a runner that plays one pod and collects what the XCom sidecar would read.

Podman needs the ``runc`` runtime and explicit ulimits on our machines (``docs/runtime_image.md``);
when ``CONTAINERS_CONF`` is not set, a ``containers.conf`` with those settings is written for the
session. Without podman the tests skip; with podman, a failing image build fails them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
"""
XCOM_RESULT = "/airflow/xcom/return.json"
POD_DEADLINE_S = 600  # a safety net against a hung pod, not a performance bound


class Podman:
    """The podman command line with the session's ``containers.conf``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["podman", *args], env=self.env, input=input, capture_output=True, text=True, timeout=900
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args[:3])} failed ({done.returncode}): {done.stderr[-2000:]}"
            )
        return done


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    if shutil.which("podman") is None:
        pytest.skip(
            "podman is not installed: run scripts/install_podman.sh (apt-get install podman) to run pods"
        )
    env = dict(os.environ)
    if not env.get("CONTAINERS_CONF"):
        conf = tmp_path_factory.mktemp("podman") / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        env["CONTAINERS_CONF"] = str(conf)
    return Podman(env)


@pytest.fixture(scope="session")
def runtime_image(podman: Podman) -> str:
    """The runtime image, built (or taken from the cache) by ``docker/build_runtime_image.sh``."""
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "docker" / "build_runtime_image.sh")],
        env=podman.env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, f"building the runtime image failed:\n{done.stderr[-3000:]}"
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def s3_secret(podman: Podman, s3_server) -> Iterator[str]:
    """A podman secret holding the S3 credentials, the way a Kubernetes Secret's ``data`` holds them
    (base64 values); pods read it through ``secretKeyRef``."""
    name = f"ai-test-s3-{uuid.uuid4().hex[:8]}"
    data = {
        "access_key": base64.b64encode(s3_server.access_key.encode()).decode(),
        "secret_key": base64.b64encode(s3_server.secret_key.encode()).decode(),
    }
    podman.run("secret", "create", name, "-", input=json.dumps(data))
    yield name
    podman.run("secret", "rm", name, check=False)


@dataclass
class PodRun:
    """What happened to one pod: the main container's exit code and logs, and the result file."""

    name: str
    exit_code: int
    logs: str
    result: dict[str, Any] | None
    seconds: float
    manifest: dict[str, Any] = field(repr=False)


class PodRunner:
    """Play a pod manifest, wait for its main container, read the XCom result, remove the pod."""

    def __init__(self, podman: Podman, workdir: Path) -> None:
        self.podman = podman
        self.workdir = workdir
        self.timings: dict[str, float] = {}

    def play(self, manifest: dict[str, Any], *, label: str) -> PodRun:
        name = manifest["metadata"]["name"]
        main = manifest["spec"]["containers"][0]["name"]
        sidecar = next(
            c["name"] for c in manifest["spec"]["containers"] if c["name"] == "airflow-xcom-sidecar"
        )
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        started = time.monotonic()
        try:
            self.podman.run("kube", "play", str(path))
            state = self._wait_for_exit(f"{name}-{main}")
            seconds = time.monotonic() - started
            self.timings[label] = seconds
            logs = self.podman.run("logs", f"{name}-{main}", check=False)
            read = self.podman.run("exec", f"{name}-{sidecar}", "cat", XCOM_RESULT, check=False)
            result = json.loads(read.stdout) if read.returncode == 0 and read.stdout.strip() else None
            return PodRun(name, state, logs.stdout + logs.stderr, result, seconds, manifest)
        finally:
            # The sidecar exits on SIGINT only (KPO kills it that way): remove without a grace period.
            self.podman.run("pod", "rm", "-f", "-t", "0", "--ignore", name, check=False)
            self.podman.run("kube", "down", str(path), check=False)

    def _wait_for_exit(self, container: str) -> int:
        deadline = time.monotonic() + POD_DEADLINE_S
        while time.monotonic() < deadline:
            state = self.podman.run(
                "inspect", container, "--format", "{{.State.Status}} {{.State.ExitCode}}", check=False
            )
            status, _, code = state.stdout.strip().partition(" ")
            if status in ("exited", "stopped"):
                return int(code)
            time.sleep(1)
        raise AssertionError(f"container {container} still running after {POD_DEADLINE_S}s")


@pytest.fixture(scope="session")
def pod_runner(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodRunner]:
    runner = PodRunner(podman, tmp_path_factory.mktemp("pods"))
    yield runner
    if runner.timings:
        print("\npodman kube play, seconds per job: " + json.dumps(runner.timings, sort_keys=True))
