"""Content hashes are canonical (typed, nulls apart from empty strings) and the content digest ignores row order."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from airflow_ai_provider.runtime.vectors.content import ContentDigest, content_hashes, row_keys


def hashes(**columns: pa.Array) -> list[str]:
    return content_hashes(pa.table(columns), list(columns)).to_pylist()


def test_a_missing_value_and_an_empty_string_hash_differently():
    first, second = hashes(text=pa.array([None, ""], pa.string()))
    assert first != second


def test_a_number_and_its_text_hash_differently_but_integer_widths_agree():
    as_text = hashes(value=pa.array(["1"]))
    as_int64 = hashes(value=pa.array([1], pa.int64()))
    as_int32 = hashes(value=pa.array([1], pa.int32()))
    assert as_text != as_int64
    assert as_int64 == as_int32


def test_values_cannot_shift_between_columns():
    assert hashes(a=pa.array(["ab"]), b=pa.array(["c"])) != hashes(a=pa.array(["a"]), b=pa.array(["bc"]))


def test_a_content_hash_is_hex_sha256_and_the_same_across_batches():
    table = pa.table({"title": ["x", "y", "z"], "body": ["1", None, "3"]})
    whole = content_hashes(table, ["title", "body"]).to_pylist()
    pieces = [content_hashes(table.slice(i, 1), ["title", "body"]).to_pylist()[0] for i in range(3)]
    assert whole == pieces
    assert all(len(value) == 64 and int(value, 16) >= 0 for value in whole)
    assert len(set(whole)) == 3


def test_large_strings_and_dictionary_columns_hash_as_plain_strings():
    plain = hashes(text=pa.array(["a", "b"]))
    assert hashes(text=pa.array(["a", "b"], pa.large_string())) == plain
    assert hashes(text=pa.array(["a", "b"]).dictionary_encode()) == plain


def test_nested_values_hash_by_content():
    first = hashes(tags=pa.array([["a", "b"], ["a"]]))
    assert first[0] != first[1]
    assert first == hashes(tags=pa.array([["a", "b"], ["a"]]))


def test_the_content_digest_does_not_depend_on_row_order_or_batching():
    table = pa.table({"doc_id": list(range(10)), "text": [f"t{i}" for i in range(10)]})
    table = table.append_column("content_hash", content_hashes(table, ["text"]))
    keys = row_keys(table, ["doc_id"], "content_hash")
    forward, backward = ContentDigest(), ContentDigest()
    forward.update(keys)
    for start in range(9, -1, -3):
        backward.update(keys[max(start - 2, 0) : start + 1][::-1])
    assert forward.hexdigest() == backward.hexdigest()
    changed = ContentDigest()
    changed.update(np.vstack([keys[:-1], row_keys(table.slice(0, 1), ["doc_id"], "content_hash")]))
    assert changed.hexdigest() != forward.hexdigest()
    assert len(forward.hexdigest()) == len(hashlib.sha256().hexdigest())
