"""The exact pods the AI operators build run under a real container runtime (podman ``kube play``).

No Kubernetes API server can run here. Each test builds the pod the way the operator does in
kubernetes mode (``build_job_spec`` with a real MLflow run booked by the operator's hook, then
``configure_pod_for`` + ``build_pod_request_obj(dry_run=True)``), serialises it as Kubernetes
would receive it, and plays that manifest with podman on the locally built runtime image
(``docker/build_runtime_image.sh``). Everything that differs from a cluster is an ordinary
operator argument, so the manifest stays the operator's own:

* ``image=<local image>``, ``image_pull_policy="Never"``; the XCom sidecar image comes from the
  ``kubernetes_default`` connection's ``xcom_sidecar_container_image`` extra;
* ``hostnetwork=True``: the MLflow and S3 (moto) servers of the test session listen on 127.0.0.1
  only, and a pod on the host network reaches them there (a bridge network would need the servers on
  a public interface);
* S3 credentials by ``secretKeyRef`` (``secrets=``) from a podman secret; the endpoint in
  ``env_vars``;
* the training job's code from a ``hostPath`` volume on ``PYTHONPATH`` (in production it is baked
  into a per-model image).

Then the runtime's result is read where the XCom sidecar reads it (``/airflow/xcom/return.json``,
through ``podman exec`` into the sidecar), handed to the operator's ``record_result`` as KPO would,
and the outputs in S3 and the records in MLflow are checked.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests._support.churn_sample import train_and_register, write_customers

pytestmark = pytest.mark.timeout(1800)
REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "podman_manifests"
MODEL = f"podman-churn-{uuid.uuid4().hex[:6]}"
ROWS = 2_000


# --------------------------------------------------------------------------- setup


@pytest.fixture(scope="module")
def world(runtime_image, s3_server, mlflow_server, s3_secret, airflow_db) -> Any:
    """Connections, an S3 bucket with customer data and a champion model version registered from
    the host, shared by the pods of this module (in the order of a real retraining chain)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": mlflow_server.url})
        )
        patch.setenv(
            "AIRFLOW_CONN_KUBERNETES_DEFAULT",
            json.dumps({"conn_type": "kubernetes", "extra": {"xcom_sidecar_container_image": runtime_image}}),
        )
        bucket = f"podman-{uuid.uuid4().hex[:12]}"
        s3_server.client().create_bucket(Bucket=bucket)
        storage = {
            "endpoint_url": s3_server.endpoint_url,
            "key": s3_server.access_key,
            "secret": s3_server.secret_key,
        }
        write_customers(f"s3://{bucket}/labelled", ROWS, seed=3, with_label=True, storage_options=storage)
        write_customers(f"s3://{bucket}/scoring", ROWS, seed=4, storage_options=storage)
        champion = train_and_register(
            mlflow_server.url, MODEL, alias="champion", n_rows=ROWS, seed=5, max_iter=20
        )
        yield SimpleNamespace(
            image=runtime_image,
            bucket=bucket,
            s3=s3_server,
            secret=s3_secret,
            mlflow_url=mlflow_server.url,
            champion_version=str(champion["version"]),
            run_id=f"manual__{uuid.uuid4().hex[:8]}",
        )


def _pod_arguments(world: Any) -> dict[str, Any]:
    from airflow.providers.cncf.kubernetes.secret import Secret

    return {
        "execution_mode": "kubernetes",
        "namespace": "default",
        "image": world.image,
        "image_pull_policy": "Never",
        "hostnetwork": True,
        "secrets": [
            Secret("env", "AWS_ACCESS_KEY_ID", world.secret, "access_key"),
            Secret("env", "AWS_SECRET_ACCESS_KEY", world.secret, "secret_key"),
        ],
        "env_vars": {
            "AWS_ENDPOINT_URL": world.s3.endpoint_url,
            "AWS_DEFAULT_REGION": world.s3.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        },
    }


