"""The top-level ``docker-compose.yaml`` is a valid Compose file that starts the stack as documented.

No container engine runs here, so the file is checked statically: against the Compose
specification's JSON schema (the copy ``check-jsonschema`` ships, no download), and for the
semantics the schema cannot see. What can really run does: the shell snippets are parsed by the
shell, the passwords file is written by the stack's own snippet and logged into with the installed
Simple auth manager, the image check runs against a loopback registry stand-in, and the AWS and
MLflow connections are read by the provider's own code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests._support.core_api import forget_api_auth

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
COMPOSE_DOC = REPO_ROOT / "docs" / "deploy" / "compose.md"
AIRFLOW_COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
AIRFLOW_SERVICES = (*AIRFLOW_COMPONENTS, "airflow-init")
ONE_SHOT = {
    "minio-buckets",
    "runtime-image",
    "churn-image",
    "churn-image-published",
    "k3s-kubeconfig",
    "airflow-volumes",
    "airflow-init",
}
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}")


def interpolated(value: str, env: dict[str, str] | None = None) -> str:
    """What Compose makes of ``value``: ``$$`` -> ``$``, ``${NAME:-default}`` -> env value or default."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return (env or {}).get(match["name"]) or match["default"] or ""

    return _VARIABLE.sub(substitute, value)


def _compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def _validate(document: dict[str, Any]) -> None:
    schema = _compose_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(document)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def airflow_env(compose) -> dict[str, str]:
    """The Airflow services' environment, as the containers see it (local defaults)."""
    env = compose["services"]["airflow-scheduler"]["environment"]
    return {key: interpolated(str(value)) for key, value in env.items()}


@pytest.fixture(scope="module")
def manifests(compose) -> dict[tuple[str, str], dict[str, Any]]:
    """The k3s manifest of the stack, by (kind, name), as k3s applies it (interpolated)."""
    text = interpolated(compose["configs"]["k3s-ai-stack"]["content"])
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(text)}


def _script(service: dict[str, Any]) -> str:
    """The shell script a one-shot service runs (``sh -ec <script>`` or entrypoint + command)."""
    argv = [*(service.get("entrypoint") or []), *service["command"]]
    assert argv[1] == "-ec", argv
    return interpolated(argv[2])


def _service_for(url: str, manifests: dict, compose: dict) -> tuple[str, int]:
    """The compose service and port that ``url`` reaches from a pod, through a k3s Service."""
    parts = urlsplit(url)
    service = manifests[("Service", parts.hostname)]
    assert parts.port in [port["port"] for port in service["spec"]["ports"]], url
    endpoints = manifests[("Endpoints", parts.hostname)]["subsets"][0]
    ip = endpoints["addresses"][0]["ip"]
    owners = [
        name
        for name, svc in compose["services"].items()
        if isinstance(svc.get("networks"), dict) and svc["networks"]["ai"].get("ipv4_address") == ip
    ]
    assert len(owners) == 1, f"{url}: endpoint {ip} is not one compose service's address"
    return owners[0], endpoints["ports"][0]["port"]


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


def test_every_shell_snippet_parses(compose):
    scripts = {
        name: _script(svc)
        for name, svc in compose["services"].items()
        if "-ec" in [*(svc.get("entrypoint") or []), *(svc.get("command") or [])][:2]
    }
    assert {"minio-buckets", "churn-image-published", "k3s-kubeconfig", "airflow-volumes"} <= set(scripts)
    for name, script in scripts.items():
        checked = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"


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


# --- login ------------------------------------------------------------------------------------------

_LOGIN_LINE = re.compile(
    r"Log in as `(?P<user>\w+)` with the password in `(?P<var>\w+)` \(default `(?P<default>[^`]+)`\)"
)


def _documented_login() -> re.Match[str]:
    found = _LOGIN_LINE.search(COMPOSE_DOC.read_text())
    assert found, f"{COMPOSE_DOC.name} does not say how to log in (expected: {_LOGIN_LINE.pattern})"
    return found


