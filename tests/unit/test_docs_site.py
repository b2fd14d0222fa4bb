"""The docs site (mkdocs.yml) covers every operator, hook and trigger, without building it.

The strict build itself runs in scripts/test.sh; these checks are cheap and name what is missing.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from airflow_ai_provider.get_provider_info import get_provider_info

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
#: The package the tests import: the source tree, or the installed wheel (scripts/test_newest.sh).
PACKAGE = Path(importlib.util.find_spec("airflow_ai_provider").origin).parent


def _nav_pages() -> set[str]:
    """The pages the site's navigation lists, as paths under docs/."""
    text = (REPO / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") :]
    return set(re.findall(r":\s*([\w./-]+\.md)\s*$", nav, flags=re.MULTILINE))


def _operator_classes() -> dict[str, list[str]]:
    """Each operators/ module that defines public operator classes: module name -> class names."""
    found: dict[str, list[str]] = {}
    for path in sorted((PACKAGE / "operators").glob("*.py")):
        names = [
            node.name
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.ClassDef) and node.name.endswith("Operator") and node.name[0] != "_"
        ]
        if names:
            found[f"airflow_ai_provider.operators.{path.stem}"] = names
    return found


def _operator_pages() -> dict[str, str]:
    """The operator pages in the navigation: path under docs/ -> text."""
    return {
        page: (DOCS / page).read_text()
        for page in sorted(_nav_pages())
        if page.startswith("operators/") and (DOCS / page).is_file()
    }


def _reference_entries() -> set[str]:
    """The modules the API reference pages in the navigation render (``::: module`` lines)."""
    entries: set[str] = set()
    for page in _nav_pages():
        if page.startswith("reference/"):
            entries |= set(re.findall(r"^::: ([\w.]+)\s*$", (DOCS / page).read_text(), flags=re.MULTILINE))
    return entries


def _hook_module() -> ModuleType:
    """docs/_hooks/reference_pages.py, the build hook that generates the config and connection pages."""
    spec = importlib.util.spec_from_file_location("reference_pages", DOCS / "_hooks" / "reference_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_navigation_lists_only_pages_that_exist():
    missing = sorted(page for page in _nav_pages() if not (DOCS / page).is_file())
    assert not missing, f"mkdocs.yml's nav lists pages that do not exist under docs/: {missing}"


@pytest.mark.parametrize(
    "name",
    sorted(name for names in _operator_classes().values() for name in names),
)
def test_every_operator_class_is_described_on_an_operator_page_in_the_navigation(name):
    pages = [page for page, text in _operator_pages().items() if f"`{name}`" in text or f"# {name}" in text]
    assert pages, f"no page under docs/operators/ in mkdocs.yml's nav describes {name}: add one"


@pytest.mark.parametrize("module", get_provider_info()["operators"][0]["python-modules"])
def test_every_operator_module_airflow_lists_has_its_own_operator_page(module):
    classes = _operator_classes().get(module, [])
    headed = [
        page
        for page, text in _operator_pages().items()
        if any(re.search(rf"^#+ .*\b{name}\b", text, flags=re.MULTILINE) for name in classes)
    ]
    assert headed, f"no operator page in mkdocs.yml's nav has a heading naming an operator of {module}"


def _documented_modules() -> list[str]:
    """Modules the API reference must render: operators, hooks, triggers, Asset handlers, extra links."""
    info = get_provider_info()
    modules = set(_operator_classes())
    for kind in ("operators", "hooks", "triggers"):
        modules |= {module for entry in info.get(kind, []) for module in entry["python-modules"]}
    modules |= {entry["handler"].rpartition(".")[0] for entry in info.get("asset-uris", [])}
    modules |= {link.rpartition(".")[0] for link in info.get("extra-links", [])}
    return sorted(modules)


@pytest.mark.parametrize("module", _documented_modules())
def test_every_operator_hook_and_trigger_module_has_an_api_reference_entry(module):
    assert module in _reference_entries(), (
        f"no page under docs/reference/ in mkdocs.yml's nav renders {module}: add '::: {module}'"
    )


def test_the_config_reference_gives_every_option_with_its_environment_variable():
    page = _hook_module().render_config(get_provider_info())
    for section, spec in get_provider_info()["config"].items():
        for name in spec["options"]:
            assert f"### `{name}`" in page, f"the config reference has no section for {name}"
            assert f"`AIRFLOW__{section.upper()}__{name.upper()}`" in page
    assert "<!-- generated: config -->" in (DOCS / "reference" / "config.md").read_text()


def test_the_connection_reference_gives_every_field_label_and_json_key():
    page = _hook_module().render_connections(get_provider_info())
    for conn in get_provider_info()["connection-types"]:
        assert f"`{conn['connection-type']}`" in page
        for label in conn["ui-field-behaviour"].get("relabeling", {}).values():
            assert f"| {label} |" in page, f"the connection reference does not show the label {label!r}"
        for key, field in conn["conn-fields"].items():
            assert f"| {field['label']} | `extra.{key}` |" in page, f"extra {key!r} is not in the reference"
            assert f'"{key}":' in page, f"extra {key!r} is not in the JSON example"
    assert "<!-- generated: connections -->" in (DOCS / "reference" / "connections.md").read_text()


def test_links_that_leave_docs_point_at_the_repository_on_the_site():
    hook = _hook_module()
    page = DOCS / "templates" / "README.md"
    markdown = "[kit](../../dag_templates/) [ops](../operators/drift.md#x) [web](https://example.com/a.md)"
    rewritten = hook._repository_links(markdown, page, DOCS, "https://github.com/o/r")
    assert "[kit](https://github.com/o/r/tree/main/dag_templates)" in rewritten
    assert "[ops](../operators/drift.md#x)" in rewritten
    assert "[web](https://example.com/a.md)" in rewritten


def test_sphinx_roles_in_the_api_reference_render_as_code_named_as_sphinx_names_them():
    html = ":class:<code>~airflow.sdk.exceptions.AirflowFailException</code> and :meth:<code>observe</code>"
    assert _hook_module()._sphinx_roles(html) == "<code>AirflowFailException</code> and <code>observe</code>"


def test_the_site_address_is_the_one_the_provider_links_its_how_to_guides_under():
    from airflow_ai_provider.get_provider_info import DOCS_URL

    site_url = re.search(r"^site_url: (\S+)$", (REPO / "mkdocs.yml").read_text(), flags=re.MULTILINE)
    assert site_url and site_url.group(1) == DOCS_URL