def _run_operator(op: Any, world: Any, pod_runner: Any) -> tuple[Any, dict[str, Any], Any]:
    """Book the task's MLflow run, build the spec and the pod as the operator does, play the pod, and
    record the result the way the operator records what the XCom sidecar returned."""
    from kubernetes.client import ApiClient

    from airflow_ai_provider.mlflow_runs import RunIdentity, finish_task_run, start_task_run

    who = RunIdentity(
        dag_id=DAG_ID, run_id=world.run_id, task_id=op.task_id, extra_tags={"ai.job": op.job_type}
    )
    run = start_task_run(op.mlflow_hook, who, f"airflow/{DAG_ID}")
    ti = SimpleNamespace(dag_id=DAG_ID, run_id=world.run_id, task_id=op.task_id, map_index=-1, try_number=1)
    spec = op.build_job_spec({"ti": ti}, run)
    op.configure_pod_for(spec)
    manifest = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))

    pod = pod_runner.play(manifest, label=op.job_type)

    assert pod.exit_code == 0, f"{op.job_type} pod {pod.name} exited {pod.exit_code}:\n{pod.logs[-3000:]}"
    assert pod.result is not None, (
        f"no {op.job_type} result at /airflow/xcom/return.json:\n{pod.logs[-3000:]}"
    )
    assert pod.result["status"] == "success", pod.result.get("error")
    op.record_result(run, pod.result)
    finish_task_run(op.mlflow_hook, run, who, succeeded=True)
    return pod, pod.result, run


def _artifacts(world: Any, run_id: str) -> set[str]:
    from mlflow import MlflowClient

    return {item.path for item in MlflowClient(tracking_uri=world.mlflow_url).list_artifacts(run_id)}


def _recorded_result(world: Any, run_id: str) -> dict[str, Any]:
    """The ``job_result.json`` the operator logged into the task's run."""
    import tempfile

    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        path = MlflowClient(tracking_uri=world.mlflow_url).download_artifacts(
            run_id, "job_result.json", folder
        )
        return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def trained(world, pod_runner) -> tuple[Any, dict[str, Any], Any]:
    """The retraining pod's run: a challenger version trained in the pod from S3 data."""
    from kubernetes.client import models as k8s

    from airflow_ai_provider.operators.training import RetrainModelOperator

    args = _pod_arguments(world)
    args["env_vars"] = {**args["env_vars"], "PYTHONPATH": "/opt/jobs"}
    op = RetrainModelOperator(
        task_id="train",
        training_function="dag_templates.include.churn_training:train",
        input_uri=f"s3://{world.bucket}/labelled/",
        label_column="churned",
        id_columns=["customer_id"],
        model_name=MODEL,
        alias="challenger",
        hyperparameters={"max_iter": 20},
        volumes=[
            k8s.V1Volume(
                name="training-code",
                host_path=k8s.V1HostPathVolumeSource(path=str(REPO_ROOT / "dag_templates"), type="Directory"),
            )
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="training-code", mount_path="/opt/jobs/dag_templates", read_only=True)
        ],
        **args,
    )
    return _run_operator(op, world, pod_runner)


# --------------------------------------------------------------------------- the image


def test_runtime_image_has_no_airflow_and_runs_as_a_non_root_user(podman, runtime_image):
    no_airflow = podman.run(
        "run", "--rm", "--entrypoint", "python", runtime_image, "-c", "import airflow", check=False
    )
    assert no_airflow.returncode != 0 and "No module named 'airflow'" in no_airflow.stderr
    user = podman.run("run", "--rm", "--entrypoint", "id", runtime_image, "-u")
    assert user.stdout.strip() == "1000"
    usage = podman.run("run", "--rm", runtime_image)  # ENTRYPOINT python -m airflow_ai_provider.runtime
    assert "python -m airflow_ai_provider.runtime" in usage.stdout


# --------------------------------------------------------------------------- the operators' pods


