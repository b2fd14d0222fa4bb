"""The ``infer`` job: batch inference with a registered model over Parquet or CSV files.

The shard's input is streamed in Arrow record batches: the next batch is read in a background thread
(pyarrow releases the GIL) while the current one is predicted and written to the part file, so memory
stays flat however large the input is.

Parameters (``spec.params``, checked by :class:`~.params.InferParams`):

- ``id_columns`` (list of str, or one name as a string, default none): input columns copied to the
  output next to the predictions.
- ``batch_size`` (int, default none): rows per record batch. Without it the batches are sized from
  the Parquet metadata and a memory budget (:func:`batch_rows`): a small input is read as one batch,
  a large one in equal batches of up to :data:`BATCH_MEMORY_BYTES` in flight; CSV input is read in
  batches of 65536 rows. When the model's outputs turn out wider than its inputs (an embedding of a
  short text), batches are predicted in slices that fit the budget (:mod:`~.batch_slices`).
- ``input_format`` (``"parquet"`` or ``"csv"``): overrides the format taken from file suffixes.
- ``extra_columns`` (``"error"`` or ``"ignore"``, default ``"error"``): what to do with input
  columns that are neither model features nor id columns.
- ``predict_proba`` (bool, default true): use a scikit-learn classifier's ``predict_proba`` directly.
- ``skops_trusted_types`` (list of str): extra trusted types for scikit-learn models saved with skops.
- ``scratch_dir`` (str, default ``$TMPDIR``): where the model and S3-bound temporary files go.
- ``model_threads`` (int, default none): threads the model's native libraries (OpenMP, BLAS) may use
  while predicting, set with ``threadpoolctl``; by default each library picks (scikit-learn: one per
  core, within a container's CPU quota). Shards that run side by side on one machine share its
  cores: ``cores // concurrent shards`` avoids oversubscribing them (see ``docs/performance.md``,
  *Shard scaling*).
- ``check_unique_ids`` (bool, default false): fail when a value of the ``id_columns`` (all of them
  together) appears more than once in the shard, across batches and files. Each row's ids are hashed
  and spilled to ``scratch_dir`` while predicting (:class:`~.uniqueness.DuplicateFinder`, bounded
  memory); only when a hash repeats are the id columns read again to count the duplicates, and the
  job fails before its part file is published, naming the columns, the count and an example. Without
  it, duplicate ids are scored and written as they are, one output row per input row.
- ``content_columns``, ``previous_output``, ``vector_index``, ``index_check_queries``: each row's
  ``content_hash``, rows copied from an earlier output instead of predicted, and a FAISS index of a
  vector column with its search check (:mod:`~airflow_ai_provider.runtime.vectors`, ``docs/embeddings.md``).

Empty input is an error (:class:`JobInputError`). A shard whose slice of the input is empty (fewer
work units than shards) or yields no rows (e.g. a header-only CSV file in a sharded run) writes no
file and succeeds with ``rows_out == 0``.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime import Log, job_metrics, log_line, reports, storage
from airflow_ai_provider.runtime.batch_slices import OutputSlicer
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.params import InferParams
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec
from airflow_ai_provider.runtime.infer_support import (
    check_unique,
    files_of,
    id_frame,
    input_entries,
    schema_dict,
    thread_limit,
    unique_ids,
)
from airflow_ai_provider.runtime.models import device
from airflow_ai_provider.runtime.models.features import Features, check_columns
from airflow_ai_provider.runtime.models.loading import LoadedModel, load_model
from airflow_ai_provider.runtime.models.outputs import OutputNaming
from airflow_ai_provider.runtime.models.predictors import (
    NUMERIC,
    ProbaPredictor,
    make_predictor,
    prediction_failure,
    touched_matrix,
)
from airflow_ai_provider.runtime.storage import sizing
from airflow_ai_provider.runtime.uniqueness import DuplicateFinder
from airflow_ai_provider.runtime.vectors.previous import part_metadata
from airflow_ai_provider.runtime.vectors.rows import Columns, RowScorer, check_content_columns, kept_columns

LOG_EVERY_BATCHES = 10
#: Memory the rows in flight may take when ``batch_size`` is not set (less when the machine or
#: container has less to spare: a quarter of what is available).
BATCH_MEMORY_BYTES = 160 << 20
#: Rows per batch when the rows cannot be sized from Parquet metadata (CSV input).
DEFAULT_BATCH_ROWS = 65_536
#: Bounds of an automatically sized batch.
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 1024, 1 << 20
#: Peak memory of streaming, in copies of a batch's size: the batch being predicted, the batch read
#: ahead, the model's input matrix, the output columns and the blocks Arrow's memory pool keeps.
#: Measured with ``benchmarks/bench_batch_inference.py`` (2M rows, 21 float columns): peak RSS grew by
#: about 1 KB a row of 190 Arrow bytes between batches of 143k and 222k rows, so 6.
COPIES_IN_FLIGHT = 6
#: Copies when the whole shard is one batch: no batch read ahead, no blocks kept from earlier batches.
COPIES_ONE_BATCH = 4


@dataclass
class _Stats:
    rows_in: int = 0
    rows_out: int = 0
    batches: int = 0
    batch_rows: int = 0
    read_s: float = 0.0
    predict_s: float = 0.0
    write_s: float = 0.0


def part_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}.parquet"


def run(spec: JobSpec, log: Log = log_line) -> JobResult:
    """Run one ``infer`` shard and return its result (raises :class:`JobError` on failure)."""
    started = time.time()
    params = InferParams.from_spec(spec.params)
    result = JobResult(
        job=spec.job, status="running", shard={"index": spec.shard.index, "count": spec.shard.count}
    )
    result.model = {"name": spec.model.name, "version": str(spec.model.version), "alias": spec.model.alias}
    result.input_source = ",".join(spec.inputs)

    storage.check_scratch_dir(params.scratch_dir)
    metas, units = _plan(spec, params, log)
    scorer = RowScorer.start(spec, params, log)  # before the model loads: previous output, faiss
    name = part_name(spec.shard.index, spec.shard.count)
    writer = storage.PartWriter(spec.output, name, params.scratch_dir, part_metadata(spec, params))
    stats = _Stats()
    early = _early_reader(metas, units, params, stats, log)
    take_matrix = _early_matrix(early, metas[units[0].file_index].schema, params, stats) if early else None
    try:
        with tempfile.TemporaryDirectory(prefix="ai-model-", dir=params.scratch_dir) as model_dir:
            load_started = time.perf_counter()
            model = load_model(spec.model, spec.mlflow, model_dir, params.skops_trusted_types)
            load_model_s = time.perf_counter() - load_started
            log(f"loaded model {spec.model.name} version {spec.model.version} in {load_model_s:.1f}s")
            result.model = model.info
            features = _check_files(metas, units, model, params)
            stream_started = time.perf_counter()
            if units:
                with unique_ids(params, model_dir) as unique:
                    _stream(
                        metas,
                        units,
                        features,
                        model,
                        params,
                        writer,
                        stats,
                        log,
                        unique,
                        early,
                        scorer,
                        take_matrix,
                    )
                    if unique is not None:
                        check_unique(unique, metas, units, params, spec, log, stats.batch_rows)
            publish_started = time.perf_counter()
            output = writer.publish()
            scorer.publish_index(spec.output, name, params.scratch_dir, log)  # after its part file
            stats.write_s += time.perf_counter() - publish_started
            stream_s = time.perf_counter() - stream_started
            result.model.update(device.report(model.pyfunc))  # after predicting: where the model ran
    except BaseException:
        writer.discard()
        raise
    finally:
        if early is not None:
            early.close()
    if units and stats.rows_in == 0 and spec.shard.count == 1:
        raise JobInputError(f"input has no rows: {', '.join(spec.inputs)}")
    if output is not None:
        result.outputs.append(output)
        log(f"wrote {output.uri} ({output.rows} rows, {output.bytes} bytes, sha256 {output.sha256})")
    else:
        log(f"shard {spec.shard.index}/{spec.shard.count}: no rows, no output file written")

    result.rows_in, result.rows_out = stats.rows_in, stats.rows_out
    result.inputs = input_entries(metas, units)
    result.input_digest = storage.input_digest(metas, units)
    result.input_schema = schema_dict(metas, units)
    result.details.update(scorer.details())
    metrics = {
        "load_model_s": round(load_model_s, 3),
        "stream_s": round(stream_s, 3),
        "rows_per_s": round(stats.rows_out / stream_s, 1) if stream_s > 0 else 0.0,
        "read_s": round(stats.read_s, 3),
        "predict_s": round(stats.predict_s, 3),
        "write_s": round(stats.write_s, 3),
        "batches": stats.batches,
        "batch_rows": stats.batch_rows,
        **scorer.metrics(),
    }
    return reports.finish(result, started, metrics)


def _plan(spec: JobSpec, params: InferParams, log: Log) -> tuple[list[storage.FileMeta], list[storage.Unit]]:
    """List the input files, cut them into work units and keep this shard's units."""
    files = storage.list_inputs(spec.inputs, params.input_format)
    if files[0].format == "parquet":
        metas = storage.read_metadata(files)
        if sum(sum(meta.row_group_rows) for meta in metas) == 0:
            raise JobInputError(f"input has no rows: {', '.join(spec.inputs)}")
    else:
        metas = [storage.FileMeta(file, pa.schema([])) for file in files]
    units = storage.shard_units(storage.plan_units(metas), spec.shard.index, spec.shard.count)
    if files[0].format == "csv":
        mine = files_of(units)
        if mine:
            for index, meta in zip(mine, storage.read_metadata([metas[i].file for i in mine]), strict=True):
                metas[index] = meta
    shard = f"shard {spec.shard.index}/{spec.shard.count}"
    if files[0].format == "parquet":
        log(
            f"{shard}: {len(units)} row groups from {len(files_of(units))} files (input: {len(files)} Parquet files)"
        )
    else:
        log(f"{shard}: {len(units)} of {len(files)} CSV files")
    return metas, units


