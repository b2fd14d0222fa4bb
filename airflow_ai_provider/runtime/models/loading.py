"""Loading a pinned model version from the MLflow registry as a pyfunc model, with one-line errors.

The runtime only reads the registry: tracking and registry URIs come from the job spec, credentials
(``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``) from the environment, where
MLflow reads them itself.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from airflow_ai_provider.runtime import mlflow_rest, tracking
from airflow_ai_provider.runtime.contract.errors import (
    JobInputError,
    ModelLoadError,
    error_chain,
    one_line,
)
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import MlflowRef
from airflow_ai_provider.runtime.models import cache, light
from airflow_ai_provider.runtime.scratch import storage_full


@dataclass
class LoadedModel:
    """A pyfunc model with what the result reports about it."""

    pyfunc: Any
    info: dict[str, Any]
    flavors: dict[str, Any] = field(default_factory=dict)

    def input_schema(self) -> Any:
        """The model signature's input schema (``None`` for a model logged without one)."""
        return self.pyfunc.metadata.get_input_schema()


def load_model(
    ref: ModelReference, mlflow_ref: MlflowRef, scratch_dir: str, trusted_types: list[str]
) -> LoadedModel:
    """Load ``models:/<name>/<version>`` as a pyfunc model, with one-line errors for what can go wrong.

    The version is looked up first so that an unknown model or version is named as such. The files
    come from the worker's model cache when ``$AI_PROVIDER_MODEL_CACHE`` names one (:mod:`.cache`),
    else they are downloaded into ``scratch_dir`` (a full disk there is a one-line
    :class:`~.scratch.StorageFullError` naming it). A cache hit of a scikit-learn model imports no
    MLflow: one REST call looks the version up and :mod:`.light` loads the estimator. ``trusted_types``
    are added to the skops trusted types of a scikit-learn model saved with skops (needed when its
    ``MLmodel`` lacks them). ``info`` says ``model_cache`` (``hit``, ``miss`` or ``off``) and how long
    the download and the deserialization took.
    """
    settings = cache.CacheSettings.from_env()
    version = _light_version(ref, mlflow_ref) if settings is not None else None
    if version is None:
        version = registry_version(ref, mlflow_ref)
    run_id = str(getattr(version, "run_id", "") or "")
    cached = None
    if settings is not None:
        key = cache.CacheKey(
            mlflow_ref.registry_uri or mlflow_ref.tracking_uri,
            ref.name,
            str(ref.version),
            str(getattr(version, "source", "") or ""),
            run_id,
        )
        cached = cache.ModelCache(settings).get(key, lambda folder: _download(ref, mlflow_ref, folder))
    os.makedirs(scratch_dir, exist_ok=True)
    started = time.perf_counter()
    try:
        if cached is not None:
            local, download_s = cached.path, cached.download_s
        else:
            local = _download(ref, mlflow_ref, scratch_dir)
            download_s = time.perf_counter() - started
        started = time.perf_counter()
        light_model = _load_light(local, ref, scratch_dir, trusted_types) if cached else None
        if light_model is not None:
            pyfunc, flavors = light_model
        else:
            import mlflow

            local, flavors = _trust_types(local, trusted_types, ref, scratch_dir, in_place=cached is None)
            pyfunc = _deserialize(lambda: mlflow.pyfunc.load_model(local), ref)
        deserialize_s = time.perf_counter() - started
    except BaseException:
        if cached is not None:
            cached.release()
        raise
    if cached is not None:
        if light_model is not None:  # its first pyfunc predict reads the entry: hold it while it lives
            pyfunc.cache_entry = cached
        else:
            cached.release()
    info = {
        "name": ref.name,
        "version": str(ref.version),
        "alias": ref.alias,
        "uri": ref.uri,
        "run_id": run_id or pyfunc.metadata.run_id,
        "model_cache": "off" if settings is None else cached.status if cached is not None else "miss",
        "download_s": round(download_s, 3),
        "deserialize_s": round(deserialize_s, 3),
    }
    return LoadedModel(pyfunc, info, flavors)


def _light_version(ref: ModelReference, mlflow_ref: MlflowRef) -> Any:
    """The version's ``source`` and ``run_id`` through one REST call (no MLflow import); ``None`` when
    the registry answered anything but the record (then :func:`registry_version` asks, and names the
    problem). A registry that does not answer is a retryable :class:`JobServiceError`."""
    if not str(ref.version).isdigit():
        return None
    tracking.probe_servers(mlflow_ref)
    try:
        record = mlflow_rest.model_version(mlflow_ref, ref.name, str(ref.version))
    except mlflow_rest.RestError as err:  # not asked again through MLflow's client
        what = f"cannot look up model {ref.name!r}"
        if err.kind == mlflow_rest.TLS:  # configuration: bad input
            raise tracking.mlflow_error(
                err, what, mlflow_ref.registry_uri or mlflow_ref.tracking_uri
            ) from None
        raise mlflow_rest.unavailable(what, mlflow_ref.registry_uri or mlflow_ref.tracking_uri, err) from None
    if record is None:
        return None
    return SimpleNamespace(source=record.get("source"), run_id=record.get("run_id"))


