"""Nothing left behind by the runtime command: a try killed with SIGKILL or stopped with SIGTERM mid-write,
the retry that follows, helpers the user's code starts in a new session, and full disks (on a small
tmpfs, where mounting one is permitted).

Every test runs ``python -m airflow_ai_provider.runtime`` as a subprocess, as the local runner and a
pod do, against the SQLite registry of ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_ai_provider.runtime import __main__ as cli
from tests._support.system import helper_argv, new_marker, no_leftover, small_tmpfs, wait_for, with_marker
from tests.unit.runtime.conftest import customers, write_parquet

REPO = Path(__file__).resolve().parents[3]
PART = "part-00000-of-00001.parquet"
HERE = "tests.unit.runtime.test_leftovers"


def start_cli(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AI_PROVIDER_", "MLFLOW_"))}
    environment.update({"TMPDIR": str(scratch), "PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.Popen(
        [sys.executable, "-m", "airflow_ai_provider.runtime", *args],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def temp_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(".tmp")] if folder.exists() else []


def big_input(tmp_path: Path, rows: int = 400_000) -> Path:
    return write_parquet(tmp_path / "in" / "data.parquet", customers(rows, seed=3), row_group_size=20_000)


def infer_args(registry, tmp_path: Path, output: Path, batch_size: int = 500) -> list[str]:
    spec = registry.spec("churn", str(tmp_path / "in"), output, params={"batch_size": batch_size})
    return ["infer", "--spec-json", spec.to_json(), "--result-path", str(tmp_path / "result.json")]


def wait_mid_write(process: subprocess.Popen, output: Path) -> Path:
    """Wait until the part's temporary file holds data (the job is streaming), and return it."""

    def writing() -> bool:
        assert process.poll() is None, f"the job ended before it was stopped: {process.communicate()}"
        return any(path.stat().st_size > 0 for path in output.glob(f".{PART}.*.tmp"))

    wait_for(writing, timeout=90, what="the part file to be written")
    return next(output.glob(f".{PART}.*.tmp"))


def read_result(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "result.json").read_text())


def test_a_retry_after_kill_9_mid_write_leaves_one_part_and_no_temp_file(registry, tmp_path):
    big_input(tmp_path)
    output = tmp_path / "out"
    first = start_cli(infer_args(registry, tmp_path, output), tmp_path)
    left = wait_mid_write(first, output)
    first.kill()  # SIGKILL: no handler runs, the temporary file stays
    finish(first)
    assert left.exists(), "precondition: the killed try left its temporary file"

    code, _, err = finish(start_cli(infer_args(registry, tmp_path, output, batch_size=65_536), tmp_path))

    assert code == 0, err
    assert sorted(path.name for path in output.iterdir()) == [PART], "exactly one part, no temp file"
    assert read_result(tmp_path)["rows_out"] == 400_000


def test_sigterm_mid_write_fails_retryable_and_leaves_no_temp_file_or_model_copy(registry, tmp_path):
    big_input(tmp_path)
    output = tmp_path / "out"
    process = start_cli(infer_args(registry, tmp_path, output), tmp_path)
    wait_mid_write(process, output)
    assert list((tmp_path / "scratch").iterdir()), "precondition: the model copy is in the scratch folder"
    stopped = time.monotonic()
    process.send_signal(signal.SIGTERM)

    code, _, err = finish(process, timeout=30)

    assert time.monotonic() - stopped < cli.STOP_DEADLINE_S + 5, "stops within the deadline"
    assert code == 128 + signal.SIGTERM
    result = read_result(tmp_path)
    assert result["status"] == "failed" and result["retryable"] is True
    assert result["error_type"] == "JobInterrupted" and "SIGTERM" in result["error"]
    assert err.strip().splitlines()[-1] == f"airflow-ai-runtime error: {result['error']}"
    assert list(output.iterdir()) == [], "nothing published, no temp file"
    assert list((tmp_path / "scratch").iterdir()) == [], "the model copy is removed"
    assert temp_files(tmp_path) == []


def test_result_temp_files_of_an_earlier_try_are_removed(tmp_path):
    stale = tmp_path / ".return.json.0123456789abcdef.tmp"
    stale.write_text("{")

    cli.write_json_atomic(str(tmp_path / "return.json"), {"status": "success"})

    assert sorted(path.name for path in tmp_path.iterdir()) == ["return.json"]


def train_with_helper(ctx: Any) -> Any:
    """A training function that leaves a helper behind: it double-forks a process into a new session
    (``start_new_session=True``), so the helper is an orphan outside the runtime's process group."""
    from dag_templates.include.churn_training import train

    starter = (
        "import subprocess, sys; "
        f"subprocess.Popen({helper_argv(ctx.params['marker'])!r}, start_new_session=True)"
    )
    subprocess.run([sys.executable, "-c", starter], check=True)
    wait_for(lambda: with_marker(ctx.params["marker"]), what="the helper to start")
    return train(ctx)


