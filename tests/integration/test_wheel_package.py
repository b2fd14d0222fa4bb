"""The built wheel carries the provider's metadata, entry points, licences and only the package; Airflow
lists its integrations with their how-to guides."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

from airflow_ai_provider import __version__

TREE = Path(__file__).resolve().parents[2]
DOCUMENTATION = "https://airflow-ai-provider.github.io/airflow-ai-provider/"
REPOSITORY = "https://github.com/airflow-ai-provider/airflow-ai-provider"
DIST_INFO = f"airflow_ai_provider-{__version__}.dist-info"


def _source() -> Path:
    """The checkout to build: this tree, or (scripts/test_newest.sh runs the tests from a copy without
    the package) the checkout in ``RUNTIME_SOURCE``."""
    for root in (TREE, Path(os.environ.get("RUNTIME_SOURCE", TREE))):
        if (root / "airflow_ai_provider" / "__init__.py").is_file() and (root / "pyproject.toml").is_file():
            return root
    pytest.skip("no checkout with the package to build: run from the repository or set RUNTIME_SOURCE")


def _uv(source: Path) -> str:
    for candidate in (source / ".tools" / "bin" / "uv", os.environ.get("UV"), shutil.which("uv")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.skip("uv is not installed: run scripts/bootstrap.sh (it installs .tools/bin/uv)")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    source = _source()
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [_uv(source), "build", "--wheel", "--quiet", "--out-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"uv build failed:\n{done.stderr[-3000:]}"
    (built,) = out.glob("*.whl")
    assert built.name == f"airflow_ai_provider-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(built) as archive:
        yield archive


@pytest.fixture(scope="module")
def metadata(wheel: zipfile.ZipFile) -> Message:
    return Parser().parsestr(wheel.read(f"{DIST_INFO}/METADATA").decode())


def test_wheel_metadata_names_the_provider_its_version_classifiers_and_urls(metadata: Message):
    from packaging.specifiers import SpecifierSet

    assert metadata["Name"] == "airflow-ai-provider"
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert sorted(metadata.get_all("License-File")) == ["LICENSE", "NOTICE"]
    assert SpecifierSet(metadata["Requires-Python"]) == SpecifierSet(">=3.11,<3.14")
    classifiers = metadata.get_all("Classifier")
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= set(classifiers)
    assert {"Programming Language :: Python :: 3.11", "Typing :: Typed"} <= set(classifiers)
    assert any(classifier.startswith("Topic :: ") for classifier in classifiers)
    assert any(classifier.startswith("Operating System :: ") for classifier in classifiers)
    assert {"airflow", "airflow-provider", "mlflow"} <= set(metadata["Keywords"].split(","))
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL"))
    assert urls["Documentation"] == DOCUMENTATION
    assert urls["Source"] == REPOSITORY
    assert urls["Changelog"] == f"{REPOSITORY}/blob/main/CHANGELOG.md"
    assert urls["Bug Tracker"] == f"{REPOSITORY}/issues"


def test_wheel_metadata_declares_the_runtime_extra_without_airflow(metadata: Message):
    assert metadata.get_all("Provides-Extra") == ["runtime"]
    requirements = metadata.get_all("Requires-Dist")
    runtime = {req.split(";")[0].split("<")[0].split(">")[0] for req in requirements if "extra ==" in req}
    assert {"mlflow-skinny", "pyarrow", "pandas", "great-expectations"} <= runtime
    assert not any(name.startswith("apache-airflow") for name in runtime), "the runtime image has no Airflow"
    assert any(req.startswith("apache-airflow<4,>=") for req in requirements)


def test_wheel_registers_the_provider_and_the_airflow_ai_command(wheel: zipfile.ZipFile):
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read(f"{DIST_INFO}/entry_points.txt").decode())
    assert dict(entry_points["apache_airflow_provider"]) == {
        "provider_info": "airflow_ai_provider.get_provider_info:get_provider_info"
    }
    assert entry_points["console_scripts"]["airflow-ai"] == "airflow_ai_provider.cli:main"


def test_wheel_holds_the_package_with_py_typed_and_the_licences_and_nothing_else(wheel: zipfile.ZipFile):
    names = set(wheel.namelist())
    source = _source()
    assert f"{DIST_INFO}/licenses/LICENSE" in names and f"{DIST_INFO}/licenses/NOTICE" in names
    assert wheel.read(f"{DIST_INFO}/licenses/LICENSE") == (source / "LICENSE").read_bytes()
    assert b"Apache License\n                           Version 2.0" in (source / "LICENSE").read_bytes()
    assert wheel.read(f"{DIST_INFO}/licenses/NOTICE") == (source / "NOTICE").read_bytes()
    assert {
        "airflow_ai_provider/py.typed",
        "airflow_ai_provider/runtime/__main__.py",
        "airflow_ai_provider/runtime/contract/__init__.py",
        "airflow_ai_provider/get_provider_info.py",
    } <= names
    outside = {name for name in names if not name.startswith(("airflow_ai_provider/", f"{DIST_INFO}/"))}
    assert outside == set(), "tests, benchmarks and the DAG templates stay in the repository"
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    modules = {
        path.relative_to(source).as_posix()
        for path in (source / "airflow_ai_provider").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert modules - names == set(), "every module of the package is in the wheel"


def _docs_page(url: str) -> Path | None:
    """The Markdown file of ``docs/`` an MkDocs site serves at ``url`` (directory URLs)."""
    page = url.removeprefix(DOCUMENTATION).strip("/")
    docs = TREE / "docs"
    candidates = [docs / f"{page}.md", docs / page / "README.md", docs / page / "index.md"]
    return next((path for path in candidates if page and path.is_file()), None)


def test_provider_info_validates_against_airflows_schemas_and_links_existing_docs_pages():
    import importlib.resources

    import jsonschema

    from airflow_ai_provider.get_provider_info import get_provider_info

    schemas = importlib.resources.files("airflow")
    info = get_provider_info()
    jsonschema.validate(info, json.loads((schemas / "provider_info.schema.json").read_text()))
    # provider.yaml's schema is the stricter one for integrations (how-to-guide, tags); apply it there.
    provider_yaml = json.loads((schemas / "provider.yaml.schema.json").read_text())
    jsonschema.validate(info["integrations"], provider_yaml["properties"]["integrations"])
    guides = [url for integration in info["integrations"] for url in integration["how-to-guide"]]
    assert guides and all(url.startswith(DOCUMENTATION) for url in guides)
    assert [url for url in guides if _docs_page(url) is None] == [], "each how-to guide is a docs page"


def test_airflow_providers_get_shows_the_integrations_with_their_how_to_guides(tmp_path: Path):
    airflow = Path(sys.executable).parent / "airflow"
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [str(airflow), "providers", "get", "airflow-ai-provider", "--full", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (shown,) = json.loads(done.stdout)
    guides = {item["integration-name"]: item.get("how-to-guide", []) for item in shown["integrations"]}
    assert set(guides) == {"MLflow", "Object storage", "Kubernetes"}
    assert all(guides.values()), guides
    assert f"{DOCUMENTATION}operators/batch_inference/" in guides["MLflow"]
    assert f"{DOCUMENTATION}connections/" in guides["MLflow"]
    assert shown["versions"][0] == __version__
