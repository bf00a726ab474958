"""The generated COGs: layout, encoding, sparse blocks, and content equal to the formula oracle."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from filelock import FileLock
from rasterio.windows import Window

from darts_aux.local.generate import MARKER, BuildResult, build_catalog, is_built
from darts_aux.local.spec import SUPERTILE_CORNER, CatalogSpec, around, default_spec
from darts_aux.local.synthetic import expected_pixels, pixel_centres, tile_valid_mask
from darts_aux.local.tiles import TileRef

ASSETS = {"dem": ("float32", -9999.0, "3"), "datamask": ("uint8", 0.0, "2")}


def _file_stamps(root: Path) -> list[tuple[Path, int, int]]:
    """Every file under root with its modification time and size, to tell whether anything was written."""
    return [(path, path.stat().st_mtime_ns, path.stat().st_size) for path in sorted(root.rglob("*")) if path.is_file()]


def test_second_build_is_a_no_op(built_catalog: BuildResult, spec: CatalogSpec) -> None:
    before = _file_stamps(built_catalog.root)
    again = build_catalog(built_catalog.root, spec)
    assert not again.built and again.fingerprint == built_catalog.fingerprint
    assert _file_stamps(built_catalog.root) == before, "nothing added, removed or rewritten"
    assert (built_catalog.root / MARKER).exists()


def test_held_back_does_not_change_the_files(built_catalog: BuildResult, spec: CatalogSpec) -> None:
    assert is_built(built_catalog.root, spec.with_held_back(spec.item_ids(2)[:1]))


def _all_assets(spec: CatalogSpec) -> list[tuple[str, str]]:
    return [(i, a) for i in spec.item_ids() for a in ASSETS]


@pytest.mark.parametrize(("item_id", "asset"), _all_assets(default_spec()))
def test_cog_format(built_catalog: BuildResult, item_id: str, asset: str) -> None:
    tile = TileRef.parse(item_id)
    path = built_catalog.root / tile.asset_relpath(asset)
    dtype, nodata, predictor = ASSETS[asset]
    with rasterio.open(path) as ds:
        structure = ds.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG"
        assert structure["COMPRESSION"] == "LZW"
        assert structure["PREDICTOR"] == predictor
        assert ds.block_shapes == [(512, 512)]
        assert ds.dtypes == (dtype,) and ds.nodata == nodata
        assert ds.crs.to_epsg() == 3413
        assert ds.shape == tile.shape and ds.transform == tile.transform
    with open(path, "rb") as fh:
        head = fh.read(300)
    assert head[:4] == b"II*\x00"
    assert b"GDAL_STRUCTURAL_METADATA" in head and b"LAYOUT=IFDS_BEFORE_DATA" in head
    assert b"BLOCK_ORDER=ROW_MAJOR" in head


@pytest.mark.parametrize("item_id", ["72_47_32m_v4.1", "73_48_1_1_2m_v4.1", "73_47_10m_v4.1"])
def test_cog_blocks_follow_the_ifd_in_row_major_order(built_catalog: BuildResult, item_id: str) -> None:
    """rio-cogeo's core checks: every data block after the IFD, blocks stored row by row."""
    path = built_catalog.root / TileRef.parse(item_id).asset_relpath("dem")
    with rasterio.open(path) as ds:
        ifd = int(ds.get_tag_item("IFD_OFFSET", "TIFF", bidx=1))
        rows, cols = -(-ds.height // 512), -(-ds.width // 512)
        offsets = []
        for r in range(rows):
            for c in range(cols):
                value = ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1)
                if value not in (None, "", "0"):
                    offsets.append(int(value))
    assert offsets and min(offsets) > ifd
    assert offsets == sorted(offsets)


@pytest.mark.parametrize(
    ("item_id", "window"),
    [
        ("72_47_32m_v4.1", Window(3000, 0, 131, 300)),  # top-right: buffers towards 72_48 and 73_47
        ("71_46_32m_v4.1", Window(0, 2900, 400, 231)),  # four-tile corner with a km-sized hole
        ("73_48_32m_v4.1", Window(0, 0, 200, 150)),  # the coast edge, a hole across it
        ("72_47_10m_v4.1", Window(9500, 0, 520, 400)),
        ("73_48_1_1_2m_v4.1", Window(0, 24_300, 900, 800)),
        ("72_46_2_2_2m_v4.1", Window(0, 24_000, 1024, 1100)),
    ],
)
def test_windowed_read_equals_formula(
    built_catalog: BuildResult, spec: CatalogSpec, item_id: str, window: Window
) -> None:
    tile = TileRef.parse(item_id)
    x, y = pixel_centres(tile, window)
    with rasterio.open(built_catalog.root / tile.asset_relpath("dem")) as ds:
        dem = ds.read(1, window=window)
    with rasterio.open(built_catalog.root / tile.asset_relpath("datamask")) as ds:
        mask = ds.read(1, window=window)
    valid = tile_valid_mask(tile, spec.windows(tile), x, y)
    assert 0.3 < valid.mean() < 1.0  # some nodata in every chosen window
    np.testing.assert_array_equal(mask, valid.astype(np.uint8))
    np.testing.assert_array_equal(dem == -9999, ~valid)
    full, full_mask = expected_pixels(tile.resolution, x, y, spec)
    np.testing.assert_array_equal(dem[valid], full[valid])
    assert (full_mask >= mask).all()  # the mosaic is valid wherever this tile is


