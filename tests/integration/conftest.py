"""Integration fixtures: the local catalog (real STAC API + range file server), Prefect's test server, oracles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from darts_aux.grid import PixelWindow, window_bounds
from darts_aux.local import LocalCatalog, TileRef
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.products import arcticdem
from darts_aux.settings import reload_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG_ROOT = REPO_ROOT / ".cache" / "local-catalog"


@pytest.fixture(scope="session")
def catalog() -> Iterator[LocalCatalog]:
    """The default local catalog, built once (cached under .cache/) and served for the whole session."""
    with LocalCatalog(CATALOG_ROOT) as running:
        yield running


@pytest.fixture
def use_catalog(catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch) -> LocalCatalog:
    """Point DARTS_AUX_STAC_URL at the local catalog; start with an empty request log."""
    point_at(catalog, monkeypatch)
    return catalog


def point_at(catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    """Set DARTS_AUX_* for a catalog (plus extra settings) and reload the settings."""
    monkeypatch.setenv("DARTS_AUX_STAC_URL", catalog.stac_url)
    for key, value in settings.items():
        monkeypatch.setenv(f"DARTS_AUX_{key.upper()}", value)
    reload_settings()
    catalog.reset_log()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test server for the session (it takes tens of seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def via_prefect(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fills run as Prefect flows on the test server."""
    monkeypatch.setenv("DARTS_AUX_ORCHESTRATOR", "prefect")
    reload_settings()


@pytest.fixture
def forget_new_flow_runs(via_prefect: None) -> Iterator[None]:
    """Delete the flow runs a test made on the session's shared test server: other modules count theirs."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        before = {run.id for run in client.read_flow_runs()}
    yield
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs():
            if run.id not in before:
                client.delete_flow_run(run.id)


@pytest.fixture
def inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fills run in-process (same steps, same retry policy)."""
    monkeypatch.setenv("DARTS_AUX_ORCHESTRATOR", "inline")
    reload_settings()


def published_tiles(catalog: LocalCatalog, resolution: int, window: PixelWindow) -> list[TileRef]:
    """Published tiles of a resolution whose raster overlaps a cube window, in id order."""
    left, bottom, right, top = window_bounds(arcticdem(resolution).extent, window)
    tiles = [t for t in catalog.spec.tiles(resolution) if t.item_id in catalog.published()]
    return sorted(
        (t for t in tiles if t.bounds[0] < right and t.bounds[2] > left and t.bounds[1] < top and t.bounds[3] > bottom),
        key=lambda t: t.item_id,
    )


def rasterio_mosaic(catalog: LocalCatalog, resolution: int, window: PixelWindow,
                    tiles: list[TileRef] | None = None) -> dict[str, np.ndarray]:
    """Independent oracle: rasterio.merge of the tiles' COG files over the window (nodata −9999 → NaN)."""
    import rasterio
    from rasterio.merge import merge

    tiles = published_tiles(catalog, resolution, window) if tiles is None else tiles
    bounds = window_bounds(arcticdem(resolution).extent, window)
    out = {}
    for asset, nodata in (("dem", -9999.0), ("datamask", 0)):
        sources = [rasterio.open(catalog.asset_path(t.item_id, asset)) for t in tiles]
        try:
            mosaic, _ = merge(sources, bounds=bounds, res=resolution, nodata=nodata, method="first")
        finally:
            for src in sources:
                src.close()
        band = mosaic[0]
        assert band.shape == window.shape
        out[asset] = np.where(band == -9999.0, np.float32(np.nan), band).astype("float32") if asset == "dem" else band
    return out


def formula_oracle(catalog: LocalCatalog, resolution: int, window: PixelWindow, items: list[str] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic terrain formula at the window's pixel centres (published items, or `items`)."""
    left, _, _, top = window_bounds(arcticdem(resolution).extent, window)
    rows, cols = window.shape
    x = left + (np.arange(cols) + 0.5) * resolution
    y = top - (np.arange(rows) + 0.5) * resolution
    return catalog.expected_pixels(resolution, x[None, :], y[:, None], items=items)


@pytest.fixture(scope="session")
def earth_engine() -> Iterator[LocalEarthEngine]:
    """The local Earth Engine for the session; the client's stray HTTPS fetches go to it (and fail at once)."""
    import os

    from darts_aux.local.earthengine import LocalEarthEngine

    with LocalEarthEngine() as running:
        for key, value in running.offline_env.items():
            os.environ[key] = value
        for key in ("no_proxy", "NO_PROXY"):  # only the client's stray fetch goes to the proxy
            os.environ[key] = "127.0.0.1,localhost"
        yield running


@pytest.fixture
def use_earth_engine(earth_engine: LocalEarthEngine, monkeypatch: pytest.MonkeyPatch) -> LocalEarthEngine:
    """Point DARTS_AUX_EE_* at the local Earth Engine; healthy server, empty log."""
    monkeypatch.setenv("DARTS_AUX_EE_URL", earth_engine.url)
    monkeypatch.setenv("DARTS_AUX_EE_PROJECT", earth_engine.project)
    monkeypatch.setenv("DARTS_AUX_EE_CREDENTIALS", "anonymous")
    reload_settings()
    earth_engine.clear_faults()
    earth_engine.reset_log()
    return earth_engine
