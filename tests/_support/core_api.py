"""Airflow's Core API app, in-process, built afresh for the configuration in force.

Airflow keeps per process what an app signs and checks JWT tokens with (class-level caches of the
auth managers) and the auth manager itself. A test that set another JWT secret or auth manager
settings would leave them behind for the next app: its own tokens then fail the signature check
(403), and a human's answer to a HITL task never lands.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def forget_api_auth() -> None:
    """Drop the cached auth manager, app and JWT signer and validator of this process."""
    from airflow.api_fastapi.app import purge_cached_app
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

    BaseAuthManager._get_token_signer.cache_clear()
    BaseAuthManager._get_token_validator.cache_clear()
    purge_cached_app()


@contextmanager
def in_process_core_api() -> Iterator[Any]:
    """A ``TestClient`` of a new Core API app (``create_app()``) under the settings in force now;
    what it cached is dropped again afterwards."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    forget_api_auth()
    try:
        yield TestClient(create_app())
    finally:
        forget_api_auth()