def test_data_validation_pod_validates_s3_data_and_stores_its_reports(world, pod_runner):
    from airflow_ai_provider.operators.data_validation import DataValidationOperator

    suite = json.loads((REPO_ROOT / "dag_templates" / "include" / "churn_expectations.json").read_text())
    op = DataValidationOperator(
        task_id="validate",
        input_uri=f"s3://{world.bucket}/scoring/",
        expectations=suite,
        **_pod_arguments(world),
    )
    pod, result, run = _run_operator(op, world, pod_runner)

    assert pod.manifest["spec"]["hostNetwork"] is True
    assert result["details"]["success"] is True and result["rows_in"] == ROWS
    assert {"validation_result.json", "validation_report.html", "job_result.json"} <= _artifacts(
        world, run.run_id
    )
    report_keys = [
        item["Key"]
        for item in world.s3.client().list_objects_v2(Bucket=world.bucket, Prefix="scoring/_validation/")[
            "Contents"
        ]
    ]
    assert any(key.endswith(".html") for key in report_keys)


def test_retrain_pod_registers_a_challenger_version_trained_on_s3_data(world, trained):
    from mlflow import MlflowClient

    pod, result, run = trained
    details = result["details"]
    assert details["model_name"] == MODEL and details["alias"] == "challenger" and details["rows"] == ROWS
    client = MlflowClient(tracking_uri=world.mlflow_url)
    version = client.get_model_version_by_alias(MODEL, "challenger")
    assert version.version == details["version"] != world.champion_version
    assert version.run_id == run.run_id  # the pod logged the model into the task's run
    assert "reference_profile.json" in _artifacts(world, run.run_id)
    assert _recorded_result(world, run.run_id)["details"]["version"] == details["version"]
    # The pod ran as the non-root runtime user with the secret from a secretKeyRef, never a literal.
    main = pod.manifest["spec"]["containers"][0]
    assert {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": world.secret, "key": "secret_key"}},
    } in main["env"]
    assert world.s3.secret_key not in json.dumps(pod.manifest)


def test_batch_inference_pod_writes_predictions_to_s3_with_the_pinned_champion(world, pod_runner):
    import io

    import pyarrow.parquet as pq

    from airflow_ai_provider.operators.inference import BatchInferenceOperator

    op = BatchInferenceOperator(
        task_id="score",
        model=f"{MODEL}@champion",
        input_uri=f"s3://{world.bucket}/scoring/",
        output_uri=f"s3://{world.bucket}/predictions/",
        id_columns=["customer_id"],
        **_pod_arguments(world),
    )
    pod, result, run = _run_operator(op, world, pod_runner)

    assert result["model"]["version"] == world.champion_version and result["rows_out"] == ROWS
    (output,) = result["outputs"]
    key = output["uri"].removeprefix(f"s3://{world.bucket}/")
    body = world.s3.client().get_object(Bucket=world.bucket, Key=key)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert table.num_rows == ROWS and {"customer_id", "prediction"} <= set(table.column_names)
    assert _recorded_result(world, run.run_id)["outputs"][0]["uri"] == output["uri"]


def test_model_validation_pod_compares_the_pod_trained_challenger_with_the_champion(
    world, trained, pod_runner
):
    from airflow_ai_provider.operators.quality_gate import QualityGateOperator

    challenger_version = trained[1]["details"]["version"]
    op = QualityGateOperator(
        task_id="gate",
        challenger=f"{MODEL}@challenger",
        holdout_uri=f"s3://{world.bucket}/labelled/",
        label_column="churned",
        min_metrics={"accuracy": 0.5},
        **_pod_arguments(world),
    )
    pod, result, run = _run_operator(op, world, pod_runner)

    details = result["details"]
    assert details["challenger"]["version"] == challenger_version
    assert details["champion"]["version"] == world.champion_version
    assert details["decision"] in ("promote", "reject") and details["reasons"]
    assert {"comparison.json", "comparison.png"} <= _artifacts(world, run.run_id)


def test_drift_pod_compares_data_with_the_profile_the_training_pod_stored(world, trained, pod_runner):
    from airflow_ai_provider.operators.drift import DriftDetectionOperator

    op = DriftDetectionOperator(
        task_id="drift",
        model=f"{MODEL}@challenger",
        input_uri=f"s3://{world.bucket}/scoring/",
        **_pod_arguments(world),
    )
    pod, result, run = _run_operator(op, world, pod_runner)

    details = result["details"]
    assert details["model"]["version"] == trained[1]["details"]["version"]
    assert set(details["features"]) and isinstance(details["drift"], bool)
    assert "drift_report.json" in _artifacts(world, run.run_id)
