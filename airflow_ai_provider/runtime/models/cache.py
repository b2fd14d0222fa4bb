"""The worker's cache of downloaded model versions: keyed, checksummed, filled atomically, bounded in size.

One folder (``[ai_provider] model_cache_dir``, passed as ``$AI_PROVIDER_MODEL_CACHE``) is shared by
every shard and task on a worker, or by the pods that mount the same volume. Layout::

    <root>/<key>/model/...        the model version's artifacts, as MLflow downloaded them
    <root>/<key>/manifest.json    key fields, sha256 and size of every file
    <root>/.fill-<key>-<random>/  a fill under way (renamed to <root>/<key> when complete)
    <root>/.locks/<key>.lock      flock: exclusive while filling, shared while a job loads the entry

The key is a digest of the registry (without credentials), the model name and version, and the
version's source and run, so that a registry re-created with the same names cannot hand out another
model's files. Each hit checks every file against the manifest; a mismatch refills the entry. A second
shard waits (at most :data:`LOCK_WAIT_S`) for the first one's download instead of downloading again.
After a fill, least recently used entries are removed until the cache is under its size limit; an
entry another job holds is never removed, nor are the fills of other jobs under way.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_ai_provider.runtime.contract import MODEL_CACHE_ENV
from airflow_ai_provider.runtime.contract.errors import JobInputError

#: Seconds a job waits for another job's fill of the same entry before downloading on its own.
LOCK_WAIT_S = 300.0
_POLL_S = 0.05
_MANIFEST = "manifest.json"
_MODEL = "model"
_FILL_PREFIX = ".fill-"
_CHUNK = 1 << 20
#: The size limit when ``$AI_PROVIDER_MODEL_CACHE`` names none.
DEFAULT_MAX_MB = 2048


@dataclass(frozen=True)
class CacheSettings:
    """Where the cache lives and how large it may grow."""

    root: Path
    max_bytes: int

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> CacheSettings | None:
        """The settings in ``$AI_PROVIDER_MODEL_CACHE`` (``<folder>`` or ``<folder>:<max MB>``); ``None``
        when it is unset or empty (no cache).

        :raises JobInputError: the folder is not absolute or the size is not a positive number.
        """
        raw = (os.environ if environ is None else environ).get(MODEL_CACHE_ENV, "").strip()
        if not raw:
            return None
        folder, max_mb = raw, str(DEFAULT_MAX_MB)
        head, sep, tail = raw.rpartition(":")
        if sep and tail.strip().isdigit():
            folder, max_mb = head, tail.strip()
        if not os.path.isabs(folder) or int(max_mb) <= 0:
            raise JobInputError(
                f"invalid {MODEL_CACHE_ENV} {raw!r}: expected an absolute folder, optionally followed by "
                "':<max MB>' with a positive size"
            )
        return cls(Path(folder), int(max_mb) * 1024 * 1024)

    def to_env(self) -> str:
        """The value of ``$AI_PROVIDER_MODEL_CACHE`` for these settings."""
        return f"{self.root}:{self.max_bytes // (1024 * 1024)}"


@dataclass(frozen=True)
class CacheKey:
    """What identifies one model version's files: registry, name, version, source and run."""

    registry: str
    name: str
    version: str
    source: str
    run_id: str

    @property
    def digest(self) -> str:
        fields = [without_credentials(self.registry), self.name, self.version, self.source, self.run_id]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:40]


