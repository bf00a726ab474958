"""Cubes on S3-compatible object storage (moto on loopback): fills and loads exact, manifest on S3, no lock."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem, load_tcvis
from darts_aux.cubes import commit_rows
from darts_aux.grid import ChunkGrid, roi_window
from darts_aux.local import LocalCatalog
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.location import S3Location, as_location
from darts_aux.manifest import Manifest
from darts_aux.products import Product, arcticdem, tcvis
from darts_aux.store import Cube, cube_paths

from ._s3 import BUCKET, S3Server, load_region_in_worker, s3_data_dir, s3_server  # noqa: F401 - fixtures
from .conftest import formula_oracle, point_at, rasterio_mosaic
from .test_tcvis import BANDS, ROI_4_CHUNKS
from .test_tcvis import oracle as tcvis_oracle

# Four 32 m chunks (rows 30–31, columns 143–144) around the corner of supertiles 71_46 … 72_47 (as in
# test_arcticdem_load.py).
ROI_32M = GeoBox.from_bbox((590_000, 3_090_000, 630_000, 3_130_000), "EPSG:3413", resolution=32)


@pytest.fixture
def filled_s3(use_catalog: LocalCatalog, inline: None, s3_server: S3Server, s3_data_dir: str) -> tuple[str, object]:
    """A 32 m cube on S3 filled by one load of ROI_32M (4 chunks); the data_dir URL and the loaded dataset."""
    return s3_data_dir, load_arcticdem(ROI_32M, s3_data_dir, 32)


def test_arcticdem_on_s3_equals_the_oracle_and_its_manifest_reads_with_geopandas(
        filled_s3: tuple[str, object], use_catalog: LocalCatalog, s3_server: S3Server,
        tmp_path) -> None:
    product = arcticdem(32)
    window = roi_window(ROI_32M, product.extent)
    s3_data_dir, ds = filled_s3
    oracle = rasterio_mosaic(use_catalog, 32, window)
    np.testing.assert_array_equal(ds.dem.values, oracle["dem"])
    np.testing.assert_array_equal(ds.datamask.values, oracle["datamask"])
    assert np.isfinite(ds.dem.values).mean() > 0.5

    prefix = s3_data_dir.removeprefix(f"s3://{BUCKET}/")
    keys = s3_server.keys(prefix)
    assert f"{prefix}/arcticdem-32m/cube.json" in keys
    assert any(k.startswith(f"{prefix}/arcticdem-32m/store.icechunk/refs/") for k in keys)
    assert any(k.startswith(f"{prefix}/arcticdem-32m/manifest/segments/") for k in keys)
    leftovers = [k for k in keys if ("/staging/" in k and not k.endswith("/")) or k.endswith(".lock")]
    assert not leftovers, "staged chunks are removed, no lock file"
    assert not (tmp_path / "data").exists(), "nothing is written to the local data dir"

    use_catalog.reset_log()
    again = load_arcticdem(ROI_32M, s3_data_dir, 32, persist=False)
    np.testing.assert_array_equal(again.dem.values, ds.dem.values)
    assert use_catalog.requests() == [], "a settled S3 cube is read without asking the sources"
    _check_manifest_with_geopandas(s3_data_dir, s3_server)


ARCTICDEM_32M = arcticdem(32)


def _check_manifest_with_geopandas(s3_data_dir: str, s3_server: S3Server, product: Product = ARCTICDEM_32M,
                                  epsg: int = 3413) -> None:
    """The manifest's segments on S3 open with geopandas.read_parquet through a plain pyarrow S3 filesystem."""
    import geopandas
    import pyarrow.fs as pafs
    import shapely

    location = as_location(s3_data_dir)
    assert isinstance(location, S3Location)
    manifest = Manifest(cube_paths(location, product).manifest, ChunkGrid(product))
    files = manifest.files()
    assert files and all(isinstance(f, S3Location) for f in files)
    fs = pafs.S3FileSystem(endpoint_override=s3_server.endpoint.removeprefix("http://"), scheme="http",
                           access_key="test-access-key", secret_key="test-secret-key", region="us-east-1")
    frame = geopandas.read_parquet(files[0].path, filesystem=fs)
    assert frame.crs.to_epsg() == epsg and len(frame) >= 1
    assert set(frame.status) <= {"full", "partial"}
    assert shapely.area(frame.geometry.to_numpy()).min() > 0  # in the frame's own units, degrees for TCVIS
    latest = manifest.latest()
    assert len(latest) == 4 and all(r.snapshot_id for r in latest.values())


def test_tcvis_fill_and_load_on_s3_equal_the_formula(use_earth_engine: LocalEarthEngine, inline: None,
                                                     s3_server: S3Server, s3_data_dir: str) -> None:
    product = tcvis()
    window = roi_window(ROI_4_CHUNKS, product.extent)
    ds = load_tcvis(ROI_4_CHUNKS, s3_data_dir)
    expected = tcvis_oracle(product, window)
    for name in BANDS:
        np.testing.assert_array_equal(ds[name].values, expected[name], err_msg=name)
    rows = Manifest(cube_paths(as_location(s3_data_dir), product).manifest, ChunkGrid(product)).latest()
    assert len(rows) == 4 and all(r.status == "full" for r in rows.values())
    _check_manifest_with_geopandas(s3_data_dir, s3_server, product, epsg=4326)


