"""The infer job's batches: sized from the input's metadata and memory, the first read while the model loads."""

from __future__ import annotations

import os
import threading

import numpy as np
import pandas as pd
import pytest

from airflow_ai_provider.runtime import infer, memory, storage
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.models import predictors
from tests.unit.runtime.conftest import customers, read_output, write_parquet
from tests.unit.runtime.test_infer import assert_same_predictions, expected


@pytest.fixture
def predicted_rows(monkeypatch) -> list[int]:
    """The rows of every batch the fast predictor is given (the real predictor still predicts)."""
    rows: list[int] = []
    original = predictors.ProbaPredictor.predict

    def counting(self, batch):
        rows.append(batch.num_rows)
        return original(self, batch)

    monkeypatch.setattr(predictors.ProbaPredictor, "predict", counting)
    return rows


def test_small_input_without_batch_size_is_predicted_in_one_batch(registry, tmp_path, predicted_rows):
    frame = customers(5000, seed=21)
    source = write_parquet(tmp_path / "in.parquet", frame, row_group_size=2000)

    result = infer.run(registry.spec("churn", str(source), tmp_path / "out"), log=print)

    assert predicted_rows == [5000]
    assert (result.metrics["batches"], result.metrics["batch_rows"]) == (1, 5000)
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", frame))


def test_input_larger_than_the_memory_budget_is_predicted_in_equal_batches(
    registry, tmp_path, predicted_rows, monkeypatch
):
    frame = customers(6000, seed=22)
    source = write_parquet(tmp_path / "in.parquet", frame)
    # Four columns of 8 bytes or more, 6 copies in flight: 40 KiB holds fewer rows than MIN_BATCH_ROWS (1024).
    monkeypatch.setattr(infer, "BATCH_MEMORY_BYTES", 40 << 10)

    result = infer.run(registry.spec("churn", str(source), tmp_path / "out"), log=print)

    assert predicted_rows == [1000] * 6  # 6000 rows in batches of at most 1024, evened out
    assert result.metrics["batch_rows"] == 1000
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", frame))


def test_the_memory_budget_shrinks_to_a_quarter_of_what_is_available(tmp_path, monkeypatch):
    """The available memory is replaced (a container limit cannot be set here); the sizing is real."""
    log_budget: list[str] = []
    source = write_parquet(tmp_path / "in.parquet", customers(6000, seed=23))
    metas, units, columns = plan_of(source)
    params = infer.InferParams.from_spec({})
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 << 20)
    infer.batch_rows(metas, units, columns, params, log_budget.append)
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    infer.batch_rows(metas, units, columns, params, log_budget.append)

    assert [line.split(", ")[-1] for line in log_budget] == [
        "2 MiB for rows in flight)",
        f"{infer.BATCH_MEMORY_BYTES >> 20} MiB for rows in flight)",
    ]
    assert infer.batch_rows(metas, units, columns, infer.InferParams.from_spec({"batch_size": 7}), print) == 7


def plan_of(source, columns: list[str] | None = None) -> tuple:
    metas = storage.read_metadata(storage.list_inputs([str(source)]))
    return metas, storage.plan_units(metas), columns or list(metas[0].schema.names)


def sized(metas: list, units: list, columns: list[str], budget: int, monkeypatch) -> int:
    """``infer.batch_rows`` with a budget of ``budget`` bytes (nothing taken off by the memory available)."""
    monkeypatch.setattr(infer, "BATCH_MEMORY_BYTES", budget)
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    return infer.batch_rows(metas, units, columns, infer.InferParams.from_spec({}), print)


def floats(path, rows: int, columns: int = 4, row_group_size: int | None = None) -> tuple:
    """A Parquet file of ``columns`` float64 columns (8 bytes a row each), its metadata and units."""
    frame = pd.DataFrame({f"c{i}": np.random.default_rng(i).random(rows) for i in range(columns)})
    return plan_of(write_parquet(path, frame, row_group_size))


def test_a_shard_larger_than_the_budget_is_cut_into_equal_batches_of_six_copies(tmp_path, monkeypatch):
    metas, units, columns = floats(tmp_path / "a.parquet", 10_000)
    per_row = infer.COPIES_IN_FLIGHT * 8 * len(columns)
    budget = 3000 * per_row  # room for 3000 rows in flight: 10,000 rows need 4 batches

    rows = sized(metas, units, columns, budget, monkeypatch)

    assert rows == 2500
    assert [batch.num_rows for batch in storage.iter_batches(metas, units, columns, {}, rows)] == [2500] * 4


def test_a_shard_that_fits_as_four_copies_is_one_batch(tmp_path, monkeypatch):
    metas, units, columns = floats(tmp_path / "a.parquet", 5000, row_group_size=2000)
    per_row = 8 * len(columns)
    between = 5000 * per_row * (infer.COPIES_ONE_BATCH + infer.COPIES_IN_FLIGHT) // 2
    short = 5000 * per_row * (infer.COPIES_ONE_BATCH - 1)

    assert sized(metas, units, columns, between, monkeypatch) == 5000
    assert sized(metas, units, columns, short, monkeypatch) < 5000


def test_reading_fewer_columns_allows_larger_batches(tmp_path, monkeypatch):
    metas, units, columns = floats(tmp_path / "a.parquet", 20_000, columns=8)
    budget = 2000 * infer.COPIES_IN_FLIGHT * 8 * len(columns)

    assert sized(metas, units, columns, budget, monkeypatch) <= 2000
    assert sized(metas, units, columns[:2], budget, monkeypatch) > 2000


