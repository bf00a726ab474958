"""The local Earth Engine against the real, unmodified `earthengine-api` client (loopback only)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ee
import google.auth.credentials
import httpx
import numpy as np
import pytest

from darts_aux.local.earthengine import (
    BANDS,
    EDITIONS,
    MAX_REQUEST_BYTES,
    TCVIS_PIXEL,
    LocalEarthEngine,
    request_bytes,
    tcvis_pixels,
)

P = TCVIS_PIXEL
DEPRECATION_HOST = "storage.googleapis.com"
"""Where `ee.Initialize` fetches its deprecated-assets catalog from (ee/deprecation.py); must fail fast."""

_real_getaddrinfo = socket.getaddrinfo
_refused_names: list[str] = []


def _loopback_names_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    """getaddrinfo that refuses every name but loopback: no DNS query leaves the machine."""
    name = host.decode() if isinstance(host, bytes) else host
    if name not in (None, "localhost") and not str(name).startswith("127.") and name != "::1":
        _refused_names.append(str(name))
        raise socket.gaierror(socket.EAI_NONAME, f"test network guard: no DNS lookup of {name!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(scope="module")
def local_ee() -> Iterator[LocalEarthEngine]:
    """One server for the module; `ee` initialised against it exactly as the project will in tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", _loopback_names_only)
        with LocalEarthEngine() as server:
            ee.Reset()  # a client initialised earlier in the session would skip the algorithms fetch
            _refused_names.clear()
            t0 = time.perf_counter()
            ee.Initialize(
                credentials=google.auth.credentials.AnonymousCredentials(), project=server.project, url=server.url
            )
            server.init_seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
            server.init_requests = server.requests()  # type: ignore[attr-defined]
            server.init_refused = list(_refused_names)  # type: ignore[attr-defined]
            yield server
        ee.Reset()


@pytest.fixture()
def fresh(local_ee: LocalEarthEngine) -> Iterator[LocalEarthEngine]:
    """The module's server, healthy, with an empty log; the client without retries (restored after)."""
    local_ee.clear_faults()
    local_ee.reset_log()
    ee.data.setMaxRetries(0)
    yield local_ee
    ee.data.setMaxRetries(5)
    local_ee.clear_faults()


def tcvis_image(edition: str) -> ee.Image:
    """The expression the project sends: the three bands plus a 0/1 `valid` band."""
    img = ee.ImageCollection(edition).mosaic().select(list(BANDS))
    return img.addBands(img.select("TCB_slope").mask().toUint8().rename("valid"))


def grid(col: int, row: int, width: int, height: int) -> dict[str, Any]:
    """A north-up EPSG:4326 grid on TCVIS pixel edges: top-left corner at (col·P, row·P)."""
    return {
        "dimensions": {"width": width, "height": height},
        "affineTransform": {
            "scaleX": P,
            "shearX": 0,
            "translateX": col * P,
            "shearY": 0,
            "scaleY": -P,
            "translateY": row * P,
        },
        "crsCode": "EPSG:4326",
    }


