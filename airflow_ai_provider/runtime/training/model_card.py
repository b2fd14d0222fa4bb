"""Model cards: a short Markdown document saying what a registered model version is and where it came from.

The training job renders one for every version it registers, logs it as :data:`MODEL_CARD_ARTIFACT`
in the training run and uses it as the version's description in the registry (cut to
:data:`MAX_DESCRIPTION_CHARS`, the registry's limit, with a pointer to the full card). Rendering is a
pure function of :class:`ModelCard`: no MLflow, no data access.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_ai_provider.runtime.contract.params import TrainParams

MODEL_CARD_ARTIFACT = "model_card.md"
#: Longest model version description the registry's SQL stores accept.
MAX_DESCRIPTION_CHARS = 5000
NOT_STATED_USE = "Not stated. Set `intended_use` on the training task."
NOT_STATED_LIMITATIONS = "None stated. Set `limitations` on the training task."


@dataclass(frozen=True)
class ModelCard:
    """Everything a model card shows.

    :param model_name: registered model name.
    :param version: registry version (``None`` before the registry assigned one).
    :param alias: alias the version gets.
    :param intended_use: what the model is for, in the user's words.
    :param limitations: known limitations, in the user's words.
    :param data_uri: training data URI(s), comma-separated.
    :param data_digest: digest of the training data (see ``storage.input_digest``).
    :param rows: training rows.
    :param features: feature columns, in model input order.
    :param label: label column.
    :param label_summary: ``{"classes": {value: count}}`` or
        ``{"numeric": {"mean", "std", "min", "max"}}``.
    :param metrics: the training function's metrics.
    :param hyperparameters: the hyper-parameters the training function got.
    :param code_reference: the training function, ``package.module:function``.
    :param flavor: how the model is stored (``sklearn`` or ``python_function``).
    :param environment: the image (kubernetes) or interpreter (local) that trained it.
    :param lineage: Airflow DAG, DAG run and task, training key (label to value; empty ones are left out).
    :param mlflow_run_id: the training run holding the model, the profile and this card.
    :param reference_profile_uri: ``runs:/`` URI of the training data's reference profile.
    :param created_at: when the card was written (ISO 8601, UTC).
    """

    model_name: str
    version: str | None
    alias: str
    intended_use: str | None
    limitations: str | None
    data_uri: str
    data_digest: str
    rows: int
    features: list[str]
    label: str
    label_summary: dict[str, Any]
    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    code_reference: str
    flavor: str
    environment: str | None
    lineage: dict[str, str] = field(default_factory=dict)
    mlflow_run_id: str = ""
    reference_profile_uri: str = ""
    created_at: str = ""

    def to_markdown(self) -> str:
        """The card as Markdown."""
        version = self.version or "(assigned at registration)"
        sections = [
            f"# Model card: {self.model_name} version {version}",
            _table(
                ("Model", f"`{self.model_name}`"),
                ("Version", version),
                ("Alias", f"`{self.alias}`"),
                ("Model URI", f"`models:/{self.model_name}/{self.version}`" if self.version else "-"),
                ("Stored as", self.flavor),
                ("Card written", self.created_at or "-"),
                header=("Model", "Value"),
            ),
            "## Intended use",
            (self.intended_use or "").strip() or NOT_STATED_USE,
            "## Training data",
            _table(
                ("Location", f"`{self.data_uri}`"),
                ("Digest (sha256)", f"`{self.data_digest}`"),
                ("Rows", f"{self.rows:,}"),
                ("Label", f"`{self.label}`"),
                (f"Features ({len(self.features)})", ", ".join(f"`{name}`" for name in self.features)),
                header=("Training data", "Value"),
            ),
            *_label_section(self.label, self.label_summary, self.rows),
            "## Metrics",
            _table(
                *((name, _number(value)) for name, value in sorted(self.metrics.items())),
                header=("Metric", "Value"),
            )
            if self.metrics
            else "The training function reported no metrics.",
            "## Parameters",
            _table(
                *((name, f"`{_value(value)}`") for name, value in sorted(self.hyperparameters.items())),
                header=("Parameter", "Value"),
            )
            if self.hyperparameters
            else "No hyper-parameters were given.",
            "## Code",
            _table(
                ("Training function", f"`{self.code_reference}`"),
                ("Environment", f"`{self.environment}`" if self.environment else "-"),
                header=("Code", "Value"),
            ),
            "## Lineage",
            _table(
                *((key, f"`{value}`") for key, value in self.lineage.items() if value),
                ("MLflow run", f"`{self.mlflow_run_id}`"),
                ("Reference profile", f"`{self.reference_profile_uri}`"),
                header=("Lineage", "Value"),
            ),
            "## Limitations",
            (self.limitations or "").strip() or NOT_STATED_LIMITATIONS,
        ]
        return "\n\n".join(sections) + "\n"

    def description(self) -> str:
        """The card cut to the registry's description limit, pointing to the full card when cut."""
        text = self.to_markdown()
        if len(text) <= MAX_DESCRIPTION_CHARS:
            return text
        note = f"\n\n... (cut; full card: `runs:/{self.mlflow_run_id}/{MODEL_CARD_ARTIFACT}`)\n"
        return text[: MAX_DESCRIPTION_CHARS - len(note)].rstrip() + note


def training_card(
    params: TrainParams, summary: dict[str, Any], label_summary: dict[str, Any], run_id: str
) -> ModelCard:
    """The card of a model just trained with ``params`` (version not assigned yet).

    :param summary: the training summary (data URI and digest, rows, features, metrics, flavor).
    :param label_summary: see :attr:`ModelCard.label_summary`.
    :param run_id: the training run.
    """
    from airflow_ai_provider.runtime.profile import profile_uri

    return ModelCard(
        model_name=params.model_name,
        version=None,
        alias=params.alias,
        intended_use=params.intended_use,
        limitations=params.limitations,
        data_uri=summary["training_data_uri"],
        data_digest=summary["training_data_digest"],
        rows=summary["rows"],
        features=summary["features"],
        label=params.label_column,
        label_summary=label_summary,
        metrics=summary["metrics"],
        hyperparameters=params.hyperparameters,
        code_reference=params.training_function,
        flavor=summary["flavor"],
        environment=params.image,
        lineage={
            "DAG": params.dag_id or "",
            "DAG run": params.dag_run_id or "",
            "Task": params.task_id or "",
            "Training key": params.training_key or "",
        },
        mlflow_run_id=run_id,
        reference_profile_uri=profile_uri(run_id),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _label_section(label: str, summary: dict[str, Any], rows: int) -> list[str]:
    if "classes" in summary:
        counts = summary["classes"]
        lines = [
            (f"`{value}`", f"{count:,} ({count / rows:.1%})" if rows else f"{count:,}")
            for value, count in counts.items()
        ]
        return [f"Class balance of `{label}`:", _table(*lines, header=("Class", "Rows"))]
    if "numeric" in summary:
        stats = summary["numeric"]
        return [
            f"Distribution of `{label}`:",
            _table(
                *((name, _number(stats[name])) for name in ("mean", "std", "min", "max") if name in stats),
                header=("Statistic", "Value"),
            ),
        ]
    return []


def _table(*rows: tuple[str, str], header: tuple[str, str]) -> str:
    lines = [f"| {_cell(header[0])} | {_cell(header[1])} |", "| --- | --- |"]
    lines.extend(f"| {_cell(key)} | {_cell(value)} |" for key, value in rows)
    return "\n".join(lines)


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
