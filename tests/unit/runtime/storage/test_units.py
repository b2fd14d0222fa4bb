"""Work units: shards are contiguous, disjoint, cover every unit and carry near-equal weight."""

from __future__ import annotations

import pytest

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.storage.units import units_by_file


@pytest.mark.parametrize(
    "weights", [[5] * 10, [1, 100, 1, 1, 50, 3], [0, 0, 0], [7], [1000, 1, 1, 1], [3, 0, 4, 0, 5]]
)
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_are_contiguous_disjoint_and_cover_every_unit(weights, count):
    units = [storage.Unit(file_index=0, row_group=i, weight=w) for i, w in enumerate(weights)]
    shards = [storage.shard_units(units, index, count) for index in range(count)]
    assert [unit for shard in shards for unit in shard] == units


def test_equal_row_groups_split_into_near_equal_shards():
    units = [storage.Unit(0, i, 100) for i in range(10)]
    assert [len(storage.shard_units(units, index, 3)) for index in range(3)] == [3, 4, 3]


def test_units_group_by_file_in_their_order():
    units = [storage.Unit(0, 0, 1), storage.Unit(0, 1, 1), storage.Unit(1, None, 5), storage.Unit(2, 3, 1)]
    assert units_by_file(units) == {0: [0, 1], 1: [None], 2: [3]}