def test_helper_started_in_a_new_session_by_the_training_function_is_ended_with_the_job(tmp_path):
    from mlflow import MlflowClient

    from tests._support.churn_sample import write_customers

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.create_experiment("leftovers", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    (data,) = write_customers(tmp_path / "train.parquet", 400, seed=1, with_label=True)
    marker = new_marker()
    spec = {
        "job": "train",
        "inputs": [str(data)],
        "mlflow": {"tracking_uri": tracking_uri, "run_id": run_id},
        "params": {
            "training_function": f"{HERE}:train_with_helper",
            "label_column": "churned",
            "id_columns": ["customer_id"],
            "model_name": "leftovers",
            "hyperparameters": {"marker": marker, "max_iter": 5},
        },
    }
    with no_leftover(marker):
        code, out, err = finish(
            start_cli(
                ["train", "--spec-json", json.dumps(spec), "--result-path", str(tmp_path / "result.json")],
                tmp_path,
            )
        )

        assert code == 0, err
        assert read_result(tmp_path)["status"] == "success"
        assert with_marker(marker) == [], "the helper is gone once the job has ended"
        assert "ended 1 process(es) the job left running" in err


def write_big_enough(tmp_path: Path) -> None:
    big_input(tmp_path, rows=300_000)  # about 7 MB of predictions


def test_full_output_disk_is_one_line_naming_it_and_leaves_no_temp_file(registry, tmp_path):
    write_big_enough(tmp_path)
    with small_tmpfs("2m") as disk:
        output = disk / "out"
        code, _, err = finish(start_cli(infer_args(registry, tmp_path, output, 65_536), tmp_path))

        last = err.strip().splitlines()[-1]
        assert code == cli.EXIT_INPUT, err
        assert last.startswith(
            f"airflow-ai-runtime error: no space left on device (ENOSPC) while writing output file://{output}"
        )
        assert "free space there" in last
        result = read_result(tmp_path)
        assert result["retryable"] is False and result["error_type"] == "StorageFullError"
        assert temp_files(disk) == [] and list(output.iterdir()) == []


def test_full_scratch_disk_for_the_model_download_is_named(registry, tmp_path):
    write_parquet(tmp_path / "in" / "data.parquet", customers(100))
    with small_tmpfs("4k") as disk:
        spec = registry.spec(
            "churn", str(tmp_path / "in"), tmp_path / "out", params={"scratch_dir": str(disk)}
        )
        args = ["infer", "--spec-json", spec.to_json(), "--result-path", str(tmp_path / "result.json")]

        code, _, err = finish(start_cli(args, tmp_path))

        last = err.strip().splitlines()[-1]
        assert code == cli.EXIT_INPUT, err
        assert (
            "no space left on device (ENOSPC) while writing the download of model 'churn' version 1" in last
        )
        assert str(disk) in last and "scratch_dir" in last
        assert read_result(tmp_path)["retryable"] is False
        assert list(disk.iterdir()) == [], "the partial model copy is removed"


def test_full_disk_under_a_report_is_one_line_naming_it_and_leaves_no_temp_file():
    from airflow_ai_provider.runtime import storage
    from airflow_ai_provider.runtime.scratch import StorageFullError
    from airflow_ai_provider.runtime.storage.publish import publish

    with small_tmpfs("2m") as disk:
        (disk / "reports" / ".validation.html.0123456789abcdef.tmp").parent.mkdir()
        (disk / "reports" / ".validation.html.0123456789abcdef.tmp").write_bytes(b"killed try")
        with pytest.raises(StorageFullError) as caught:
            publish(
                storage.parse_uri(str(disk / "reports")), "validation.html", b"x" * (3 << 20), "text/html"
            )

        assert str(caught.value).startswith(
            f"no space left on device (ENOSPC) while writing report file://{disk}/reports/validation.html: "
        )
        assert list((disk / "reports").iterdir()) == [], "no temp file, the earlier try's included"


def test_a_full_disk_behind_another_error_becomes_a_storage_full_error_naming_the_file():
    import errno

    from airflow_ai_provider.runtime.contract.errors import JobServiceError

    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded", "/scratch/ai-report-1/plot.png")
        except OSError:
            raise JobServiceError("cannot log plot.png to MLflow run 123") from None
    except JobServiceError as err:
        mapped = cli.as_storage_full(err)

    assert type(mapped).__name__ == "StorageFullError" and mapped.retryable is False
    assert str(mapped).startswith(
        "disk quota exceeded (EDQUOT) while writing /scratch/ai-report-1/plot.png: "
    )


def train_then_hang(ctx: Any) -> Any:
    """A training function that starts a helper in a new session (``start_new_session=True``: out of
    the runtime's process group), records its pid, and never returns."""
    helper = subprocess.Popen(helper_argv(ctx.params["marker"]), start_new_session=True)
    Path(ctx.params["pid_file"]).write_text(str(helper.pid))
    time.sleep(600)


def test_helper_of_a_training_function_is_ended_after_an_airflow_execution_timeout(
    airflow_db, tmp_path, monkeypatch
):
    """A real Airflow task (dag.test) running the real runtime: the timeout stops the runtime with
    SIGTERM, and the helper the training function started in its own session is gone afterwards."""
    from tests._support.churn_sample import write_customers
    from tests.dags.leftover_dags import training_timeout

    write_customers(tmp_path / "train.parquet", 400, seed=1, with_label=True)
    marker = new_marker()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_MARKER", marker)
    monkeypatch.setenv("AI_TEST_TRAINING_FUNCTION", f"{HERE}:train_then_hang")
    with no_leftover(marker):
        started = time.monotonic()
        dag_run = training_timeout().test()

        assert dag_run.state == "failed"
        assert (tmp_path / "helper.pid").exists(), "precondition: the helper was started before the timeout"
        assert with_marker(marker) == []
        assert time.monotonic() - started < 150
