"""Work units: row groups and CSV files as units, cut into shards, and the digest of what a shard reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pyarrow as pa

from airflow_ai_provider.runtime.storage.inputs import FileMeta
from airflow_ai_provider.runtime.storage.locations import Location, storage_error

HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Unit:
    """One unit of work: a Parquet row group, or a whole CSV file (``row_group`` is ``None``)."""

    file_index: int
    row_group: int | None
    weight: int


def plan_units(metas: list[FileMeta]) -> list[Unit]:
    """All work units in file order: one per Parquet row group (weighted by rows), one per CSV file
    (weighted by bytes)."""
    units: list[Unit] = []
    for index, meta in enumerate(metas):
        if meta.file.format == "parquet":
            units.extend(Unit(index, rg, rows) for rg, rows in enumerate(meta.row_group_rows))
        else:
            units.append(Unit(index, None, meta.file.size))
    return units


def shard_units(units: list[Unit], index: int, count: int) -> list[Unit]:
    """The contiguous slice of ``units`` that belongs to shard ``index`` of ``count``.

    Each unit goes to the shard that holds the midpoint of its weight on the cumulative weight axis
    cut into ``count`` equal parts, so shards are contiguous, disjoint, cover every unit and carry
    near-equal rows (Parquet) or bytes (CSV). A shard may get no unit when there are fewer units
    than shards or one unit is very large; that shard then reads and writes nothing.
    """
    total = sum(unit.weight for unit in units)
    if total == 0:
        return [unit for position, unit in enumerate(units) if position * count // len(units) == index]
    mine, cumulative = [], 0
    for unit in units:
        midpoint2 = 2 * cumulative + unit.weight  # twice the midpoint, to stay in integers
        if min(midpoint2 * count // (2 * total), count - 1) == index:
            mine.append(unit)
        cumulative += unit.weight
    return mine


def units_by_file(units: list[Unit]) -> dict[int, list[int | None]]:
    """The row groups of ``units`` per file index, in the order the units come."""
    grouped: dict[int, list[int | None]] = {}
    for unit in units:
        grouped.setdefault(unit.file_index, []).append(unit.row_group)
    return grouped


def input_digest(metas: list[FileMeta], units: list[Unit]) -> str:
    """A stable digest of the data this shard reads, for lineage records.

    SHA-256 over one JSON line per file: its URI, size, content fingerprint and the row groups read.
    The fingerprint of a Parquet file is the SHA-256 of its footer, which holds the row counts,
    column-chunk sizes and offsets and min/max statistics of every row group: any rewrite of the
    data changes it, and it costs no extra read (measured: 0.1 ms per file, against 0.23 s for a
    full-content SHA-256 of a 340 MB file from page cache, ~1.5 GB/s, and a second full download on
    S3). CSV files have no footer, so their fingerprint is a full-content SHA-256 (CSV parsing runs at
    ~100-200 MB/s, so hashing adds little).
    """
    digest = hashlib.sha256()
    for file_index, row_groups in units_by_file(units).items():
        meta = metas[file_index]
        fingerprint = meta.fingerprint or file_sha256(meta.file.location)
        record = {"uri": meta.file.uri, "bytes": meta.file.size, "fingerprint": fingerprint}
        if meta.file.format == "parquet":
            record["row_groups"] = row_groups
        digest.update(json.dumps(record, sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


def file_sha256(location: Location) -> str:
    """The SHA-256 of the file at ``location``, read in chunks."""
    digest = hashlib.sha256()
    try:
        with location.fs.open_input_stream(location.path) as stream:
            while chunk := stream.read(HASH_CHUNK):
                digest.update(chunk)
    except (OSError, pa.ArrowException) as err:
        raise storage_error(err, location.uri, "cannot read input file") from None
    return digest.hexdigest()
