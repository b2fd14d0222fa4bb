"""The ``train`` job; the package itself exports only the user contract, :class:`TrainingContext`.

Write a training function as ``def train(ctx: TrainingContext)`` with
``from airflow_ai_provider.runtime.training import TrainingContext`` (see :mod:`.context`). The job
itself is :mod:`.job`.
"""

from __future__ import annotations

from airflow_ai_provider.runtime.training.context import TrainingContext

__all__ = ["TrainingContext"]