def test_the_documented_login_is_the_user_and_password_file_the_stack_configures(compose, airflow_env):
    login = _documented_login()
    users = dict(
        entry.split(":")[:2] for entry in airflow_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    )
    assert users == {login["user"]: "admin"}
    volumes = compose["services"]["airflow-volumes"]
    assert volumes["user"] == "0:0" and volumes["environment"]["AIRFLOW_ADMIN_PASSWORD"] == (
        f"${{{login['var']}:-{login['default']}}}"
    )
    passwords_file = airflow_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert volumes["environment"]["PASSWORDS_FILE"] == passwords_file
    assert f'{{"{login["user"]}": os.environ["AIRFLOW_ADMIN_PASSWORD"]}}' in _script(volumes)
    auth_mount = f"airflow-auth:{Path(passwords_file).parent}"
    assert (
        auth_mount in volumes["volumes"] and auth_mount in compose["services"]["airflow-apiserver"]["volumes"]
    )
    assert "AIRFLOW_ADMIN_PASSWORD" not in airflow_env, (
        "the admin password must not sit in every service's env"
    )
    header = COMPOSE_FILE.read_text().split("\nname:")[0]
    assert f"user {login['user']}, password ${login['var']} (default: {login['default']})" in header


@pytest.mark.parametrize("password", ["admin", 'pa"ss\\w0rd with spaces'])
def test_the_passwords_file_the_stack_writes_lets_the_documented_user_log_in(
    compose, airflow_env, monkeypatch, tmp_path, password, request
):
    """The stack's own snippet writes the file; the installed Simple auth manager checks a login.

    ``chown`` is a no-op here (the test need not run as root) and the paths are moved under
    ``tmp_path``; everything else is the snippet as the container runs it.
    """
    from airflow.api_fastapi import app as api_app
    from fastapi.testclient import TestClient

    login = _documented_login()
    container_file = airflow_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    passwords_file = tmp_path / container_file.lstrip("/")
    script = _script(compose["services"]["airflow-volumes"]).replace(
        "/opt/airflow/", f"{tmp_path}/opt/airflow/"
    )
    env = {"PATH": "/usr/bin:/bin", "PASSWORDS_FILE": str(passwords_file), "AIRFLOW_ADMIN_PASSWORD": password}
    python_dir = tmp_path / "bin"
    python_dir.mkdir()
    (python_dir / "python").symlink_to(sys.executable)
    env["PATH"] = f"{python_dir}:{env['PATH']}"
    subprocess.run(["bash", "-ec", f"chown() {{ :; }}\n{script}"], env=env, check=True)
    written = passwords_file.read_text()

    monkeypatch.setenv(
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", airflow_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    )
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords_file))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", airflow_env["AIRFLOW__API_AUTH__JWT_SECRET"])
    forget_api_auth()
    request.addfinalizer(forget_api_auth)  # its JWT secret stays out of later apps
    manager = api_app.init_auth_manager()
    assert passwords_file.read_text() == written, "the auth manager generated a password of its own"
    client = TestClient(manager.get_fastapi_app())
    accepted = client.post("/token", json={"username": login["user"], "password": password})
    assert accepted.status_code == 201 and accepted.json()["access_token"]
    refused = client.post("/token", json={"username": login["user"], "password": password + "x"})
    assert refused.status_code == 401


# --- data on MinIO, pods' credentials and services --------------------------------------------------


def test_templates_keep_their_data_on_minio_through_the_aws_connection(compose, airflow_env, monkeypatch):
    from airflow_ai_provider.aws_credentials import aws_runtime_env

    root = urlsplit(airflow_env["AI_TEMPLATES_DATA_ROOT"])
    assert (root.scheme, root.netloc) == ("s3", "ai-data")
    assert f"local/{root.netloc}" in _script(compose["services"]["minio-buckets"]).split()
    conn_id = airflow_env["AI_TEMPLATES_AWS_CONN_ID"]
    conn_var = f"AIRFLOW_CONN_{conn_id.upper()}"
    assert json.loads(airflow_env[conn_var])["conn_type"] == "aws"
    monkeypatch.setenv(conn_var, airflow_env[conn_var])
    env = aws_runtime_env(conn_id)
    minio = {k: interpolated(v) for k, v in compose["services"]["minio"]["environment"].items()}
    assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    endpoint = urlsplit(env["AWS_ENDPOINT_URL_S3"])
    assert (
        endpoint.hostname == "minio"
        and f"{endpoint.port}:{endpoint.port}" in compose["services"]["minio"]["ports"]
    )
    assert env["AWS_DEFAULT_REGION"]
    leaked = {key for key in airflow_env if key.startswith("AWS_")}
    assert not leaked, f"worker-wide AWS settings {leaked}: the connection {conn_id!r} carries them"


