"""The worker's model cache with a real MLflow server and a registered scikit-learn model: misses, hits,
one fill for concurrent shards, corrupted entries, the size bound and killed fills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_ai_provider.runtime.contract import MODEL_CACHE_ENV
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import JobSpec, MlflowRef
from airflow_ai_provider.runtime.models import cache, loading
from tests._support.churn_sample import ID_COLUMN, make_customers, train_and_register
from tests._support.system import run_at_once
from tests.unit.runtime.conftest import write_parquet

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def churn(mlflow_server) -> dict[str, Any]:
    return train_and_register(mlflow_server.url, "cache-churn", alias=None, n_rows=2000, max_iter=5)


@pytest.fixture
def ref(churn) -> ModelReference:
    return ModelReference(churn["name"], str(churn["version"]))


@pytest.fixture
def mlflow_ref(mlflow_server) -> MlflowRef:
    return MlflowRef(tracking_uri=mlflow_server.url)


@pytest.fixture
def downloads(monkeypatch) -> list[str]:
    """Counts the real downloads from the server (each call still downloads)."""
    calls: list[str] = []
    real = loading._download

    def counted(ref: ModelReference, mlflow_ref: MlflowRef, folder: str) -> str:
        calls.append(folder)
        return real(ref, mlflow_ref, folder)

    monkeypatch.setattr(loading, "_download", counted)
    return calls


def _key(
    ref: ModelReference, mlflow_ref: MlflowRef, churn: dict[str, Any], source: str = ""
) -> cache.CacheKey:
    return cache.CacheKey(mlflow_ref.tracking_uri, ref.name, ref.version, source or "src", churn["run_id"])


def _downloader(ref: ModelReference, mlflow_ref: MlflowRef) -> Callable[[str], str]:
    """The download :func:`~.loading.load_model` gives the cache (after its version lookup)."""
    loading.registry_version(ref, mlflow_ref)
    return lambda folder: loading._download(ref, mlflow_ref, folder)


def test_second_load_is_a_hit_that_downloads_nothing(ref, mlflow_ref, downloads, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()

    first = loading.load_model(ref, mlflow_ref, str(tmp_path / "a"), [])
    second = loading.load_model(ref, mlflow_ref, str(tmp_path / "b"), [])

    assert (first.info["model_cache"], second.info["model_cache"]) == ("miss", "hit")
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700, "the cache is private to its user"
    assert len(downloads) == 1 and second.info["download_s"] == 0
    assert not list((tmp_path / "b").iterdir()), "a hit writes nothing to the scratch folder"
    sample = make_customers(50, seed=3, with_label=False).drop(columns=[ID_COLUMN])
    assert list(first.pyfunc.predict(sample)) == list(second.pyfunc.predict(sample))


def test_without_a_cache_the_model_is_downloaded_to_scratch_each_time(ref, mlflow_ref, downloads, tmp_path):
    loaded = loading.load_model(ref, mlflow_ref, str(tmp_path), [])

    assert loaded.info["model_cache"] == "off" and len(downloads) == 1
    assert list(tmp_path.iterdir()), "the model was downloaded into the scratch folder"


def test_concurrent_loads_of_one_version_fill_the_cache_once(ref, mlflow_ref, churn, downloads, tmp_path):
    store = cache.ModelCache(cache.CacheSettings(tmp_path / "cache", 1 << 30))
    key = _key(ref, mlflow_ref, churn)
    got: list[cache.CachedModel | None] = []

    def load() -> None:
        entry = store.get(key, _downloader(ref, mlflow_ref))
        got.append(entry)
        if entry is not None:
            entry.release()

    run_at_once(load, 4)

    assert len(downloads) == 1
    assert sorted(entry.status for entry in got if entry) == ["hit", "hit", "hit", "miss"]
    assert len({entry.path for entry in got if entry}) == 1


def test_shards_started_together_download_the_version_once(churn, mlflow_server, tmp_path):
    source = write_parquet(
        tmp_path / "in" / "data.parquet", make_customers(2000, seed=5, with_label=False), row_group_size=500
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_PROVIDER_", "MLFLOW_"))}
    env[MODEL_CACHE_ENV] = str(tmp_path / "cache")
    shards = []
    for index in range(2):
        spec = JobSpec.from_dict(
            {
                "job": "infer",
                "model": {"name": churn["name"], "version": str(churn["version"])},
                "inputs": [f"file://{source}"],
                "output": str(tmp_path / "out"),
                "mlflow": {"tracking_uri": mlflow_server.url},
                "params": {"id_columns": [ID_COLUMN]},
                "shard": {"index": index, "count": 2},
            }
        )
        result = tmp_path / f"result-{index}.json"
        command = [
            sys.executable,
            "-m",
            "airflow_ai_provider.runtime",
            "infer",
            "--spec-json",
            spec.to_json(),
        ]
        shards.append((result, subprocess.Popen([*command, "--result-path", str(result)], cwd=REPO, env=env)))
    for _, process in shards:
        assert process.wait(timeout=180) == 0
    results = [json.loads(path.read_text()) for path, _ in shards]

    assert sorted(r["model"]["model_cache"] for r in results) == ["hit", "miss"]
    assert [r["rows_out"] for r in results] == [1000, 1000]
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".fill")]


def test_a_corrupted_entry_is_detected_and_refilled(ref, mlflow_ref, downloads, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    loading.load_model(ref, mlflow_ref, str(tmp_path), [])
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    damaged = next(path for path in (entry / "model").rglob("*") if path.suffix in (".pkl", ".skops"))
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")

    again = loading.load_model(ref, mlflow_ref, str(tmp_path), [])

    assert again.info["model_cache"] == "miss" and len(downloads) == 2
    assert loading.load_model(ref, mlflow_ref, str(tmp_path), []).info["model_cache"] == "hit"


def test_eviction_keeps_the_cache_under_its_size_limit_and_spares_held_entries(
    ref, mlflow_ref, churn, tmp_path
):
    root = tmp_path / "cache"
    first = cache.ModelCache(cache.CacheSettings(root, 1 << 30)).get(
        _key(ref, mlflow_ref, churn, "v0"), _downloader(ref, mlflow_ref)
    )
    assert first is not None
    entry_size = json.loads((Path(first.path).parent / "manifest.json").read_text())["size"]
    held = first  # stays held: never evicted while a job loads it
    store = cache.ModelCache(cache.CacheSettings(root, int(entry_size * 2.5)))
    for name in ("v1", "v2", "v3"):
        entry = store.get(_key(ref, mlflow_ref, churn, name), _downloader(ref, mlflow_ref))
        assert entry is not None and entry.status == "miss"
        entry.release()
        time.sleep(0.01)  # distinct access times

    kept = {p.name for p in root.iterdir() if not p.name.startswith(".")}
    digests = {name: _key(ref, mlflow_ref, churn, name).digest for name in ("v0", "v1", "v2", "v3")}
    assert kept == {digests["v0"], digests["v3"]}, "the held entry and the newest stay; v1, v2 go"
    held.release()  # now the least recently used entry, it goes first under a tighter limit
    assert cache.ModelCache(cache.CacheSettings(root, int(entry_size * 1.5))).evict() == [digests["v0"]]
    assert {p.name for p in root.iterdir() if not p.name.startswith(".")} == {digests["v3"]}


def test_a_killed_fill_leaves_a_temp_folder_that_the_next_fill_removes(ref, mlflow_ref, churn, tmp_path):
    root = tmp_path / "cache"
    stuck = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from airflow_ai_provider.runtime.models import cache\n"
        "key = cache.CacheKey('r', 'stuck', '1', 's', 'run')\n"
        "def download(folder):\n"
        "    Path(folder).mkdir(parents=True)\n"
        "    (Path(folder) / 'half').write_bytes(b'x' * 1000)\n"
        "    print('downloading', flush=True)\n"
        "    time.sleep(600)\n"
        f"cache.ModelCache(cache.CacheSettings(Path({str(root)!r}), 1 << 30)).get(key, download)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", stuck], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "downloading"
        assert [p.name for p in root.iterdir() if p.name.startswith(".fill-")]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    entry = cache.ModelCache(cache.CacheSettings(root, 1 << 30)).get(
        _key(ref, mlflow_ref, churn), _downloader(ref, mlflow_ref)
    )

    assert entry is not None and entry.status == "miss"
    assert not [p for p in root.iterdir() if p.name.startswith(".fill-")]


def test_a_hit_imports_no_mlflow_until_the_pyfunc_predicts(churn, mlflow_server, tmp_path):
    code = f"""
