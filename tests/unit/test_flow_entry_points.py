"""The flows' import paths: `darts_aux.flows.<module>` wherever darts-aux is installed, and the repository's
top-level `flows/` modules re-exporting the same flow objects for the entrypoints written against them."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from darts_aux.flows.deployments import DEPLOYMENTS, DeploymentSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
REPOSITORY_ENTRY_POINTS = {"arcticdem": "fill_arcticdem", "tcvis": "fill_tcvis", "alphaearth": "fill_alphaearth",
                           "revisit": "revisit_partial_chunks",
                           "prefetch": "prefetch_regions", "compact": "compact_manifest",
                           "download": "download_chunks"}


@pytest.mark.parametrize("spec", DEPLOYMENTS, ids=lambda spec: spec.name)
def test_each_deployment_names_its_flow_by_the_package_path(spec: DeploymentSpec) -> None:
    from prefect.flows import Flow

    module, _, name = spec.entrypoint.rpartition(".")
    assert module.startswith("darts_aux.flows.")
    flow = spec.load_flow()
    assert isinstance(flow, Flow) and flow is getattr(importlib.import_module(module), name)
    assert flow.fn.__module__ == module, "a served deployment's entrypoint is derived from this module"


@pytest.mark.parametrize(("module", "name"), REPOSITORY_ENTRY_POINTS.items())
def test_the_repository_entry_point_is_the_package_flow(module: str, name: str) -> None:
    from prefect.flows import Flow

    ours = getattr(importlib.import_module(f"flows.{module}"), name)
    assert isinstance(ours, Flow) and ours is getattr(importlib.import_module(f"darts_aux.flows.{module}"), name)


@pytest.mark.parametrize(("module", "from_repository"), [("darts_aux.flows.deployments", False),
                                                         ("flows.deployments", True)])
def test_the_deployments_module_runs_as_a_script(module: str, from_repository: bool, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT if from_repository else tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m darts_aux.flows.deployments [-h] [--data-dir DATA_DIR]" in result.stdout
    assert "Serve every deployment from this process" in result.stdout