def test_pods_get_s3_credentials_by_reference_to_the_secret_and_configmap_k3s_creates(
    compose, airflow_env, manifests
):
    namespace = json.loads(airflow_env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])["extra"]["namespace"]
    secret = manifests[("Secret", airflow_env["AI_TEMPLATES_S3_SECRET"])]
    config_map = manifests[("ConfigMap", airflow_env["AI_TEMPLATES_RUNTIME_CONFIGMAP"])]
    assert {doc["metadata"]["namespace"] for doc in manifests.values()} == {namespace}
    minio = {k: interpolated(v) for k, v in compose["services"]["minio"]["environment"].items()}
    assert secret["stringData"] == {
        "AWS_ACCESS_KEY_ID": minio["MINIO_ROOT_USER"],
        "AWS_SECRET_ACCESS_KEY": minio["MINIO_ROOT_PASSWORD"],
    }
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(config_map["data"])
    assert _service_for(config_map["data"]["AWS_ENDPOINT_URL"], manifests, compose) == ("minio", 9000)
    assert "AI_TEMPLATES_SERVICE_ACCOUNT" not in airflow_env, "the Secret gives the pods S3 access"


def test_pods_reach_mlflow_at_the_connection_host_through_the_k3s_service(
    compose, airflow_env, manifests, monkeypatch
):
    from airflow_ai_provider.hooks.mlflow import MlflowHook

    conn_id = airflow_env["AI_TEMPLATES_MLFLOW_CONN_ID"]
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", airflow_env[f"AIRFLOW_CONN_{conn_id.upper()}"])
    tracking_uri = MlflowHook(mlflow_conn_id=conn_id).tracking_uri
    mlflow_port = next(arg for arg in compose["services"]["mlflow"]["command"] if arg.startswith("--port="))
    assert _service_for(tracking_uri, manifests, compose) == ("mlflow", int(mlflow_port.split("=")[1]))


# --- logs, images, no Docker socket -----------------------------------------------------------------


def test_every_airflow_service_shares_one_logs_volume_the_airflow_user_owns(compose, airflow_env):
    services = compose["services"]
    logs = airflow_env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]
    for name in AIRFLOW_SERVICES:
        assert f"airflow-logs:{logs}" in services[name]["volumes"], f"{name} has no shared logs volume"
        assert services[name]["user"].split(":")[0] == "50000"
    assert "airflow-logs" in compose["volumes"]
    assert f"airflow-logs:{logs}" in services["airflow-volumes"]["volumes"]
    assert re.search(rf"chown -R 50000:0 {re.escape(logs)}\b", _script(services["airflow-volumes"]))
    assert "airflow-volumes" in services["airflow-init"]["depends_on"]
    for name in AIRFLOW_COMPONENTS:
        assert "airflow-init" in services[name]["depends_on"]


def test_no_service_mounts_the_docker_socket(compose):
    assert "docker.sock" not in COMPOSE_FILE.read_text()
    for name, service in compose["services"].items():
        assert not str(service.get("image", "")).startswith("docker:"), f"{name} runs the Docker CLI"
        for volume in service.get("volumes", []):
            assert "/var/run/docker" not in str(volume), f"{name} mounts {volume}"


def test_pods_pull_the_pushed_images_from_the_registry_through_the_k3s_mirror(compose, airflow_env):
    services = compose["services"]
    churn, runtime = services["churn-image"]["image"], services["runtime-image"]["image"]
    assert airflow_env["AI_TEMPLATES_IMAGE"] == airflow_env["AIRFLOW__AI_PROVIDER__RUNTIME_IMAGE"] == churn
    assert services["churn-image"]["build"]["additional_contexts"] == {"runtime": "service:runtime-image"}
    assert services["churn-image"]["build"]["dockerfile_inline"].startswith("FROM runtime\n")
    registry_host = churn.split("/")[0]
    assert runtime.split("/")[0] == registry_host
    mirrors = yaml.safe_load(compose["configs"]["k3s-registries"]["content"])["mirrors"]
    assert list(mirrors) == [registry_host]
    endpoint = urlsplit(mirrors[registry_host]["endpoint"][0])
    assert f"{registry_host.split(':')[1]}:{endpoint.port}" in services["registry"]["ports"]
    assert endpoint.hostname == "registry"
    assert {"source": "k3s-registries", "target": "/etc/rancher/k3s/registries.yaml"} in services["k3s"][
        "configs"
    ]
    published = services["churn-image-published"]
    assert published["environment"] == {"IMAGE": churn, "REGISTRY": f"{endpoint.scheme}://{endpoint.netloc}"}
    assert "churn-image-published" in services["airflow-scheduler"]["depends_on"]
    assert "docker compose push runtime-image churn-image" in COMPOSE_DOC.read_text()