def _load_light(
    local: str, ref: ModelReference, scratch_dir: str, trusted_types: list[str]
) -> tuple[Any, dict[str, Any]] | None:
    """A cached scikit-learn model loaded by :mod:`.light`, and its flavors; ``None`` for other models.

    Its pyfunc ``predict`` loads MLflow's pyfunc model from the entry (with ``trusted_types`` in its
    ``MLmodel``, see :func:`_trust_types`) the first time it is called.
    """
    mlmodel = light.read_mlmodel(local)
    conf = light.sklearn_conf(mlmodel) if mlmodel is not None else None
    if conf is None:
        return None
    flavors = dict(mlmodel["flavors"])
    if trusted_types and conf.get("serialization_format") == "skops":
        flavors["sklearn"] = {**conf, "skops_trusted_types": light.trusted_skops_types(conf, trusted_types)}

    def full_pyfunc() -> Any:
        import mlflow

        folder, _ = _trust_types(local, trusted_types, ref, scratch_dir, in_place=False)
        return _deserialize(lambda: mlflow.pyfunc.load_model(folder), ref)

    pyfunc = _deserialize(lambda: light.load_sklearn(local, mlmodel, conf, trusted_types, full_pyfunc), ref)
    return pyfunc, flavors


def _download(ref: ModelReference, mlflow_ref: MlflowRef, folder: str) -> str:
    """Download the version's artifacts into ``folder``; return the model's local path."""
    import mlflow

    tracking.configure_mlflow(mlflow_ref)
    try:
        return mlflow.artifacts.download_artifacts(
            artifact_uri=ref.uri,
            dst_path=folder,
            tracking_uri=mlflow_ref.tracking_uri,
            registry_uri=mlflow_ref.registry_uri or mlflow_ref.tracking_uri,
        )
    except Exception as err:  # storage and HTTP errors of every artifact store
        full = storage_full(
            err,
            f"the download of model {ref.name!r} version {ref.version} to {folder}",
            "free space there or set scratch_dir to a folder with room",
        )
        raise full or tracking.mlflow_error(
            err, f"cannot download model {ref.name!r} version {ref.version}", mlflow_ref.tracking_uri
        ) from None


def _deserialize(load: Callable[[], Any], ref: ModelReference) -> Any:
    """``load()`` (a flavor's loader), with one-line errors."""
    try:
        return load()
    except ImportError as err:
        raise ModelLoadError(
            f"model {ref.name!r} version {ref.version} needs a package missing from the runtime: {one_line(err)}"
        ) from None
    except Exception as err:  # flavor loaders raise anything
        untrusted = _untrusted_types_message(err)
        if untrusted:
            raise ModelLoadError(
                f"model {ref.name!r} version {ref.version} is saved with skops and {untrusted}: if you trust "
                "them, list them in skops_trusted_types"
            ) from None
        raise ModelLoadError(
            f"cannot load model {ref.name!r} version {ref.version}: {one_line(err)}"
        ) from None


def registry_version(ref: ModelReference, mlflow_ref: MlflowRef) -> Any:
    """The registry's ``ModelVersion`` of ``ref``, after probing the servers and pointing MLflow at them.

    :raises JobInputError: the version is not a number, or the model or version does not exist.
    :raises JobServiceError: the tracking server or registry did not answer.
    """
    if not str(ref.version).isdigit():
        raise JobInputError(
            f"model version must be a registry version number, got {ref.version!r} for model {ref.name!r}"
        )
    tracking.probe_servers(mlflow_ref)
    tracking.configure_mlflow(mlflow_ref)
    client = tracking.client(mlflow_ref)
    what = f"cannot look up model {ref.name!r}"
    try:
        return client.get_model_version(ref.name, str(ref.version))
    except Exception as err:  # MLflow and transport errors
        if tracking.error_code(err) != "RESOURCE_DOES_NOT_EXIST":
            raise tracking.mlflow_error(err, what, mlflow_ref.tracking_uri) from None
    registry = mlflow_ref.registry_uri or mlflow_ref.tracking_uri
    try:
        client.get_registered_model(ref.name)
    except Exception as err:  # MLflow and transport errors
        missing = f"registered model {ref.name!r} does not exist in {registry}"
        raise tracking.mlflow_error(err, what, mlflow_ref.tracking_uri, missing) from None
    raise JobInputError(f"model {ref.name!r} has no version {ref.version} in {registry}")


def _trust_types(
    local_path: str, trusted_types: list[str], ref: ModelReference, scratch_dir: str, *, in_place: bool
) -> tuple[str, dict[str, Any]]:
    """Add ``trusted_types`` to a skops-saved scikit-learn model's flavor config; return the folder to
    load and the flavors.

    With ``in_place`` the ``MLmodel`` is rewritten where it is; otherwise (a cache entry, which must
    stay as its checksums say) the model is loaded from a folder in ``scratch_dir`` that links every
    file of ``local_path`` but holds its own ``MLmodel``.
    """
    from mlflow.models import Model

    mlmodel_path = os.path.join(local_path, "MLmodel")
    try:
        model = Model.load(mlmodel_path)
    except Exception as err:  # missing or broken MLmodel
        raise JobInputError(
            f"model {ref.name!r} version {ref.version} has no valid MLmodel in its artifacts: {one_line(err)}"
        ) from None
    sklearn = model.flavors.get("sklearn")
    if trusted_types and sklearn and sklearn.get("serialization_format") == "skops":
        sklearn["skops_trusted_types"] = light.trusted_skops_types(sklearn, trusted_types)
        if not in_place:
            overlay = tempfile.mkdtemp(prefix="ai-model-", dir=scratch_dir)
            for name in os.listdir(local_path):
                if name != "MLmodel":
                    os.symlink(os.path.join(local_path, name), os.path.join(overlay, name))
            local_path, mlmodel_path = overlay, os.path.join(overlay, "MLmodel")
        model.save(mlmodel_path)
    return local_path, dict(model.flavors)


def _untrusted_types_message(err: BaseException) -> str | None:
    """skops' refusal of untrusted types anywhere in ``err``'s cause chain, as a clause of a sentence."""
    for seen in error_chain(err):
        if type(seen).__name__ == "UntrustedTypesFoundException":
            return (
                str(seen)
                .strip()
                .splitlines()[0]
                .rstrip(".")
                .replace("Untrusted types found", "references untrusted types")
            )
    return None
