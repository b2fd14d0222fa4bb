"""Content hashes: each row's SHA-256 over its content columns, canonically encoded, and the shard's digest.

A row's canonical bytes are its values in column order, each as ``<tag><length>:<bytes>``, or
``<tag>-`` when missing, where the tag names the kind of value (``s`` text, ``b`` binary, ``i``
integer, ``f`` float, ``t`` boolean, ``x<type>`` anything else). So a missing value differs from an
empty string, ``"1"`` differs from ``1``, and an int32 column hashes as an int64 one (CSV and Parquet
inputs agree). Floats are written as the shortest text of their float64 value. The encoding is built
per batch with Arrow kernels; only the SHA-256 of each row is a Python call (about 1 µs a row).
Nested values (lists, structs) are written as sorted-key JSON, one Python call per value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Prefixes of the two hashes, so that a content hash and a row key never coincide.
CONTENT_PREFIX = b"ai_provider.content.v1\x00"
KEY_PREFIX = b"ai_provider.row.v1\x00"


def _tag(kind: pa.DataType) -> str | None:
    """The value kind's tag, ``None`` for nested types (encoded as JSON)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "s"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return "b"
    if pa.types.is_integer(kind):
        return "i"
    if pa.types.is_floating(kind):
        return "f"
    if pa.types.is_boolean(kind):
        return "t"
    if pa.types.is_nested(kind):
        return None
    return f"x{kind}"


def _value_bytes(column: pa.Array) -> tuple[str, pa.Array]:
    """The column's tag and its values as binary (missing values stay missing)."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    tag = _tag(column.type)
    if tag is None:
        texts = [
            None if value is None else json.dumps(value, sort_keys=True, default=str)
            for value in column.to_pylist()
        ]
        return "j", pa.array(texts, pa.string()).cast(pa.binary())
    if tag == "f":
        column = column.cast(pa.float64())
    if tag not in ("s", "b"):
        column = column.cast(pa.string())
    return tag, column.cast(pa.binary())


def canonical_rows(batch: pa.RecordBatch | pa.Table, columns: Sequence[str]) -> pa.Array:
    """Each row's canonical bytes over ``columns`` (see the module docstring)."""
    pieces = []
    for name in columns:
        column = batch.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        tag, values = _value_bytes(column)
        lengths = pc.binary_length(values).cast(pa.string()).cast(pa.binary())
        piece = pc.binary_join_element_wise(pa.scalar(tag.encode()), lengths, pa.scalar(b":"), values, b"")
        pieces.append(piece.fill_null(f"{tag}-".encode()))
    if not pieces:
        return pa.array([b""] * batch.num_rows, pa.binary())
    return pc.binary_join_element_wise(*pieces, b"") if len(pieces) > 1 else pieces[0]


def _digests(rows: pa.Array, prefix: bytes) -> list[bytes]:
    base = hashlib.sha256(prefix)
    out = []
    for row in rows.to_pylist():
        digest = base.copy()
        digest.update(row)
        out.append(digest.digest())
    return out


def content_hashes(batch: pa.RecordBatch | pa.Table, columns: Sequence[str]) -> pa.Array:
    """The ``content_hash`` column: hex SHA-256 of each row's canonical bytes over ``columns`` (the
    column names take part, so the same values under other columns hash differently)."""
    prefix = CONTENT_PREFIX + json.dumps(list(columns)).encode() + b"\x00"
    return pa.array(
        [digest.hex() for digest in _digests(canonical_rows(batch, columns), prefix)], pa.string()
    )


def row_keys(batch: pa.RecordBatch | pa.Table, id_columns: Sequence[str], hash_column: str) -> np.ndarray:
    """Each row's 32-byte key over its ids and content hash, as an ``(n, 4)`` array of uint64 lanes."""
    digests = _digests(canonical_rows(batch, [*id_columns, hash_column]), KEY_PREFIX)
    if not digests:
        return np.empty((0, 4), dtype=np.uint64)
    return np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64).reshape(-1, 4)


class ContentDigest:
    """An order-independent digest of the shard's ``(ids, content_hash)`` rows, computed streaming:
    the row keys summed lane by lane modulo 2**64, with the row count. Two outputs of the same rows in
    any order and any batching have the same digest."""

    def __init__(self) -> None:
        self.lanes = np.zeros(4, dtype=np.uint64)
        self.rows = 0

    def update(self, keys: np.ndarray) -> None:
        if len(keys):
            self.lanes += keys.sum(axis=0, dtype=np.uint64)
            self.rows += len(keys)

    def hexdigest(self) -> str:
        payload = f"{self.rows}:".encode() + self.lanes.astype(">u8").tobytes()
        return hashlib.sha256(payload).hexdigest()
