"""The demo's Prefect lives in the demo's output folder, never in the user's ~/.prefect or on their server."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from darts_aux.demo import demo_prefect
from darts_aux.local._procs import free_port
from darts_aux.local.catalog import LocalCatalog
from darts_aux.local.spec import SUPERTILE_CORNER

FILL = """
import sys
from pathlib import Path

out, order = Path(sys.argv[1]), sys.argv[2]
if order == "prefect imported first":
    import prefect  # noqa: F401
from odc.geo.geobox import GeoBox
from darts_aux.demo import demo_prefect

with demo_prefect(out) as home:
    from darts_aux import load_arcticdem

    load_arcticdem(GeoBox.from_bbox(tuple(map(float, sys.argv[3:7])), "EPSG:3413", resolution=32), out / "data", 32)
    print(home)
"""
ROI = (SUPERTILE_CORNER[0] - 2_000, SUPERTILE_CORNER[1] - 2_000, SUPERTILE_CORNER[0] + 2_000, SUPERTILE_CORNER[1])


def user_env(home: Path, stac_url: str) -> dict[str, str]:
    """A user's environment: their own HOME, a PREFECT_API_URL of their own (down), no PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DARTS_AUX_"))}
    return env | {
        "HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "DARTS_AUX_STAC_URL": stac_url,
        "DARTS_AUX_ORCHESTRATOR": "prefect",
        "DARTS_AUX_RETRY_DELAY_SECONDS": "0.05",
    }


@pytest.mark.parametrize("order", ["prefect imported first", "prefect imported in the demo"])
def test_demo_flow_runs_land_in_the_demo_folder(catalog: LocalCatalog, tmp_path: Path, order: str) -> None:
    home, out = tmp_path / "home", tmp_path / "demo-output"
    home.mkdir()
    done = subprocess.run([sys.executable, "-c", FILL, str(out), order, *map(str, ROI)],
                          env=user_env(home, catalog.stac_url), capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    demo_home = out / ".prefect"
    assert done.stdout.splitlines()[-1] == str(demo_home.resolve())
    with sqlite3.connect(demo_home / "prefect.db") as db:
        runs = db.execute("SELECT flow.name, flow_run.state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id"
                          ).fetchall()
        artifacts = db.execute("SELECT count(*) FROM artifact").fetchone()[0]
    assert runs == [("fill_arcticdem", "COMPLETED")]
    assert artifacts > 0
    # Importing Prefect makes an empty ~/.prefect; the demo puts nothing there.
    user_files = sorted(p for p in (home / ".prefect").rglob("*")) if (home / ".prefect").exists() else []
    assert user_files == []
    if order == "prefect imported in the demo":
        assert not (home / ".prefect").exists()


def test_demo_prefect_replaces_and_restores_the_prefect_environment(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "user"))
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    before = dict(os.environ)
    with demo_prefect(tmp_path / "out") as home:
        assert home == (tmp_path / "out" / ".prefect").resolve()
        assert os.environ["PREFECT_HOME"] == str(home)
        assert "PREFECT_API_URL" not in os.environ
        assert os.environ["DO_NOT_TRACK"] == "1"
        assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert dict(os.environ) == before
