"""The command line as an operator meets it: the plan before a fill, data directories, Prefect not answering,
compacted manifests that stay GeoParquet, help and output text.

Requests are counted from the local catalog's own log; manifest files are read back with geopandas.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import pytest
from typer.testing import CliRunner

from darts_aux.cli import app
from darts_aux.cli_support import coverage_map_path
from darts_aux.fill import COMPACT_AFTER_SEGMENTS
from darts_aux.grid import ChunkGrid, ChunkId
from darts_aux.local import LocalCatalog
from darts_aux.manifest import ChunkRecord, Manifest, utc_now
from darts_aux.products import arcticdem
from darts_aux.store import cube_paths

from .test_cli import BBOX_1_CHUNK, BBOX_2_CHUNKS, _assert_coverage_png, _bbox_args, _table_row, _window

ARCTICDEM_32 = arcticdem(32)
# Two 32 m chunks (32 km) on a side, but the chunk edges lie at x = -96 m + k × 32,000 m and y = 4,096 m +
# k × 32,000 m: the box touches chunk rows 126…128 and columns 125…127, x -96 … 95,904 m, y -27,904 … 68,096 m.
BOX_64_KM = (0.0, 0.0, 64_000.0, 64_000.0)
# BBOX_2_CHUNKS widened east across x = 671,904: its two chunks and one more (r0030c0146).
BBOX_3_CHUNKS = (635_000, 3_112_000, 680_000, 3_138_000)
CHUNK_MB = ARCTICDEM_32.fill_chunk ** 2 * ARCTICDEM_32.bytes_per_pixel / 1e6
"""What the plan estimates a fill reads per chunk searched: its pixels, uncompressed (5.0 MB)."""
runner = CliRunner()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _invoke(*args: str) -> object:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under a folder with its size and modification time (ns): what a dry run must leave alone."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _manifest(data_dir: Path) -> Manifest:
    return Manifest(cube_paths(data_dir, ARCTICDEM_32).manifest, ChunkGrid(ARCTICDEM_32))


def _far_rows(count: int) -> list[ChunkRecord]:
    """Rows of chunks far from the test regions (chunk rows 0 and 1), one per segment to append (partial, empty)."""
    return [ChunkRecord(ChunkId(i // 40, i % 40), "partial", (), (), 0.0, utc_now(), None) for i in range(count)]


def _assert_geoparquet(path: object, manifest: Manifest, epsg: int = 3413) -> gpd.GeoDataFrame:
    """The file opens in geopandas with its CRS; each footprint is its chunk's."""
    frame = gpd.read_parquet(path)
    assert frame.crs.to_epsg() == epsg
    for chunk_id, footprint in zip(frame.chunk_id, frame.geometry):
        assert footprint.equals(manifest.grid.footprint(ChunkId.parse(chunk_id)))
    return frame


# -- the plan (--dry-run) ------------------------------------------------------------------------


def test_dry_run_of_a_64_km_box_shows_9_chunks_and_asks_nothing(use_catalog: LocalCatalog, tmp_path: Path) -> None:
    data_dir = tmp_path / "new"
    result = _invoke("fetch", "arcticdem", *_bbox_args(BOX_64_KM), "--dry-run", "--data-dir", str(data_dir))
    out = " ".join(result.stdout.split())
    assert ("plan for arcticdem-32m: 9 chunks over the region (3 × 3), 0 full, 0 partial, 9 not fetched yet; a fill "
            f"searches 9 chunks and reads about {9 * CHUNK_MB:,.1f} MB of pixels") in out
    assert "the chunks cover x -96 m … 95,904 m and y -27,904 m … 68,096 m (EPSG:3413)" in out
    assert ("fits in 4 chunks, but this one touches 9: chunk edges lie at x = -96 m + k × 32,000 m and "
            "y = 4,096 m + k × 32,000 m") in out
    assert f"dry run: nothing was downloaded or written; data directory {data_dir} does not exist yet" in out
    assert "e+" not in out
    assert use_catalog.requests() == [], "a dry run asks no source"
    assert not data_dir.exists(), "a dry run creates nothing"