import os, sys
os.environ[{MODEL_CACHE_ENV!r}] = {str(tmp_path / "cache")!r}
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import MlflowRef
from airflow_ai_provider.runtime.models import loading
ref = ModelReference({churn["name"]!r}, {str(churn["version"])!r})
loaded = loading.load_model(ref, MlflowRef(tracking_uri={mlflow_server.url!r}), {str(tmp_path / "s")!r}, [])
print(loaded.info["model_cache"], "mlflow" in sys.modules, type(loaded.pyfunc.get_raw_model()).__name__)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_PROVIDER_", "MLFLOW_"))}
    run = [sys.executable, "-c", code]
    filled = subprocess.run(run, cwd=REPO, env=env, check=True, capture_output=True, text=True, timeout=120)
    again = subprocess.run(run, cwd=REPO, env=env, check=True, capture_output=True, text=True, timeout=120)

    assert filled.stdout.split()[:2] == ["miss", "True"]
    assert again.stdout.split() == ["hit", "False", "HistGradientBoostingClassifier"]


def test_a_registry_that_does_not_answer_fails_a_cached_load_once_and_retryably(tmp_path, monkeypatch):
    import socket

    from airflow_ai_provider.runtime.contract.errors import JobServiceError

    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("AI_PROVIDER_SERVICE_TIMEOUT", "3")
    asked_again: list[str] = []
    monkeypatch.setattr(loading, "registry_version", lambda *args: asked_again.append("client"))
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(JobServiceError) as caught:
            loading.load_model(ModelReference("churn", "1"), MlflowRef(tracking_uri=url), str(tmp_path), [])

    assert f"cannot look up model 'churn': MLflow at {url} did not answer within 3 s" in str(caught.value)
    assert caught.value.retryable and not asked_again, "no second wait through MLflow's client"
    assert time.monotonic() - started < 30
