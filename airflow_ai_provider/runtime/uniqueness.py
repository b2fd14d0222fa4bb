"""Exact duplicate detection over many batches in bounded memory, by hashing rows and spilling to disk.

A 64-bit hash of each row's key (one column or several) is appended to one of :data:`HASH_BUCKETS`
bucket files in a scratch folder; each bucket is then sorted on its own to find repeated hashes.
Only when some exist is the input read a second time to count the actual values behind them, so a
hash collision cannot report a duplicate and the examples are real values. Memory: one bucket (1/64
of 8 bytes per row) plus the duplicated values. Used by the ``validate`` job's uniqueness
expectations and the ``infer`` job's ``check_unique_ids``.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter
from typing import Any

from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line

HASH_BUCKETS = 64


class DuplicateFinder:
    """Rows whose values in ``columns`` repeat, over all batches given to :meth:`update`.

    :param columns: the key columns.
    :param scratch: folder for the bucket files (a folder of their own is made in it).
    :param ignore: for several columns, which rows are left out: ``all_values_are_missing``
        (default), ``any_value_is_missing`` or ``never``; one column always leaves out missing values.
    """

    def __init__(
        self, columns: list[str], scratch: str | None, ignore: str = "all_values_are_missing"
    ) -> None:
        self.columns = list(columns)
        self.ignore = ignore
        self.folder = tempfile.mkdtemp(prefix="unique-", dir=scratch)
        self.rows = 0
        self.missing = 0
        self.duplicates: Counter = Counter()

    def _keys(self, frame: Any) -> tuple[Any, Any]:
        """The considered rows' values and their 64-bit hashes."""
        import pandas as pd

        if len(self.columns) == 1:
            values = frame[self.columns[0]]
            kept = values[values.notna()]
        else:
            values = frame[self.columns]
            if self.ignore == "never":
                kept = values
            elif self.ignore == "any_value_is_missing":
                kept = values[values.notna().all(axis=1)]
            else:
                kept = values[values.notna().any(axis=1)]
        try:
            hashes = pd.util.hash_pandas_object(kept, index=False).to_numpy()
        except TypeError as err:  # lists, dicts: values without a hash
            raise JobInputError(
                f"cannot check that column(s) {', '.join(map(repr, self.columns))} are unique: their values "
                f"are not scalars ({one_line(err)}); check uniqueness on columns of numbers, text or dates"
            ) from None
        return kept, hashes

    def update(self, frame: Any) -> None:
        """Add one pandas batch: spill the hashes of its considered rows to the bucket files."""
        import numpy as np

        kept, hashes = self._keys(frame)
        self.rows += len(frame)
        self.missing += len(frame) - len(kept)
        buckets = hashes >> np.uint64(64 - int(math.log2(HASH_BUCKETS)))
        order = np.argsort(buckets, kind="stable")
        hashes, buckets = hashes[order], buckets[order]
        edges = np.searchsorted(buckets, np.arange(HASH_BUCKETS + 1))
        for bucket in range(HASH_BUCKETS):
            start, end = edges[bucket], edges[bucket + 1]
            if end > start:
                with open(os.path.join(self.folder, f"{bucket}.bin"), "ab") as handle:
                    hashes[start:end].tofile(handle)

    def repeated_hashes(self) -> Any:
        """Hashes seen more than once, bucket by bucket (one bucket in memory at a time)."""
        import numpy as np

        found = []
        for name in os.listdir(self.folder):
            hashes = np.sort(np.fromfile(os.path.join(self.folder, name), dtype=np.uint64))
            found.append(np.unique(hashes[1:][hashes[1:] == hashes[:-1]]))
        return np.concatenate(found) if found else np.empty(0, dtype=np.uint64)

    def count_values(self, frame: Any, candidates: Any) -> None:
        """Second pass: count the actual values behind repeated hashes."""
        import numpy as np

        kept, hashes = self._keys(frame)
        hits = kept[np.isin(hashes, candidates)]
        if len(self.columns) == 1:
            self.duplicates.update(hits.tolist())
        else:
            self.duplicates.update(hits.itertuples(index=False, name=None))

    def repeated(self) -> list[tuple[Any, int]]:
        """``(value, count)`` of every value seen more than once, most frequent first (after the second
        pass)."""
        found = [(value, count) for value, count in self.duplicates.items() if count > 1]
        return sorted(found, key=lambda item: -item[1])
