"""Text embedding model of the content re-embedding template: TF-IDF + truncated SVD as an MLflow pyfunc.

``train`` is the training function ``RetrainModelOperator`` runs as
``dag_templates.include.text_embedding:train``: it fits :class:`TextEmbedder` on the ``text`` column of
the training corpus (its label, ``topic``, only scores the result) and returns it with its metrics.
The model installs from the registry alone (scikit-learn, numpy, pandas): its ``predict`` takes a
DataFrame with a ``text`` column and returns an ``(n, d)`` float32 array of L2-normalised vectors.
The class is stored by value in the model artifact, so scoring needs no copy of this file.

:func:`generate_corpus` writes deterministic topic-based documents from the word lists below (no
downloads), for samples and tests: ``python -m dag_templates.include.text_embedding <folder> --docs 300``.

Hyper-parameters (``ctx.params``): ``dimensions`` (default 64), ``max_features`` (default 20000),
``seed`` (default 0) and ``min_topic_accuracy`` (default 0.5: a model whose nearest neighbours share
their document's topic less often than this is refused, and nothing is registered).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

# The model's own code: the training job imports it, never a DAG file, so mlflow is there.
from mlflow.pyfunc import PythonModel  # noqa: TID253

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from airflow_ai_provider.runtime.training import TrainingContext

TEXT_COLUMN = "text"
TOPICS = {
    "astronomy": "star galaxy planet orbit telescope comet nebula moon solar lunar asteroid eclipse "
    "cosmic gravity supernova meteor spectrum observatory quasar satellite",
    "cooking": "recipe oven flour butter garlic simmer roast pepper sauce dough bake onion kitchen "
    "spice basil skillet broth tomato knead saute",
    "finance": "market stock bond interest loan equity dividend budget inflation credit bank "
    "portfolio invest revenue profit audit tax ledger currency hedge",
    "football": "goal striker keeper penalty league match referee midfield corner tackle stadium "
    "offside coach season derby dribble header pitch transfer foul",
    "gardening": "soil seed compost prune bloom hedge mulch bulb shrub rose weed harvest sprout "
    "greenhouse fertilizer orchard lawn trowel perennial seedling",
    "medicine": "patient doctor clinic vaccine symptom dose therapy surgery nurse diagnosis fever "
    "tablet allergy cardiac immune infection scan recovery ward pulse",
}
COMMON = (
    "the a of and to in new with for on this that about from week report today people many some "
    "very more first last another story look notes update guide"
)


def generate_corpus(docs: int, seed: int = 0, *, revision: int = 0) -> pd.DataFrame:
    """``docs`` documents (``doc_id``, ``topic``, ``text``), the same for the same arguments.

    Each document mixes words of its topic (about three in four) with common words. ``revision``
    rewrites every document's text (same ids and topics) as a new edition of the content would.
    """
    import numpy as np
    import pandas as pd

    names = sorted(TOPICS)
    vocab = {name: TOPICS[name].split() for name in names}
    common = COMMON.split()
    rows = []
    for index in range(docs):
        rng = np.random.default_rng([seed, index, revision])
        topic = names[index % len(names)]
        length = int(rng.integers(18, 40))
        own = rng.random(length) < 0.75
        words = [
            vocab[topic][rng.integers(len(vocab[topic]))] if mine else common[rng.integers(len(common))]
            for mine in own
        ]
        rows.append({"doc_id": f"D{index:06d}", "topic": topic, TEXT_COLUMN: " ".join(words)})
    return pd.DataFrame(rows, columns=["doc_id", "topic", TEXT_COLUMN])


class TextEmbedder(PythonModel):
    """A fitted TF-IDF -> truncated SVD -> L2 normaliser pipeline as an MLflow pyfunc.

    :param pipeline: the fitted scikit-learn pipeline.
    """

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    @property
    def dimensions(self) -> int:
        """Length of each vector."""
        return int(self.pipeline.named_steps["svd"].n_components)

    def embed(self, texts: Any) -> np.ndarray:
        """The unit-length float32 vectors of ``texts`` (an iterable of strings), one row each."""
        import numpy as np

        values = ["" if text is None else str(text) for text in texts]
        return np.ascontiguousarray(self.pipeline.transform(values), dtype=np.float32)

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        """Embed ``model_input``: a DataFrame with a ``text`` column (or a Series or list of texts)."""
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            if TEXT_COLUMN not in model_input.columns:
                raise ValueError(
                    f"the text embedder needs a {TEXT_COLUMN!r} column, got {list(model_input.columns)}"
                )
            model_input = model_input[TEXT_COLUMN]
        return self.embed(model_input)


def fit_embedder(
    texts: list[str], *, dimensions: int = 64, max_features: int = 20_000, seed: int = 0
) -> TextEmbedder:
    """Fit the pipeline on ``texts``; ``dimensions`` is capped below the vocabulary size."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer

    tfidf = TfidfVectorizer(max_features=max_features, ngram_range=(1, 2), sublinear_tf=True)
    vocabulary = tfidf.fit(texts).transform(texts)
    components = max(1, min(dimensions, vocabulary.shape[1] - 1, len(texts) - 1))
    pipeline = Pipeline(
        [
            ("tfidf", tfidf),
            ("svd", TruncatedSVD(n_components=components, random_state=seed)),
            ("normalize", Normalizer()),
        ]
    )
    pipeline.fit(texts)
    return TextEmbedder(pipeline)