@dataclass
class CachedModel:
    """A cache entry's model folder, held (shared lock) until :meth:`release`, and how it was got."""

    path: str
    status: str  # "hit" or "miss"
    download_s: float
    _lock: IO[bytes] | None = None

    def release(self) -> None:
        """Let other jobs evict or refill the entry again."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def without_credentials(uri: str) -> str:
    """``uri`` without a ``user:password@`` part."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class ModelCache:
    """The cache folder of :class:`CacheSettings`."""

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self.root = settings.root

    def get(self, key: CacheKey, download: Callable[[str], str]) -> CachedModel | None:
        """The entry of ``key``, filled with ``download(folder) -> model path`` when missing or damaged.

        Returns ``None`` when the cache cannot be used (folder not writable, another job's fill did not
        end within :data:`LOCK_WAIT_S`): the caller then downloads into its scratch folder as usual.
        Errors of ``download`` itself propagate, and leave no entry.
        """
        try:
            self._prepare()
            lock = self._open_lock(key)
        except OSError:
            return None
        try:
            if not _flock(lock, fcntl.LOCK_SH):
                lock.close()
                return None
            if self._valid(key):
                self._touch(key)
                return CachedModel(str(self._entry(key) / _MODEL), "hit", 0.0, lock)
            fcntl.flock(lock, fcntl.LOCK_UN)  # a shared lock is given up before an exclusive one
            if not _flock(lock, fcntl.LOCK_EX):  # another job fills it: wait for that fill
                lock.close()
                return None
            if self._valid(key):  # filled while this job waited
                _flock(lock, fcntl.LOCK_SH)
                self._touch(key)
                return CachedModel(str(self._entry(key) / _MODEL), "hit", 0.0, lock)
            started = time.perf_counter()
            self._fill(key, download)
            download_s = time.perf_counter() - started
            _flock(lock, fcntl.LOCK_SH)
        except BaseException:
            lock.close()
            raise
        self.evict(keep=key.digest)
        return CachedModel(str(self._entry(key) / _MODEL), "miss", download_s, lock)

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove leftover fills of ended jobs, then least recently used entries until the cache holds at
        most ``max_bytes``; entries held by a job (and ``keep``) stay. Returns the removed keys."""
        entries: list[tuple[float, int, str]] = []
        for child in self._children():
            name = child.name
            if name.startswith(_FILL_PREFIX):
                owner = name[len(_FILL_PREFIX) :].rsplit("-", 1)[0]
                with self._try_exclusive(owner) as free:
                    if free:
                        shutil.rmtree(child, ignore_errors=True)
                continue
            manifest = _read_manifest(child / _MANIFEST)
            if manifest is None:
                continue
            with contextlib.suppress(OSError):
                entries.append(((child / _MANIFEST).stat().st_mtime, int(manifest.get("size", 0)), name))
        total = sum(size for _, size, _ in entries)
        removed: list[str] = []
        for _, size, name in sorted(entries):
            if total <= self.settings.max_bytes:
                break
            if name == keep:
                continue
            with self._try_exclusive(name) as free:
                if not free:
                    continue
                shutil.rmtree(self.root / name, ignore_errors=True)
                total -= size
                removed.append(name)
        return removed

    # --- internals ------------------------------------------------------------------------------

    def _entry(self, key: CacheKey) -> Path:
        return self.root / key.digest

    def _prepare(self) -> None:
        """Create the cache folder (private to this user) and its lock folder; refuse a foreign one."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.root / ".locks").mkdir(mode=0o700, exist_ok=True)
        info = self.root.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise OSError(errno.EPERM, f"model cache {self.root} is not a folder owned by this user")

    def _open_lock(self, digest_or_key: CacheKey | str) -> IO[bytes]:
        digest = digest_or_key if isinstance(digest_or_key, str) else digest_or_key.digest
        return open(self.root / ".locks" / f"{digest}.lock", "ab")

    @contextlib.contextmanager
    def _try_exclusive(self, digest: str) -> Iterator[bool]:
        """Whether no job holds the lock of ``digest``; while ``True``, this process holds it."""
        try:
            lock = self._open_lock(digest)
        except OSError:
            yield False
            return
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            yield True
        finally:
            lock.close()

    def _children(self) -> list[Path]:
        try:
            return [child for child in self.root.iterdir() if child.name != ".locks"]
        except OSError:
            return []

    def _valid(self, key: CacheKey) -> bool:
        """Whether the entry exists, was written for ``key`` and every file matches its checksum."""
        entry = self._entry(key)
        manifest = _read_manifest(entry / _MANIFEST)
        if manifest is None or manifest.get("key") != _key_fields(key):
            return False
        try:
            return _checksums(entry / _MODEL) == manifest.get("files")
        except OSError:
            return False

    def _touch(self, key: CacheKey) -> None:
        with contextlib.suppress(OSError):
            os.utime(self._entry(key) / _MANIFEST)

    def _fill(self, key: CacheKey, download: Callable[[str], str]) -> None:
        """Download into a fill folder, write the manifest, and rename it into place (the exclusive lock
        is held: any fill folder of this key is a killed fill's leftover, and any entry is damaged)."""
        for child in self._children():
            if child.name.startswith(f"{_FILL_PREFIX}{key.digest}-"):
                shutil.rmtree(child, ignore_errors=True)
        fill = self.root / f"{_FILL_PREFIX}{key.digest}-{secrets.token_hex(4)}"
        try:
            fill.mkdir(mode=0o700)
            local = Path(download(str(fill / "download")))
            local.rename(fill / _MODEL)
            files = _checksums(fill / _MODEL)
            manifest = {"key": _key_fields(key), "files": files, "size": _size(fill / _MODEL)}
            (fill / _MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
            shutil.rmtree(fill / "download", ignore_errors=True)
            entry = self._entry(key)
            if entry.exists():
                shutil.rmtree(entry)
            os.rename(fill, entry)
        finally:
            if fill.exists():
                shutil.rmtree(fill, ignore_errors=True)


def _flock(lock: IO[bytes], mode: int, wait: float | None = None) -> bool:
    """Take ``mode`` on ``lock``, waiting at most ``wait`` (default :data:`LOCK_WAIT_S`) seconds."""
    deadline = time.monotonic() + (LOCK_WAIT_S if wait is None else wait)
    while True:
        try:
            fcntl.flock(lock, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)


def _key_fields(key: CacheKey) -> list[str]:
    return [without_credentials(key.registry), key.name, key.version, key.source, key.run_id]


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by path relative to it."""
    sums: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
            sums[path.relative_to(folder).as_posix()] = digest.hexdigest()
    if not sums:
        raise OSError(errno.ENOENT, f"no files in {folder}")
    return sums


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
