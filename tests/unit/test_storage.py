"""The worker's object storage helper on local folders (file:// URIs and plain paths); its S3 side
is tested against a moto server in tests/integration/test_storage_s3.py."""

from __future__ import annotations

import os

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_ai_provider import storage
from airflow_ai_provider.exceptions import AiProviderConfigError


@pytest.mark.parametrize(
    ("root", "parts", "expected"),
    [
        ("/tmp/x", ("a",), "file:///tmp/x/a"),
        ("/tmp/x/", ("scoring", "customers"), "file:///tmp/x/scoring/customers"),
        ("file:///tmp/x", ("a/", "/b"), "file:///tmp/x/a/b"),
        ("s3://bucket/prefix", ("a",), "s3://bucket/prefix/a"),
        ("s3://bucket/prefix/", ("predictions",), "s3://bucket/prefix/predictions"),
        ("s3://bucket", ("a", "b.parquet"), "s3://bucket/a/b.parquet"),
        ("s3://bucket/p", (), "s3://bucket/p"),
        ("/", ("a",), "file:///a"),
        ("s3://b/p", ("smoke", "{{ run_id }}"), "s3://b/p/smoke/{{ run_id }}"),
    ],
)
def test_data_uri_follows_the_data_root_scheme(root, parts, expected):
    assert storage.data_uri(root, *parts) == expected


@pytest.mark.parametrize(
    ("root", "named"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("ftp://host/data", "unsupported URI scheme 'ftp'"),
        ("s3:///no-bucket", "S3 URI has no bucket"),
        ("file://host/data", "file URI must be absolute"),
    ],
)
def test_a_bad_data_root_fails_in_one_line_naming_it(root, named):
    with pytest.raises(AiProviderConfigError) as caught:
        storage.data_uri(root, "a")
    assert named in str(caught.value) and "\n" not in str(caught.value)


