"""`python -m darts_aux.local` and `python -m darts_aux.local.earthengine` as an operator runs them.

Each is started as a subprocess on a chosen port: it serves there, prints exactly the `export DARTS_AUX_…`
lines that point darts-aux at it (checked by running a load in another process with only those settings and
comparing its pixels with the formulas), stops cleanly on SIGTERM, and fails with one error line on a busy port.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux.grid import roi_window, window_bounds
from darts_aux.local._procs import LOOPBACK, PortInUseError, ServerStartError, free_port, spawn, stop, wait_healthy
from darts_aux.local.earthengine import LocalEarthEngine, tcvis_pixels
from darts_aux.local.earthengine.__main__ import parse_args
from darts_aux.local.generate import BuildResult
from darts_aux.local.spec import SUPERTILE_CORNER, CatalogSpec
from darts_aux.local.synthetic import expected_pixels
from darts_aux.products import DEFAULT_TCVIS_EDITION, TCVIS_PIXEL, arcticdem, tcvis

BUSY = "error: port {port} on 127.0.0.1 is already in use; pick another --port, or leave --port out for a free one"
TCVIS_BANDS = {"tc_brightness": "TCB_slope", "tc_greenness": "TCG_slope", "tc_wetness": "TCW_slope", "valid": "valid"}
DEM_ROI = GeoBox.from_bbox((SUPERTILE_CORNER[0] - 3_000, SUPERTILE_CORNER[1] - 2_000,
                            SUPERTILE_CORNER[0] + 1_000, SUPERTILE_CORNER[1] + 2_000), "EPSG:3413", resolution=32)
_LON = tcvis().extent.x0 + 125 * tcvis().fill_chunk * TCVIS_PIXEL
_LAT = tcvis().extent.y0 - 18 * tcvis().fill_chunk * TCVIS_PIXEL
TCVIS_ROI = GeoBox.from_bbox((_LON - 0.05, _LAT - 0.03, _LON + 0.02, _LAT + 0.01), "EPSG:4326", resolution=TCVIS_PIXEL)
LOAD_SCRIPT = """
import sys
import numpy as np
from odc.geo.geobox import GeoBox
from darts_aux import load_arcticdem, load_tcvis

kind, out, crs, resolution, *bbox = sys.argv[1:]
geobox = GeoBox.from_bbox(tuple(map(float, bbox)), crs, resolution=float(resolution))
ds = load_arcticdem(geobox, None, 32) if kind == "arcticdem" else load_tcvis(geobox)
np.savez(out, **{name: ds[name].values for name in ds.data_vars})
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any DARTS_AUX_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARTS_AUX_")}
    return env | extra


class Started:
    """A `python -m …` entry point running as a subprocess, its stdout and stderr captured in files."""

    def __init__(self, args: list[str], folder: Path) -> None:
        self.out, self.err = folder / "stdout.txt", folder / "stderr.txt"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=clean_env(), start_new_session=True)

    def stdout(self) -> list[str]:
        return self.out.read_text().splitlines()

    def stderr(self) -> list[str]:
        return self.err.read_text().splitlines()

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until the command says it is ready (fails at once if it exits first)."""
        deadline = time.monotonic() + timeout
        while not any(line.startswith("ready in ") for line in self.stderr()):
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}: {self.err.read_text()}"
            assert time.monotonic() < deadline, f"not ready after {timeout:.0f} s: {self.err.read_text()}"
            time.sleep(0.2)

    def terminate(self) -> int:
        """SIGTERM, as a service manager stops it; its exit status."""
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise


@contextmanager
def started(args: list[str], folder: Path) -> Iterator[Started]:
    """Start an entry point and make sure its process group is gone afterwards."""
    running = Started(args, folder)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            os.killpg(running.proc.pid, signal.SIGKILL)
            running.proc.wait(30)


@contextmanager
def port_held() -> Iterator[int]:
    """A loopback port another process (here: a plain listening socket) holds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def parse_exports(lines: list[str]) -> dict[str, str]:
    """`export NAME=VALUE` lines as a shell reads them."""
    env: dict[str, str] = {}
    for line in lines:
        words = shlex.split(line)
        assert len(words) == 2 and words[0] == "export", line
        name, _, value = words[1].partition("=")
        env[name] = value
    return env


def run_load(kind: str, geobox: GeoBox, settings: dict[str, str], tmp_path: Path) -> dict[str, np.ndarray]:
    """Load `geobox` in a fresh process that knows only `settings` (plus an own data dir, inline fills)."""
    out = tmp_path / f"{kind}.npz"
    x0, y0, x1, y1 = geobox.boundingbox
    args = [kind, str(out), str(geobox.crs), str(abs(geobox.resolution.x)), *map(repr, (x0, y0, x1, y1))]
    env = clean_env(**settings, DARTS_AUX_DATA_DIR=str(tmp_path / "data"), DARTS_AUX_ORCHESTRATOR="inline")
    done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as arrays:
        return dict(arrays)


