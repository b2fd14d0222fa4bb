"""The one MLflow HTTP transport of both planes (``runtime.contract.mlflow_http``), against the session's
real ``mlflow server`` and loopback stand-ins for what a real server cannot be made to do: an
authenticating gateway, a socket that never answers, a closed port, an overloaded proxy, a TLS server
that asks for a client certificate. The worker's client and the runtime's calls build on it and test
only their own behaviour."""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import pytest

from airflow_ai_provider.runtime.contract.mlflow_http import (
    ACCESS,
    ANSWERED,
    TIMEOUT,
    TLS,
    UNREACHABLE,
    MlflowHttp,
    MlflowHttpError,
    usable,
)
from tests._support.http_proxy import Rule, http_proxy
from tests.unit.runtime.conftest import closed_port


def _http(url: str, env: dict[str, str] | None = None, timeout: float = 5, attempts: int = 2) -> MlflowHttp:
    return MlflowHttp(url, None, env or {}, timeout=timeout, attempts=attempts)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class _Canned(BaseHTTPRequestHandler):
    """Answers every request with ``status`` and ``body``, keeping the headers and paths it got."""

    status, body = 200, b"{}"
    seen: list[tuple[str, dict[str, str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        type(self).seen.append((self.path, dict(self.headers)))
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = do_PUT = _answer


@contextlib.contextmanager
def _canned(
    status: int, body: bytes, tls: ssl.SSLContext | None = None
) -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    handler = type("Canned", (_Canned,), {"status": status, "body": body, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------------------------------
# Calls and artifacts against the real server.


def test_get_sends_the_body_as_query_and_post_as_json_leaving_out_none(mlflow_server):
    http = _http(mlflow_server.url)
    name = _unique("http-exp")
    created = http.call("POST", "experiments/create", {"name": name, "artifact_location": None})
    found = http.call("GET", "experiments/get-by-name", {"experiment_name": name})
    assert found["experiment"]["experiment_id"] == created["experiment_id"]
    assert http.call("POST", "experiments/delete", {"experiment_id": created["experiment_id"]}) == {}


def test_an_unknown_run_is_the_servers_error_code_on_one_line_naming_the_endpoint(mlflow_server):
    with pytest.raises(MlflowHttpError) as unknown:
        _http(mlflow_server.url).call("GET", "runs/get", {"run_id": "0" * 32})
    error = unknown.value
    assert (error.error_code, error.http_status, error.kind) == ("RESOURCE_DOES_NOT_EXIST", 404, ANSWERED)
    assert str(error).startswith("RESOURCE_DOES_NOT_EXIST: ") and "(runs/get)" in str(error)
    assert "\n" not in str(error)


def _run_artifact_uri(http: MlflowHttp) -> tuple[str, str]:
    experiment_id = http.call("POST", "experiments/create", {"name": _unique("http-art")})["experiment_id"]
    info = http.call("POST", "runs/create", {"experiment_id": experiment_id, "start_time": 1})["run"]["info"]
    return info["run_id"], info["artifact_uri"]


def test_an_artifact_of_the_servers_store_is_put_through_the_server(mlflow_server):
    http = _http(mlflow_server.url)
    run_id, artifact_uri = _run_artifact_uri(http)
    assert artifact_uri.startswith("mlflow-artifacts:")
    assert http.put_artifact(artifact_uri, "job/result one.json", b'{"rows_out": 3}') is True
    stored = [p for p in mlflow_server.artifacts_dir.rglob("result one.json") if run_id in str(p)]
    assert [p.read_bytes() for p in stored] == [b'{"rows_out": 3}']


def test_an_artifact_uri_naming_a_host_is_put_to_that_host(mlflow_server):
    """The tracking address is a closed port; only the host in the URI can take the PUT."""
    run_id, artifact_uri = _run_artifact_uri(_http(mlflow_server.url))
    path = urlsplit(artifact_uri).path
    elsewhere = _http(f"http://127.0.0.1:{closed_port()}", attempts=1)
    hosted = f"mlflow-artifacts://{urlsplit(mlflow_server.url).netloc}{path}"
    assert elsewhere.put_artifact(hosted, "hosted.txt", b"here") is True
    assert [p.read_bytes() for p in mlflow_server.artifacts_dir.rglob("hosted.txt") if run_id in str(p)] == [
        b"here"
    ]


@pytest.mark.parametrize("as_uri", [True, False], ids=["file-uri", "plain-path"])
def test_a_local_artifact_folder_is_written_whole_and_other_stores_are_left_to_the_caller(tmp_path, as_uri):
    http = _http(f"http://127.0.0.1:{closed_port()}", attempts=1)  # never asked
    root = tmp_path / "run 1" / "artifacts"
    assert http.put_artifact(root.as_uri() if as_uri else str(root), "job/report.html", b"<p>all</p>")
    written = root / "job" / "report.html"
    assert written.read_bytes() == b"<p>all</p>"
    assert [p.name for p in written.parent.iterdir()] == ["report.html"]  # no temporary file left
    assert http.put_artifact("s3://bucket/run/artifacts", "job/report.html", b"x") is False


# --------------------------------------------------------------------------------------------------
# Answers that are not a success.


def test_an_error_without_mlflows_body_gets_the_code_of_its_status_and_the_first_line():
    page = b"<html>no such route\nsecond line</html>"
    with _canned(404, page) as (url, _), pytest.raises(MlflowHttpError) as missing:
        _http(url).call("GET", "runs/get", {"run_id": "r1"})
    assert (missing.value.error_code, missing.value.http_status) == ("RESOURCE_DOES_NOT_EXIST", 404)
    assert str(missing.value) == "HTTP 404: <html>no such route (runs/get)"


def test_a_success_that_is_not_json_is_an_answered_error():
    with _canned(200, b"<html>a login page</html>") as (url, _), pytest.raises(MlflowHttpError) as strange:
        _http(url).call("GET", "runs/get", {"run_id": "r1"})
    assert strange.value.kind == ANSWERED and "not JSON" in str(strange.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw-secret-7"}, "Basic "),
        ({"MLFLOW_TRACKING_TOKEN": "tok-secret-7"}, "Bearer tok-secret-7"),
    ],
    ids=["basic", "bearer"],
)
def test_credentials_are_sent_as_headers_and_a_refusal_is_access_without_the_secret(env, expected):
    body = b'{"error_code": "UNAUTHENTICATED", "message": "bad credentials"}'
    with _canned(401, body) as (url, seen), pytest.raises(MlflowHttpError) as refused:
        _http(url, env).call("GET", "runs/get", {"run_id": "r1"})
    authorization = seen[0][1]["Authorization"]
    if expected == "Basic ":
        assert base64.b64decode(authorization.removeprefix("Basic ")) == b"alice:pw-secret-7"
    else:
        assert authorization == expected
    assert len(seen) == 1  # refused credentials are not sent again
    assert (refused.value.kind, refused.value.http_status) == (ACCESS, 401)
    assert "secret" not in str(refused.value)


def test_proxy_variables_of_the_environment_are_not_used(mlflow_server, monkeypatch):
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    answer = _http(mlflow_server.url).call("POST", "experiments/search", {"max_results": 1})
    assert isinstance(answer, dict)


# --------------------------------------------------------------------------------------------------
# Servers that do not answer, or not yet.


def test_a_server_that_never_answers_times_out_within_attempts_times_timeout():
    """A socket that listens but never accepts: the kernel takes the connection, nobody answers."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        http = _http(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=2, attempts=2)
        started = time.monotonic()
        with pytest.raises(MlflowHttpError) as hung:
            http.call("POST", "experiments/search", {"max_results": 1})
        elapsed = time.monotonic() - started
    assert hung.value.kind == TIMEOUT and "timed out" in str(hung.value)
    assert "(experiments/search)" in str(hung.value)
    assert elapsed < 15  # bounded: 2 attempts of 2 s, where MLflow's defaults wait for minutes


def test_a_refused_connection_is_unreachable_naming_the_server():
    port = closed_port()
    with pytest.raises(MlflowHttpError) as refused:
        _http(f"http://127.0.0.1:{port}").call("GET", "runs/get", {"run_id": "r1"})
    assert refused.value.kind == UNREACHABLE and f"127.0.0.1:{port}" in str(refused.value)


def test_an_overloaded_answer_is_retried_and_the_second_attempt_succeeds(mlflow_server):
    name = _unique("http-busy")
    experiment_id = _http(mlflow_server.url).call("POST", "experiments/create", {"name": name})[
        "experiment_id"
    ]
    rule = Rule("GET", "/experiments/get", "fail", status=503, times=1)
    with http_proxy(mlflow_server.url, [rule], lifetime=60) as proxy:
        answer = _http(proxy.url).call("GET", "experiments/get", {"experiment_id": experiment_id})
        assert answer["experiment"]["name"] == name
        assert proxy.count("GET", "/experiments/get") == 2


def test_throttling_on_every_attempt_is_infrastructure(mlflow_server):
    rule = Rule("GET", "/experiments/get", "fail", status=429, times=10)
    with http_proxy(mlflow_server.url, [rule], lifetime=60) as proxy:
        with pytest.raises(MlflowHttpError) as throttled:
            _http(proxy.url, attempts=3).call("GET", "experiments/get", {"experiment_id": "0"})
        assert proxy.count("GET", "/experiments/get") == 3
    error = throttled.value
    assert (error.kind, error.http_status, error.error_code) == (UNREACHABLE, 429, "REQUEST_LIMIT_EXCEEDED")


def test_a_put_is_retried_like_a_call(mlflow_server):
    run_id, artifact_uri = _run_artifact_uri(_http(mlflow_server.url))
    rule = Rule("PUT", "/retried.txt", "fail", status=502, times=1)
    with http_proxy(mlflow_server.url, [rule], lifetime=60) as proxy:
        assert _http(proxy.url).put_artifact(artifact_uri, "retried.txt", b"once") is True
        assert proxy.count("PUT", "/retried.txt") == 2
    assert [p.read_bytes() for p in mlflow_server.artifacts_dir.rglob("retried.txt") if run_id in str(p)] == [
        b"once"
    ]


# --------------------------------------------------------------------------------------------------
# TLS.


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (cert and key in one PEM)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(subject: str, issuer: tuple[x509.Name, object] | None, **extensions: object):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        issuer_name, issuer_key = issuer or (name, key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension in extensions.values():
            builder = builder.add_extension(extension, critical=False)
        return key, builder.sign(issuer_key, hashes.SHA256())

    ca_key, ca = issue("test ca", None, ca=x509.BasicConstraints(ca=True, path_length=None))
    server_key, server = issue(
        "127.0.0.1",
        (ca.subject, ca_key),
        san=x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
    )
    client_key, client = issue("task worker", (ca.subject, ca_key))

    def pem(key, cert) -> bytes:
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM) + private

    paths = {"ca": folder / "ca.pem", "server": folder / "server.pem", "client": folder / "client.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["server"].write_bytes(pem(server_key, server))
    paths["client"].write_bytes(pem(client_key, client))
    return paths


def _mutual_tls(pki: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"])
    context.load_verify_locations(pki["ca"])
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_a_server_asking_for_a_client_certificate_is_answered_with_the_one_configured(pki):
    with _canned(200, b'{"ok": true}', _mutual_tls(pki)) as (url, _):
        verified = {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(pki["ca"])}
        with_cert = {**verified, "MLFLOW_TRACKING_CLIENT_CERT_PATH": str(pki["client"])}
        assert _http(url, with_cert).call("GET", "runs/get", {"run_id": "r1"}) == {"ok": True}
        insecure = {
            "MLFLOW_TRACKING_INSECURE_TLS": "true",
            "MLFLOW_TRACKING_CLIENT_CERT_PATH": str(pki["client"]),
        }
        assert _http(url, insecure).call("GET", "runs/get", {"run_id": "r1"}) == {"ok": True}
        with pytest.raises(MlflowHttpError) as no_cert:
            _http(url, verified, attempts=1).call("GET", "runs/get", {"run_id": "r1"})
    assert no_cert.value.kind == UNREACHABLE


def test_a_server_certificate_that_fails_verification_is_configuration_and_not_tried_again(pki):
    """The connection attempts are counted with a spy that calls the real ``connect``."""
    real_connect = http.client.HTTPSConnection.connect
    with (
        _canned(200, b'{"ok": true}', _mutual_tls(pki)) as (url, _),
        mock.patch.object(
            http.client.HTTPSConnection, "connect", autospec=True, side_effect=real_connect
        ) as spy,
        pytest.raises(MlflowHttpError) as unknown_ca,
    ):
        _http(url, {"MLFLOW_TRACKING_CLIENT_CERT_PATH": str(pki["client"])}, attempts=3).call(
            "GET", "runs/get"
        )
    assert spy.call_count == 1
    assert unknown_ca.value.kind == TLS and unknown_ca.value.error_code == "TLS_VERIFICATION_FAILED"
    message = str(unknown_ca.value)
    assert (
        "\n" not in message
        and "failed verification" in message
        and "MLFLOW_TRACKING_SERVER_CERT_PATH" in message
    )


def test_only_http_and_https_stores_are_usable():
    assert usable("http://mlflow:5000", "https://registry")
    assert not usable("http://mlflow:5000", "sqlite:///registry.db")
    assert not usable("file:///tmp/mlruns")
