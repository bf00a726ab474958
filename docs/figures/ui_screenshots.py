"""Screenshots of the Prefect UI after real fills, for docs/operations.md (docs/img/ui-*.png).

Starts a Prefect server and the embedded local catalog on loopback (a temporary PREFECT_HOME, nothing of the
user's), fills an ArcticDEM region through Prefect (a completed run with its artifacts) and starts one run with
reversed bounds (a failed run with its reason), then photographs the UI pages with headless Chromium.
Run `uv run python docs/figures/ui_screenshots.py` on a machine with Debian's `chromium` installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

IMG = Path(__file__).resolve().parents[1] / "img"
PORT, CATALOG_PORT = 4210, 8795
API = f"http://127.0.0.1:{PORT}/api"
FILL = """
from odc.geo.geobox import GeoBox
from darts_aux import load_arcticdem
from darts_aux.flows.arcticdem import fill_arcticdem
load_arcticdem(GeoBox.from_bbox((620_000, 3_120_000, 780_000, 3_280_000), "EPSG:3413", resolution=32), None, 32)
fill_arcticdem(32, bounds=[690000, 3150000, 650000, 3190000], return_state=True)
"""


def wait_for(url: str, seconds: float = 120) -> None:
    """Poll until `url` answers."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {seconds:.0f} s")


def shoot(url: str, name: str) -> None:
    """One page at 1600 × 1000 px after its scripts have run."""
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tempfile.mkdtemp()}", "--hide-scrollbars", "--window-size=1600,1000",
                    "--virtual-time-budget=20000", f"--screenshot={IMG / name}", url],
                   check=True, capture_output=True, timeout=120)
    print(f"wrote {IMG / name}")


def api_get(path: str, body: str = "{}") -> object:
    """POST a filter to the Prefect API and return the JSON answer."""
    import json

    request = urllib.request.Request(f"{API}{path}", data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def main() -> None:
    """Server, catalog, fills, screenshots; everything started here is stopped at the end."""
    home = Path(tempfile.mkdtemp(prefix="darts-aux-ui-"))
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": API,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "DARTS_AUX_ORCHESTRATOR": "prefect",
           "DARTS_AUX_DATA_DIR": str(home / "data")}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                               str(PORT)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    catalog = subprocess.Popen([sys.executable, "-m", "darts_aux.local", "--port", str(CATALOG_PORT)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_for(f"{API}/health")
        assert catalog.stdout is not None
        for line in catalog.stdout:
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").strip().partition("=")
                env[key] = value.strip("'\"")
            if "DARTS_AUX_STAC_URL" in env and "DARTS_AUX_TILE_INDEX_URL" in env:
                break
        subprocess.run([sys.executable, "-c", FILL], env=env, check=True)
        runs = api_get("/flow_runs/filter", '{"sort": "START_TIME_DESC"}')
        by_state = {run["state_type"]: run["id"] for run in runs}  # type: ignore[union-attr]
        shoot(f"http://127.0.0.1:{PORT}/runs", "ui-runs.png")
        shoot(f"http://127.0.0.1:{PORT}/runs/flow-run/{by_state['COMPLETED']}", "ui-run.png")
        artifacts = {a["key"]: a["id"] for a in api_get("/artifacts/filter")}  # type: ignore[union-attr]
        shoot(f"http://127.0.0.1:{PORT}/artifacts/artifact/{artifacts['arcticdem-32m-summary']}", "ui-summary.png")
        shoot(f"http://127.0.0.1:{PORT}/artifacts/artifact/{artifacts['arcticdem-32m-chunks']}", "ui-chunks.png")
        shoot(f"http://127.0.0.1:{PORT}/runs/flow-run/{by_state['FAILED']}", "ui-failed-run.png")
    finally:
        for process in (catalog, server):
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