@pytest.mark.parametrize(
    ("tags", "published"), [(["0.0.9", "0.1.0"], True), (["0.0.9"], False), (None, False)]
)
def test_airflow_waits_for_the_churn_image_in_the_registry_and_says_how_to_push_it(
    compose, tmp_path, tags, published
):
    """The image check's snippet asks a loopback stand-in for the registry's tag list."""
    import shutil
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    if not shutil.which("wget"):
        pytest.skip("wget (busybox in the alpine image) is not installed here")
    service = compose["services"]["churn-image-published"]
    name = service["environment"]["IMAGE"].split("/", 1)[1].rsplit(":", 1)[0]

    class Registry(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == f"/v2/{name}/tags/list" and tags is not None
            body = json.dumps(
                {"name": name, "tags": tags} if found else {"errors": [{"code": "NAME_UNKNOWN"}]}
            )
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"PATH": "/usr/bin:/bin", "IMAGE": service["environment"]["IMAGE"]}
        env["REGISTRY"] = f"http://127.0.0.1:{server.server_address[1]}"
        result = subprocess.run(
            ["sh", "-ec", _script(service)], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        server.shutdown()
    assert (result.returncode == 0) == published, result.stderr
    if not published:
        assert result.stderr.strip().splitlines() == [
            f"{env['IMAGE']} is not in the registry: run docker compose push runtime-image churn-image"
        ]


# --- the templates read what the stack sets ---------------------------------------------------------

TEMPLATE_FILES = sorted((REPO_ROOT / "dag_templates").glob("churn_*.py"))
_TEMPLATE_SETTING = re.compile(r"os\.environ(?:\.get\(|\[)\s*\"(AI_TEMPLATES_\w+)\"")


def test_every_template_reads_every_ai_templates_variable_the_stack_sets(airflow_env):
    stack = {name for name in airflow_env if name.startswith("AI_TEMPLATES_")}
    assert {"AI_TEMPLATES_DATA_ROOT", "AI_TEMPLATES_AWS_CONN_ID", "AI_TEMPLATES_IMAGE"} <= stack
    assert len(TEMPLATE_FILES) == 4
    for path in TEMPLATE_FILES:
        read = set(_TEMPLATE_SETTING.findall(path.read_text()))
        assert stack <= read, f"{path.name} does not read {sorted(stack - read)}"


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda path: path.stem)
def test_with_the_stack_settings_every_template_runs_its_pods_and_keeps_its_data_where_the_stack_says(
    path, airflow_env, manifests, monkeypatch
):
    """Each template file is loaded as a fresh module with the stack's AI_TEMPLATES_* environment;
    its data locations and Assets lie under the stack's data root."""
    import importlib.util

    from airflow.sdk import Asset

    for name, value in airflow_env.items():
        if name.startswith("AI_TEMPLATES_"):
            monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(f"compose_stack_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    jobs = module.AI_JOBS
    assert jobs["image"] == airflow_env["AI_TEMPLATES_IMAGE"]
    assert jobs["mlflow_conn_id"] == airflow_env["AI_TEMPLATES_MLFLOW_CONN_ID"]
    assert jobs["aws_conn_id"] == airflow_env["AI_TEMPLATES_AWS_CONN_ID"]
    assert "service_account_name" not in jobs
    secrets = [source.secret_ref.name for source in jobs["env_from"] if source.secret_ref]
    config_maps = [source.config_map_ref.name for source in jobs["env_from"] if source.config_map_ref]
    assert secrets == [airflow_env["AI_TEMPLATES_S3_SECRET"]] and ("Secret", secrets[0]) in manifests
    assert config_maps == [airflow_env["AI_TEMPLATES_RUNTIME_CONFIGMAP"]]
    assert ("ConfigMap", config_maps[0]) in manifests
    values = [value.uri if isinstance(value, Asset) else value for value in vars(module).values()]
    root = airflow_env["AI_TEMPLATES_DATA_ROOT"]
    locations = [v for v in values if isinstance(v, str) and v.startswith(("file:", "s3:")) and v != root]
    assert locations, f"{path.name} names no data location"
    assert all(location.startswith(f"{root}/") for location in locations), locations
