"""An earlier output folder read back as a bounded hash index of its rows, and its rows fetched by position.

Each part file an ``infer`` job writes records the model and the output settings in its Parquet
key-value metadata (:func:`part_metadata`), read back from the footers alone. When they match this
run, the ids and content hashes of every previous row (not their vectors) are read into a sorted
array of 64-bit row keys with their row positions: 16 bytes a previous row. A batch's unchanged rows
are found there and fetched row group by row group, at most :data:`CACHED_ROW_GROUPS` row groups
held at once, and every fetched row's full 256-bit key (ids and content hash) is compared with the
batch row's, so a collision of the short key only means the row is predicted again.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from airflow_ai_provider.runtime import Log, storage
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.contract.params import CONTENT_HASH_COLUMN, InferParams
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.storage.inputs import InputFile
from airflow_ai_provider.runtime.vectors.content import row_keys

MODEL_KEY = "ai_provider.model"
VERSION_KEY = "ai_provider.model_version"
SETTINGS_KEY = "ai_provider.output_settings"
#: Row groups of the previous output kept in memory while fetching reused rows.
CACHED_ROW_GROUPS = 2
#: Rows per batch when reading the previous ids and content hashes.
KEY_BATCH_ROWS = 65_536

FIRST_RUN = "first run"
NO_CHANGE = "none"


def _settings(params: InferParams) -> str:
    """The output settings that change the rows written, as a canonical JSON text."""
    settings = {
        "output_columns": params.output_columns,
        "vector_type": params.vector_type,
        "content_columns": params.content_columns,
        "id_columns": params.id_columns,
    }
    return json.dumps(settings, sort_keys=True)


def part_metadata(spec: JobSpec, params: InferParams) -> dict[str, str]:
    """The key-value metadata of a part file: the model version and the output settings."""
    return {MODEL_KEY: spec.model.name, VERSION_KEY: str(spec.model.version), SETTINGS_KEY: _settings(params)}


def _part_files(uri: str) -> list[InputFile]:
    """The part files of the folder ``uri``; none when it does not exist."""
    location = storage.parse_uri(uri)
    fs = location.fs
    try:
        info = fs.get_file_info(location.path)
        if info.type == pafs.FileType.NotFound:
            return []
        if info.type != pafs.FileType.Directory:
            raise JobInputError(
                f"previous_output {uri} is not a folder: give the output folder of an earlier run"
            )
        infos = fs.get_file_info(pafs.FileSelector(location.path, recursive=False))
    except OSError as err:
        raise storage.storage_error(err, uri, "cannot list previous_output") from None
    parts = [
        info
        for info in infos
        if info.type == pafs.FileType.File
        and info.base_name.startswith("part-")
        and info.base_name.endswith(".parquet")
    ]
    return [
        InputFile(storage.Location(location.scheme, info.path), info.size, "parquet")
        for info in sorted(parts, key=lambda i: i.path)
    ]


def _recorded(meta: storage.FileMeta) -> dict[str, str]:
    raw = (meta.parquet_metadata.metadata or {}) if meta.parquet_metadata is not None else {}
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in raw.items()}


def _change(metas: list[storage.FileMeta], spec: JobSpec, params: InferParams) -> str:
    """Why every row is recomputed (``none`` when the previous rows can be reused)."""
    for meta in metas:
        recorded = _recorded(meta)
        name, version = recorded.get(MODEL_KEY), recorded.get(VERSION_KEY)
        if name is None or version is None:
            return f"previous output {meta.file.uri} records no model version"
        if name != spec.model.name:
            return f"model changed from {name} version {version}"
        if version != str(spec.model.version):
            return f"model version changed from {version}"
        if recorded.get(SETTINGS_KEY) != _settings(params):
            return f"output settings changed from {recorded.get(SETTINGS_KEY)}"
    return NO_CHANGE


class PreviousRows:
    """The previous output's rows as a sorted key index; :meth:`reuse` copies a batch's unchanged rows."""

    def __init__(self, metas: list[storage.FileMeta], id_columns: list[str], output_names: list[str]) -> None:
        self.metas = metas
        self.id_columns = id_columns
        self.output_names = output_names
        self.starts = np.zeros(0, dtype=np.int64)  # first global row of each (file, row group)
        self.groups: list[tuple[int, int]] = []
        self.cache: OrderedDict[tuple[int, int], pa.Table] = OrderedDict()
        keys, positions, row = [], [], 0
        starts = []
        for file_index, meta in enumerate(metas):
            for group, count in enumerate(meta.row_group_rows):
                starts.append(row)
                self.groups.append((file_index, group))
                row += count
            units = [
                storage.Unit(file_index, group, count) for group, count in enumerate(meta.row_group_rows)
            ]
            offset = starts[-len(meta.row_group_rows)] if meta.row_group_rows else row
            columns = [*id_columns, CONTENT_HASH_COLUMN]
            for batch in storage.iter_batches(metas, units, columns, {}, KEY_BATCH_ROWS):
                keys.append(row_keys(batch, id_columns, CONTENT_HASH_COLUMN)[:, 0])
                positions.append(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
                offset += batch.num_rows
        self.starts = np.asarray(starts, dtype=np.int64)
        self.rows = row
        all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
        all_positions = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
        order = np.argsort(all_keys, kind="stable")
        self.keys, self.positions = all_keys[order], all_positions[order]

    def _row_group(self, group: int) -> pa.Table:
        import pyarrow.parquet as pq

        where = self.groups[group]
        if where in self.cache:
            self.cache.move_to_end(where)
            return self.cache[where]
        meta = self.metas[where[0]]
        columns = [*self.id_columns, CONTENT_HASH_COLUMN, *self.output_names]
        try:
            with meta.file.location.fs.open_input_file(meta.file.location.path) as handle:
                table = pq.ParquetFile(handle, metadata=meta.parquet_metadata).read_row_group(
                    where[1], columns=columns
                )
        except (OSError, pa.ArrowException) as err:
            raise storage.storage_error(err, meta.file.uri, "cannot read previous_output file") from None
        self.cache[where] = table
        while len(self.cache) > CACHED_ROW_GROUPS:
            self.cache.popitem(last=False)
        return table

    def fetch(self, positions: np.ndarray) -> pa.Table:
        """The previous rows at global ``positions``, in that order."""
        groups = np.searchsorted(self.starts, positions, side="right") - 1
        parts, order = [], []
        for group in dict.fromkeys(groups.tolist()):
            chosen = np.flatnonzero(groups == group)
            table = self._row_group(group)
            parts.append(table.take(pa.array(positions[chosen] - self.starts[group])))
            order.append(chosen)
        combined = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        return combined.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))

    def reuse(self, base: pa.RecordBatch, keys: np.ndarray) -> tuple[np.ndarray, pa.Table | None]:
        """Which rows of ``base`` (ids and content hash) are unchanged, and their previous rows."""
        found = np.searchsorted(self.keys, keys[:, 0])
        inside = found < len(self.keys)
        hit = np.zeros(len(keys), dtype=bool)
        hit[inside] = self.keys[found[inside]] == keys[inside, 0]
        if not hit.any():
            return hit, None
        previous = self.fetch(self.positions[found[hit]])
        same = (row_keys(previous, self.id_columns, CONTENT_HASH_COLUMN) == keys[hit]).all(axis=1)
        if not same.all():  # a collision of the 64-bit keys: predict those rows again
            hit[np.flatnonzero(hit)[~same]] = False
            previous = previous.filter(pa.array(same))
        return hit, previous.select(self.output_names)


def open_previous(spec: JobSpec, params: InferParams, log: Log) -> tuple[PreviousRows | None, str]:
    """The previous output's rows when they can be reused, and why not otherwise (the
    ``recompute_reason``: ``first run``, ``model version changed from N``, ... or ``none``)."""
    uri = params.previous_output
    if not uri:
        return None, FIRST_RUN
    if not params.id_columns or not params.content_columns:
        raise JobInputError("previous_output needs id_columns and content_columns: name both")
    files = _part_files(uri)
    if not files:
        log(f"previous_output {uri} has no part files: every row is computed (first run)")
        return None, FIRST_RUN
    try:
        metas = storage.read_metadata(files)
    except JobInputError as err:
        raise JobInputError(f"previous_output is not readable: {one_line(err)}") from None
    needed = [*params.id_columns, CONTENT_HASH_COLUMN]
    names: list[str] | None = None
    for meta in metas:
        missing = [name for name in needed if name not in meta.schema.names]
        outputs = [name for name in meta.schema.names if name not in needed]
        if missing or not outputs:
            lacking = ", ".join(map(repr, missing)) if missing else "any output column"
            raise JobInputError(
                f"previous_output file {meta.file.uri} lacks {lacking}: point previous_output at an earlier "
                "output of this job with the same id_columns and content_columns"
            )
        if names is not None and outputs != names:
            raise JobInputError(
                f"previous_output files have different columns: {names} and {outputs} ({meta.file.uri})"
            )
        names = outputs
    reason = _change(metas, spec, params)
    rows = sum(sum(meta.row_group_rows) for meta in metas)
    if reason != NO_CHANGE:
        log(f"previous_output {uri} ({rows} rows): every row is recomputed: {reason}")
        return None, reason
    if rows == 0:
        log(f"previous_output {uri} is empty: every row is computed (first run)")
        return None, FIRST_RUN
    previous = PreviousRows(metas, params.id_columns, names or [])
    log(f"previous_output {uri}: {previous.rows} rows indexed by ids and content hash for reuse")
    return previous, NO_CHANGE
