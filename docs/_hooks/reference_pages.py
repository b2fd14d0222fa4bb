"""MkDocs hook: the config and connection references, generated from get_provider_info at each build.

``docs/reference/config.md`` and ``docs/reference/connections.md`` hold their introduction and a
marker line (``<!-- generated: config -->``, ``<!-- generated: connections -->``); the build replaces
the marker with tables made from :func:`airflow_ai_provider.get_provider_info.get_provider_info`, so
the site can never disagree with what Airflow reads. Links that leave ``docs/`` (to ``dag_templates/``,
``README.md``, ...) stay relative in the Markdown, which GitHub resolves, and become links to the
repository files on the site. Importing this file loads neither MkDocs nor Airflow, so tests can import it cheaply.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.reference_pages")

REPO = Path(__file__).resolve().parents[2]
#: The marker each generated page holds, and the function that renders its tables.
MARKER = "<!-- generated: {name} -->"
#: What the Airflow connection form calls each standard field when a provider does not relabel it.
STANDARD_FIELDS = {
    "host": "Host",
    "schema": "Schema",
    "login": "Login",
    "password": "Password",
    "port": "Port",
    "extra": "Extra",
}
#: A Markdown link whose target is relative: ``[text](target)`` with no scheme, anchor-only or absolute path.
RELATIVE_LINK = re.compile(r"(\]\()(?![a-z][a-z0-9+.-]*:|#|/)([^)\s]+)(\))")


def provider_info() -> dict[str, Any]:
    """The provider metadata Airflow reads, from the package the build documents."""
    from airflow_ai_provider.get_provider_info import get_provider_info

    return get_provider_info()


def _markdown(text: str) -> str:
    """Reduce reStructuredText literals (````x````) to Markdown ones and keep the text on one table row."""
    text = re.sub(r"``([^`]+)``", r"`\1`", " ".join(str(text).split())).replace("|", "\\|")
    # Outside code spans, <name> is a placeholder, not HTML: show it as written.
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") else p.replace("<", "&lt;").replace(">", "&gt;") for p in parts)


def _code(value: Any) -> str:
    """A value as inline code, or a word saying it is unset or empty."""
    if value is None:
        return "unset"
    if value == "":
        return '`""` (empty)'
    if isinstance(value, bool):
        value = json.dumps(value)
    return f"`{value}`".replace("|", "\\|")


def render_config(info: dict[str, Any]) -> str:
    """The config reference: one section per option, with its variable, type, default and example."""
    lines: list[str] = []
    for section, spec in info.get("config", {}).items():
        lines += [f"## `[{section}]`", "", _markdown(spec.get("description", "")), ""]
        lines += ["| option | environment variable | type | default |", "|---|---|---|---|"]
        options = spec.get("options", {})
        for name, option in options.items():
            env = f"AIRFLOW__{section.upper()}__{name.upper()}"
            lines.append(
                f"| [`{name}`](#{name}) | `{env}` | {option.get('type', 'string')} | "
                f"{_code(option.get('default'))} |"
            )
        lines.append("")
        for name, option in options.items():
            env = f"AIRFLOW__{section.upper()}__{name.upper()}"
            lines += [
                f"### `{name}`",
                "",
                _markdown(option.get("description", "")),
                "",
                f"- Environment variable: `{env}`",
                f"- Type: {option.get('type', 'string')}",
                f"- Default: {_code(option.get('default'))}",
                f"- Example: {_code(option.get('example'))}",
                f"- Added in: {option.get('version_added') or 'unknown'}",
                "",
                "```ini",
                f"[{section}]",
                f"{name} = {option.get('example') or ''}".rstrip(),
                "```",
                "",
            ]
    return "\n".join(lines)


def _default_conn_id(hook_class_name: str) -> str | None:
    """The hook class's ``default_conn_name``, read from its source without importing Airflow."""
    module_name, _, class_name = hook_class_name.rpartition(".")
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        return None
    for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for statement in node.body:
                if (
                    isinstance(statement, ast.Assign)
                    and any(getattr(t, "id", None) == "default_conn_name" for t in statement.targets)
                    and isinstance(statement.value, ast.Constant)
                ):
                    return str(statement.value.value)
    return None


def _extra_type(schema: dict[str, Any]) -> str:
    """The JSON type of an extra field, without the ``null`` that only makes it optional."""
    kinds = schema.get("type", "string")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    kind = " or ".join(k for k in kinds if k != "null") or "string"
    return f"{kind}, secret" if schema.get("format") == "password" else kind


def _example_value(schema: dict[str, Any]) -> Any:
    """A placeholder value of an extra field's type for the JSON example."""
    if "default" in schema:
        return schema["default"]
    return "change-me" if schema.get("format") == "password" else "..."


def _example_field(name: str, placeholder: str) -> Any:
    """A standard field's value for the JSON example: its placeholder when that is a value, not prose."""
    if name == "password":
        return "change-me"
    if name == "port":
        return 5000
    return placeholder if placeholder and not re.search(r"\s", placeholder) else "..."