def centres(g: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre lon (row vector) and lat (column vector) of a grid, computed independently of the server."""
    a, d = g["affineTransform"], g["dimensions"]
    lon = a["translateX"] + (np.arange(d["width"]) + 0.5) * a["scaleX"]
    lat = a["translateY"] + (np.arange(d["height"]) + 0.5) * a["scaleY"]
    return lon, lat[:, None]


def compute(expression: ee.Image, g: dict[str, Any], **extra: Any) -> np.ndarray:
    """`ee.data.computePixels` as the project calls it."""
    return ee.data.computePixels({"expression": expression, "fileFormat": "NUMPY_NDARRAY", "grid": g, **extra})


def http_status(exc: BaseException) -> int:
    """The HTTP status of a failed Earth Engine call: on the HttpError the EEException was raised over."""
    return int(exc.__context__.resp.status)  # type: ignore[union-attr]


LAKE_GRID = grid(555_555, 250_000, 320, 200)
"""67.4° N, 149.7° E: a grid with lakes in it for every edition."""


# -- initialisation ---------------------------------------------------------------------------------------


def test_initialize_uses_the_three_endpoints_and_stays_offline(local_ee: LocalEarthEngine) -> None:
    paths = [r["path"] for r in local_ee.init_requests]  # type: ignore[attr-defined]
    assert paths == [
        "/$discovery/rest?version=v1&prettyPrint=false",
        "/$discovery/rest?version=v1&prettyPrint=false",
        f"/v1/projects/{local_ee.project}/algorithms?prettyPrint=false&alt=json",
    ]
    assert all(r["status"] == 200 for r in local_ee.init_requests)  # type: ignore[attr-defined]
    # The deprecation catalog is the only thing the client tries to reach outside; it fails and is ignored.
    assert set(local_ee.init_refused) <= {DEPRECATION_HOST}  # type: ignore[attr-defined]
    assert local_ee.init_seconds < 5  # type: ignore[attr-defined]


def test_https_proxy_env_keeps_the_deprecation_fetch_on_loopback(local_ee: LocalEarthEngine) -> None:
    code = (
        "import os, urllib.request, urllib.error\n"
        "try:\n"
        "    urllib.request.urlopen('https://storage.googleapis.com/x.json', timeout=5)\n"
        "except urllib.error.URLError as e:\n"
        "    print('refused', e.reason)\n"
    )
    local_ee.reset_log()
    env = {**os.environ, **local_ee.offline_env}
    env.pop("no_proxy", None), env.pop("NO_PROXY", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("refused"), out.stdout + out.stderr
    assert [(r["method"], r["path"], r["status"]) for r in local_ee.requests()] == [
        ("CONNECT", f"{DEPRECATION_HOST}:443", 403)
    ]


# -- pixels -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edition", [EDITIONS[0], EDITIONS[3]])
def test_compute_pixels_equals_the_formula(fresh: LocalEarthEngine, edition: str) -> None:
    got = compute(tcvis_image(edition), LAKE_GRID)
    assert got.shape == (200, 320)
    assert got.dtype == np.dtype([(b, "u1") for b in (*BANDS, "valid")])
    expected = tcvis_pixels(edition, *centres(LAKE_GRID))
    for band, values in expected.items():
        np.testing.assert_array_equal(got[band], values, err_msg=band)
    valid = got["valid"] == 1
    assert 0 < valid.sum() < valid.size  # lakes: masked pixels come back as 0
    assert all((got[b][~valid] == 0).all() for b in BANDS)
    (request,) = fresh.compute_requests()
    assert request["status"] == 200 and request["grid"] == {"width": 320, "height": 200}


def test_editions_differ(fresh: LocalEarthEngine) -> None:
    first, last = (compute(tcvis_image(e), LAKE_GRID) for e in (EDITIONS[0], EDITIONS[3]))
    for band in BANDS:
        assert (first[band] != last[band]).mean() > 0.5


def test_grid_across_the_antimeridian(fresh: LocalEarthEngine) -> None:
    col = round(179.9 / P)
    across = grid(col, round(66.0 / P), round(0.2 / P), 40)  # lon 179.9 … 180.1
    got = compute(tcvis_image(EDITIONS[1]), across)
    expected = tcvis_pixels(EDITIONS[1], *centres(across))
    for band, values in expected.items():
        np.testing.assert_array_equal(got[band], values, err_msg=band)
    # The part east of 180° is the same place as the grid shifted by -360°.
    east = int(np.argmax(centres(across)[0] >= 180.0))
    shifted = {**across, "affineTransform": {**across["affineTransform"], "translateX": col * P - 360.0}}
    again = compute(tcvis_image(EDITIONS[1]), shifted)
    for band in (*BANDS, "valid"):
        np.testing.assert_array_equal(got[band][:, east:], again[band][:, east:], err_msg=band)


def test_adjacent_grids_agree_and_a_shift_shows(fresh: LocalEarthEngine) -> None:
    image = tcvis_image(EDITIONS[2])
    both = compute(image, grid(600_000, 250_000, 64, 32))
    left, right = compute(image, grid(600_000, 250_000, 32, 32)), compute(image, grid(600_032, 250_000, 32, 32))
    for band in (*BANDS, "valid"):
        np.testing.assert_array_equal(np.hstack([left[band], right[band]]), both[band])
    off_by_one = compute(image, grid(600_001, 250_000, 64, 32))
    assert all((off_by_one[b][:, :-1] == both[b][:, 1:]).all() for b in BANDS)
    assert all((off_by_one[b] != both[b]).any() for b in BANDS)


def test_band_ids_choose_and_order_the_fields(fresh: LocalEarthEngine) -> None:
    got = compute(tcvis_image(EDITIONS[0]), LAKE_GRID, bandIds=["valid", "TCW_slope"])
    assert got.dtype.names == ("valid", "TCW_slope")


def test_unmask_fills_lakes(fresh: LocalEarthEngine) -> None:
    image = ee.ImageCollection(EDITIONS[0]).mosaic().select("TCB_slope").unmask(7)
    got = compute(image, LAKE_GRID)
    expected = tcvis_pixels(EDITIONS[0], *centres(LAKE_GRID))
    np.testing.assert_array_equal(got["TCB_slope"], np.where(expected["valid"] == 1, expected["TCB_slope"], 7))


# -- errors and limits ------------------------------------------------------------------------------------


def test_unknown_edition_raises_at_once(fresh: LocalEarthEngine) -> None:
    ee.data.setMaxRetries(3)  # a 400 is never retried
    missing = "users/ingmarnitze/TCTrend_SR_1999-2018_TCVIS"
    with pytest.raises(ee.EEException) as info:
        compute(tcvis_image(missing), LAKE_GRID)
    assert str(info.value) == (
        f"ImageCollection.load: ImageCollection asset '{missing}' not found "
        "(does not exist or caller does not have access)."
    )
    assert http_status(info.value) == 400
    assert [r["status"] for r in fresh.compute_requests()] == [400]


def test_request_size_limit(fresh: LocalEarthEngine) -> None:
    # Four uint8 bands cost 4 · (1 + 1 mask byte) = 8 bytes a pixel: 2048 x 3072 px is exactly the limit.
    assert request_bytes(2048, 3072, [1, 1, 1, 1]) == MAX_REQUEST_BYTES
    image = tcvis_image(EDITIONS[0])
    with pytest.raises(ee.EEException) as info:
        compute(image, grid(500_000, 250_000, 2048, 3073))
    assert str(info.value) == "Total request size (50348032 bytes) must be less than or equal to 50331648 bytes."
    assert http_status(info.value) == 400
    got = compute(image, grid(500_000, 250_000, 2048, 3072))
    assert got.shape == (3072, 2048)


def test_grid_side_limit(fresh: LocalEarthEngine) -> None:
    with pytest.raises(ee.EEException, match=r"Pixel grid dimensions \(32769x1\) must be less than or equal to 32768"):
        compute(ee.ImageCollection(EDITIONS[0]).mosaic().select("TCB_slope"), grid(500_000, 250_000, 32_769, 1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"crsWkt": 'GEOGCS["WGS 84"]'}, "only serves grids with an EPSG crsCode, not a crsWkt"),
        ({"crsCode": "EPSG:999999"}, "Unknown CRS code 'EPSG:999999'"),
        ({"affineTransform": {**LAKE_GRID["affineTransform"], "shearX": 1e-6}}, "only serves grids without shear"),
    ],
)
def test_unsupported_grids_are_400(fresh: LocalEarthEngine, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ee.EEException, match=message) as info:
        compute(tcvis_image(EDITIONS[0]), {**LAKE_GRID, **change})
    assert http_status(info.value) == 400


def test_other_project_is_denied(fresh: LocalEarthEngine) -> None:
    response = httpx.post(f"{fresh.url}/v1/projects/someone-else/image:computePixels", json={}, trust_env=False)
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


# -- faults -----------------------------------------------------------------------------------------------


def test_scripted_503_then_success(fresh: LocalEarthEngine) -> None:
    fresh.set_faults([503])
    image = tcvis_image(EDITIONS[0])
    with pytest.raises(ee.EEException) as info:
        compute(image, LAKE_GRID)
    assert str(info.value) == "The service is currently unavailable."
    assert http_status(info.value) == 503
    assert info.value.__context__.status_code == 503  # type: ignore[union-attr]
    assert compute(image, LAKE_GRID).shape == (200, 320)
    assert [(r["status"], r.get("fault")) for r in fresh.compute_requests()] == [(503, "script"), (200, None)]


def test_client_retries_a_429(fresh: LocalEarthEngine) -> None:
    ee.data.setMaxRetries(1)  # googleapiclient sleeps random() · 2 s before the retry
    fresh.set_faults([429])
    assert compute(tcvis_image(EDITIONS[0]), grid(555_555, 250_000, 8, 8)).shape == (8, 8)
    assert [r["status"] for r in fresh.compute_requests()] == [429, 200]


def test_truncated_answer_is_a_connection_error(fresh: LocalEarthEngine) -> None:
    fresh.set_faults(["truncate"])
    with pytest.raises(ConnectionError):  # the builtin, not ee.EEException
        compute(tcvis_image(EDITIONS[0]), LAKE_GRID)
    assert fresh.compute_requests()[0]["error"] == "response not completed"


def test_deadline_is_a_timeout_error(fresh: LocalEarthEngine) -> None:
    fresh.set_delay(1.0)
    ee.data.setDeadline(300)
    try:
        with pytest.raises(TimeoutError):  # the builtin, not ee.EEException
            compute(tcvis_image(EDITIONS[0]), grid(555_555, 250_000, 4, 4))
    finally:
        ee.data.setDeadline(0)
    deadline = time.monotonic() + 10
    while fresh.stats()["in_flight"] and time.monotonic() < deadline:  # let the abandoned request finish
        time.sleep(0.05)


def test_random_faults_repeat_with_the_seed(fresh: LocalEarthEngine) -> None:
    def run() -> list[int]:
        fresh.reset_log()
        fresh.set_faults(probability=0.5, statuses=[500, 503], seed=7)
        for _ in range(12):
            with contextlib.suppress(ee.EEException):
                compute(ee.ImageCollection(EDITIONS[0]).mosaic().select("TCB_slope"), grid(555_555, 250_000, 4, 4))
        return [r["status"] for r in fresh.compute_requests()]

    first = run()
    assert first == run()
    assert {500, 503, 200} <= set(first)


def test_concurrency_cap(fresh: LocalEarthEngine) -> None:
    fresh.set_max_in_flight(2)
    fresh.set_delay(1.0)
    image = tcvis_image(EDITIONS[0])

    def one(_: int) -> int:
        try:
            compute(image, grid(555_555, 250_000, 16, 16))
            return 200
        except ee.EEException as exc:
            return http_status(exc)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(8)))
    assert sorted(set(statuses)) == [200, 429]
    assert 2 <= statuses.count(200) < 8
    assert fresh.max_in_flight_seen() == 2
    log = fresh.compute_requests()
    assert len(log) == 8
    assert max(r.get("concurrent", 0) for r in log) == 2
    rejected = [r for r in log if r.get("fault") == "cap"]
    assert len(rejected) == statuses.count(429) and all(r["seconds"] < 0.5 for r in rejected)
    fresh.reset_log()
    assert fresh.max_in_flight_seen() == 0 and fresh.requests() == []


# -- process handling -------------------------------------------------------------------------------------


def test_stop_leaves_no_process() -> None:
    server = LocalEarthEngine(project="other-project").start()
    pid = server._proc.pid  # type: ignore[union-attr]
    assert httpx.get(f"{server.url}/healthz", trust_env=False).text == "ok"
    server.stop()
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_main_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "darts_aux.local.earthengine"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("export DARTS_AUX_EE_URL=http://127.0.0.1:")
        url = first.strip().split("=", 1)[1]
        assert httpx.get(f"{url}/healthz", trust_env=False, timeout=5).text == "ok"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert err.splitlines()[-1] == "stopping"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", trust_env=False, timeout=2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_delay_is_the_time_to_answer_and_the_pixels_are_computed_during_it(fresh: LocalEarthEngine) -> None:
    image, big = tcvis_image(EDITIONS[0]), grid(555_555, 250_000, 1700, 1700)
    compute(image, big)
    work = fresh.compute_requests()[-1]["ready_after"]  # the server's own time to compute the answer
    assert work > 0.02, "a grid this large takes the server a while to compute"
    delay = 0.5 + 4 * work
    fresh.set_delay(delay)
    fresh.reset_log()
    for _ in range(3):
        started = time.monotonic()
        compute(image, big)
        assert time.monotonic() - started >= delay
    answered = fresh.compute_requests()
    assert len(answered) == 3 and all(r["seconds"] >= delay for r in answered), answered
    # computed while waiting, not after the wait: each answer was ready well before it was due
    assert all(r["ready_after"] < delay for r in answered), (delay, answered)
