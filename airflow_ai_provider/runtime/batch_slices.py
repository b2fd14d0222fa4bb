"""Predicting a batch in slices when the model's outputs are wider than its inputs (vector outputs).

Batches are sized from the input's width (``infer.batch_rows``), with the outputs counted as one of
the copies in flight. That holds for predictions and probabilities, but an embedding of 384 floats
is 1.5 KB a row next to a short text of 60 bytes. :class:`OutputSlicer` predicts the first rows of
the first batch on their own, measures the output's bytes per row, and, when they exceed the
input's, predicts every batch in slices whose inputs and outputs fit the memory budget. Slicing a
record batch copies nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from airflow_ai_provider.runtime.storage import sizing

#: Rows predicted first, on their own, to measure the width of the model's outputs.
PROBE_ROWS = 1024
#: Copies in flight of a slice's input and output: the slice, the model's input, the output columns
#: and the batch being written.
SLICE_COPIES = 4


class OutputSlicer:
    """Cuts batches into slices that fit ``budget`` bytes once the output's width is known.

    :param budget: bytes the rows in flight may take (the job's ``batch_memory_mb`` or default).
    :param probe: whether to measure the output first; ``False`` for outputs of known, small width
        (``predict_proba``'s columns), which are then never sliced.
    """

    def __init__(self, budget: int, probe: bool = True) -> None:
        self.budget = budget
        self.step: int | None = None if probe else 0  # 0: never slice

    def pieces(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """``batch`` itself, or its slices: the probe first, then slices of :attr:`step` rows."""
        offset = 0
        while offset < batch.num_rows:
            size = PROBE_ROWS if self.step is None else self.step or batch.num_rows
            piece = batch if offset == 0 and size >= batch.num_rows else batch.slice(offset, size)
            yield piece
            offset += piece.num_rows

    def measure(self, piece: pa.RecordBatch, output: pa.RecordBatch) -> None:
        """After the first piece: the slice size, from the input's and the output's bytes per row."""
        if self.step is not None or piece.num_rows == 0:
            return
        in_width = piece.nbytes / piece.num_rows
        out_width = output.nbytes / piece.num_rows
        if out_width <= in_width:
            self.step = 0  # the batch sizing already counts an output this wide
            return
        self.step = sizing.rows_that_fit(in_width + out_width, self.budget, SLICE_COPIES, PROBE_ROWS)