def render_connections(info: dict[str, Any]) -> str:
    """The connection reference: per connection type, every form field's UI label and JSON key."""
    lines: list[str] = []
    for conn in info.get("connection-types", []):
        conn_type = conn["connection-type"]
        behaviour = conn.get("ui-field-behaviour", {})
        hidden = set(behaviour.get("hidden-fields", []))
        relabel = behaviour.get("relabeling", {})
        placeholders = behaviour.get("placeholders", {})
        default_id = _default_conn_id(conn["hook-class-name"])
        lines += [
            f"## {conn.get('hook-name', conn_type)} (`{conn_type}`)",
            "",
            f"- Connection type: `{conn_type}`",
            f"- Hook: `{conn['hook-class-name']}`",
        ]
        if default_id:
            lines.append(f"- Default connection id: `{default_id}`")
        lines += [
            "",
            "Fields of the connection form, and the key of each in the connection's JSON "
            "(`AIRFLOW_CONN_<ID>`, a secrets backend, `airflow connections add --conn-json`):",
            "",
            "| UI label | JSON key | type | placeholder or default | description |",
            "|---|---|---|---|---|",
        ]
        for field, label in STANDARD_FIELDS.items():
            if field in hidden or field == "extra":
                continue
            lines.append(
                f"| {_markdown(relabel.get(field, label))} | `{field}` | "
                f"{'integer' if field == 'port' else 'string'} | "
                f"{_markdown(placeholders.get(field, ''))} | |"
            )
        for name, field in conn.get("conn-fields", {}).items():
            schema = field.get("schema", {})
            default = _code(schema["default"]) if "default" in schema else ""
            lines.append(
                f"| {_markdown(field.get('label', name))} | `extra.{name}` | {_extra_type(schema)} | "
                f"{_markdown(placeholders.get(name, '')) or default} | "
                f"{_markdown(field.get('description', ''))} |"
            )
        if hidden:
            shown = ", ".join(f"`{f}`" for f in sorted(hidden))
            lines += ["", f"Hidden in the form: {shown} (the extras have their own fields above)."]
        example: dict[str, Any] = {"conn_type": conn_type}
        for name in STANDARD_FIELDS:
            if name not in hidden and name != "extra":
                example[name] = _example_field(name, placeholders.get(name, ""))
        example["extra"] = {
            name: _example_value(field.get("schema", {}))
            for name, field in conn.get("conn-fields", {}).items()
        }
        variable = f"AIRFLOW_CONN_{(default_id or conn_type).upper()}"
        lines += ["", "Every key in one JSON (remove what you do not use):", "", "```bash"]
        lines += [f"export {variable}='{json.dumps(example, indent=2)}'", "```", ""]
    return "\n".join(lines)


#: A Sphinx cross-reference role left in a rendered docstring: ``:class:`~a.b.C``` as ``:class:<code>~a.b.C</code>``.
SPHINX_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):<code>(~?)\.?([^<]+)</code>"
)


def _sphinx_roles(html: str) -> str:
    """Show Sphinx roles as Sphinx does: the name in code, only its last part after ``~``."""
    return SPHINX_ROLE.sub(
        lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html
    )


GENERATORS = {
    "reference/config.md": ("config", render_config),
    "reference/connections.md": ("connections", render_connections),
}


def _repository_links(markdown: str, page_path: Path, docs_dir: Path, repo_url: str) -> str:
    """Turn relative links that leave ``docs/`` into links to the repository's files."""

    def rewrite(match: re.Match[str]) -> str:
        target, _, anchor = match.group(2).partition("#")
        resolved = (page_path.parent / target).resolve()
        if resolved.is_relative_to(docs_dir) or not resolved.is_relative_to(REPO):
            return match.group(0)
        kind = "tree" if resolved.is_dir() else "blob"
        url = f"{repo_url.rstrip('/')}/{kind}/main/{resolved.relative_to(REPO).as_posix()}"
        return f"{match.group(1)}{url}{'#' + anchor if anchor else ''}{match.group(3)}"

    return RELATIVE_LINK.sub(rewrite, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the generated pages and point links outside ``docs/`` at the repository."""
    generator = GENERATORS.get(page.file.src_uri)
    if generator is not None:
        name, render = generator
        marker = MARKER.format(name=name)
        if marker not in markdown:
            log.warning(
                "%s has no %s line: the generated reference has nowhere to go", page.file.src_uri, marker
            )
        markdown = markdown.replace(marker, render(provider_info()))
    docs_dir = Path(config["docs_dir"]).resolve()
    return _repository_links(markdown, Path(page.file.abs_src_path), docs_dir, config["repo_url"])


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Render the Sphinx roles of the API reference's docstrings as code, the way Sphinx shows them."""
    return _sphinx_roles(html) if page.file.src_uri.startswith("reference/") else html