def test_two_processes_filling_overlapping_rois_on_s3_lose_nothing(use_catalog: LocalCatalog, s3_server: S3Server,
                                                                   s3_data_dir: str) -> None:
    """Two spawned processes fill overlapping 32 m ROIs (2 chunks each, one shared) into one S3 cube at once."""
    product = arcticdem(32)
    # 32 km chunks: the first ROI spans r0030c0143 and r0030c0144, the second r0029c0144 and r0030c0144.
    rois = [(595_000.0, 3_112_000.0, 620_000.0, 3_135_000.0), (615_000.0, 3_112_000.0, 630_000.0, 3_150_000.0)]
    settings = {"stac_url": use_catalog.stac_url, "orchestrator": "inline", "retry_delay_seconds": "0.05"}
    start_at = time.time() + 6.0  # both processes imported and waiting: the fills start together
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = [pool.apply_async(load_region_in_worker, (settings, s3_data_dir, bounds, 32, start_at))
                   for bounds in rois]
        valid = [r.get(timeout=300) for r in results]
    assert all(v > 0 for v in valid)

    cube = Cube.open(as_location(s3_data_dir), product)
    grid = ChunkGrid(product)
    latest = Manifest(cube.paths.manifest, grid).latest()
    chunks = sorted({c for bounds in rois
                     for c in grid.chunks(roi_window(GeoBox.from_bbox(bounds, "EPSG:3413", resolution=32),
                                                     product.extent))})
    shared = set(grid.chunks(roi_window(GeoBox.from_bbox(rois[0], "EPSG:3413", resolution=32), product.extent))) & set(
        grid.chunks(roi_window(GeoBox.from_bbox(rois[1], "EPSG:3413", resolution=32), product.extent)))
    assert len(shared) == 1 and len(chunks) == 3, "the ROIs share one chunk"
    committed = [row for s in cube.history() for row in commit_rows(s.metadata or {})]
    assert {row["chunk"] for row in committed} == {str(c) for c in chunks}, "every chunk was committed"
    for chunk in chunks:
        window = grid.window(chunk)
        dem, mask = formula_oracle(use_catalog, 32, window)
        got = cube.read(window)
        np.testing.assert_array_equal(got["dem"], dem, err_msg=str(chunk))
        np.testing.assert_array_equal(got["datamask"], mask, err_msg=str(chunk))
        record = latest[chunk]
        assert record.snapshot_id and record.status == "full", (chunk, record)
        assert set(record.items_applied) <= {item for row in committed if row["chunk"] == str(chunk)
                                             for item in row["items_applied"]}, "a row never over-claims"


@pytest.mark.parametrize("value", ["s3://", "s3:///prefix", "s3://bad bucket/x"])
def test_bad_object_store_urls_are_refused(value: str, tmp_path) -> None:
    from darts_aux.errors import DataDirError

    with pytest.raises(DataDirError, match="s3://bucket/prefix"):
        load_arcticdem(ROI_32M, value, 32)
    assert not (tmp_path / "data").exists()




