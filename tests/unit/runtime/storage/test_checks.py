"""Writability checks before any work, and the one line a failed write becomes."""

from __future__ import annotations

import errno

import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.scratch import StorageFullError
from airflow_ai_provider.runtime.storage import check_scratch_dir
from airflow_ai_provider.runtime.storage.checks import write_error


def test_no_scratch_dir_needs_no_check():
    check_scratch_dir(None)


def test_a_missing_scratch_dir_is_named_with_what_to_do(tmp_path):
    with pytest.raises(
        JobInputError, match=r"^scratch_dir .*/missing does not exist or is not a folder: create"
    ):
        check_scratch_dir(str(tmp_path / "missing"))


def test_a_scratch_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(JobInputError, match=r"is not a folder"):
        check_scratch_dir(str(tmp_path / "plain"))


def test_a_full_disk_names_what_was_written_and_the_remedy():
    err = OSError(errno.ENOSPC, "No space left on device")

    mapped = write_error(err, "output", "file:///out", "output file:///out", "free space there")

    assert isinstance(mapped, StorageFullError) and mapped.retryable is False
    assert str(mapped).startswith(
        "no space left on device (ENOSPC) while writing output file:///out: free space"
    )


def test_any_other_failed_write_is_the_location_not_writable():
    mapped = write_error(OSError(errno.EACCES, "Permission denied"), "output", "file:///out", "x", "y")

    assert type(mapped) is JobInputError
    assert str(mapped) == "output location is not writable: file:///out (Permission denied)"