def _touch(path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_list_files_gives_the_folders_own_visible_files_with_a_suffix_sorted(tmp_path):
    for name in ("b.parquet", "a.CSV", "c.json", ".a.parquet.tmp", "_SUCCESS", "sub/d.parquet"):
        _touch(tmp_path / name, b"12345")

    listed = storage.list_files(str(tmp_path), suffixes=(".parquet", ".csv"))

    assert [f.uri for f in listed] == [f"file://{tmp_path}/a.CSV", f"file://{tmp_path}/b.parquet"]
    assert all(f.size == 5 for f in listed)
    mtime = os.stat(tmp_path / "b.parquet").st_mtime
    assert abs(listed[1].modified - mtime) < 1e-3
    assert [f.uri.rsplit("/", 1)[1] for f in storage.list_files(f"file://{tmp_path}")] == [
        "a.CSV",
        "b.parquet",
        "c.json",
    ]


def test_list_files_keeps_a_hidden_file_asked_for_by_name(tmp_path):
    for name in ("a.csv", "_SUCCESS", "_other", ".a.csv.tmp"):
        _touch(tmp_path / name)

    listed = storage.list_files(str(tmp_path), suffixes=(".csv",), names=("_SUCCESS",))

    assert [f.uri.rsplit("/", 1)[1] for f in listed] == ["_SUCCESS", "a.csv"]


def test_list_files_of_a_missing_folder_is_empty(tmp_path):
    assert storage.list_files(str(tmp_path / "nothing" / "here")) == []


def test_list_files_of_a_file_fails_in_one_line_naming_it(tmp_path):
    _touch(tmp_path / "f.csv")
    with pytest.raises(AiProviderConfigError, match=rf"cannot list file://{tmp_path}/f.csv: "):
        storage.list_files(str(tmp_path / "f.csv"))


def test_move_renames_into_a_new_folder_replacing_the_target(tmp_path):
    _touch(tmp_path / "landing" / "a.csv", b"new")
    _touch(tmp_path / "raw" / "old" / "a.csv", b"old")

    storage.move(str(tmp_path / "landing" / "a.csv"), f"file://{tmp_path}/raw/old/a.csv")

    assert not (tmp_path / "landing" / "a.csv").exists()
    assert (tmp_path / "raw" / "old" / "a.csv").read_bytes() == b"new"
    _touch(tmp_path / "landing" / "b.csv", b"b")
    storage.move(str(tmp_path / "landing" / "b.csv"), str(tmp_path / "raw" / "2026" / "b.csv"))
    assert (tmp_path / "raw" / "2026" / "b.csv").read_bytes() == b"b"


def test_a_retried_move_that_already_completed_does_nothing(tmp_path):
    _touch(tmp_path / "landing" / "a.csv", b"data")
    source, target = str(tmp_path / "landing" / "a.csv"), str(tmp_path / "raw" / "a.csv")
    storage.move(source, target)

    storage.move(source, target)  # the retry

    assert (tmp_path / "raw" / "a.csv").read_bytes() == b"data"
    assert not (tmp_path / "landing" / "a.csv").exists()


def test_moving_a_file_that_is_nowhere_fails_once_in_one_line(tmp_path):
    with pytest.raises(AirflowFailException) as caught:
        storage.move(str(tmp_path / "landing" / "a.csv"), str(tmp_path / "raw" / "a.csv"))
    message = str(caught.value)
    assert message == (
        f"cannot move file://{tmp_path}/landing/a.csv: no such file (nor at {tmp_path}/raw/a.csv)"
    )


def test_moving_a_folder_or_across_schemes_is_refused(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(AiProviderConfigError, match="not a file"):
        storage.move(str(tmp_path / "folder"), str(tmp_path / "elsewhere"))
    _touch(tmp_path / "a.csv")
    with pytest.raises(AiProviderConfigError, match="both must be file:// or both s3://"):
        storage.move(str(tmp_path / "a.csv"), "s3://bucket/a.csv")
    assert (tmp_path / "a.csv").exists()


def test_write_bytes_creates_folders_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "predictions" / "run" / "review" / "low.parquet"
    storage.write_bytes(str(target), b"first")
    storage.write_bytes(f"file://{target}", b"second")

    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["low.parquet"]
    assert storage.read_bytes(str(target)) == b"second"


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary_file(tmp_path):
    target = tmp_path / "review.parquet"
    storage.write_bytes(str(target), b"old")

    with pytest.raises(TypeError):
        storage.write_bytes(str(target), 12345)  # type: ignore[arg-type] - fails inside the write

    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["review.parquet"]


def test_a_write_removes_the_temporary_files_a_killed_earlier_write_of_that_file_left(tmp_path):
    target = tmp_path / "review.parquet"
    (tmp_path / ".review.parquet.0123abcd.tmp").write_bytes(b"half")  # a write killed mid-way
    (tmp_path / ".other.parquet.0123abcd.tmp").write_bytes(b"half")  # another file's: not ours

    storage.write_bytes(str(target), b"whole")

    assert target.read_bytes() == b"whole"
    assert sorted(os.listdir(tmp_path)) == [".other.parquet.0123abcd.tmp", "review.parquet"]


def test_reading_a_missing_file_or_a_folder_fails_once_naming_it(tmp_path):
    with pytest.raises(
        AirflowFailException, match=rf"^cannot read file://{tmp_path}/none.csv: no such file$"
    ):
        storage.read_bytes(str(tmp_path / "none.csv"))
    with pytest.raises(AiProviderConfigError, match="no such file"):
        storage.read_bytes(str(tmp_path))


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: storage.list_files("gs://bucket/data"), "unsupported URI scheme 'gs'"),
        (lambda: storage.read_bytes("s3://"), "S3 URI has no bucket"),
        (lambda: storage.write_bytes("", b"x"), "is empty"),
        (lambda: storage.move("http://host/a", "/tmp/a"), "unsupported URI scheme 'http'"),
    ],
)
def test_a_bad_uri_fails_once_in_one_line(call, named):
    with pytest.raises(AirflowFailException) as caught:
        call()
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_a_uri_carrying_credentials_is_refused_without_showing_them():
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    with pytest.raises(AiProviderConfigError) as caught:
        storage.read_bytes(f"s3://AKIAIOSFODNN7EXAMPLE:{secret}@bucket/data.csv")
    assert secret not in str(caught.value)
    assert "carries credentials" in str(caught.value)


def test_filesystem_gives_pyarrow_the_path_and_maps_its_errors(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"confidence": [0.4, 0.9]}), tmp_path / "part.parquet")
    with storage.filesystem(f"file://{tmp_path}/part.parquet") as (fs, path):
        assert pq.read_schema(path, filesystem=fs).names == ["confidence"]
    with (
        pytest.raises(AiProviderConfigError, match=rf"^cannot read predictions file://{tmp_path}/gone"),
        storage.filesystem(str(tmp_path / "gone"), what="cannot read predictions") as (fs, path),
    ):
        fs.open_input_file(path)
