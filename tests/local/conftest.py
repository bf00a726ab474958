"""Fixtures for the local catalog: one cached build and one running catalog per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from darts_aux.local.catalog import LocalCatalog
from darts_aux.local.generate import BuildResult, build_catalog
from darts_aux.local.spec import CatalogSpec, default_spec

from ._pgc_index import IndexUnavailableError, real_index

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


@pytest.fixture(scope="session")
def pgc_index() -> Path:
    """PGC's real v4.1 mosaic index (from the pinned pdemtools wheel, cached); the test fails if it cannot be had."""
    try:
        return real_index(REPO_ROOT / ".cache" / "pgc-index")
    except IndexUnavailableError as exc:
        pytest.fail(f"PGC's real tile index is unavailable: {exc}", pytrace=False)
