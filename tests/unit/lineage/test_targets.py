"""Lineage targets: a local path and its ``file://`` URI name the same output."""

from __future__ import annotations

from airflow_ai_provider.lineage.targets import OutputTarget, parse_target


def test_local_path_and_file_uri_name_the_same_output():
    assert parse_target("/tmp/out/part-00000-of-00001.parquet") == parse_target(
        "file:///tmp/out/part-00000-of-00001.parquet"
    )
    assert parse_target("s3://b/p/") == OutputTarget("s3://b/p")