def test_batch_rows_stay_within_their_bounds_and_stay_equal(tmp_path, monkeypatch):
    metas, units, columns = floats(tmp_path / "a.parquet", 5000)

    # No room at all: batches of at most MIN_BATCH_ROWS (1024), evened out to 5 batches of 1000.
    assert sized(metas, units, columns, 1, monkeypatch) == 1000
    monkeypatch.setattr(infer, "MAX_BATCH_ROWS", 2000)
    # Room for everything, but at most 2000 rows a batch: 3 batches of 1667 (the last one 1666).
    assert sized(metas, units, columns, 1 << 40, monkeypatch) == 1667


def test_csv_input_gets_the_default_batch_rows(tmp_path, monkeypatch):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n3,4\n")

    metas, units, columns = plan_of(tmp_path / "a.csv")

    assert sized(metas, units, columns, 64 << 20, monkeypatch) == infer.DEFAULT_BATCH_ROWS


def test_explicit_batch_size_is_kept(registry, tmp_path, predicted_rows):
    source = write_parquet(tmp_path / "in.parquet", customers(1000, seed=24))

    infer.run(registry.spec("churn", str(source), tmp_path / "out", params={"batch_size": 300}), log=print)

    assert predicted_rows == [300, 300, 300, 100]


def test_extra_column_fails_before_any_batch_is_used_and_stops_the_early_reader(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(2000, seed=25).assign(segment="b2c"))

    with pytest.raises(JobInputError, match="extra column"):
        infer.run(registry.spec("churn", str(source), tmp_path / "out"), log=print)

    assert list((tmp_path / "out").iterdir()) == []
    assert not any(thread.name.startswith("reader") and thread.is_alive() for thread in threading.enumerate())


def test_available_memory_is_the_containers_headroom_when_it_has_a_limit(tmp_path):
    (tmp_path / "max").write_text("1000000\n")
    (tmp_path / "current").write_text("400000\n")
    (tmp_path / "no-limit").write_text("max\n")
    with_limit = ((str(tmp_path / "max"), str(tmp_path / "current")),)
    without = ((str(tmp_path / "no-limit"), str(tmp_path / "current")),)
    missing = ((str(tmp_path / "absent"), str(tmp_path / "absent")),)

    assert memory.available_bytes(with_limit) == 600000
    machine = memory.available_bytes(missing)
    assert machine is not None and machine > 600000  # MemAvailable of this machine
    assert abs(memory.available_bytes(without) - machine) < 256 << 20  # no limit: MemAvailable again


def test_first_batch_of_a_parquet_input_is_read_while_the_model_loads(registry, tmp_path, monkeypatch):
    frame = customers(3000, seed=26)
    source = write_parquet(tmp_path / "in.parquet", frame)
    first_read = threading.Event()
    real_batches, real_load = infer.storage.iter_batches, infer.load_model
    seen_during_load: list[bool] = []

    def watched_batches(*args, **kwargs):
        for batch in real_batches(*args, **kwargs):
            first_read.set()
            yield batch

    def watched_load(*args, **kwargs):
        seen_during_load.append(first_read.wait(10))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(infer.storage, "iter_batches", watched_batches)
    monkeypatch.setattr(infer, "load_model", watched_load)

    infer.run(registry.spec("churn", str(source), tmp_path / "out"), log=print)

    assert seen_during_load == [True]
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", frame))


def test_the_feature_matrix_is_made_while_the_model_loads_and_handed_to_the_fast_predictor(
    registry, tmp_path, monkeypatch
):
    frame = customers(3000, seed=28)
    source = write_parquet(tmp_path / "in.parquet", frame)
    made: list[tuple[int, int, str]] = []
    handed: list[object] = []
    real_touched, real_init = infer.touched_matrix, predictors.ProbaPredictor.__init__

    def watched_touched(rows: int, columns: int):
        matrix = real_touched(rows, columns)
        made.append((rows, columns, threading.current_thread().name))
        handed.append(matrix)
        return matrix

    def watched_init(self, estimator, features, matrix=None):
        real_init(self, estimator, features, matrix)
        handed.append(self._matrix)

    monkeypatch.setattr(infer, "touched_matrix", watched_touched)
    monkeypatch.setattr(predictors.ProbaPredictor, "__init__", watched_init)

    infer.run(registry.spec("churn", str(source), tmp_path / "out"), log=print)

    ((rows, columns, thread),) = made
    assert (rows, columns) == (3000, 3) and thread.startswith("reader")
    assert len(handed) == 2 and handed[0] is handed[1]  # the predictor got that very matrix
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", frame))


def openmp_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"]


def test_model_threads_caps_the_models_openmp_threads_while_predicting(registry, tmp_path, monkeypatch):
    source = write_parquet(tmp_path / "in.parquet", customers(1000, seed=27))
    seen: list[list[int]] = []
    original = predictors.ProbaPredictor.predict

    def recording(self, batch):
        seen.append(openmp_threads())
        return original(self, batch)

    monkeypatch.setattr(predictors.ProbaPredictor, "predict", recording)
    infer.run(registry.spec("churn", str(source), tmp_path / "out", params={"model_threads": 1}), log=print)
    infer.run(registry.spec("churn", str(source), tmp_path / "out"), log=print)

    assert seen[0] and set(seen[0]) == {1}
    assert seen[1] == openmp_threads()  # uncapped: the library's own count, restored after the capped run
    if (os.cpu_count() or 1) > 1:
        assert set(seen[1]) != {1}


def test_model_threads_must_be_a_positive_integer():
    with pytest.raises(JobInputError, match="model_threads must be a positive integer, got 0"):
        infer.InferParams.from_spec({"model_threads": 0})
