"""MkDocs hook: the configuration table is generated from `darts_aux.settings.Settings`, never copied by hand.

A page containing the marker `<!-- settings-table -->` gets it replaced by one row per settings field: the
environment variable, its default and its description, as the settings class declares them.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- settings-table -->"


def settings_table() -> str:
    """The Markdown table of every DARTS_AUX_* variable."""
    from darts_aux.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{prefix}{name.upper()}` | {_default(name, field)} | {field.description or ''} |")
    return "\n".join(rows)


def _default(name: str, field: Any) -> str:
    """The field's default as shown to a user: a factory's value with the home folder spelled `~`."""
    from pathlib import Path

    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, Path):
            return f"`{str(value).replace(str(Path.home()), '~', 1)}`"
        return f"`{value}`"
    if field.default is None:
        return "unset"
    return f"`{field.default}`"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the marker with the generated table."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, settings_table())