def pixel_centres(geobox: GeoBox, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """x (row vector) and y (column vector) of the cube pixels a load of `geobox` returns."""
    product = arcticdem(32) if kind == "arcticdem" else tcvis()
    window = roi_window(geobox, product.extent)
    left, _, _, top = window_bounds(product.extent, window)
    step = product.extent.resolution
    rows, cols = window.shape
    return left + (np.arange(cols)[None, :] + 0.5) * step, top - (np.arange(rows)[:, None] + 0.5) * step


def test_catalog_serves_on_the_chosen_port_and_prints_the_exports(built_catalog: BuildResult, spec: CatalogSpec,
                                                                  tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with started(["darts_aux.local", str(built_catalog.root), "--port", str(port)], tmp_path) as cat:
        cat.wait_ready()
        assert cat.stdout() == [
            f"export DARTS_AUX_STAC_URL={base}/stac/",
            f"export DARTS_AUX_TILE_INDEX_URL={base}/files/ArcticDEM_Mosaic_Index_latest_gpqt.zip",
        ]
        assert cat.stderr()[:4] == [
            f"checking the synthetic catalog in {built_catalog.root.resolve()}",
            f"the catalog in {built_catalog.root.resolve()} is already built ({len(spec.item_ids())} items); "
            "reusing it",
            f"starting the STAC API and the file server on 127.0.0.1:{port}",
            f"serving {len(spec.item_ids())} items: the STAC API at {base}/stac/, the COGs and the tile index "
            f"under {base}/files/",
        ]
        exports = parse_exports(cat.stdout())
        with httpx.Client(timeout=10, trust_env=False) as client:
            landing = client.get(exports["DARTS_AUX_STAC_URL"]).json()
            assert landing["type"] == "Catalog"
            item = client.get(exports["DARTS_AUX_STAC_URL"]
                              + "collections/arcticdem-mosaics-v4.1-32m/items/72_47_32m_v4.1").json()
            dem_href = f"{base}/files/arcticdem/mosaics/v4.1/32m/72_47/72_47_32m_v4.1_dem.tif"
            assert item["assets"]["dem"]["href"] == dem_href
            index = client.get(exports["DARTS_AUX_TILE_INDEX_URL"])
            assert index.status_code == 200 and index.content[:2] == b"PK"
        loaded = run_load("arcticdem", DEM_ROI, exports, tmp_path)
        x, y = pixel_centres(DEM_ROI, "arcticdem")
        dem, mask = expected_pixels(32, x, y, spec)
        np.testing.assert_array_equal(loaded["dem"], dem)
        np.testing.assert_array_equal(loaded["datamask"], mask)
        assert 0 < np.isnan(dem).mean() < 0.5  # data with a hole in it
        assert cat.terminate() == 0
    assert cat.stderr()[-1] == "stopping"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", trust_env=False, timeout=5)


def test_earth_engine_serves_on_the_chosen_port_and_prints_the_exports(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with started(["darts_aux.local.earthengine", "--port", str(port)], tmp_path) as local_ee:
        local_ee.wait_ready(60)
        assert local_ee.stdout() == [
            f"export DARTS_AUX_EE_URL={url}",
            "export DARTS_AUX_EE_PROJECT=local-project",
            "export DARTS_AUX_EE_CREDENTIALS=anonymous",
        ]
        assert local_ee.stderr()[0] == f"starting the local Earth Engine on 127.0.0.1:{port}"
        assert httpx.get(f"{url}/healthz", trust_env=False, timeout=5).headers["x-server-pid"] != str(os.getpid())
        # offline, the client's deprecation check goes to the server too, as the command advises
        offline = {"https_proxy": url, "no_proxy": "127.0.0.1,localhost"}
        loaded = run_load("tcvis", TCVIS_ROI, parse_exports(local_ee.stdout()) | offline, tmp_path)
        x, y = pixel_centres(TCVIS_ROI, "tcvis")
        expected = tcvis_pixels(DEFAULT_TCVIS_EDITION, x, y)
        for name, band in TCVIS_BANDS.items():
            np.testing.assert_array_equal(loaded[name], expected[band], err_msg=name)
        assert local_ee.terminate() == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", trust_env=False, timeout=5)


@pytest.mark.parametrize("module", ["darts_aux.local", "darts_aux.local.earthengine"])
def test_a_busy_port_is_one_error_line(module: str, built_catalog: BuildResult) -> None:
    args = [str(built_catalog.root)] if module == "darts_aux.local" else []
    with port_held() as port:
        done = subprocess.run([sys.executable, "-m", module, *args, "--port", str(port)], env=clean_env(),
                              capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", BUSY.format(port=port) + "\n")


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_port_must_be_a_port_number(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--port", port])
    assert exited.value.code == 2
    assert f"argument --port: {port} is not a port number; give one from 1 to 65535" in capsys.readouterr().err


def test_a_fixed_port_keeps_its_url_across_restarts_and_refuses_a_busy_one() -> None:
    port = free_port()
    server = LocalEarthEngine(port=port)
    for _ in range(2):
        with server:
            assert server.url == f"http://127.0.0.1:{port}"
            assert httpx.get(f"{server.url}/healthz", trust_env=False, timeout=5).text == "ok"
            with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is already in use; pass another port"):
                LocalEarthEngine(port=port).start()
    with port_held() as busy, pytest.raises(PortInUseError):
        LocalEarthEngine(port=busy).start()


def test_another_servers_health_answer_does_not_count(tmp_path: Path) -> None:
    """A child that never serves is not taken for healthy because another server answers on its port."""
    with LocalEarthEngine() as other:
        child = spawn([sys.executable, "-c", "import time; time.sleep(3)"], tmp_path / "child.log")
        try:
            wait_healthy(f"{other.url}/healthz", child, tmp_path / "child.log", 10)  # without the check: fooled
            with pytest.raises(ServerStartError, match="server exited with 0"):
                wait_healthy(f"{other.url}/healthz", child, tmp_path / "child.log", 10, own_answer=True)
        finally:
            stop(child)
