"""The content templates' text embedder (TF-IDF + truncated SVD as an MLflow pyfunc) and its corpus
generator: deterministic documents, unit-length float32 vectors, a training function that refuses a
model whose neighbours do not share topics, and an artifact that loads without this repository."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dag_templates.include.text_embedding import (
    TOPICS,
    TextEmbedder,
    fit_embedder,
    generate_corpus,
    neighbour_scores,
    train,
)


def test_corpus_is_the_same_for_the_same_seed_and_a_revision_rewrites_only_the_text():
    corpus = generate_corpus(60, seed=5)
    assert corpus.equals(generate_corpus(60, seed=5))
    assert not corpus["text"].equals(generate_corpus(60, seed=6)["text"])
    assert corpus["doc_id"].is_unique and set(corpus["topic"]) == set(TOPICS)
    revised = generate_corpus(60, seed=5, revision=1)
    assert revised[["doc_id", "topic"]].equals(corpus[["doc_id", "topic"]])
    assert (revised["text"] != corpus["text"]).all()


def test_embedder_returns_unit_float32_vectors_whose_neighbours_share_their_topic():
    corpus = generate_corpus(300, seed=1)
    model = fit_embedder(corpus["text"].tolist(), dimensions=32)
    vectors = model.predict(None, corpus[["doc_id", "text"]])
    assert vectors.dtype == np.float32 and vectors.shape == (300, 32) == (len(corpus), model.dimensions)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    scores = neighbour_scores(vectors, corpus["topic"].tolist())
    assert scores["topic_accuracy_at_1"] > 0.9 and scores["self_retrieval_at_1"] == 1.0
    assert np.array_equal(model.predict(None, corpus["text"]), vectors)  # a Series works too


def test_embedder_caps_its_dimensions_below_a_small_vocabulary():
    model = fit_embedder(["alpha beta", "beta gamma", "gamma alpha"], dimensions=64)
    assert model.predict(None, ["alpha"]).shape == (1, model.dimensions)
    assert model.dimensions < 64


def test_predict_without_a_text_column_names_the_column():
    import pandas as pd

    model = fit_embedder(generate_corpus(30)["text"].tolist(), dimensions=8)
    with pytest.raises(ValueError, match="needs a 'text' column"):
        model.predict(None, pd.DataFrame({"body": ["x"]}))


class _Context:
    """A stand-in for the runtime's TrainingContext (a plain dataclass of values, nothing to mock)."""

    def __init__(self, corpus, params):
        self.data, self.label, self.features, self.params = corpus, "topic", ["text"], params
        self.lines: list[str] = []
        self.log = self.lines.append


def test_training_function_returns_the_model_and_its_metrics():
    model, metrics = train(_Context(generate_corpus(120), {"dimensions": 16}))
    assert isinstance(model, TextEmbedder)
    assert metrics["dimensions"] == 16 and metrics["documents"] == 120
    assert metrics["topic_accuracy_at_1"] >= 0.5


def test_training_function_refuses_a_model_below_min_topic_accuracy():
    corpus = generate_corpus(60)
    corpus["topic"] = [f"t{i}" for i in range(60)]  # no two documents share a topic
    with pytest.raises(ValueError, match="below min_topic_accuracy 0.5"):
        train(_Context(corpus, {}))


def test_trained_model_unpickles_where_the_template_code_is_not_importable(tmp_path):
    import cloudpickle

    model, _ = train(_Context(generate_corpus(60), {"dimensions": 8}))
    (tmp_path / "model.pkl").write_bytes(cloudpickle.dumps(model))
    script = (
        "import sys, pickle; sys.modules['dag_templates'] = None\n"
        f"model = pickle.loads(open({str(tmp_path / 'model.pkl')!r}, 'rb').read())\n"
        "print(model.predict(None, ['star galaxy orbit']).shape)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert out.stdout.strip() == "(1, 8)"
