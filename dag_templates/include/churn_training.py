"""Training function of the churn use case, run by ``RetrainModelOperator`` as
``dag_templates.include.churn_training:train``.

It fits a ``HistGradientBoostingClassifier`` on 75 % of the rows and reports accuracy and ROC AUC on
the other 25 %. Hyper-parameters (``ctx.params``): ``max_iter`` (default 100), ``learning_rate``
(default 0.1), ``test_size`` (default 0.25) and ``seed`` (default 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_ai_provider.runtime.training import TrainingContext


def train(ctx: TrainingContext) -> tuple[Any, dict[str, float]]:
    """Fit the churn classifier on ``ctx.data[ctx.features]`` against ``ctx.label``; return it with its
    holdout metrics."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    seed = int(ctx.params.get("seed", 0))
    features, labels = ctx.data[ctx.features], ctx.data[ctx.label]
    x_train, x_test, y_train, y_test = train_test_split(
        features,
        labels,
        test_size=float(ctx.params.get("test_size", 0.25)),
        random_state=seed,
        stratify=labels,
    )
    model = HistGradientBoostingClassifier(
        max_iter=int(ctx.params.get("max_iter", 100)),
        learning_rate=float(ctx.params.get("learning_rate", 0.1)),
        early_stopping=False,
        random_state=seed,
    )
    ctx.log(f"fitting on {len(x_train)} rows, holding out {len(x_test)}")
    model.fit(x_train, y_train)
    metrics = {
        "accuracy": float(accuracy_score(y_test, model.predict(x_test))),
        "roc_auc": float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])),
        "train_rows": float(len(x_train)),
        "holdout_rows": float(len(x_test)),
    }
    return model, metrics
