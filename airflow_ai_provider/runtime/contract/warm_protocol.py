"""The warm runtime's wire protocol: length-prefixed JSON messages and passed fds over a Unix socket.

Shared by the worker's client (:mod:`airflow_ai_provider.execution.warm_runtime`) and the runtime's
server (:mod:`airflow_ai_provider.runtime.warm_server`); standard library only.

A message is a 4-byte big-endian length and that many bytes of UTF-8 JSON. A request carries the
job's standard input, output and error as three fds (``SCM_RIGHTS``) sent with its first bytes:

- request: ``{"version": 1, "argv": [...], "env": {...}, "cwd": "..."}``, ``argv`` being the
  runtime's arguments after ``-m airflow_ai_provider.runtime``;
- replies: ``{"pid": N, "server_pid": M}`` once the job is forked, then
  ``{"exit_code": C, "rusage": {"ru_utime": ..., "ru_stime": ..., "ru_maxrss": ...}}`` once it was
  reaped; or ``{"refused": "<reason>"}`` instead of both (:data:`REFUSED_STALE`: this server's files
  changed, start a new one).

The connection stays open while the job runs: when the client's end closes first (the worker died),
the server kills the job's process group.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 1
#: Largest message either side accepts (a request holds the whole job environment).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: The refusal that means "this server is out of date: start a new one".
REFUSED_STALE = "stale"
#: The usage fields an exit reply carries (``resource.struct_rusage`` names).
RUSAGE_FIELDS = ("ru_utime", "ru_stime", "ru_maxrss", "ru_minflt", "ru_majflt", "ru_nvcsw", "ru_nivcsw")
_HEADER = struct.Struct(">I")


class WarmProtocolError(Exception):
    """A peer of the warm runtime sent something that is not a message of this protocol."""


def send_message(sock: socket.socket, payload: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    """Send ``payload`` as one message; ``fds`` travel with its length prefix."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE_BYTES:
        raise WarmProtocolError(f"message of {len(body)} bytes is over {MAX_MESSAGE_BYTES}")
    header = _HEADER.pack(len(body))
    if fds:
        sent = socket.send_fds(sock, [header], list(fds))
        if sent != len(header):
            sock.sendall(header[sent:])
    else:
        sock.sendall(header)
    sock.sendall(body)


def recv_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """Read one message and the fds sent with it; the caller owns (and closes) the fds.

    :raises WarmProtocolError: the peer closed the connection or sent no JSON object.
    """
    header = b""
    fds: list[int] = []
    try:
        while len(header) < _HEADER.size:
            if max_fds and not header:
                chunk, got, _, _ = socket.recv_fds(sock, _HEADER.size, max_fds)
                fds.extend(got)
            else:
                chunk = sock.recv(_HEADER.size - len(header))
            if not chunk:
                raise WarmProtocolError("the connection closed before a message")
            header += chunk
        (size,) = _HEADER.unpack(header)
        if size > MAX_MESSAGE_BYTES:
            raise WarmProtocolError(f"message of {size} bytes is over {MAX_MESSAGE_BYTES}")
        body = bytearray()
        while len(body) < size:
            chunk = sock.recv(min(size - len(body), 1 << 20))
            if not chunk:
                raise WarmProtocolError("the connection closed in the middle of a message")
            body += chunk
        payload = json.loads(body)
    except (WarmProtocolError, ValueError, OSError):
        close_fds(fds)
        raise
    if not isinstance(payload, dict):
        close_fds(fds)
        raise WarmProtocolError(f"message is not a JSON object: {type(payload).__name__}")
    return payload, fds


def close_fds(fds: Iterable[int]) -> None:
    """Close every fd of ``fds`` that is still open."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def job_request(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> dict[str, Any]:
    """The request that starts ``python -m airflow_ai_provider.runtime <argv>`` in ``env`` and ``cwd``."""
    return {"version": PROTOCOL_VERSION, "argv": list(argv), "env": dict(env), "cwd": cwd}


def check_request(payload: Mapping[str, Any]) -> str:
    """What is wrong with a request (``""`` when nothing is)."""
    if payload.get("version") != PROTOCOL_VERSION:
        return f"protocol version {payload.get('version')!r} is not {PROTOCOL_VERSION}"
    argv, env, cwd = payload.get("argv"), payload.get("env"), payload.get("cwd")
    if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
        return "argv is not a list of strings"
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        return "env is not an object of strings"
    if not isinstance(cwd, str) or not cwd:
        return "cwd is not a folder"
    return ""


def rusage_reply(exit_code: int, rusage: Any) -> dict[str, Any]:
    """The exit reply for a reaped job (``rusage`` as ``os.wait4`` returns it)."""
    return {"exit_code": exit_code, "rusage": {name: getattr(rusage, name) for name in RUSAGE_FIELDS}}


def files_fingerprint(paths: Iterable[str]) -> str:
    """A digest of the size and modification time of each file of ``paths`` (a missing file counts)."""
    digest = hashlib.sha256()
    for path in sorted(set(paths)):
        try:
            info = os.stat(path)
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()[:16]


def package_files(package_dir: str | os.PathLike[str]) -> list[str]:
    """The ``.py`` files of the package folder ``package_dir``, its sub-packages included."""
    return [str(path) for path in Path(package_dir).rglob("*.py") if "__pycache__" not in path.parts]


def private_folder(path: Path) -> Path:
    """Create ``path`` (mode 0700, in an existing folder) if needed and check that it is a folder of
    this user only.

    :raises WarmProtocolError: it is not a folder, or another user owns it.
    """
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise WarmProtocolError(f"{path} is not a folder owned by this user: remove it")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path
