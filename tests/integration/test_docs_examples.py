"""The getting-started page's Python examples run as written, against the local catalog and Earth Engine.

Each ```python block of docs/getting-started.md runs in one namespace, in page order, in an empty working folder.
A `print(...)` line that ends in `# <text>` states what it prints: the printed lines must equal those texts.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from darts_aux.local import LocalCatalog
from darts_aux.local.earthengine import LocalEarthEngine

PAGE = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
STATED = re.compile(r"^\s*print\(.*\)\s*#\s*(.+?)\s*$")


def python_blocks(page: str) -> list[str]:
    """The page's Python code blocks, in order."""
    return BLOCK.findall(page)


def stated_output(block: str) -> list[str]:
    """What the block's print lines say they print."""
    return [m.group(1) for m in map(STATED.match, block.splitlines()) if m]


def test_page_has_examples_that_state_their_output() -> None:
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) >= 3
    assert sum(len(stated_output(b)) for b in blocks) >= 4


def test_getting_started_examples_run_as_written(use_catalog: LocalCatalog, use_earth_engine: LocalEarthEngine,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "getting_started"}
    for number, block in enumerate(python_blocks(PAGE.read_text()), start=1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, f"{PAGE.name} block {number}", "exec"), namespace)
        assert printed.getvalue().splitlines() == stated_output(block), f"block {number}:\n{block}"
    assert (tmp_path / "darts-aux-data").is_dir()
