"""The public API: `__all__` lists exactly the public names, each imports without Prefect, each is documented."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import darts_aux

PUBLIC = ["DartsAuxError", "DownloadReport", "OfflineError", "coverage", "download_alphaearth", "download_arcticdem",
          "download_tcvis", "load", "load_alphaearth", "load_arcticdem", "load_tcvis", "register_product"]
FUNCTIONS = [name for name in PUBLIC if name[0].islower()]

CHILD = """
import json, sys
from darts_aux import {name}
import darts_aux
star = {{}}
exec("from darts_aux import *", star)
flow_stack = ("prefect.", "flows", "darts_aux.flows")
print(json.dumps({{"prefect": sorted(m for m in sys.modules if m == "prefect" or m.startswith(flow_stack)),
                  "star": sorted(k for k in star if not k.startswith("__")), "dir": sorted(dir(darts_aux))}}))
"""


def test_all_lists_exactly_the_public_names() -> None:
    assert sorted(darts_aux.__all__) == PUBLIC
    # internal modules are not public names (checked in a fresh process: importing a submodule elsewhere in this
    # session, as other tests do, makes it an attribute of the package)
    result = subprocess.run([sys.executable, "-c", "import darts_aux; darts_aux.fill"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "no attribute 'fill'" in result.stderr


@pytest.mark.parametrize("name", PUBLIC)
def test_each_name_imports_in_a_fresh_process_without_prefect(name: str) -> None:
    result = subprocess.run([sys.executable, "-c", CHILD.format(name=name)], capture_output=True, text=True,
                            check=True, timeout=120)
    seen = json.loads(result.stdout)
    assert seen["prefect"] == []
    assert seen["star"] == PUBLIC, "`from darts_aux import *` gives exactly __all__"
    assert set(PUBLIC) <= set(seen["dir"])


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_public_function_has_a_google_docstring(name: str) -> None:
    doc = inspect.getdoc(getattr(darts_aux, name)) or ""
    for section in ("Args:", "Returns:", "Raises:", "Example:"):
        assert f"\n{section}\n" in doc, f"{name} lacks {section}"
    documented = {line.strip().split(":")[0] for line in doc.split("Args:")[1].split("Returns:")[0].splitlines()
                  if line.startswith("    ") and not line.startswith("        ") and ":" in line}
    assert documented == set(inspect.signature(getattr(darts_aux, name)).parameters), name


def test_load_keeps_its_positional_arguments_and_takes_offline_by_keyword() -> None:
    parameters = inspect.signature(darts_aux.load_arcticdem).parameters
    assert list(parameters)[:5] == ["geobox", "data_dir", "resolution", "buffer", "persist"]
    assert parameters["offline"].kind is inspect.Parameter.KEYWORD_ONLY and parameters["offline"].default is False
    tcvis = inspect.signature(darts_aux.load_tcvis).parameters
    assert list(tcvis)[:4] == ["geobox", "data_dir", "buffer", "persist"] and tcvis["offline"].default is False


def test_no_module_shadows_a_public_name() -> None:
    """Importing a submodule makes it an attribute of the package: none may be named like a public function."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(darts_aux.__path__):
        importlib.import_module(f"darts_aux.{module.name}")
    for name in PUBLIC:
        assert not inspect.ismodule(getattr(darts_aux, name)), f"darts_aux.{name} is a module"
