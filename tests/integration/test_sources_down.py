"""A source that stays down fails after one layer of retries, in-process and as a Prefect flow.

Each request is retried by the retry policy alone: a task retry (Prefect) or a chunk's download retry must not
send the requests again that the policy already gave up on. Counted from the fault proxy's own request log:
a down catalog sees exactly `retries + 1` requests, and the load fails within the policy's documented time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem, load_tcvis
from darts_aux.errors import SourceUnavailableError
from darts_aux.local import LocalCatalog
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.local.faults import FaultProxy
from darts_aux.products import TCVIS_PIXEL, tcvis
from darts_aux.retry import RetryPolicy
from darts_aux.settings import reload_settings

RETRIES = 2
DELAY = 0.2
TIMEOUT = 2.0
ROI_32M = GeoBox.from_bbox((620_000, 3_145_000, 660_000, 3_175_000), "EPSG:3413", resolution=32)
_TCVIS = tcvis()
_LON = _TCVIS.extent.x0 + 125 * _TCVIS.fill_chunk * TCVIS_PIXEL
_LAT = _TCVIS.extent.y0 - 18 * _TCVIS.fill_chunk * TCVIS_PIXEL
ROI_TCVIS = GeoBox.from_bbox((_LON + 0.1, _LAT - 0.3, _LON + 0.4, _LAT - 0.1), "EPSG:4326", resolution=TCVIS_PIXEL)
SLACK = 15.0
"""Seconds allowed beyond the policy's bound for what is not a request: imports, a flow run's start, the cube."""


def _retry_settings(monkeypatch: pytest.MonkeyPatch) -> RetryPolicy:
    """Few retries with short delays (jitter as by default); the policy they make."""
    for key, value in {"RETRIES": RETRIES, "RETRY_DELAY_SECONDS": DELAY, "HTTP_TIMEOUT_SECONDS": TIMEOUT}.items():
        monkeypatch.setenv(f"DARTS_AUX_{key}", str(value))
    settings = reload_settings()
    return RetryPolicy(settings.retries, settings.retry_delay_seconds, settings.retry_jitter)


def _load_with_catalog_down(catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                            ) -> tuple[int, float, RetryPolicy]:
    """Load through a proxy whose every answer is a 5xx or a reset: requests seen, seconds taken, the policy."""
    policy = _retry_settings(monkeypatch)
    with FaultProxy(catalog.base_url) as proxy:
        monkeypatch.setenv("DARTS_AUX_STAC_URL", proxy.via(catalog.stac_url))
        reload_settings()
        proxy.down()
        started = time.perf_counter()
        with pytest.raises(SourceUnavailableError) as raised:
            load_arcticdem(ROI_32M, tmp_path, 32)
        seconds = time.perf_counter() - started
        sent = len(proxy.requests())
    assert raised.value.source == "stac"
    return sent, seconds, policy


def test_a_catalog_that_stays_down_gets_one_layer_of_retries_in_process(
    catalog: LocalCatalog, inline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    sent, seconds, policy = _load_with_catalog_down(catalog, monkeypatch, tmp_path)
    assert sent == RETRIES + 1, f"{sent} requests to the down catalog, expected {RETRIES + 1}"
    assert seconds <= policy.give_up_seconds(TIMEOUT) + SLACK


def test_a_catalog_that_stays_down_gets_one_layer_of_retries_as_a_prefect_flow(
    catalog: LocalCatalog, forget_new_flow_runs: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    sent, seconds, policy = _load_with_catalog_down(catalog, monkeypatch, tmp_path)
    assert sent == RETRIES + 1, f"{sent} requests to the down catalog, expected {RETRIES + 1} (no task retries)"
    assert seconds <= policy.give_up_seconds(TIMEOUT) + SLACK
    _assert_discover_ran_once()


def _assert_discover_ran_once() -> None:
    """The newest flow run's discover task ran once and failed (no Prefect retry of it)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    discover = [task for task in tasks if task.name.startswith("discover")]
    assert len(discover) == 1 and discover[0].state is not None and discover[0].state.is_failed()
    assert discover[0].run_count == 1, f"the discover task ran {discover[0].run_count} times"


def test_an_earth_engine_that_stays_down_gets_one_layer_of_retries(
    earth_engine: LocalEarthEngine, inline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    policy = _retry_settings(monkeypatch)
    earth_engine.clear_faults()
    with FaultProxy(earth_engine.url) as proxy:
        for key, value in {"EE_URL": proxy.url, "EE_PROJECT": earth_engine.project,
                           "EE_CREDENTIALS": "anonymous"}.items():
            monkeypatch.setenv(f"DARTS_AUX_{key}", value)
        reload_settings()
        proxy.down()
        started = time.perf_counter()
        with pytest.raises(SourceUnavailableError) as raised:
            load_tcvis(ROI_TCVIS, tmp_path)
        seconds = time.perf_counter() - started
        sent = len(proxy.requests())
    assert raised.value.source == "earthengine"
    assert sent == RETRIES + 1, f"{sent} requests to the down Earth Engine, expected {RETRIES + 1}"
    assert seconds <= policy.give_up_seconds(TIMEOUT) + SLACK
