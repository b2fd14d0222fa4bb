"""MLflow searches for the provider's task runs, by tag, across every active experiment."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

#: Experiments per ``search_runs`` call, and the largest page MLflow serves.
_EXPERIMENTS_PER_CALL = 100
_MAX_PAGE = 1000


def _quoted(value: str) -> str | None:
    """``value`` as an MLflow filter literal, or ``None`` when it cannot be one (has a quote)."""
    return None if "'" in value else f"'{value}'"


def tag_filter(tags: dict[str, str], like: dict[str, str] | None = None) -> str | None:
    """An MLflow filter for runs whose tags equal ``tags`` and match the ``like`` patterns.

    :return: ``None`` when a value of ``tags`` cannot be quoted, so no run can match; an unquotable
        ``like`` pattern is left out (the caller checks what it finds).
    """
    parts = []
    for key, value in tags.items():
        literal = _quoted(value)
        if literal is None:
            return None
        parts.append(f"tags.`{key}` = {literal}")
    for key, pattern in (like or {}).items():
        literal = _quoted(pattern)
        if literal is not None:
            parts.append(f"tags.`{key}` LIKE {literal}")
    return " and ".join(parts)


def search_runs(client: MlflowClient, tags: dict[str, str], like: dict[str, str] | None = None,
                limit: int = 1000) -> list[Run]:  # fmt: skip
    """Runs of every active experiment whose tags equal ``tags`` (and match ``like``), newest first."""
    filter_string = tag_filter(tags, like)
    if filter_string is None:
        return []
    experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
    found: list[Run] = []
    for start in range(0, len(experiment_ids), _EXPERIMENTS_PER_CALL):
        token = None
        while True:
            page = client.search_runs(
                experiment_ids[start : start + _EXPERIMENTS_PER_CALL],
                filter_string=filter_string,
                max_results=min(limit, _MAX_PAGE),
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            found.extend(page)
            token = page.token
            if not token or len(found) >= limit:
                break
    found.sort(key=lambda run: (run.info.start_time or 0, run.info.run_id), reverse=True)
    return found[:limit]