def _check_files(
    metas: list[storage.FileMeta], units: list[storage.Unit], model: LoadedModel, params: InferParams
) -> Features:
    """Check every file this shard reads against the signature; all must agree on the features."""
    signature = model.input_schema()
    features, first_uri = Features([], {}), ""
    mine = [metas[index] for index in files_of(units)]
    for meta in mine:
        check_content_columns(params, meta.schema.names, meta.file.uri)
        kept = kept_columns(params, signature)
        checked = check_columns(meta.schema, signature, kept, params.extra_columns, meta.file.uri)
        if first_uri and checked.names != features.names:
            raise JobInputError(
                f"input {meta.file.uri} has other feature columns than {first_uri}: write every input file "
                "with the same columns"
            )
        if not first_uri:
            features, first_uri = checked, meta.file.uri
    # Columns the signature does not fix are read in one type across files (or refused, naming them).
    free = [
        name
        for name in dict.fromkeys([*params.id_columns, *params.content_columns, *features.names])
        if name not in features.types
    ]
    return Features(features.names, {**storage.unify_types(mine, free), **features.types}, features.tensor)


def _stream(
    metas: list[storage.FileMeta],
    units: list[storage.Unit],
    features: Features,
    model: LoadedModel,
    params: InferParams,
    writer: storage.PartWriter,
    stats: _Stats,
    log: Log,
    unique: DuplicateFinder | None = None,
    early: storage.ReadAhead | None = None,
    scorer: RowScorer | None = None,
    take_matrix: Callable[[], Any] | None = None,
) -> None:
    """Read, predict and write the shard batch by batch, with the next batch read in the background.

    Writing stays in this thread: measured on 2 cores, a writer thread gained nothing once floats are
    written without dictionary encoding (0.2 s of 5.7 s for 2M rows), while reading ahead hides the
    latency of object storage. ``early`` is the reader :func:`_early_reader` started before the model
    loaded; it is used when it reads the columns needed, its batches cast here, with the feature
    matrix ``take_matrix`` (:func:`_early_matrix`) hands over.
    """
    first = metas[units[0].file_index].schema
    naming = OutputNaming.of(params)
    columns = list(dict.fromkeys([*params.id_columns, *params.content_columns, *features.names]))
    use_early = early is not None and sorted(early.columns) == sorted(columns)
    prepared = take_matrix() if take_matrix is not None else None
    predictor = make_predictor(
        model,
        features.names,
        first,
        params.predict_proba,
        naming,
        features.tensor,
        prepared if use_early else None,
    )
    del prepared  # held by the predictor that uses it, else freed now
    log(f"predicting with {type(predictor).__name__} on {len(features.names)} feature columns")
    scorer = scorer or RowScorer(params)

    def predict(part: pa.RecordBatch) -> Columns:
        begin = time.perf_counter()
        try:
            return predictor.predict(part)
        except Exception as err:  # the model's own code raises anything
            raise prediction_failure(err, model, part, features.names) from None
        finally:
            stats.predict_s += time.perf_counter() - begin

    if use_early:
        reader, cast = early, features.types
    else:
        if early is not None:
            early.close()
        stats.batch_rows = batch_rows(metas, units, columns, params, log)
        batches = storage.iter_batches(metas, units, columns, features.types, stats.batch_rows)
        reader, cast = storage.ReadAhead(batches, columns), {}
    budget = sizing.memory_budget(BATCH_MEMORY_BYTES, params.batch_memory_mb)
    slicer = OutputSlicer(
        budget, probe=params.batch_size is None and not isinstance(predictor, ProbaPredictor)
    )
    started, clock = time.perf_counter(), job_metrics.batch_clock()
    with contextlib.closing(reader), thread_limit(params.model_threads, log):
        for batch in reader:
            batch = storage.cast_batch(batch, cast) if cast else batch
            if unique is not None:
                unique.update(id_frame(batch, params.id_columns))
            for part in slicer.pieces(batch):
                output = scorer.score(part, predict)
                slicer.measure(part, output)
                begin = time.perf_counter()
                writer.write(output)
                stats.write_s += time.perf_counter() - begin
                stats.rows_out += output.num_rows
            stats.rows_in += batch.num_rows
            stats.batches += 1
            clock.lap()
            if stats.batches % LOG_EVERY_BATCHES == 0:
                elapsed = time.perf_counter() - started
                log(f"batch {stats.batches}: {stats.rows_in} rows, {stats.rows_in / elapsed:,.0f} rows/s")
        scorer.check_index(predict, log)  # before anything is published
    stats.read_s = reader.seconds


