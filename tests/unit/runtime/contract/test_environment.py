"""Environment variables scoped to one block come back exactly as they were."""

from __future__ import annotations

import os

import pytest

from airflow_ai_provider.runtime.contract.environment import scoped_environ


def test_scoped_variables_are_set_for_the_block_and_restored_after_it(monkeypatch):
    monkeypatch.setenv("AI_TEST_KEPT", "before")
    monkeypatch.delenv("AI_TEST_NEW", raising=False)
    monkeypatch.setenv("AI_TEST_REMOVED", "present")

    with (
        pytest.raises(RuntimeError),
        scoped_environ({"AI_TEST_KEPT": "inside", "AI_TEST_NEW": "1", "AI_TEST_REMOVED": None}),
    ):
        assert os.environ["AI_TEST_KEPT"] == "inside"
        assert os.environ["AI_TEST_NEW"] == "1"
        assert "AI_TEST_REMOVED" not in os.environ
        raise RuntimeError("the block failed")

    assert os.environ["AI_TEST_KEPT"] == "before"
    assert "AI_TEST_NEW" not in os.environ
    assert os.environ["AI_TEST_REMOVED"] == "present"