def test_dry_run_counts_full_chunks_and_writes_nothing(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    data_dir = tmp_path / "cubes"
    _invoke("fetch", "arcticdem", *_bbox_args(BBOX_2_CHUNKS), "--data-dir", str(data_dir))
    chunks = ChunkGrid(ARCTICDEM_32).chunks(_window(ARCTICDEM_32, BBOX_3_CHUNKS, "EPSG:3413"))
    assert len(chunks) == 3
    before = _files(data_dir)
    use_catalog.reset_log()

    wider = _invoke("fetch", "arcticdem", *_bbox_args(BBOX_3_CHUNKS), "--dry-run", "--data-dir", str(data_dir))
    assert ("3 chunks over the region (1 × 3), 2 full, 0 partial, 1 not fetched yet; a fill searches 1 chunk and "
            f"reads about {CHUNK_MB:,.1f} MB of pixels") in " ".join(wider.stdout.split())
    last = wider.stdout.strip().splitlines()[-1]
    assert last == f"dry run: nothing was downloaded or written; data directory {data_dir}"
    settled = _invoke("fetch", "arcticdem", *_bbox_args(BBOX_2_CHUNKS), "--dry-run", "--data-dir", str(data_dir))
    assert "2 full, 0 partial, 0 not fetched yet; nothing to fetch" in " ".join(settled.stdout.split())
    assert use_catalog.requests() == []
    assert _files(data_dir) == before, "a dry run writes nothing, not even a probe or a claim"


# -- data directories ----------------------------------------------------------------------------


def test_fetch_creates_a_new_data_dir_and_says_so_once(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "cubes"
    first = _invoke("fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--data-dir", str(data_dir))
    assert [line for line in first.stderr.splitlines() if "data directory" in line] == [
        f"created data directory {data_dir}"]
    assert set(_manifest(data_dir).latest()) == set(ChunkGrid(ARCTICDEM_32).chunks(
        _window(ARCTICDEM_32, BBOX_1_CHUNK, "EPSG:3413")))
    second = _invoke("fetch", "arcticdem", *_bbox_args(BBOX_2_CHUNKS), "--data-dir", str(data_dir))
    assert "data directory" not in second.stderr


# -- compacted manifests stay GeoParquet ---------------------------------------------------------


def test_manifest_compact_keeps_geoparquet_and_status_maps_it(use_catalog: LocalCatalog, inline: None,
                                                              tmp_path: Path) -> None:
    data_dir = tmp_path / "cubes"
    _invoke("fetch", "arcticdem", *_bbox_args(BBOX_2_CHUNKS), "--data-dir", str(data_dir))
    _invoke("fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--data-dir", str(data_dir))
    manifest = _manifest(data_dir)
    segments = len(manifest.files())
    assert segments >= 2
    before = manifest.latest()

    result = _invoke("manifest", "compact", "--data-dir", str(data_dir))
    assert result.stdout.strip() == f"arcticdem-32m: folded {segments} files into one"
    (compacted,) = manifest.files()
    assert compacted.name.startswith("compacted-")
    frame = _assert_geoparquet(compacted, manifest)
    assert sorted(frame.chunk_id) == sorted(str(c) for c in before) and set(frame.status) == {"full"}
    assert manifest.latest() == before

    again = _invoke("manifest", "compact", "--data-dir", str(data_dir))
    assert again.stdout.strip() == "arcticdem-32m: one file already, nothing to fold"
    out = tmp_path / "map.png"
    _invoke("status", "--data-dir", str(data_dir), "--map", str(out))
    _assert_coverage_png(coverage_map_path(out, ARCTICDEM_32))


def test_automatic_compaction_keeps_geoparquet(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    data_dir = tmp_path / "cubes"
    _invoke("fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--data-dir", str(data_dir))
    manifest = _manifest(data_dir)
    for row in _far_rows(COMPACT_AFTER_SEGMENTS + 1 - len(manifest.files())):
        manifest.append([row])
    assert len(manifest.files()) == COMPACT_AFTER_SEGMENTS + 1
    before = manifest.latest()

    _invoke("fetch", "arcticdem", *_bbox_args(BBOX_2_CHUNKS), "--data-dir", str(data_dir))  # its commit compacts
    # Compacted at the fill's first commit; the second of its two chunks may come in a later commit, one segment.
    files = manifest.files()
    assert files[0].name.startswith("compacted-") and len(files) <= 2, [f.name for f in files]
    frames = [_assert_geoparquet(path, manifest) for path in files]
    fetched = ChunkGrid(ARCTICDEM_32).chunks(_window(ARCTICDEM_32, BBOX_2_CHUNKS, "EPSG:3413"))
    assert {c for frame in frames for c in frame.chunk_id} == {str(c) for c in {*before, *fetched}}
    assert len(frames[0]) >= len(before), "the compacted file holds every chunk recorded before"
    out = tmp_path / "map.png"
    status = _invoke("status", "--data-dir", str(data_dir), "--map", str(out))
    assert _table_row(status.stdout, "arcticdem-32m")[1:3] == ["3", str(len(before) - 1)]
    _assert_coverage_png(coverage_map_path(out, ARCTICDEM_32))


# -- output text ---------------------------------------------------------------------------------


def test_counts_agree_with_their_nouns(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    data_dir = tmp_path / "cubes"
    tif = tmp_path / "roi.tif"
    loaded = _invoke("load", "arcticdem", *_bbox_args(BBOX_1_CHUNK), "--out", str(tif), "--data-dir", str(data_dir))
    assert "load arcticdem-32m" in loaded.stdout and "fetch arcticdem-32m" not in loaded.stdout
    verified = _invoke("verify", "--data-dir", str(data_dir))
    assert "arcticdem-32m: 1 chunk checked, all present and readable" in verified.stdout
    rebuilt = _invoke("manifest", "rebuild", "--data-dir", str(data_dir))
    assert rebuilt.stdout.strip() == "arcticdem-32m: 1 chunk recorded from the store's history"
    _assert_geoparquet(_manifest(data_dir).files()[0], _manifest(data_dir))


COMMANDS = [[], ["fetch"], ["load"], ["status"], ["verify"], ["serve"], ["demo"], ["manifest"],
            ["manifest", "compact"], ["manifest", "rebuild"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "darts-aux")
def test_help_shows_flags_without_a_value_placeholder(command: list[str]) -> None:
    result = _invoke(*command, "--help")
    assert "--help" in result.stdout and "<bool>" not in result.stdout


def test_the_flags_are_still_listed_and_the_demo_names_tcvis() -> None:
    assert "--verbose" in _invoke("--help").stdout and "--dry-run" in _invoke("fetch", "--help").stdout
    assert "--repair" in _invoke("verify", "--help").stdout
    demo = _invoke("demo", "--help").stdout
    assert "TCVIS" in demo and "ArcticDEM" in demo and "--inline" in demo
    assert "TCVIS" in _invoke("--help").stdout, "the demo's line in the command list"


# -- Prefect not answering -----------------------------------------------------------------------


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "darts_aux.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def test_fetch_with_prefect_not_answering_is_one_line(use_catalog: LocalCatalog, tmp_path: Path) -> None:
    api = f"http://127.0.0.1:{closed_port()}/api"
    data_dir = tmp_path / "cubes"
    env = {**os.environ, "PREFECT_API_URL": api, "DARTS_AUX_DATA_DIR": str(data_dir)}
    env.pop("DARTS_AUX_ORCHESTRATOR", None)  # 'auto': a configured API means fills go through Prefect
    started = time.perf_counter()
    result = _run(env, "fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK))
    seconds = time.perf_counter() - started
    assert result.returncode == 1 and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"error: the Prefect API at {api} does not answer (connection refused); ")
    assert "'prefect server start'" in lines[0] and "DARTS_AUX_ORCHESTRATOR=inline" in lines[0]
    assert seconds < 60, f"{seconds:.0f} s: no minutes of retries"
    assert use_catalog.requests() == [] and not data_dir.exists()

    verbose = _run(env, "--verbose", "fetch", "arcticdem", *_bbox_args(BBOX_1_CHUNK))
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == lines[0]


def test_load_with_prefect_not_answering_raises_a_typed_error_quickly(
        use_catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from odc.geo.geobox import GeoBox

    from darts_aux import load_arcticdem
    from darts_aux.errors import ConfigurationError, OrchestratorUnavailableError

    api = f"http://127.0.0.1:{closed_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", api)
    started = time.perf_counter()
    with pytest.raises(OrchestratorUnavailableError, match="prefect server start") as caught:
        load_arcticdem(GeoBox.from_bbox(BBOX_1_CHUNK, "EPSG:3413", resolution=32), tmp_path / "cubes", 32)
    assert time.perf_counter() - started < 10
    assert isinstance(caught.value, ConfigurationError) and "DARTS_AUX_ORCHESTRATOR=inline" in str(caught.value)
    assert use_catalog.requests() == []


# -- the fill flow's first line ------------------------------------------------------------------


def test_a_fill_flow_logs_its_plan_before_any_request(use_catalog: LocalCatalog, via_prefect: None,
                                                      tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from darts_aux.flows.arcticdem import fill_arcticdem
    from darts_aux.grid import window_bounds

    window = _window(ARCTICDEM_32, BBOX_2_CHUNKS, "EPSG:3413")
    state = fill_arcticdem(32, window_bounds(ARCTICDEM_32.extent, window), str(tmp_path / "cubes"), return_state=True)
    assert state.result().chunks_fetched == 2
    first_request = min(r["time"] for r in use_catalog.requests())
    deadline = time.monotonic() + 30  # the API log worker sends in batches
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])),
                                    limit=200)
        ours = sorted((log for log in logs if log.name.startswith("darts_aux")), key=lambda log: log.timestamp)
        if any(" fill: " in log.message for log in ours) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    first = ours[0]
    assert (first.name, first.task_run_id) == ("darts_aux.plan", None), [(log.name, log.message) for log in ours]
    assert first.message.startswith(
        "plan for arcticdem-32m: 2 chunks over the region (1 × 2), 0 full, 0 partial, 2 not fetched yet; a fill "
        f"searches 2 chunks and reads about {2 * CHUNK_MB:,.1f} MB of pixels; a region of this size fits in 1 chunk, "
        "but this one touches 2: chunk edges lie at x = -96 m + k × 32,000 m")
    assert first.timestamp.timestamp() < first_request, "the plan is logged before the first request to the catalog"