def _early_reader(
    metas: list[storage.FileMeta], units: list[storage.Unit], params: InferParams, stats: _Stats, log: Log
) -> storage.ReadAhead | None:
    """The shard's batches, read from now on, while the model loads, when the columns to read are
    known before the model is: Parquet input with ``extra_columns='error'``, where every column is
    a feature or an id column (or the job fails on its columns before a batch is used)."""
    if not units or metas[units[0].file_index].file.format != "parquet" or params.extra_columns != "error":
        return None
    columns = list(metas[units[0].file_index].schema.names)
    stats.batch_rows = batch_rows(metas, units, columns, params, log)
    return storage.ReadAhead(storage.iter_batches(metas, units, columns, {}, stats.batch_rows), columns)


def _early_matrix(
    early: storage.ReadAhead, schema: pa.Schema, params: InferParams, stats: _Stats
) -> Callable[[], Any] | None:
    """The first batch's feature matrix (every column but the ids), made in the reader thread after
    that batch's read, while the model loads, when every such column is numeric, as the
    ``predict_proba`` path needs; returned is what hands it over, once (an error making it is
    raised there), so that no one else keeps it."""
    ids = set(params.id_columns)
    kinds = [field.type for field in schema if field.name not in ids]
    if not kinds or any(kind not in NUMERIC for kind in kinds):
        return None
    made: list[Any] = []
    done = early.then(lambda: made.append(touched_matrix(stats.batch_rows, len(kinds))))

    def take() -> Any:
        done.result()
        return made.pop() if made else None

    return take


