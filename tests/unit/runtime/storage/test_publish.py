"""Publishing one report file: atomic locally, leftovers of killed tries removed, one line when refused."""

from __future__ import annotations

import pytest

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.storage.publish import check_writable, publish


def test_publish_replaces_the_file_whole_and_removes_what_a_killed_try_left(tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "validation.json").write_bytes(b"old")
    (folder / ".validation.json.0123456789abcdef.tmp").write_bytes(b"killed try")

    uri = publish(storage.parse_uri(str(folder)), "validation.json", b'{"ok": true}', "application/json")

    assert uri == f"file://{folder}/validation.json"
    assert [path.name for path in folder.iterdir()] == ["validation.json"]
    assert (folder / "validation.json").read_bytes() == b'{"ok": true}'


def test_publish_creates_the_report_folder(tmp_path):
    publish(storage.parse_uri(str(tmp_path / "a" / "b")), "validation.html", b"<html/>", "text/html")
    assert (tmp_path / "a" / "b" / "validation.html").read_bytes() == b"<html/>"


def test_publish_under_a_file_is_one_line_naming_the_report_location(tmp_path):
    (tmp_path / "plain").write_text("not a folder")
    folder = storage.parse_uri(str(tmp_path / "plain" / "reports"))

    with pytest.raises(JobInputError) as caught:
        publish(folder, "validation.json", b"{}", "application/json")

    assert str(caught.value) == f"report location is not writable: {folder.uri} (Not a directory)"


def test_a_report_folder_yet_to_be_created_under_a_writable_one_is_writable(tmp_path):
    check_writable(storage.parse_uri(str(tmp_path / "not" / "yet")))


def test_a_report_folder_under_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "plain").write_text("not a folder")
    folder = storage.parse_uri(str(tmp_path / "plain" / "reports"))

    with pytest.raises(JobInputError) as caught:
        check_writable(folder)

    assert str(caught.value) == (
        f"report location is not writable: {folder.uri} ({tmp_path / 'plain'} is not a writable folder)"
    )
