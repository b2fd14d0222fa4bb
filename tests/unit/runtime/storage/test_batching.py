"""Batches read ahead in a thread: the first one before it is asked for, errors where taken, a clean close."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from airflow_ai_provider.runtime import storage


def test_read_ahead_reads_the_first_batch_before_it_is_asked_for():
    started = threading.Event()

    def batches():
        started.set()
        yield pa.record_batch({"x": [1]})

    reader = storage.ReadAhead(batches(), ["x"])
    try:
        assert started.wait(10), "the first batch was not read in the background"
        assert [batch.num_rows for batch in reader] == [1]
        assert reader.seconds > 0
    finally:
        reader.close()


def test_work_given_to_read_ahead_runs_in_its_thread_after_the_read_in_flight():
    order = []
    release = threading.Event()

    def batches():
        release.wait(10)
        order.append("read 1")
        yield pa.record_batch({"x": [1]})
        order.append("read 2")
        yield pa.record_batch({"x": [2]})

    reader = storage.ReadAhead(batches(), ["x"])
    try:
        done = reader.then(lambda: order.append("work") or threading.current_thread().name)
        release.set()
        assert done.result(10).startswith("reader")
        assert [batch.num_rows for batch in reader] == [1, 1]
        assert order == ["read 1", "work", "read 2"]
    finally:
        reader.close()


def test_read_ahead_raises_a_reading_error_where_that_batch_is_taken():
    def batches():
        yield pa.record_batch({"x": [1]})
        raise OSError("disk gone")

    reader = storage.ReadAhead(batches())
    taken = []
    with pytest.raises(OSError, match="disk gone"):
        for batch in reader:
            taken.append(batch.num_rows)
    reader.close()

    assert taken == [1]


def test_closing_read_ahead_waits_for_the_read_in_flight_and_closes_the_batches():
    closed = threading.Event()
    reading_second = threading.Event()

    def batches():
        try:
            yield pa.record_batch({"x": [1]})
            reading_second.set()
            time.sleep(0.2)
            yield pa.record_batch({"x": [2]})
        finally:
            closed.set()

    reader = storage.ReadAhead(batches())
    next(iter(reader))
    assert reading_second.wait(10)

    reader.close()

    assert closed.is_set()
    assert not any(thread.name.startswith("reader") and thread.is_alive() for thread in threading.enumerate())
