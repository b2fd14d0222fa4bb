"""The infer job run in-process: predictions, sharding, publishing and result fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import infer
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.models import predictors
from tests.unit.runtime.conftest import FEATURES, Registry, customers, read_output, write_csv, write_parquet


def expected(registry: Registry, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    estimator = registry.estimators[name]
    features = frame[FEATURES] if hasattr(estimator, "feature_names_in_") else frame[FEATURES].to_numpy()
    out = pd.DataFrame(
        {"customer_id": frame["customer_id"].to_numpy(), "prediction": estimator.predict(features)}
    )
    if hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(features)
        out["confidence"] = proba.max(axis=1)
        for index, label in enumerate(estimator.classes_):
            out[f"proba_{label}"] = proba[:, index]
    return out


def assert_same_predictions(actual: pd.DataFrame, wanted: pd.DataFrame) -> None:
    actual = actual.sort_values("customer_id").reset_index(drop=True)
    wanted = wanted.sort_values("customer_id").reset_index(drop=True)
    assert list(actual.columns) == list(wanted.columns)
    assert actual["customer_id"].tolist() == wanted["customer_id"].tolist()
    for column in wanted.columns[1:]:
        if wanted[column].dtype.kind == "f":
            np.testing.assert_allclose(actual[column], wanted[column], rtol=1e-9)
        else:
            assert actual[column].tolist() == wanted[column].tolist()


def test_parquet_file_predictions_match_the_models_own_predict(registry, tmp_path, log_lines):
    frame = customers(5000, seed=1)
    source = write_parquet(tmp_path / "in" / "customers.parquet", frame, row_group_size=2000)

    result = infer.run(registry.spec("churn", f"file://{source}", tmp_path / "out"), log=log_lines.append)

    assert result.status == "success"
    assert (result.rows_in, result.rows_out) == (5000, 5000)
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", frame))
    assert [o.uri for o in result.outputs] == [f"file://{tmp_path}/out/part-00000-of-00001.parquet"]
    assert any(line.startswith("loaded model churn version 1") for line in log_lines)
    assert any(line.startswith("wrote file://") and "(5000 rows" in line for line in log_lines)


def test_folder_input_reads_all_data_files_recursively_and_skips_hidden_ones(registry, tmp_path):
    parts = [customers(700, seed=i, start_id=1000 * i) for i in range(3)]
    write_parquet(tmp_path / "in" / "a.parquet", parts[0])
    write_parquet(tmp_path / "in" / "day=2" / "b.parquet", parts[1])
    write_parquet(tmp_path / "in" / "c.parquet", parts[2])
    write_parquet(tmp_path / "in" / "_tmp" / "ignored.parquet", customers(5, seed=9, start_id=99_000))
    write_parquet(tmp_path / "in" / ".hidden.parquet", customers(5, seed=9, start_id=98_000))
    (tmp_path / "in" / "_SUCCESS").write_text("")

    result = infer.run(registry.spec("churn", str(tmp_path / "in"), tmp_path / "out"), log=print)

    assert [entry["uri"].rsplit("/", 1)[-1] for entry in result.inputs] == [
        "a.parquet",
        "c.parquet",
        "b.parquet",
    ]
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", pd.concat(parts)))


def test_glob_input_reads_only_matching_files(registry, tmp_path):
    keep = [customers(300, seed=i, start_id=1000 * i) for i in range(2)]
    write_parquet(tmp_path / "in" / "jan-1.parquet", keep[0])
    write_parquet(tmp_path / "in" / "jan-2.parquet", keep[1])
    write_parquet(tmp_path / "in" / "feb-1.parquet", customers(300, seed=7, start_id=50_000))

    result = infer.run(
        registry.spec("churn", str(tmp_path / "in" / "jan-*.parquet"), tmp_path / "out"), log=print
    )

    assert result.rows_out == 600
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", pd.concat(keep)))


def test_csv_inputs_predict_like_parquet(registry, tmp_path):
    parts = [customers(400, seed=i, start_id=1000 * i) for i in range(2)]
    write_csv(tmp_path / "in" / "a.csv", parts[0])
    write_csv(tmp_path / "in" / "b.csv", parts[1])

    result = infer.run(registry.spec("churn", f"file://{tmp_path}/in", tmp_path / "out"), log=print)

    assert [entry["format"] for entry in result.inputs] == ["csv", "csv"]
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", pd.concat(parts)))


def test_cloudpickle_and_skops_models_both_load(registry, tmp_path):
    frame = customers(500, seed=3)
    source = write_parquet(tmp_path / "in.parquet", frame)
    for name in ("churn-pickle", "hgb"):
        infer.run(registry.spec(name, str(source), tmp_path / name), log=print)
        assert_same_predictions(read_output(tmp_path / name), expected(registry, name, frame))


def test_skops_model_without_trusted_types_loads_when_params_trust_them(registry, tmp_path):
    frame = customers(300, seed=4)
    source = write_parquet(tmp_path / "in.parquet", frame)
    with pytest.raises(
        JobInputError, match=r"untrusted types .*TreePredictor.*list them in skops_trusted_types"
    ):
        infer.run(registry.spec("hgb-untrusted", str(source), tmp_path / "out"), log=print)

    params = {"skops_trusted_types": ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]}
    infer.run(registry.spec("hgb-untrusted", str(source), tmp_path / "out", params=params), log=print)
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "hgb-untrusted", frame))


def test_regressor_without_predict_proba_goes_through_pyfunc_predict(registry, tmp_path, log_lines):
    frame = customers(800, seed=5)
    source = write_parquet(tmp_path / "in.parquet", frame)

    infer.run(registry.spec("spend", str(source), tmp_path / "out"), log=log_lines.append)

    assert any("PyfuncPredictor" in line for line in log_lines)
    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "spend", frame))


def test_model_without_signature_gets_all_non_id_columns(registry, tmp_path):
    frame = customers(600, seed=6)
    source = write_parquet(tmp_path / "in.parquet", frame)

    infer.run(registry.spec("nosig", str(source), tmp_path / "out"), log=print)

    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "nosig", frame))


def test_integer_columns_widen_to_the_signatures_double(registry, tmp_path):
    frame = customers(400, seed=8)
    frame["age"] = frame["age"].round().astype("int32")
    source = write_parquet(tmp_path / "in.parquet", frame)

    result = infer.run(registry.spec("churn", str(source), tmp_path / "out"), log=print)

    assert result.input_schema["age"] == "int32"
    assert_same_predictions(
        read_output(tmp_path / "out"), expected(registry, "churn", frame.astype({"age": float}))
    )


def test_extra_columns_are_dropped_when_params_say_ignore(registry, tmp_path):
    frame = customers(300, seed=9).assign(segment="b2c")
    source = write_parquet(tmp_path / "in.parquet", frame)

    infer.run(
        registry.spec("churn", str(source), tmp_path / "out", params={"extra_columns": "ignore"}), log=print
    )

    assert_same_predictions(read_output(tmp_path / "out"), expected(registry, "churn", frame))


def shard_ids(registry: Registry, inputs: list[str], out: Path, count: int) -> list[list[int]]:
    ids = []
    for index in range(count):
        spec = registry.spec(
            "churn", inputs, out, shard={"index": index, "count": count}, params={"batch_size": 250}
        )
        result = infer.run(spec, log=print)
        part = out / infer.part_name(index, count)
        ids.append(pd.read_parquet(part)["customer_id"].tolist() if part.exists() else [])
        assert result.rows_out == len(ids[-1])
    return ids


def test_shards_of_a_multi_row_group_file_are_disjoint_and_complete(registry, tmp_path):
    frame = customers(2300, seed=10)
    source = write_parquet(tmp_path / "in.parquet", frame, row_group_size=300)  # 8 row groups
    assert pq.ParquetFile(source).metadata.num_row_groups == 8

    ids = shard_ids(registry, [str(source)], tmp_path / "out", count=3)

    assert all(ids), "every shard gets rows"
    flat = [i for part in ids for i in part]
    assert sorted(flat) == frame["customer_id"].tolist()  # complete, and no duplicates
    assert flat == sorted(flat), "shards are contiguous ranges in file order"


def test_shards_over_several_files_are_disjoint_and_complete(registry, tmp_path):
    frames = [customers(rows, seed=i, start_id=10_000 * i) for i, rows in enumerate([900, 50, 1200, 400])]
    for i, frame in enumerate(frames):
        write_parquet(tmp_path / "in" / f"part-{i}.parquet", frame, row_group_size=200)

    ids = shard_ids(registry, [str(tmp_path / "in")], tmp_path / "out", count=4)

    flat = [i for part in ids for i in part]
    assert sorted(flat) == sorted(pd.concat(frames)["customer_id"].tolist())
    assert len(flat) == len(set(flat))


def test_shard_with_no_work_units_writes_nothing_and_succeeds(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(100, seed=11))  # one row group

    results = [
        infer.run(
            registry.spec("churn", str(source), tmp_path / "out", shard={"index": i, "count": 3}), log=print
        )
        for i in range(3)
    ]

    assert [r.rows_out for r in results] == [0, 100, 0]
    assert [len(r.outputs) for r in results] == [0, 1, 0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part-00001-of-00003.parquet"]


def test_retry_replaces_its_own_output_file(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(1000, seed=12))
    spec = registry.spec("churn", str(source), tmp_path / "out", shard={"index": 1, "count": 2})
    part = tmp_path / "out" / "part-00001-of-00002.parquet"

    first = infer.run(spec, log=print)
    part.write_bytes(b"stale content of an earlier attempt")
    second = infer.run(spec, log=print)

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [part.name]
    assert second.outputs[0].sha256 == first.outputs[0].sha256
    assert pq.ParquetFile(part).metadata.num_rows == second.rows_out


def test_failed_run_publishes_nothing_and_leaves_no_temp_file(registry, tmp_path, monkeypatch):
    source = write_parquet(tmp_path / "in.parquet", customers(3000, seed=13))
    calls = []

    def failing_predict(self, batch):
        calls.append(batch.num_rows)
        if len(calls) == 3:
            raise RuntimeError("model crashed")
        return original(self, batch)

    original = predictors.ProbaPredictor.predict
    monkeypatch.setattr(predictors.ProbaPredictor, "predict", failing_predict)
    spec = registry.spec("churn", str(source), tmp_path / "out", params={"batch_size": 500})

    with pytest.raises(JobInputError, match="failed to predict: RuntimeError: model crashed"):
        infer.run(spec, log=print)

    assert len(calls) == 3
    assert list((tmp_path / "out").iterdir()) == []


def test_result_reports_metrics_model_inputs_and_digest(registry, tmp_path):
    frame = customers(1500, seed=14)
    source = write_parquet(tmp_path / "in.parquet", frame, row_group_size=500)
    spec = registry.spec("churn", str(source), tmp_path / "out", params={"batch_size": 400})

    result = infer.run(spec, log=print)
    again = infer.run(spec, log=print)
    payload = result.to_dict()

    assert payload["model"]["uri"] == "models:/churn/1" and payload["model"]["run_id"]
    assert payload["shard"] == {"index": 0, "count": 1}
    assert payload["inputs"] == [
        {
            "uri": f"file://{source}",
            "bytes": source.stat().st_size,
            "format": "parquet",
            "row_groups": [0, 1, 2],
            "rows": 1500,
        }
    ]
    assert payload["input_schema"] == {
        "customer_id": "int64",
        "age": "double",
        "income": "double",
        "visits": "int64",
    }
    assert len(payload["input_digest"]) == 64 and payload["input_digest"] == again.input_digest
    metrics = payload["metrics"]
    for key in ("rows_per_s", "duration_s", "peak_rss_mb", "load_model_s", "read_s", "predict_s", "write_s"):
        assert metrics[key] > 0, key
    assert metrics["batches"] == 4  # 1500 rows in batches of at most 400
    assert payload["timings"]["ended_at"] >= payload["timings"]["started_at"]
    output = payload["outputs"][0]
    assert (
        output["rows"] == 1500
        and output["bytes"] == (tmp_path / "out" / "part-00000-of-00001.parquet").stat().st_size
    )


def test_input_digest_changes_with_the_data_and_the_shard(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(1000, seed=15), row_group_size=250)
    base = infer.run(registry.spec("churn", str(source), tmp_path / "out"), log=print).input_digest
    half = infer.run(
        registry.spec("churn", str(source), tmp_path / "out", shard={"index": 0, "count": 2}), log=print
    ).input_digest
    write_parquet(source, customers(1000, seed=16), row_group_size=250)
    changed = infer.run(registry.spec("churn", str(source), tmp_path / "out"), log=print).input_digest

    assert len({base, half, changed}) == 3
