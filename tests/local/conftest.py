"""Fixtures for the local catalog: one cached build and one running catalog per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from darts_aux.local.catalog import LocalCatalog
from darts_aux.local.generate import BuildResult, build_catalog
from darts_aux.local.spec import CatalogSpec, default_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG_ROOT = REPO_ROOT / ".cache" / "local-catalog"
"""Where the default catalog is built once and reused across sessions (gitignored)."""


@pytest.fixture(scope="session")
def spec() -> CatalogSpec:
    """The default catalog spec."""
    return default_spec()


@pytest.fixture(scope="session")
def built_catalog(spec: CatalogSpec) -> BuildResult:
    """The default catalog on disk (built on first use, then cached)."""
    return build_catalog(CATALOG_ROOT, spec)


@pytest.fixture(scope="session")
def catalog(built_catalog: BuildResult, spec: CatalogSpec) -> Iterator[LocalCatalog]:
    """The default catalog served on loopback for the whole session."""
    with LocalCatalog(built_catalog.root, spec) as running:
        yield running


@pytest.fixture()
def fresh_log(catalog: LocalCatalog) -> LocalCatalog:
    """The session catalog with an empty request log."""
    catalog.reset_log()
    return catalog
