"""The model card: label statistics, escaped table cells, placeholders and the registry's length limit."""

from __future__ import annotations

from typing import Any

from airflow_ai_provider.runtime.training.data import label_summary
from airflow_ai_provider.runtime.training.model_card import MAX_DESCRIPTION_CHARS, ModelCard


def _card(**changes: Any) -> ModelCard:
    fields: dict[str, Any] = {
        "model_name": "price",
        "version": "4",
        "alias": "challenger",
        "intended_use": None,
        "limitations": "Trained on one region | not others.",
        "data_uri": "s3://bucket/prices/",
        "data_digest": "ab" * 32,
        "rows": 1_000,
        "features": ["area", "rooms"],
        "label": "price",
        "label_summary": label_summary(__import__("pandas").Series([100.0, 250.5, 75.25, 300.0])),
        "metrics": {"rmse": 12.3456789},
        "hyperparameters": {"alpha": 0.5, "layers": [8, 4]},
        "code_reference": "pricing.train:fit",
        "flavor": "sklearn",
        "environment": None,
        "lineage": {"DAG": "prices", "DAG run": "", "Task": "fit"},
        "mlflow_run_id": "abc123",
        "reference_profile_uri": "runs:/abc123/reference_profile.json",
    }
    return ModelCard(**{**fields, **changes})


def test_model_card_shows_label_statistics_escaped_cells_and_placeholders() -> None:
    text = _card().to_markdown()

    assert "Distribution of `price`:" in text and "| mean | 181.4375 |" in text
    assert "Trained on one region | not others." in text  # free text kept as written
    assert "| rmse | 12.3457 |" in text
    assert "| layers | `[8, 4]` |" in text
    assert "Not stated. Set `intended_use` on the training task." in text
    assert "| Task | `fit` |" in text and "DAG run" not in text  # empty lineage entries are left out
    assert "| Model URI | `models:/price/4` |" in text


def test_model_card_escapes_pipes_in_table_cells() -> None:
    text = _card(hyperparameters={"kernel": "a|b"}).to_markdown()

    assert "| kernel | `a\\|b` |" in text


def test_long_model_card_description_is_cut_with_a_pointer_to_the_full_card() -> None:
    card = _card(features=[f"feature_{i}" for i in range(1_000)])

    assert len(card.to_markdown()) > MAX_DESCRIPTION_CHARS
    description = card.description()
    assert len(description) <= MAX_DESCRIPTION_CHARS
    assert description.endswith("full card: `runs:/abc123/model_card.md`)\n")
