"""The package version has one source, ``__version__``; every other place derives from it or is checked."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import tomllib

from airflow_ai_provider import __version__

ROOT = Path(__file__).resolve().parents[2]
# Tags and pins of this project's images and package in docs and deployment files:
# airflow-ai-provider-runtime:0.1.0, airflow-ai-runtime:0.1.0, airflow-ai-provider-churn:0.1.0,
# airflow-ai:3.3.2-0.1.0 (Airflow's version, then the provider's), airflow-ai-provider==0.1.0.
PINNED = re.compile(
    r"airflow-ai(?:-provider)?(?:-runtime|-churn)?(?::|==)(?:\d+\.\d+\.\d+-)?(?P<version>\d+(?:\.\d+)+)\b"
)


def _pinned_versions(path: Path) -> list[tuple[str, int, str]]:
    return [
        (str(path.relative_to(ROOT)), number, match["version"])
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for match in PINNED.finditer(line)
    ]


def test_pyproject_takes_the_version_from_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "the version is written once, in __init__.py"
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "airflow_ai_provider/__init__.py"
    assert version("airflow-ai-provider") == __version__, "installed metadata is stale: run uv sync"


def test_default_runtime_image_and_provider_info_follow_the_package_version():
    from airflow_ai_provider.config import DEFAULT_RUNTIME_IMAGE
    from airflow_ai_provider.get_provider_info import get_provider_info

    info = get_provider_info()
    assert f"airflow-ai-provider-runtime:{__version__}" == DEFAULT_RUNTIME_IMAGE
    options = info["config"]["ai_provider"]["options"]
    assert options["runtime_image"]["default"] == DEFAULT_RUNTIME_IMAGE
    assert info["versions"][0] == __version__, "a release adds its number at the head of versions"
    assert len(set(info["versions"])) == len(info["versions"])
    added = {name: option["version_added"] for name, option in options.items()}
    assert not {name for name, release in added.items() if release not in info["versions"]}, added


def test_readme_names_the_default_runtime_image_of_this_version():
    from airflow_ai_provider.config import DEFAULT_RUNTIME_IMAGE

    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if "`runtime_image`" in line]
    assert rows, "README.md lists the runtime_image option with its default"
    assert all(f"`{DEFAULT_RUNTIME_IMAGE}`" in row for row in rows), rows


def test_every_image_tag_and_package_pin_in_docs_and_deployment_files_is_the_package_version():
    files = [
        ROOT / "README.md",
        ROOT / "docker-compose.yaml",
        *sorted((ROOT / "docker").iterdir()),
        *sorted((ROOT / "docs").rglob("*.md")),
    ]
    pins = [pin for path in files if path.is_file() for pin in _pinned_versions(path)]
    assert any(path == "docker-compose.yaml" for path, _, _ in pins), "the compose images are tagged"
    assert [pin for pin in pins if pin[2] != __version__] == []


def test_the_dockerfile_labels_the_image_with_the_package_version():
    dockerfile = (ROOT / "docker" / "runtime.Dockerfile").read_text()
    assert re.findall(r"^ARG VERSION=(\S+)$", dockerfile, re.MULTILINE) == [__version__]


def test_the_changelog_has_a_section_for_this_version():
    headings = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings and headings[0] == __version__, headings