def neighbour_scores(vectors: np.ndarray, topics: list[str], sample: int = 2000) -> dict[str, float]:
    """How often a document's nearest other document shares its topic, and how often its own vector
    is its nearest hit (on up to ``sample`` documents)."""
    import numpy as np

    vectors, labels = vectors[:sample], np.asarray(topics[:sample])
    similarity = vectors @ vectors.T
    self_hit = float(np.mean(np.argmax(similarity, axis=1) == np.arange(len(vectors))))
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argmax(similarity, axis=1)
    return {"topic_accuracy_at_1": float(np.mean(labels[nearest] == labels)), "self_retrieval_at_1": self_hit}


def train(ctx: TrainingContext) -> tuple[TextEmbedder, dict[str, float]]:
    """Fit the embedder on the corpus text; refuse it when neighbours rarely share a topic."""
    import cloudpickle

    text = TEXT_COLUMN if TEXT_COLUMN in ctx.features else ctx.features[0]
    texts = ctx.data[text].fillna("").astype(str).tolist()
    model = fit_embedder(
        texts,
        dimensions=int(ctx.params.get("dimensions", 64)),
        max_features=int(ctx.params.get("max_features", 20_000)),
        seed=int(ctx.params.get("seed", 0)),
    )
    metrics = neighbour_scores(model.embed(texts), ctx.data[ctx.label].astype(str).tolist())
    minimum = float(ctx.params.get("min_topic_accuracy", 0.5))
    if metrics["topic_accuracy_at_1"] < minimum:
        raise ValueError(
            f"topic_accuracy_at_1 {metrics['topic_accuracy_at_1']:.3f} is below min_topic_accuracy "
            f"{minimum}: more documents or more dimensions"
        )
    ctx.log(f"embedded {len(texts)} documents in {model.dimensions} dimensions: {metrics}")
    if __name__ in sys.modules and __name__ != "__main__":
        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the artifact carries the class
    return model, {**metrics, "dimensions": float(model.dimensions), "documents": float(len(texts))}


def _main(argv: list[str]) -> None:
    """Write a sample corpus as ``<folder>/documents.parquet``."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("folder")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    Path(args.folder).mkdir(parents=True, exist_ok=True)
    generate_corpus(args.docs, args.seed).to_parquet(Path(args.folder) / "documents.parquet", index=False)


if __name__ == "__main__":
    _main(sys.argv[1:])
