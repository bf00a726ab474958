"""Argument checks (darts_aux.validate) and the data-directory and disk-full checks of the store, on real files."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import icechunk
import numpy as np
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox

from darts_aux.errors import (
    DataDirError,
    DiskFullError,
    EmptyRegionError,
    InvalidBufferError,
    InvalidRegionError,
    InvalidRequestError,
    InvalidResolutionError,
    OutsideExtentError,
    StoreError,
)
from darts_aux.grid import MAX_BUFFER_PIXELS
from darts_aux.products import arcticdem, tcvis
from darts_aux.store import check_cube_folder, check_writable, disk_full_error, foreign_entries, is_disk_full
from darts_aux.validate import check_buffer, check_geobox, check_persist, data_dir_path, region_window

DEM_32 = arcticdem(32)
ROI = GeoBox.from_bbox((650_000, 3_150_000, 660_000, 3_160_000), "EPSG:3413", resolution=32)
ICECHUNK_ENOSPC = (
    "  x object store error Generic LocalFileSystem error: Unable to copy data to file: No space left on device "
    "(os error 28)\n  | \n  | context:\n  |    0: icechunk::storage::object_store::write_chunk\n"
    "  |            with id=YZ5701SVHC68ERVDP7C0\n  |    2: icechunk::store::set\n  |  with key=\"dem/c/31/503\"\n"
)


@pytest.mark.parametrize("value", [0, 16, MAX_BUFFER_PIXELS, np.int64(7), np.uint16(3)])
def test_buffer_accepts_whole_pixel_counts(value: object) -> None:
    assert check_buffer(value) == int(value) and type(check_buffer(value)) is int


@pytest.mark.parametrize(("value", "hint"), [(-1, "non-negative"), (MAX_BUFFER_PIXELS + 1, "limit of 100,000"),
                                             (10**9, "at most 100000"), (2.5, "whole number"), (2.0, "an int"),
                                             ("3", "whole number"), (True, "whole number"), (None, "whole number")])
def test_buffer_rejects(value: object, hint: str) -> None:
    with pytest.raises(InvalidBufferError, match=hint):
        check_buffer(value)


@pytest.mark.parametrize("value", [True, False, np.True_])
def test_persist_accepts_bools(value: object) -> None:
    assert check_persist(value) is bool(value)


@pytest.mark.parametrize("value", ["false", 0, 1, None, "True"])
def test_persist_rejects_anything_else(value: object) -> None:
    with pytest.raises(InvalidRequestError, match="True .* or False"):
        check_persist(value)


@pytest.mark.parametrize(("geobox", "error", "hint"), [
    ((0, 0, 1, 1), InvalidRegionError, r"got tuple; build one with GeoBox\.from_bbox"),
    (GeoBox((5, 5), Affine(32, 0, 0, 0, -32, 0), None), InvalidRegionError, "no CRS"),
    (GeoBox((0, 5), Affine(32, 0, 0, 0, -32, 0), "EPSG:3413"), EmptyRegionError, "non-empty"),
    (GeoBox((5, 5), Affine(32, 0, 0, 0, 0, 0), "EPSG:3413"), EmptyRegionError, "zero area"),
    (GeoBox((5, 5), Affine(32, 0, float("inf"), 0, -32, 0), "EPSG:3413"), EmptyRegionError, "NaN or infinite"),
    (GeoBox.from_bbox((0, 80, 1, 91), "EPSG:4326", resolution=0.1), InvalidRegionError, "outside −90…90"),
], ids=["tuple", "no-crs", "no-pixels", "zero-area", "inf-origin", "latitude-91"])
def test_geobox_rejects(geobox: object, error: type[Exception], hint: str) -> None:
    with pytest.raises(error, match=hint):
        check_geobox(geobox)


def test_region_window_turns_proj_errors_into_a_region_error() -> None:
    mars = GeoBox.from_bbox((10, 10, 11, 11), "IAU_2015:49900", resolution=0.01)
    with pytest.raises(InvalidRegionError, match="Earth CRS") as raised:
        region_window(DEM_32, mars, 0)
    assert "You may override" not in str(raised.value), "PROJ's override advice is not ours to give"


def test_region_window_of_a_good_geobox() -> None:
    window = region_window(DEM_32, ROI, np.int32(2))
    assert window.shape == (313 + 4, 313 + 4)
    with pytest.raises(OutsideExtentError):
        region_window(DEM_32, GeoBox.from_bbox((6e6, 6e6, 6.01e6, 6.01e6), "EPSG:3413", resolution=32), 0)


@pytest.mark.parametrize("resolution", [32, np.int64(32), np.int16(10)])
def test_arcticdem_accepts_integer_resolutions(resolution: object) -> None:
    assert arcticdem(resolution).key == f"arcticdem-{int(resolution)}m"


@pytest.mark.parametrize(("resolution", "hint"), [(32.0, "must be an int"), (np.float64(2), "must be an int"),
                                                  (5, "no 5 m product")])
def test_arcticdem_rejects_other_resolutions(resolution: object, hint: str) -> None:
    with pytest.raises(InvalidResolutionError, match=hint):
        arcticdem(resolution)


def test_data_dir_path_accepts_str_and_path_likes(tmp_path: Path) -> None:
    assert data_dir_path(str(tmp_path)) == tmp_path == data_dir_path(tmp_path)
    assert data_dir_path("~/x") == Path.home() / "x"


@pytest.mark.parametrize("value", [42, b"/tmp/x", "", "  ", None, ["/tmp"]])
def test_data_dir_path_rejects_non_paths(value: object) -> None:
    with pytest.raises(DataDirError, match="must be a path"):
        data_dir_path(value)


def test_foreign_entries(tmp_path: Path) -> None:
    assert foreign_entries(tmp_path / "missing") == []
    assert foreign_entries(tmp_path) == []
    (tmp_path / "lost+found").mkdir()
    (tmp_path / ".DS_Store").write_text("")
    (tmp_path / "regions.geojson").write_text("{}")
    (tmp_path / "arcticdem-2m").mkdir()
    assert foreign_entries(tmp_path) == [], "only darts-aux's own names and filesystem litter"
    (tmp_path / "holiday.jpg").write_bytes(b"")
    assert foreign_entries(tmp_path) == ["holiday.jpg"]
    (tmp_path / "arcticdem-2m" / "cube.json").write_text("{}")
    assert foreign_entries(tmp_path) == [], "a folder with a cube in it is a data directory, extra files or not"


def test_check_cube_folder_refuses_strangers(tmp_path: Path) -> None:
    cube = tmp_path / DEM_32.key
    cube.mkdir()
    (cube / "store.icechunk").mkdir()
    (cube / "commit.lock").write_text("")
    check_cube_folder(tmp_path, DEM_32)  # what a creator that died leaves behind
    (cube / "mine.txt").write_text("x")
    with pytest.raises(DataDirError, match="'mine.txt'.*Move that folder away"):
        check_cube_folder(tmp_path, DEM_32)


def test_check_cube_folder_refuses_a_cube_of_another_edition(tmp_path: Path) -> None:
    product = tcvis("2003-2022")
    (tmp_path / product.key).mkdir()
    (tmp_path / product.key / "cube.json").write_text(json.dumps({"product": "tcvis-2000-2019", "format": 1}))
    with pytest.raises(DataDirError, match="use another data_dir"):
        check_cube_folder(tmp_path, product)


def test_check_writable_probes_and_leaves_nothing(tmp_path: Path) -> None:
    check_writable(tmp_path / "data", DEM_32)
    assert list(tmp_path.iterdir()) == [], "the probe is removed and nothing is created"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataDirError, match="not a directory"):
        check_writable(tmp_path / "file" / "data", DEM_32)


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   OSError(errno.EFBIG, "File too large"),
                                   OSError(errno.EDQUOT, "Disk quota exceeded"),
                                   icechunk.IcechunkError(ICECHUNK_ENOSPC)],
                         ids=["ENOSPC", "EFBIG", "EDQUOT", "icechunk"])
def test_disk_full_is_recognised(error: BaseException) -> None:
    assert is_disk_full(error)
    mapped = disk_full_error(error, "writing chunk r0006c0028")
    assert isinstance(mapped, DiskFullError) and isinstance(mapped, StoreError)
    assert "the disk is full" in str(mapped) and "free space or choose another data_dir" in str(mapped)
    assert "\n" not in str(mapped) and "503" not in str(mapped), "one line, without icechunk's context"


def test_disk_full_is_found_behind_a_wrapper() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("task failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)


@pytest.mark.parametrize("error", [OSError(errno.EACCES, "Permission denied"), ValueError("x"),
                                   icechunk.IcechunkError("conflict")])
def test_other_errors_are_not_disk_full(error: BaseException) -> None:
    assert not is_disk_full(error) and disk_full_error(error, "x") is None
