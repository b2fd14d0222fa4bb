"""The top-level ``docker-compose.yaml`` is a valid Compose file that starts the stack in order.

No container engine runs here, so the file is checked statically: against the Compose
specification's JSON schema (the copy ``check-jsonschema`` ships, no download), and for the
semantics the schema cannot see.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
AIRFLOW_COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
ONE_SHOT = {
    "minio-buckets",
    "runtime-image",
    "churn-image",
    "churn-image-export",
    "k3s-kubeconfig",
    "airflow-init",
}


def _compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def _validate(document: dict[str, Any]) -> None:
    schema = _compose_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(document)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_file_matches_the_compose_specification(compose):
    _validate(compose)


def test_schema_check_rejects_an_unknown_service_key(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["mlflow"]["healthcheck_"] = {"test": ["CMD", "true"]}
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken)


def test_every_dependency_exists_and_waits_on_a_checkable_condition(compose):
    services = compose["services"]
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on missing service {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target}, which has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} waits for long-running {target} to exit"
            else:
                pytest.fail(f"{name} -> {target}: start order without a readiness condition ({condition})")


def test_dependencies_have_no_cycle(compose):
    services = compose["services"]
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in visiting, f"dependency cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        visiting.add(name)
        for target in services[name].get("depends_on") or {}:
            visit(target, (*path, name))
        visiting.discard(name)
        done.add(name)

    for name in services:
        visit(name, ())


def test_long_running_services_have_healthchecks_and_published_ports_are_unique(compose):
    published: list[str] = []
    for name, service in compose["services"].items():
        if name not in ONE_SHOT:
            assert "healthcheck" in service, f"{name} has no healthcheck"
        published += [str(port).rsplit(":", 1)[0] for port in service.get("ports", [])]
    assert len(published) == len(set(published)), f"host ports published twice: {published}"


def test_airflow_runs_every_component_with_the_provider_in_kubernetes_mode(compose):
    services = compose["services"]
    for name in AIRFLOW_COMPONENTS:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__AI_PROVIDER__EXECUTION_MODE"] == "kubernetes"
        assert "./dag_templates:/opt/airflow/dags/dag_templates:ro" in services[name]["volumes"]
        kubernetes = json.loads(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
        mount = next(v for v in services[name]["volumes"] if v.startswith("kubeconfig:"))
        assert kubernetes["extra"]["kube_config_path"].startswith(mount.split(":")[1])
        assert json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])["host"] == "http://mlflow:5000"
    build = services["airflow-scheduler"]["build"]["dockerfile_inline"]
    assert re.search(r"FROM apache/airflow:3\.3\.\d+", build) and "/opt/airflow-ai-provider" in build
    assert {"postgres", "minio", "mlflow", "k3s"} <= set(services)
    assert "s3://" in " ".join(services["mlflow"]["command"])
    assert "postgresql://" in " ".join(services["mlflow"]["command"])


def test_pods_get_s3_credentials_from_a_secret_and_reach_the_stack_by_service_name(compose):
    manifests = list(yaml.safe_load_all(compose["configs"]["k3s-ai-stack"]["content"]))
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in manifests}
    assert {("Service", "mlflow"), ("Service", "minio"), ("Secret", "s3-credentials")} <= kinds
    addresses = {
        doc["metadata"]["name"]: doc["subsets"][0]["addresses"][0]["ip"]
        for doc in manifests
        if doc["kind"] == "Endpoints"
    }
    networks = compose["services"]
    assert addresses == {
        "mlflow": networks["mlflow"]["networks"]["ai"]["ipv4_address"],
        "minio": networks["minio"]["networks"]["ai"]["ipv4_address"],
    }