def test_tile_index_discovery_with_an_s3_data_dir_keeps_the_index_in_the_user_cache(
        use_catalog: LocalCatalog, inline: None, s3_server: S3Server, s3_data_dir: str,
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    point_at(use_catalog, monkeypatch, discovery="tile-index", tile_index_url=use_catalog.tile_index_url)
    ds = load_arcticdem(ROI_32M, s3_data_dir, 32)
    oracle = rasterio_mosaic(use_catalog, 32, roi_window(ROI_32M, arcticdem(32).extent))
    np.testing.assert_array_equal(ds.dem.values, oracle["dem"])
    np.testing.assert_array_equal(ds.datamask.values, oracle["datamask"])
    assert use_catalog.requests("stac") == []
    (cached,) = (tmp_path / "cache" / "darts-aux" / "tile-index").iterdir()
    assert (cached / ".complete").exists() and list((cached / "index").rglob("*.parquet"))
    assert [p.name for p in cached.iterdir() if p.name.startswith("fetching-")] == [], "no unpacking left behind"
    prefix = s3_data_dir.removeprefix(f"s3://{BUCKET}/")
    assert not [k for k in s3_server.keys(prefix) if "tile-index" in k]

    use_catalog.reset_log()
    elsewhere = GeoBox.from_bbox((520_000, 3_020_000, 540_000, 3_040_000), "EPSG:3413", resolution=32)
    load_arcticdem(elsewhere, s3_data_dir, 32)
    assert [r for r in use_catalog.requests("files") if r["path"].endswith(".zip")] == [], "the index is read once"


def test_chunk_claims_on_s3_are_exclusive_refreshed_released_and_taken_over_when_stale(
        s3_server: S3Server, s3_data_dir: str) -> None:
    from darts_aux.claims import ChunkClaims
    from darts_aux.grid import ChunkId

    folder, chunk = as_location(f"{s3_data_dir}/claims"), ChunkId(2, 3)
    key = f"{s3_data_dir.removeprefix(f's3://{BUCKET}/')}/claims/{chunk}.claim"
    with ChunkClaims(folder, lease=4) as first, ChunkClaims(folder, lease=4) as second:
        assert first.claim(chunk) is None and s3_server.keys(key) == [key]
        holder = second.claim(chunk)
        assert holder is not None and holder.owner == first.owner
        created = s3_server.client().head_object(Bucket=BUCKET, Key=key)["LastModified"]
        time.sleep(2.2)  # the heartbeat refreshes every lease / 4 = 1 s (S3 keeps whole seconds)
        refreshed = s3_server.client().head_object(Bucket=BUCKET, Key=key)["LastModified"]
        assert refreshed > created and second.claim(chunk) is not None, "a refreshed claim stays held"
        second.release([chunk])
        assert s3_server.keys(key) == [key], "another fill's release leaves the claim alone"
        first.release([chunk])
        assert s3_server.keys(key) == [] and second.claim(chunk) is None

    abandoned = ChunkClaims(folder, lease=2)  # never entered: no heartbeat, as if its process had died elsewhere
    assert abandoned.claim(chunk) is None
    with ChunkClaims(folder, lease=2) as taker:
        assert taker.claim(chunk) is not None
        time.sleep(3.2)
        assert taker.claim(chunk) is None and taker.held() == {chunk}
    assert s3_server.keys(key) == []


def test_manifests_on_s3_stay_geoparquet_after_automatic_and_manual_compaction(
        filled_s3: tuple[str, object], use_catalog: LocalCatalog, s3_server: S3Server, tmp_path) -> None:
    from typer.testing import CliRunner

    from darts_aux.cli import app
    from darts_aux.cli_support import coverage_map_path
    from darts_aux.fill import COMPACT_AFTER_SEGMENTS
    from darts_aux.grid import ChunkId
    from darts_aux.manifest import ChunkRecord, utc_now

    s3_data_dir, _ = filled_s3
    product = arcticdem(32)
    manifest = Manifest(cube_paths(as_location(s3_data_dir), product).manifest, ChunkGrid(product))
    for i in range(COMPACT_AFTER_SEGMENTS + 1 - len(manifest.files())):  # chunk rows 0-1: far from the ROIs
        manifest.append([ChunkRecord(ChunkId(i // 40, i % 40), "partial", (), (), 0.0, utc_now(), None)])
    assert len(manifest.files()) == COMPACT_AFTER_SEGMENTS + 1
    recorded = set(manifest.latest())

    east = GeoBox.from_bbox((785_000, 3_145_000, 810_000, 3_155_000), "EPSG:3413", resolution=32)  # r0029c0149+1
    load_arcticdem(east, s3_data_dir, 32)  # the fill's commit folds the segments
    files = manifest.files()  # compacted at its first commit; the second chunk may add one segment after that
    assert files[0].name.startswith("compacted-") and len(files) <= 2, [f.name for f in files]
    frames = [_geopandas_on_s3(path, s3_server) for path in files]
    assert all(frame.crs.to_epsg() == 3413 for frame in frames)
    new = set(ChunkGrid(product).chunks(roi_window(east, product.extent)))
    assert len(new - recorded) == 2
    assert {c for frame in frames for c in frame.chunk_id} == {str(c) for c in recorded | new}

    runner = CliRunner()
    compacted = runner.invoke(app, ["manifest", "compact", "--data-dir", s3_data_dir])
    assert compacted.exit_code == 0, compacted.output
    assert compacted.stdout.strip() in ("arcticdem-32m: folded 2 files into one",
                                        "arcticdem-32m: one file already, nothing to fold")
    (only,) = manifest.files()
    frame = _geopandas_on_s3(only, s3_server)
    assert frame.crs.to_epsg() == 3413 and set(frame.chunk_id) == {str(c) for c in recorded | new}
    for chunk_id, footprint in zip(frame.chunk_id, frame.geometry):
        assert footprint.equals(manifest.grid.footprint(ChunkId.parse(chunk_id)))

    out = tmp_path / "map.png"
    status = runner.invoke(app, ["status", "--data-dir", s3_data_dir, "--map", str(out)])
    assert status.exit_code == 0, status.output
    assert coverage_map_path(out, product).stat().st_size > 10_000
    verified = runner.invoke(app, ["verify", "--data-dir", s3_data_dir])  # an s3:// --data-dir is not a folder
    assert verified.exit_code == 0, verified.output
    assert "arcticdem-32m" in verified.stdout and "no cube" not in verified.output


def _geopandas_on_s3(path: S3Location, s3_server: S3Server):
    """A manifest file on S3 read by geopandas through a plain pyarrow S3 filesystem (as any GeoParquet reader)."""
    import geopandas
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(endpoint_override=s3_server.endpoint.removeprefix("http://"), scheme="http",
                           access_key="test-access-key", secret_key="test-secret-key", region="us-east-1")
    return geopandas.read_parquet(path.path, filesystem=fs)
