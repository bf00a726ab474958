"""Every public name of `darts_aux` (its `__all__`) appears in the generated API reference (docs/reference.md)."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import darts_aux

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
DIRECTIVE = re.compile(r"^:::\s*([\w.]+)", re.MULTILINE)


def documented_objects(page: str) -> set[object]:
    """The objects the page's mkdocstrings directives render: each named object, and a module's public members."""
    found: set[object] = set()
    for path in DIRECTIVE.findall(page):
        module_name, _, attribute = path.rpartition(".")
        target = importlib.import_module(path) if _is_module(path) else getattr(
            importlib.import_module(module_name), attribute)
        found.add(target)
        if inspect.ismodule(target):
            found.update(v for k, v in vars(target).items() if not k.startswith("_")
                         and getattr(v, "__module__", None) == target.__name__)
    return found


def _is_module(path: str) -> bool:
    try:
        importlib.import_module(path)
    except ModuleNotFoundError:
        return False
    return True


def test_every_public_name_is_in_the_reference() -> None:
    documented = documented_objects(REFERENCE.read_text())
    missing = [name for name in darts_aux.__all__ if getattr(darts_aux, name) not in documented]
    assert not missing, f"add these public names to docs/reference.md: {missing}"


def test_reference_renders_only_names_that_exist() -> None:
    assert documented_objects(REFERENCE.read_text())
