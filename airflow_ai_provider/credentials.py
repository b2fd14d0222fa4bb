"""The one rule for credentials: which names are secret, and how URIs are split from what they carry.

A URI may carry credentials in two places: its userinfo (``https://user:password@host``) and its
query string (presigned and SAS URLs, ``?token=...``). :func:`split_credentials` separates any URI
into a credential-free URI and the :class:`UriCredentials` it carried. A query parameter is a
credential when its name is secret by :func:`is_secret_name` (the rule environment variables are
judged by too: words ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``, ``PASSPHRASE``,
``CREDENTIAL(S)``, or ``API_KEY``, ``PRIVATE_KEY``, ``ACCESS_KEY``, ``SECRET_KEY``, ``CLIENT_KEY`` in
it) or it is one of the signed-URL names in :data:`QUERY_SECRET_WORDS` (``X-Amz-Signature``,
``X-Amz-Credential``, ``X-Goog-Signature``, Azure's ``sig``, ``AWSAccessKeyId``, ``apikey``,
``pwd``, ...). A bare ``key=`` is not judged secret (too many innocent uses).

The MLflow hook moves what a connection's URIs carry into the variables MLflow reads; operators
refuse URI arguments that carry credentials (:func:`refuse_uri_credentials`). Every credential found
is registered with Airflow's secrets masker, so task logs and rendered fields redact it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from airflow_ai_provider.exceptions import AiProviderConfigError

#: Words (a name split at every character that is not a letter or digit) that make a name secret.
SECRET_NAME_WORDS = frozenset(
    {"TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "CREDENTIALS"}
)
#: Parts that make a name secret wherever they appear (after separators become ``_``).
SECRET_NAME_PARTS = ("API_KEY", "PRIVATE_KEY", "ACCESS_KEY", "SECRET_KEY", "CLIENT_KEY")
#: More words that make a URI *query parameter* a credential: the names signed URLs use. Not used
#: for environment variables, where ``PWD`` (the working directory) and ``AUTH_*`` are innocent.
QUERY_SECRET_WORDS = frozenset(
    {"SIG", "SIGNATURE", "PWD", "PASS", "APIKEY", "AUTH", "AUTHORIZATION", "AWSACCESSKEYID", "SESSIONTOKEN"}
)
#: How to give a job credentials instead of in a URI (shown in every refusal).
HOW_TO_PASS = (
    "pass them by reference instead: aws_conn_id= in local mode; secrets=, env_from= or a service "
    "account in kubernetes mode"
)
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
#: Literal values that are secret whatever their variable is called: formats specific enough that
#: an innocent value practically never matches. A URI counts when it carries a password or a secret
#: query parameter (``git+ssh://git@host/...``, a user name alone, does not).
SECRET_VALUE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("a Slack token", re.compile(r"\bxox[abpors]-[A-Za-z0-9-]{10,}")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("a JSON web token", re.compile(r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")),
)


def _words(name: str) -> tuple[set[str], str]:
    normal = re.sub(r"[^A-Z0-9]+", "_", name.upper())
    return set(normal.split("_")), normal


def is_secret_name(name: str) -> bool:
    """Whether a variable's name says it holds a secret (``HF_TOKEN``, ``DB_PASSWORD``, ...).

    Names are split into words: ``TOKENIZER_NAME`` is not a secret, ``HF_TOKEN`` is.
    """
    words, normal = _words(name)
    return bool(words & SECRET_NAME_WORDS) or any(part in normal for part in SECRET_NAME_PARTS)


def is_secret_query_param(name: str) -> bool:
    """Whether a URI query parameter carries a credential (``X-Amz-Signature``, ``sig``, ``token``, ...)."""
    name = unquote(name)
    return is_secret_name(name) or bool(_words(name)[0] & QUERY_SECRET_WORDS)


@dataclass(frozen=True)
class UriCredentials:
    """What a URI carried: userinfo and secret query parameters (``repr`` shows names only)."""

    username: str | None = None
    password: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.params)

    def __repr__(self) -> str:
        return f"UriCredentials({self.describe() or 'none'})"

    @property
    def secrets(self) -> list[str]:
        """The secret values (password and parameter values; a user name alone is not one)."""
        return [value for value in (self.password, *(v for _, v in self.params)) if value]

    def describe(self) -> str:
        """What was found, without any value: ``a user name and password, query parameter sig``."""
        found = []
        if self.username or self.password:
            found.append("a user name and password" if self.password else "a user name")
        if self.params:
            names = ", ".join(dict.fromkeys(name for name, _ in self.params))
            found.append(f"query parameter{'s' if len(self.params) > 1 else ''} {names}")
        return ", ".join(found)


def split_credentials(uri: str) -> tuple[str, UriCredentials]:
    """Split ``uri`` into a URI without credentials and the credentials it carried.

    A URI without credentials comes back unchanged (character for character, so glob patterns with
    ``?`` survive). Only secret query parameters are removed; the others keep their order.
    """
    if not isinstance(uri, str) or not uri:
        return uri, UriCredentials()
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an unbalanced "[" in the host: find userinfo by pattern instead
        match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@", uri)
        if not match:
            return uri, UriCredentials()
        user, _, password = match.group(2).partition(":")
        return match.group(1) + uri[match.end() :], UriCredentials(
            unquote(user) or None, unquote(password) or None
        )
    username = password = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, has_password, secret = userinfo.partition(":")
        username, password = unquote(user) or None, (unquote(secret) or None) if has_password else None
    kept, params = [], []
    for segment in parts.query.split("&") if parts.query else []:
        name, _, value = segment.partition("=")
        if name and is_secret_query_param(name):
            params.append((unquote(name), unquote(value)))
        else:
            kept.append(segment)
    found = UriCredentials(username, password, tuple(params))
    if not found and netloc == parts.netloc:
        return uri, found
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(kept))), found


def scrub_uri(uri: str) -> str:
    """``uri`` without its credentials."""
    return split_credentials(uri)[0]


def scrub_text(text: str) -> str:
    """``text`` with every URI in it replaced by the URI without credentials (for error messages)."""
    return _URI_IN_TEXT.sub(lambda match: scrub_uri(match.group(0)), text)


def secret_value_kind(value: Any) -> str | None:
    """What secret a literal value looks like (``"an AWS access key id"``), or ``None``."""
    if not isinstance(value, str):
        return None
    for kind, pattern in SECRET_VALUE_PATTERNS:
        if pattern.search(value):
            return kind
    if any(split_credentials(uri)[1].secrets for uri in _URI_IN_TEXT.findall(value)):
        return "a URI with credentials"
    return None


def connection_env(conn: Any, names: Mapping[str, str]) -> dict[str, str]:
    """Environment variables filled from an Airflow connection's fields, empty ones left out.

    :param conn: the connection.
    :param names: which variable each source fills: ``login``, ``password`` or a key of the extras.
    """
    extra = conn.extra_dejson
    env: dict[str, str] = {}
    for source, variable in names.items():
        value = getattr(conn, source) if source in ("login", "password") else extra.get(source)
        if value:
            env[variable] = str(value)
    return env


def mask_credentials(found: UriCredentials | Iterable[str]) -> None:
    """Register secret values with Airflow's secrets masker (task log, rendered fields)."""
    values = found.secrets if isinstance(found, UriCredentials) else [v for v in found if v]
    if not values:
        return
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - every supported Airflow has it
        return
    for value in values:
        mask_secret(value)


def refuse_uri_credentials(uri: str, argument: str, task_id: str | None = None) -> None:
    """Refuse a URI argument that carries credentials.

    The one-line :class:`AiProviderConfigError` shows the URI without its credentials and how to
    pass them instead; the credentials themselves are masked first.
    """
    clean, found = split_credentials(uri)
    if found:
        mask_credentials(found)
        prefix = f"{task_id}: " if task_id else ""
        raise AiProviderConfigError(
            f"{prefix}{argument}={clean!r} carries credentials ({found.describe()}), which "
            f"would reach the job spec, the task log and the pod; {HOW_TO_PASS}"
        )