def test_mosaic_of_neighbours_equals_oracle(built_catalog: BuildResult, spec: CatalogSpec) -> None:
    """Four 2 m subtiles at the supertile corner, mosaicked valid-over-nodata, equal the oracle."""
    x0, y0, x1, y1 = around(SUPERTILE_CORNER, 600.0)
    xs = np.arange(x0 + 1, x1, 2.0)[None, :]
    ys = np.arange(y1 - 1, y0, -2.0)[:, None]
    mosaic = np.full((ys.shape[0], xs.shape[1]), np.nan, dtype=np.float32)
    for tile in spec.tiles(2):
        if not (tile.bounds[0] < x1 and tile.bounds[2] > x0 and tile.bounds[1] < y1 and tile.bounds[3] > y0):
            continue
        with rasterio.open(built_catalog.root / tile.asset_relpath("dem")) as ds:
            window = ds.window(x0, y0, x1, y1).round_offsets().round_lengths()
            window = window.intersection(Window(0, 0, ds.width, ds.height))
            data = ds.read(1, window=window)
            tx, ty = ds.xy(window.row_off, window.col_off)  # centre of the window's first pixel
        c0 = int(round((tx - xs[0, 0]) / 2))
        r0 = int(round((ys[0, 0] - ty) / 2))
        target = mosaic[r0 : r0 + data.shape[0], c0 : c0 + data.shape[1]]
        fill = np.isnan(target) & (data != -9999)
        target[fill] = data[fill]
    expected, _ = expected_pixels(2, xs, ys, spec)
    np.testing.assert_array_equal(mosaic, expected)
    assert np.isnan(expected).any() and (~np.isnan(expected)).mean() > 0.8


@pytest.mark.parametrize(
    ("item_id", "asset", "nodata"), [("72_48_2_1_2m_v4.1", "dem", -9999), ("72_49_10m_v4.1", "datamask", 0)]
)
def test_missing_blocks_read_as_nodata(built_catalog: BuildResult, item_id: str, asset: str, nodata: float) -> None:
    tile = TileRef.parse(item_id)
    path = built_catalog.root / tile.asset_relpath(asset)
    with rasterio.open(path) as ds:
        assert ds.get_tag_item("BLOCK_OFFSET_20_20", "TIFF", bidx=1) in (None, "", "0")
        block = ds.read(1, window=Window(20 * 512, 20 * 512, 512, 512))
    assert (block == nodata).all()
    assert path.stat().st_size < 40_000_000


def test_rebuild_on_spec_change(tmp_path: Path) -> None:
    tiny = CatalogSpec(tiles_10m=("72_47",), regions_10m=(around(SUPERTILE_CORNER, 1_000.0),))
    first = build_catalog(tmp_path, tiny, workers=1)
    assert first.built and is_built(tmp_path, tiny)
    bigger = CatalogSpec(tiles_10m=("72_47", "72_48"), regions_10m=tiny.regions_10m)
    assert not is_built(tmp_path, bigger)
    second = build_catalog(tmp_path, bigger, workers=1)
    assert second.built and second.fingerprint != first.fingerprint
    assert (tmp_path / TileRef.parse("72_48_10m_v4.1").asset_relpath("dem")).exists()


def test_build_says_each_step(tmp_path: Path) -> None:
    """One line per step while building (tiles counted as they are written), nothing when the catalog is cached."""
    tiny = CatalogSpec(tiles_10m=("72_47", "72_48"), regions_10m=(around(SUPERTILE_CORNER, 1_000.0),))
    lines: list[str] = []
    build_catalog(tmp_path, tiny, workers=1, progress=lines.append)
    assert lines[:3] == [
        "writing 2 tiles of synthetic ArcticDEM (dem and datamask COGs) in this process",
        "wrote 72_47_10m_v4.1 (1 of 2)",
        "wrote 72_48_10m_v4.1 (2 of 2)",
    ]
    assert re.fullmatch(rf"built the catalog in {re.escape(str(tmp_path.resolve()))}: 2 tiles in \d+\.\d s", lines[3])
    assert len(lines) == 4
    lines.clear()
    build_catalog(tmp_path, tiny, workers=1, progress=lines.append)
    assert lines == []


def test_build_in_worker_processes_counts_every_tile(tmp_path: Path) -> None:
    tiny = CatalogSpec(tiles_10m=("72_47", "72_48"), regions_10m=(around(SUPERTILE_CORNER, 1_000.0),))
    lines: list[str] = []
    build_catalog(tmp_path, tiny, workers=2, progress=lines.append)
    assert lines[0] == "writing 2 tiles of synthetic ArcticDEM (dem and datamask COGs) with 2 worker processes"
    written = [re.fullmatch(r"wrote (\S+) \((\d) of 2\)", line) for line in lines[1:3]]
    assert all(written)
    assert {m.group(1) for m in written if m} == {"72_47_10m_v4.1", "72_48_10m_v4.1"}
    assert [m.group(2) for m in written if m] == ["1", "2"]
    assert lines[3].startswith("built the catalog in ") and len(lines) == 4


def test_build_says_when_it_waits_for_another_builder(tmp_path: Path) -> None:
    """While another process holds the build lock, the build says it waits, then finds the catalog built."""
    tiny = CatalogSpec(tiles_10m=("72_47",), regions_10m=(around(SUPERTILE_CORNER, 1_000.0),))
    lines: list[str] = []
    lock = FileLock(str(tmp_path / ".build.lock"))
    with lock:
        waiter = threading.Thread(target=build_catalog, args=(tmp_path, tiny), kwargs={"workers": 1,
                                                                                      "progress": lines.append})
        waiter.start()
        deadline = time.monotonic() + 30
        while not lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lines == [f"another process is building the catalog in {tmp_path.resolve()}; waiting for it"]
    waiter.join(60)
    assert not waiter.is_alive()
    assert lines[1] == "writing 1 tile of synthetic ArcticDEM (dem and datamask COGs) in this process"
