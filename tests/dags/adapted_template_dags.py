"""The DAG templates adapted as a user adapts them: config lines replaced, the rest left as shipped.

Each factory reads a template's source from ``dag_templates/``, replaces the named assignments of
its config block (each must occur exactly once) and runs the result as a DAG file of this folder, so
``dag.test()`` finds the DAG in the test-DAG bundle.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from airflow.sdk import DAG

TEMPLATES = Path(__file__).resolve().parents[2] / "dag_templates"


def adapted_template(template: str, config: dict[str, str], names: dict[str, object] | None = None) -> DAG:
    """The DAG of ``dag_templates/<template>.py`` with each config ``NAME = ...`` line set to
    ``NAME = <config[NAME]>`` (Python source); ``names`` are objects that source may refer to, as
    a user's copy would import them."""
    source = (TEMPLATES / f"{template}.py").read_text()
    for name, value in config.items():
        source, count = re.subn(rf"^{name}(: [^=]+)? = .*$", f"{name} = {value}", source, flags=re.M)
        if count != 1:
            raise ValueError(f"{template}: config line {name} found {count} times, expected once")
    namespace: dict = {**(names or {}), "__name__": f"adapted_{template}", "__file__": __file__}
    exec(compile(source, __file__, "exec"), namespace)
    return namespace["dag"]


SHARDS = 2

DIABETES_BATCH_INFERENCE = {
    "DAG_ID": '"diabetes_batch_inference"',
    # Fixed when the file is parsed, whenever and by whom: tests/conftest.py sets the templates'
    # data root before anything parses a DAG file.
    "DATA_ROOT": 'os.environ["AI_TEMPLATES_DATA_ROOT"] + "/adapted-diabetes"',
    "MODEL_NAME": '"diabetes"',
    "TASK_TYPE": '"regression"',
    "ID_COLUMNS": '["patient_id"]',
    "SCORING_DATA": 'Asset(name="diabetes_scoring_data", uri=f"file://{DATA_ROOT}/scoring/patients")',
    "PREDICTIONS": 'Asset(name="diabetes_predictions", uri=f"file://{DATA_ROOT}/predictions")',
    "SHARDS": str(SHARDS),
    "REVIEW_SUBJECT": '"Review diabetes progression predictions"',
    "INFERENCE_POOL": '"default_pool"',
}
"""What a user changes in the batch-inference template for a regression model of disease
progression on scikit-learn's diabetes data, and nothing else."""

diabetes_batch_inference = partial(adapted_template, "churn_batch_inference", DIABETES_BATCH_INFERENCE)

diabetes_batch_inference()

diabetes_batch_inference_one_shard = partial(
    adapted_template,
    "churn_batch_inference",
    {**DIABETES_BATCH_INFERENCE, "DAG_ID": '"diabetes_batch_inference_one_shard"', "SHARDS": "1"},
)
"""The same with one shard: the route step reads the single mapped result as a list of one."""

diabetes_batch_inference_one_shard()

S3_DATA_ROOT = "s3://ai-templates-s3/churn"

S3_BATCH_INFERENCE = {
    "DAG_ID": '"s3_churn_batch_inference"',
    # One fixed root whoever parses the bundle: Airflow keeps one active Asset per name.
    "DATA_ROOT": repr(S3_DATA_ROOT),
    "SCORING_DATA": 'Asset(name="s3_churn_scoring_data", uri=data_uri(DATA_ROOT, "scoring/customers"))',
    "PREDICTIONS": 'Asset(name="s3_churn_predictions", uri=data_uri(DATA_ROOT, "predictions"))',
    "REVIEW_TIMEOUT": "timedelta(seconds=1.5)",
    "INFERENCE_POOL": '"default_pool"',
    "AWS_CONN_ID": '"aws_test"',
}
"""The batch-inference template deployed with its data root on S3 (reached through the ``aws_test``
connection of ``tests/conftest.py``), its locations built from the root by the template itself."""

s3_batch_inference = partial(adapted_template, "churn_batch_inference", S3_BATCH_INFERENCE)

s3_batch_inference()

S3_INGEST = {
    "DAG_ID": '"s3_churn_ingest"',
    "DATA_ROOT": repr(S3_DATA_ROOT),
    "SUITE": repr(str(TEMPLATES / "include" / "churn_expectations.json")),
    "VALIDATED_DATA": 'Asset(name="s3_churn_validated_data", uri=data_uri(DATA_ROOT, "raw", "customers"))',
    "LANDED_NAME": '"s3_churn_landed_customers"',
    "AWS_CONN_ID": '"aws_test"',
}
"""The ingest template deployed with its data root on S3, like ``S3_BATCH_INFERENCE``."""

s3_ingest = partial(adapted_template, "churn_ingest", S3_INGEST)

s3_ingest()

S3_CONTENT_ROOT = S3_DATA_ROOT.rsplit("/", 1)[0] + "/content"
S3_CONTENT = {
    "DATA_ROOT": repr(S3_CONTENT_ROOT),
    "MODEL_NAME": '"s3_text_embedder"',
    "AWS_CONN_ID": '"aws_test"',
}
"""The content templates deployed with their data root on S3 (in the bucket of ``S3_DATA_ROOT``)."""

s3_content_reembed = partial(
    adapted_template,
    "content_reembed",
    {
        **S3_CONTENT,
        "DAG_ID": '"s3_content_reembed"',
        "CONTENT": 'Asset(name="s3_content_documents", uri=data_uri(DATA_ROOT, "content/documents"))',
        "VECTORS": 'Asset(name="s3_content_vectors", uri=data_uri(DATA_ROOT, "vectors"))',
        "INFERENCE_POOL": '"default_pool"',
    },
)

s3_content_reembed()

s3_content_embedder_train = partial(
    adapted_template,
    "content_embedder_train",
    {**S3_CONTENT, "DAG_ID": '"s3_content_embedder_train"', "TRAINING_POOL": '"default_pool"'},
)

s3_content_embedder_train()
