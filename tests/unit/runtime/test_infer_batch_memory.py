"""``batch_memory_mb`` sets the infer job's memory budget for rows in flight; ``batch_size`` still wins."""

from __future__ import annotations

import pytest

from airflow_ai_provider.runtime import infer, memory
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.storage import sizing
from tests.unit.runtime.conftest import customers, read_output, write_parquet
from tests.unit.runtime.test_infer import assert_same_predictions, expected
from tests.unit.runtime.test_infer_batching import floats


def _rows(metas, units, columns, log: list[str] | None = None, **params) -> int:
    lines = [] if log is None else log
    return infer.batch_rows(metas, units, columns, infer.InferParams.from_spec(params), lines.append)


def test_a_small_batch_memory_budget_gives_small_batches(tmp_path, monkeypatch):
    """Four float64 columns are 32 bytes a row, six copies in flight: 1 MiB holds 5461 rows, so 100,000
    rows are cut into 19 equal batches; without the setting the default 160 MiB takes them in one."""
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    metas, units, columns = floats(tmp_path / "a.parquet", 100_000, row_group_size=10_000)
    log: list[str] = []

    assert _rows(metas, units, columns) == 100_000
    assert _rows(metas, units, columns, log, batch_memory_mb=1) == 5264  # 100,000 / 19, rounded up
    assert log[-1].endswith("1 MiB for rows in flight)")


def test_a_budget_below_the_default_lowest_batch_gives_batches_under_1024_rows(tmp_path, monkeypatch):
    """The default budget never cuts batches below MIN_BATCH_ROWS; a budget the job was given does, as
    a heavy model (large activations per row) needs: 1 MiB for rows of 64 float64 columns is 341 rows."""
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    monkeypatch.setattr(infer, "BATCH_MEMORY_BYTES", 1 << 20)
    metas, units, columns = floats(tmp_path / "a.parquet", 4000, columns=64)

    assert _rows(metas, units, columns) == 1000  # 4 batches of at least MIN_BATCH_ROWS (1024), evened
    assert _rows(metas, units, columns, batch_memory_mb=1) == 334  # 12 batches of at most 341 rows


def test_batch_memory_mb_is_taken_as_given_not_capped_by_the_memory_available(tmp_path, monkeypatch):
    """The available memory is replaced (a container limit cannot be set here): the default budget
    shrinks to a quarter of it, a budget the job was given does not."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 << 20)
    metas, units, columns = floats(tmp_path / "a.parquet", 2000)
    log: list[str] = []

    _rows(metas, units, columns, log)
    _rows(metas, units, columns, log, batch_memory_mb=512)

    assert [line.rsplit(", ", 1)[-1] for line in log] == [
        "2 MiB for rows in flight)",
        "512 MiB for rows in flight)",
    ]
    assert sizing.memory_budget(64 << 20, 3) == 3 << 20


def test_batch_size_wins_over_batch_memory_mb(registry, tmp_path):
    frame = customers(3000, seed=31)
    source = write_parquet(tmp_path / "in.parquet", frame)
    spec = registry.spec(
        "churn", str(source), tmp_path / "out", params={"batch_size": 700, "batch_memory_mb": 1}
    )

    result = infer.run(spec, log=print)

    assert (result.metrics["batch_rows"], result.metrics["batches"]) == (700, 5)
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", frame))


def test_the_infer_job_streams_in_the_batches_its_budget_allows(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    frame = customers(40_000, seed=32)
    source = write_parquet(tmp_path / "in.parquet", frame, row_group_size=5000)

    result = infer.run(
        registry.spec("churn", str(source), tmp_path / "out", params={"batch_memory_mb": 1}), log=print
    )

    assert result.metrics["batches"] > 1
    assert result.metrics["batch_rows"] * result.metrics["batches"] >= 40_000
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", frame))


@pytest.mark.parametrize("value", [0, -5, "a lot", 2.5])
def test_a_batch_memory_mb_that_is_not_a_positive_whole_number_is_refused_in_one_line(value):
    with pytest.raises(JobInputError, match="batch_memory_mb") as err:
        infer.InferParams.from_spec({"batch_memory_mb": value})
    assert "\n" not in str(err.value)
