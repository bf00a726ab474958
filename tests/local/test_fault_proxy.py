"""FaultProxy in front of the local catalog: pass-through with URL rewriting, byte ranges, each fault kind, the log."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from darts_aux.local.catalog import LocalCatalog
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.local.faults import FAULT_KINDS, SERVER_ERRORS, FaultProxy

ITEM = "72_47_32m_v4.1"


@pytest.fixture(scope="module")
def proxy(catalog: LocalCatalog) -> Iterator[FaultProxy]:
    """One proxy in front of the session catalog's gateway (STAC API and files)."""
    with FaultProxy(catalog.base_url, stall_seconds=1.5) as running:
        yield running


@pytest.fixture
def fresh(proxy: FaultProxy) -> FaultProxy:
    """The proxy with no faults and an empty log."""
    proxy.clear()
    proxy.set_faults(stall_seconds=1.5)
    proxy.reset_log()
    return proxy


def http(timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(timeout=timeout, trust_env=False)


def test_requests_pass_through_with_upstream_urls_rewritten(fresh: FaultProxy, catalog: LocalCatalog) -> None:
    with http() as client:
        landing = client.get(fresh.via(catalog.stac_url))
        search = client.post(fresh.via(catalog.stac_url) + "search", json={"ids": [ITEM], "collections": [
            "arcticdem-mosaics-v4.1-32m"]})
    assert landing.status_code == 200 and search.status_code == 200
    assert fresh.url in landing.text and catalog.base_url not in landing.text
    (feature,) = search.json()["features"]
    assert feature["assets"]["dem"]["href"] == fresh.via(catalog.asset_url(ITEM))
    records = fresh.requests()
    assert [(r["method"], r["fault"], r["status"]) for r in records] == [("GET", "none", 200), ("POST", "none", 200)]
    assert records[0]["bytes"] == records[0]["length"] == len(landing.content)


def test_byte_ranges_pass_through_unchanged(fresh: FaultProxy, catalog: LocalCatalog) -> None:
    url, raw = fresh.via(catalog.asset_url(ITEM)), catalog.asset_path(ITEM).read_bytes()
    with http() as client:
        head = client.head(url)
        part = client.get(url, headers={"Range": "bytes=1000-66535"})
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(raw)
    assert part.status_code == 206 and part.headers["content-range"] == f"bytes 1000-66535/{len(raw)}"
    assert part.content == raw[1000:66536]
    assert [r["range"] for r in fresh.requests()] == [None, "bytes=1000-66535"]


def test_a_5xx_fault_answers_an_error_without_asking_the_upstream(fresh: FaultProxy, catalog: LocalCatalog) -> None:
    fresh.set_faults(script=["5xx"])
    catalog.reset_log()
    with http() as client:
        answer = client.get(fresh.via(catalog.asset_url(ITEM)), headers={"Range": "bytes=0-99"})
    assert answer.status_code in SERVER_ERRORS and answer.json()["error"]["code"] == answer.status_code
    (record,) = fresh.requests()
    assert record["fault"] == "5xx" and record["origin"] == "script" and record["status"] == answer.status_code
    assert catalog.requests("files") == []


def test_a_reset_fault_closes_the_connection_without_an_answer(fresh: FaultProxy, catalog: LocalCatalog) -> None:
    fresh.set_faults(script=["reset"])
    with http() as client, pytest.raises(httpx.TransportError):
        client.get(fresh.via(catalog.stac_url))
    (record,) = fresh.requests()
    assert record["fault"] == "reset" and record["status"] is None and record["bytes"] == 0


def test_a_stall_outlasts_an_impatient_client_and_only_delays_a_patient_one(fresh: FaultProxy,
                                                                            catalog: LocalCatalog) -> None:
    fresh.set_faults(script=["stall", "stall"])
    with http(timeout=0.5) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.get(fresh.via(catalog.stac_url))
    started = time.perf_counter()
    with http(timeout=5.0) as patient:
        answer = patient.get(fresh.via(catalog.stac_url))
    assert answer.status_code == 200 and time.perf_counter() - started >= 1.5
    time.sleep(1.2)  # the impatient client's stall ends (and is logged) once the proxy notices it hung up
    gone, served = sorted(fresh.requests(fault="stall"), key=lambda r: r["status"] is not None)
    assert gone["client_gone"] and gone["status"] is None
    assert served["status"] == 200 and served["seconds"] >= 1.5


def test_a_truncate_fault_sends_half_the_declared_body(fresh: FaultProxy, catalog: LocalCatalog) -> None:
    fresh.set_faults(script=["truncate"])
    with http() as client, pytest.raises(httpx.RemoteProtocolError, match="incomplete|without sending complete"):
        client.get(fresh.via(catalog.asset_url(ITEM)), headers={"Range": "bytes=0-9999"})
    (record,) = fresh.requests()
    assert record["fault"] == "truncate" and record["status"] == 206
    assert record["length"] == 10_000 and record["bytes"] == 5_000


def test_seeded_random_faults_repeat_and_are_counted_in_the_log(catalog: LocalCatalog) -> None:
    sequences = []
    for _ in range(2):
        with FaultProxy(catalog.base_url, 0.3, ("5xx", "reset"), seed=7) as proxy, http() as client:
            for _ in range(60):
                try:
                    client.get(proxy.via(catalog.stac_url))
                except httpx.TransportError:
                    pass
            sequences.append([r["fault"] for r in proxy.requests()])
            counts = proxy.fault_counts()
    assert sequences[0] == sequences[1], "the same seed draws the same faults"
    assert counts == Counter(f for f in sequences[1] if f != "none")
    assert 8 <= sum(counts.values()) <= 30 and set(counts) == {"5xx", "reset"}


def test_faults_can_be_limited_to_a_path_and_changed_at_runtime(fresh: FaultProxy, catalog: LocalCatalog) -> None:
    fresh.down(path_prefix="/files/")
    with http() as client:
        assert client.get(fresh.via(catalog.stac_url)).status_code == 200
        for _ in range(6):
            try:
                assert client.get(fresh.via(catalog.asset_url(ITEM)), headers={"Range": "bytes=0-9"}).status_code >= 500
            except httpx.TransportError:
                pass
        fresh.clear()
        assert client.get(fresh.via(catalog.asset_url(ITEM)), headers={"Range": "bytes=0-9"}).status_code == 206
    faults = [r["fault"] for r in fresh.requests()]
    assert faults[0] == "none" and set(faults[1:7]) <= {"5xx", "reset"} and faults[7] == "none"
    assert fresh.faults()["probability"] == 0.0


def test_a_bad_fault_plan_is_refused(fresh: FaultProxy, catalog: LocalCatalog) -> None:
    with pytest.raises(ValueError, match="unknown fault kinds"):
        fresh.set_faults(kinds=["teapot"])
    with pytest.raises(ValueError, match="probability"):
        fresh.set_faults(probability=1.5)
    with pytest.raises(ValueError, match="probability"):
        FaultProxy(catalog.base_url, probability=-0.1)
    assert set(fresh.faults()["kinds"]) == set(FAULT_KINDS)


def test_the_earth_engine_discovery_document_leads_back_through_the_proxy() -> None:
    with LocalEarthEngine() as engine, FaultProxy(engine.url) as proxy, http() as client:
        answer = client.get(proxy.url + "/$discovery/rest", params={"version": "v1"})
        proxy_url, engine_url = proxy.url, engine.url
    assert answer.status_code == 200
    assert answer.json()["rootUrl"].rstrip("/") == proxy_url and engine_url not in answer.text