def batch_rows(
    metas: list[storage.FileMeta],
    units: list[storage.Unit],
    columns: list[str],
    params: InferParams,
    log: Log,
) -> int:
    """``batch_size`` when set, else rows per batch sized from the shard's metadata
    (:mod:`~airflow_ai_provider.runtime.storage.sizing`) within ``batch_memory_mb`` as given, else
    :data:`BATCH_MEMORY_BYTES` or a quarter of the memory available if less. A shard whose rows fit
    as :data:`COPIES_ONE_BATCH` copies is one batch; otherwise :data:`COPIES_IN_FLIGHT` copies of a
    batch must fit, and the rows are cut into equal batches within [:data:`MIN_BATCH_ROWS` (1 with
    ``batch_memory_mb``), :data:`MAX_BATCH_ROWS`]. CSV input,
    whose rows are not known before reading, gets :data:`DEFAULT_BATCH_ROWS`."""
    if params.batch_size is not None:
        return params.batch_size
    budget = sizing.memory_budget(BATCH_MEMORY_BYTES, params.batch_memory_mb)
    parquet = [(unit.file_index, unit.row_group) for unit in units if unit.row_group is not None]
    rows = sum(unit.weight for unit in units if unit.row_group is not None)
    width = sizing.row_width(metas, metas[parquet[0][0]].schema, columns, parquet) if parquet else 0.0
    if rows == 0:
        rows = DEFAULT_BATCH_ROWS
    elif rows > MAX_BATCH_ROWS or rows * width * COPIES_ONE_BATCH > budget:
        lowest = sizing.lowest_rows(MIN_BATCH_ROWS, params.batch_memory_mb)
        fit = sizing.rows_that_fit(width, budget, COPIES_IN_FLIGHT, lowest, MAX_BATCH_ROWS)
        rows = sizing.equal_batches(rows, fit)
    log(f"batches of {rows} rows (sized from the input metadata, {budget >> 20} MiB for rows in flight)")
    return rows
