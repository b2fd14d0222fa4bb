"""Time logging + registering a small sklearn model with and without explicit ``pip_requirements``.

The model is the churn sample's ``HistGradientBoostingClassifier`` (20,000 synthetic rows, 50
iterations), trained once. Each timed step is one ``mlflow.sklearn.log_model(...,
registered_model_name=...)`` inside a run, against a local sqlite store under
``benchmarks/.work/``. One untimed warm-up registration comes first, so imports and schema
creation are not counted; the signature is inferred once, outside the timings. Scenarios run
round-robin, so background load on a shared machine hits them alike.

Scenarios:

* ``pip_requirements given`` -- what ``churn_sample.train_and_register`` does.
* ``default inference`` -- no ``pip_requirements``; the working directory is not a uv project, so
  MLflow loads the model in a subprocess and captures the imported packages.
* ``default inference, cwd is a uv project`` -- same, run from the repository root: MLflow 3.17
  detects ``uv.lock`` + ``pyproject.toml`` and pins the output of ``uv export`` instead.

Run from the repository root::

    .venv/bin/python benchmarks/bench_model_registration.py

It prints a table and writes (or replaces) the ``## Model registration`` section of
``docs/performance.md``; ``--no-docs`` only prints.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests._support import churn_sample  # noqa: E402

WORK_DIR = REPO_ROOT / "benchmarks" / ".work" / "model_registration"
DOC_PATH = REPO_ROOT / "docs" / "performance.md"
SECTION = "## Model registration"
COMMAND = ".venv/bin/python benchmarks/bench_model_registration.py"
TRAIN_ROWS = 20_000


@dataclass
class Scenario:
    """One way of logging the model: explicit requirements or not, and from which directory."""

    label: str
    pin_requirements: bool
    cwd: Path


@dataclass
class Outcome:
    """Timings and what MLflow did for one scenario."""

    scenario: Scenario
    seconds: list[float]
    inference_calls: int
    uv_exports: int
    requirement_lines: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# --------------------------------------------------------------------------- measuring


def _train() -> tuple[Any, Any]:
    """Fit the churn sample model once; return it and its training features."""
    model, x_train, _, _ = churn_sample._fit(churn_sample.make_customers(TRAIN_ROWS, 0), 0, 50)
    return model, x_train


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _log_and_register(model: Any, example: Any, signature: Any, model_name: str, pin: bool) -> str:
    """Log and register one version; return its ``models:/<name>/<version>`` URI."""
    import mlflow

    extra: dict[str, Any] = {"pip_requirements": churn_sample._pip_requirements()} if pin else {}
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=model_name,
            signature=signature,
            input_example=example,
            serialization_format="cloudpickle",
            **extra,
        )
    return f"models:/{model_name}/{info.registered_model_version}"


def _requirement_lines(model_uri: str) -> int:
    """Number of requirement lines MLflow wrote for the logged model."""
    import mlflow

    path = mlflow.artifacts.download_artifacts(f"{model_uri}/requirements.txt")
    return len([line for line in Path(path).read_text().splitlines() if line.strip()])


def _model_name(scenario: Scenario) -> str:
    return "bench-" + "".join(char if char.isalnum() else "-" for char in scenario.label)


def _measure_once(
    scenario: Scenario, model: Any, example: Any, signature: Any
) -> tuple[float, int, int, str]:
    """One timed registration: seconds, inference calls, uv export calls, model version URI."""
    import mlflow.utils.environment as environment

    with (
        mock.patch.object(environment, "_infer_requirements", wraps=environment._infer_requirements) as infer,
        mock.patch.object(
            environment, "export_uv_requirements", wraps=environment.export_uv_requirements
        ) as uv_export,
        _working_directory(scenario.cwd),
    ):
        started = time.perf_counter()
        model_uri = _log_and_register(
            model, example, signature, _model_name(scenario), scenario.pin_requirements
        )
        seconds = time.perf_counter() - started
    return seconds, infer.call_count, uv_export.call_count, model_uri


def _measure(scenarios: list[Scenario], model: Any, x_train: Any, repeats: int) -> list[Outcome]:
    """Time ``repeats`` registrations per scenario, round-robin so background load hits all alike."""
    from mlflow.models import infer_signature

    signature = infer_signature(x_train, model.predict(x_train))
    example = x_train.head(5)
    outcomes = [Outcome(scenario, [], 0, 0, 0) for scenario in scenarios]
    for _ in range(repeats):
        for outcome in outcomes:
            seconds, infer_calls, uv_calls, model_uri = _measure_once(
                outcome.scenario, model, example, signature
            )
            outcome.seconds.append(seconds)
            outcome.inference_calls += infer_calls
            outcome.uv_exports += uv_calls
            outcome.requirement_lines = _requirement_lines(model_uri)
    return outcomes


def run(repeats: int) -> list[Outcome]:
    """Set up a fresh store, warm up, and measure every scenario."""
    import shutil

    import mlflow
    from mlflow.models import infer_signature

    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    tracking_uri = f"sqlite:///{WORK_DIR / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment("bench", artifact_location=(WORK_DIR / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment_id)
    model, x_train = _train()
    with _working_directory(WORK_DIR):
        signature = infer_signature(x_train.head(100), model.predict(x_train.head(100)))
        _log_and_register(model, x_train.head(5), signature, "bench-warm-up", pin=True)
    scenarios = [
        Scenario("pip_requirements given", True, WORK_DIR),
        Scenario("default inference", False, WORK_DIR),
        Scenario("default inference, cwd is a uv project", False, REPO_ROOT),
    ]
    return _measure(scenarios, model, x_train, repeats)


# --------------------------------------------------------------------------- reporting


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nproc() -> int:
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _load() -> str:
    with contextlib.suppress(OSError, AttributeError):
        return " / ".join(f"{value:.1f}" for value in os.getloadavg())
    return "unknown"


def _versions() -> str:
    import mlflow
    import sklearn

    return (
        f"Python {platform.python_version()}, mlflow {mlflow.__version__}, scikit-learn {sklearn.__version__}"
    )


def table(outcomes: list[Outcome]) -> str:
    """Markdown table of the outcomes."""
    lines = [
        "| scenario | median s | runs s | requirement inference calls | uv export calls | requirements lines |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for outcome in outcomes:
        runs = ", ".join(f"{value:.2f}" for value in outcome.seconds)
        lines.append(
            f"| {outcome.scenario.label} | {outcome.median:.2f} | {runs} | {outcome.inference_calls} "
            f"| {outcome.uv_exports} | {outcome.requirement_lines} |"
        )
    return "\n".join(lines)


def section(outcomes: list[Outcome], repeats: int) -> str:
    """The ``## Model registration`` section for docs/performance.md."""
    given, default = outcomes[0].median, outcomes[1].median
    today = datetime.date.today().isoformat()
    return "\n".join(
        [
            SECTION,
            "",
            f"Logging and registering the churn sample model (`HistGradientBoostingClassifier`, "
            f"{TRAIN_ROWS:,} synthetic rows, 50 iterations) with `mlflow.sklearn.log_model("
            "..., registered_model_name=...)` to a local sqlite store; "
            f"median of {repeats} runs per scenario, round-robin, after one untimed warm-up; signature "
            "inferred once outside the timings. Call counts are totals over a scenario's runs.",
            "",
            table(outcomes),
            "",
            f"Giving `pip_requirements` saves {default - given:.1f} s per registration "
            f"({default / given:.1f}x faster than MLflow's default inference). Run from a uv project "
            "directory, MLflow 3.17 pins the whole project's `uv export` instead: every dependency of "
            "the working tree, not of the model.",
            "",
            f"- Date: {today}",
            f"- Machine: {_nproc()} CPUs, {_cpu_model()}; load average {_load()} at the end "
            "(shared machine: other work was running)",
            f"- Software: {_versions()}",
            f"- Command: `{COMMAND}`",
            "",
        ]
    )


def replace_section(document: str, new_section: str, heading: str = SECTION) -> str:
    """Replace the level-2 section starting at ``heading`` (or append it), keeping the rest."""
    lines = document.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        body = document.rstrip("\n")
        return f"{body}\n\n{new_section}" if body else new_section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "\n".join(lines[end:])
    head = "\n".join(lines[:start])
    parts = [part for part in (head.rstrip("\n"), new_section.rstrip("\n"), tail) if part]
    return "\n\n".join(parts) + "\n"


def write_doc(new_section: str, path: Path = DOC_PATH) -> None:
    """Write ``new_section`` into ``path``, creating it with a ``# Performance`` heading."""
    document = path.read_text() if path.exists() else "# Performance\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(document, new_section))


def main(argv: list[str] | None = None, *, measure: Callable[[int], list[Outcome]] = run) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/performance.md")
    args = parser.parse_args(argv)
    import mlflow  # noqa: F401  (configures its loggers on import; quieten them afterwards)

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    outcomes = measure(args.repeats)
    print(table(outcomes))
    if not args.no_docs:
        write_doc(section(outcomes, args.repeats))
        print(f"\nwrote {SECTION!r} to {DOC_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
