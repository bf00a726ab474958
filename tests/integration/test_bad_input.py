"""Bad input, one test per case: a typed error whose message says what to do, nothing written, no source asked.

Every case asserts (1) the specific DartsAuxError subclass, (2) a hint phrase in the message, (3) no change on
disk: the data_dir is not created, or an existing one has the same recursive listing (kind, size, mtime) before and
after, and (4) no request reached the local STAC API / file server or the local Earth Engine.

Read-only and disk-full cases need a filesystem that really refuses writes. Tests run as root here, and root
ignores permission bits, so a read-only folder is a read-only tmpfs mount (as a normal user: chmod 0o555), and a
full disk is a size-limited tmpfs; a second disk-full case uses RLIMIT_FSIZE in a subprocess (EFBIG), which binds
root too. Where a mount is impossible the test is skipped with that reason, never silently.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox
from typer.testing import CliRunner

from darts_aux import DartsAuxError, load_arcticdem, load_tcvis
from darts_aux.cli import app
from darts_aux.errors import (
    DataDirError,
    DiskFullError,
    EmptyRegionError,
    InvalidBufferError,
    InvalidRegionError,
    InvalidRequestError,
    InvalidResolutionError,
    ManifestError,
    OutsideExtentError,
    StoreError,
    UnknownEditionError,
)
from darts_aux.grid import ChunkGrid, roi_window
from darts_aux.local import LocalCatalog
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.manifest import Manifest
from darts_aux.products import TCVIS_PIXEL, arcticdem
from darts_aux.settings import reload_settings
from darts_aux.store import Cube, cube_paths

from .conftest import formula_oracle

DEM_32 = arcticdem(32)
GRID_32 = ChunkGrid(DEM_32)
BBOX_A = (650_000, 3_150_000, 660_000, 3_160_000)  # inside 32 m chunk r0029c0145 (chunks are 32 km across)
BBOX_B = (590_000, 3_090_000, 600_000, 3_100_000)  # inside 32 m chunk r0031c0143
STAGED_CHUNK_BYTES = DEM_32.fill_chunk ** 2 * DEM_32.bytes_per_pixel
"""Size of one staged 32 m chunk: an uncompressed .npz of its float32 dem and uint8 datamask (plus small headers)."""
INSIDE = GeoBox.from_bbox(BBOX_A, "EPSG:3413", resolution=32)
OTHER_CHUNK = GeoBox.from_bbox(BBOX_B, "EPSG:3413", resolution=32)
ALASKA = GeoBox.from_bbox((-150.3, 69.0, -150.1, 69.1), "EPSG:4326", resolution=TCVIS_PIXEL)
NAN = float("nan")
MARS = "IAU_2015:49900"  # a geographic CRS on Mars: PROJ refuses to transform it to any Earth CRS

runner = CliRunner()


# -- helpers -------------------------------------------------------------------------------------


def snapshot_tree(path: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry at and under `path`: kind, size and mtime (ns); two equal snapshots mean nothing was written."""
    if not os.path.lexists(path):
        return {}
    entries = [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]
    listing = {}
    for entry in entries:
        info = entry.lstat()
        kind = "dir" if stat.S_ISDIR(info.st_mode) else "link" if stat.S_ISLNK(info.st_mode) else "file"
        listing[str(entry.relative_to(path))] = (kind, info.st_size, info.st_mtime_ns)
    return listing


def _geobox(affine: Affine, crs: str | None = "EPSG:3413", shape: tuple[int, int] = (100, 100)) -> GeoBox:
    return GeoBox(shape, affine, crs)


def _try_mount(target: Path, options: str) -> bool:
    """Mount a tmpfs at `target` with `options`; False when this process may not mount."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                            capture_output=True, text=True, check=False)
    return result.returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=True)


@contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """An existing, empty folder that really refuses writes: a read-only tmpfs as root, else mode 0o555."""
    path.mkdir(parents=True)
    if os.geteuid() == 0:
        if not _try_mount(path, "ro,size=1m"):
            pytest.skip("running as root without the right to mount: no read-only folder can be made here")
        try:
            yield path
        finally:
            _umount(path)
        return
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs at `path` (needs the right to mount: root in this container)."""
    path.mkdir(parents=True)
    if not _try_mount(path, f"size={size}"):
        pytest.skip("a size-limited tmpfs needs the right to mount (root); see the RLIMIT_FSIZE disk-full case")
    try:
        yield path
    finally:
        _umount(path)


def _free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def _assert_nothing_asked(catalog: LocalCatalog, earth_engine: LocalEarthEngine | None = None) -> None:
    assert catalog.requests() == [], "no request may reach the STAC API or the file server"
    if earth_engine is not None:
        assert earth_engine.requests() == [], "no request may reach Earth Engine"


@pytest.fixture(autouse=True)
def default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DARTS_AUX_DATA_DIR inside the test's folder, so data_dir=None never touches the user's cache."""
    path = tmp_path / "default-data-dir"
    monkeypatch.setenv("DARTS_AUX_DATA_DIR", str(path))
    reload_settings()
    return path


@pytest.fixture
def sources(
    use_catalog: LocalCatalog, use_earth_engine: LocalEarthEngine, inline: None
) -> tuple[LocalCatalog, LocalEarthEngine]:
    """Both local sources with empty request logs; fills (where a case gets that far) run in-process."""
    use_catalog.reset_log()
    use_earth_engine.reset_log()
    return use_catalog, use_earth_engine


@pytest.fixture(scope="module")
def filled_dir(catalog: LocalCatalog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding a 32 m cube with chunk r0029c0145 filled (copy it before changing anything)."""
    data_dir = tmp_path_factory.mktemp("filled") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DARTS_AUX_STAC_URL", catalog.stac_url)
        patch.setenv("DARTS_AUX_ORCHESTRATOR", "inline")
        reload_settings()
        load_arcticdem(INSIDE, data_dir, 32)
    reload_settings()
    return data_dir


@pytest.fixture
def filled_copy(filled_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the filled data directory."""
    return Path(shutil.copytree(filled_dir, tmp_path / "data"))


# -- the argument table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One bad call: which loader, the arguments that differ from a good call, what must be raised."""

    loader: str
    args: dict[str, Any]
    error: type[DartsAuxError]
    hint: str
    env: dict[str, str] = field(default_factory=dict)


ARGUMENTS: dict[str, Bad] = {
    "dem-resolution-5": Bad("arcticdem", {"resolution": 5}, InvalidResolutionError, "use one of 2, 10, 32"),
    "dem-resolution-float-32.0": Bad("arcticdem", {"resolution": 32.0}, InvalidResolutionError, "must be an int"),
    "dem-resolution-str": Bad("arcticdem", {"resolution": "32"}, InvalidResolutionError, "use one of 2, 10, 32"),
    "dem-resolution-bool": Bad("arcticdem", {"resolution": True}, InvalidResolutionError, "use one of 2, 10, 32"),
    "dem-buffer-negative": Bad("arcticdem", {"buffer": -1}, InvalidBufferError, "non-negative"),
    "dem-buffer-huge": Bad("arcticdem", {"buffer": 10**9}, InvalidBufferError, r"limit of 100,000 .* at most 100000"),
    "dem-buffer-fractional": Bad("arcticdem", {"buffer": 2.5}, InvalidBufferError, "whole number"),
    "dem-buffer-str": Bad("arcticdem", {"buffer": "16"}, InvalidBufferError, "whole number"),
    "dem-geobox-empty-0px": Bad("arcticdem", {"geobox": _geobox(Affine(32, 0, 650_000, 0, -32, 3_150_000),
                                                                shape=(0, 0))},
                                EmptyRegionError, "pass a non-empty geobox"),
    "dem-geobox-zero-area": Bad("arcticdem", {"geobox": _geobox(Affine(0, 0, 650_000, 0, -32, 3_150_000))},
                                EmptyRegionError, "non-zero pixel size"),
    "dem-geobox-nan-affine": Bad("arcticdem", {"geobox": _geobox(Affine(NAN, 0, 650_000, 0, -32, 3_150_000))},
                                 EmptyRegionError, "from finite coordinates"),
    "dem-geobox-nan-origin": Bad("arcticdem", {"geobox": _geobox(Affine(32, 0, NAN, 0, -32, 3_150_000))},
                                 EmptyRegionError, "from finite coordinates"),
    "dem-geobox-outside-extent": Bad("arcticdem", {"geobox": GeoBox.from_bbox((6e6, 6e6, 6.01e6, 6.01e6), "EPSG:3413",
                                                                              resolution=32)},
                                     OutsideExtentError, "overlaps"),
    "dem-geobox-southern-hemisphere": Bad("arcticdem", {"geobox": GeoBox.from_bbox((-10, -61, 10, -60), "EPSG:4326",
                                                                                   resolution=0.01)},
                                          OutsideExtentError, "overlaps"),
    "dem-geobox-latitude-over-90": Bad("arcticdem", {"geobox": GeoBox.from_bbox((60, 85, 61, 100), "EPSG:4326",
                                                                                resolution=0.01)},
                                       InvalidRegionError, r"min lon, min lat"),
    "dem-geobox-mars-crs": Bad("arcticdem", {"geobox": GeoBox.from_bbox((10, 10, 11, 11), MARS, resolution=0.01)},
                               InvalidRegionError, "pass a geobox in an Earth CRS"),
    "dem-geobox-engineering-crs": Bad("arcticdem", {"geobox": GeoBox.from_bbox((0, 0, 10, 10),
                                                                               'LOCAL_CS["x",UNIT["metre",1]]',
                                                                               resolution=1)},
                                      InvalidRegionError, "pass a geobox in an Earth CRS"),
    "dem-geobox-not-a-geobox": Bad("arcticdem", {"geobox": BBOX_A}, InvalidRegionError, r"GeoBox\.from_bbox"),
    "dem-geobox-no-crs": Bad("arcticdem", {"geobox": _geobox(Affine(32, 0, 650_000, 0, -32, 3_150_000), crs=None)},
                             InvalidRegionError, "give it one"),
    "dem-persist-str": Bad("arcticdem", {"persist": "false"}, InvalidRequestError, "True .* or False"),
    "dem-persist-false-outside-extent": Bad("arcticdem", {"persist": False, "geobox": GeoBox.from_bbox(
        (6e6, 6e6, 6.01e6, 6.01e6), "EPSG:3413", resolution=32)}, OutsideExtentError, "overlaps"),
    "tcvis-edition-unknown": Bad("tcvis", {}, UnknownEditionError,
                                 r"use one of: users/ingmarnitze/TCTrend_SR_2000-2019_TCVIS.*2005-2024",
                                 env={"DARTS_AUX_TCVIS_EDITION": "2099-2100"}),
    "tcvis-buffer-negative": Bad("tcvis", {"buffer": -5}, InvalidBufferError, "non-negative"),
    "tcvis-buffer-huge": Bad("tcvis", {"buffer": 10**9}, InvalidBufferError, "at most 100000"),
    "tcvis-geobox-empty-0px": Bad("tcvis", {"geobox": _geobox(Affine(TCVIS_PIXEL, 0, 10, 0, -TCVIS_PIXEL, 70),
                                                              "EPSG:4326", (0, 10))},
                                  EmptyRegionError, "pass a non-empty geobox"),
    "tcvis-geobox-nan-affine": Bad("tcvis", {"geobox": _geobox(Affine(TCVIS_PIXEL, 0, NAN, 0, -TCVIS_PIXEL, 70),
                                                               "EPSG:4326")},
                                   EmptyRegionError, "from finite coordinates"),
    "tcvis-geobox-latitude-over-90": Bad("tcvis", {"geobox": GeoBox.from_bbox((10, 85, 11, 100), "EPSG:4326",
                                                                              resolution=0.01)},
                                         InvalidRegionError, r"outside −90…90"),
    "tcvis-geobox-mars-crs": Bad("tcvis", {"geobox": GeoBox.from_bbox((10, 10, 11, 11), MARS, resolution=0.01)},
                                 InvalidRegionError, "pass a geobox in an Earth CRS"),
    "tcvis-persist-int": Bad("tcvis", {"persist": 0}, InvalidRequestError, "True .* or False"),
}


def _call(case: Bad, data_dir: object) -> None:
    """Call the case's loader with good defaults overridden by the case's arguments."""
    if case.loader == "arcticdem":
        load_arcticdem(**({"geobox": INSIDE, "data_dir": data_dir, "resolution": 32, "buffer": 0} | case.args))
    else:
        load_tcvis(**({"geobox": ALASKA, "data_dir": data_dir, "buffer": 0} | case.args))


def _expect(case: Bad, data_dir: object) -> DartsAuxError:
    """Run the case and check the error type and hint; returns the error."""
    with pytest.raises(case.error, match=case.hint) as raised:
        _call(case, data_dir)
    assert isinstance(raised.value, DartsAuxError)
    return raised.value


@pytest.mark.parametrize("name", ARGUMENTS, ids=list(ARGUMENTS))
def test_bad_argument_with_a_new_data_dir(name: str, sources: tuple[LocalCatalog, LocalEarthEngine],
                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    case = ARGUMENTS[name]
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    reload_settings()
    data_dir = tmp_path / "never-created"
    _expect(case, data_dir)
    assert not data_dir.exists()
    _assert_nothing_asked(*sources)


@pytest.mark.parametrize("name", ARGUMENTS, ids=list(ARGUMENTS))
def test_bad_argument_with_an_existing_cube(name: str, sources: tuple[LocalCatalog, LocalEarthEngine],
                                            filled_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = ARGUMENTS[name]
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    reload_settings()
    sources[0].reset_log()
    before = snapshot_tree(filled_dir)
    _expect(case, filled_dir)
    assert snapshot_tree(filled_dir) == before
    _assert_nothing_asked(*sources)


# -- data_dir values -----------------------------------------------------------------------------


DATA_DIRS: dict[str, tuple[Any, str]] = {
    "int": (42, "must be a path"),
    "bytes": (b"/tmp/darts-aux", "must be a path"),
    "empty-str": ("", "must be a path"),
    "whitespace": ("   ", "must be a path"),
    "nul-char": ("/tmp/darts\0aux", "contains a NUL character"),
    "float": (1.5, "must be a path"),
}


@pytest.mark.parametrize("loader", ["arcticdem", "tcvis"])
@pytest.mark.parametrize("name", DATA_DIRS, ids=list(DATA_DIRS))
def test_data_dir_that_is_not_a_path(name: str, loader: str, sources: tuple[LocalCatalog, LocalEarthEngine],
                                     default_data_dir: Path) -> None:
    value, hint = DATA_DIRS[name]
    _expect(Bad(loader, {}, DataDirError, hint), value)
    assert not default_data_dir.exists()
    _assert_nothing_asked(*sources)


@pytest.mark.parametrize("loader", ["arcticdem", "tcvis"])
def test_data_dir_that_is_a_file(loader: str, sources: tuple[LocalCatalog, LocalEarthEngine], tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("x")
    before = snapshot_tree(tmp_path)
    _expect(Bad(loader, {}, DataDirError, "not a directory; pass a directory"), occupied)
    assert snapshot_tree(tmp_path) == before
    _assert_nothing_asked(*sources)


def test_data_dir_below_a_file(sources: tuple[LocalCatalog, LocalEarthEngine], tmp_path: Path) -> None:
    """A data_dir whose parent is a file cannot be created: refused before the STAC search."""
    occupied = tmp_path / "a-file"
    occupied.write_text("x")
    before = snapshot_tree(tmp_path)
    _expect(Bad("arcticdem", {}, DataDirError, "pass a writable data_dir"), occupied / "data")
    assert snapshot_tree(tmp_path) == before
    _assert_nothing_asked(*sources)


def test_none_with_DARTS_AUX_DATA_DIR_naming_a_file(  # noqa: N802 - names the variable
        sources: tuple[LocalCatalog, LocalEarthEngine], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """data_dir=None is allowed, but then DARTS_AUX_DATA_DIR must name a directory."""
    occupied = tmp_path / "a-file"
    occupied.write_text("x")
    monkeypatch.setenv("DARTS_AUX_DATA_DIR", str(occupied))
    reload_settings()
    for loader in ("arcticdem", "tcvis"):
        _expect(Bad(loader, {}, DataDirError, "not a directory; pass a directory"), None)
    assert occupied.read_text() == "x"
    _assert_nothing_asked(*sources)


# -- data_dir contents ---------------------------------------------------------------------------


@pytest.mark.parametrize("loader", ["arcticdem", "tcvis"])
def test_read_only_data_dir(loader: str, sources: tuple[LocalCatalog, LocalEarthEngine], tmp_path: Path) -> None:
    """An existing, empty, read-only data_dir (a read-only mount as root, mode 0o555 otherwise) is refused at once."""
    with read_only_folder(tmp_path / "ro") as folder:
        before = snapshot_tree(folder)
        _expect(Bad(loader, {}, DataDirError, "writable data_dir"), folder)
        assert snapshot_tree(folder) == before
    _assert_nothing_asked(*sources)


def test_missing_data_dir_in_a_read_only_folder(sources: tuple[LocalCatalog, LocalEarthEngine], tmp_path: Path) -> None:
    with read_only_folder(tmp_path / "ro") as folder:
        before = snapshot_tree(folder)
        _expect(Bad("arcticdem", {}, DataDirError, "writable data_dir"), folder / "data")
        assert not (folder / "data").exists() and snapshot_tree(folder) == before
    _assert_nothing_asked(*sources)


def test_settled_cube_on_a_read_only_mount_is_still_read(sources: tuple[LocalCatalog, LocalEarthEngine],
                                                         filled_dir: Path, tmp_path: Path) -> None:
    """Read-only is refused only when a fill is needed: a settled region is read (no lock, no write, no request)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if not _try_mount(mount, "size=256m"):
        pytest.skip("needs the right to mount a tmpfs (root) to make a read-only copy of a cube")
    try:
        shutil.copytree(filled_dir, mount / "data")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        before = snapshot_tree(mount)
        ds = load_arcticdem(INSIDE, mount / "data", 32)
        assert snapshot_tree(mount) == before
        dem, _ = formula_oracle(sources[0], 32, roi_window(INSIDE, DEM_32.extent))
        np.testing.assert_array_equal(ds.dem.values, dem)
        _expect(Bad("arcticdem", {"geobox": OTHER_CHUNK}, DataDirError, "writable data_dir"), mount / "data")
        assert snapshot_tree(mount) == before
    finally:
        _umount(mount)
    _assert_nothing_asked(*sources)


@pytest.mark.parametrize("loader", ["arcticdem", "tcvis"])
def test_folder_of_unrelated_files(loader: str, sources: tuple[LocalCatalog, LocalEarthEngine], tmp_path: Path) -> None:
    """A non-empty folder with no darts-aux cube in it is never written into."""
    folder = tmp_path / "photos"
    (folder / "2024").mkdir(parents=True)
    (folder / "2024" / "img_0001.jpg").write_bytes(b"\xff\xd8\xff" + bytes(100))
    (folder / "notes.txt").write_text("not a data directory")
    before = snapshot_tree(folder)
    _expect(Bad(loader, {}, DataDirError, "empty or new folder"), folder)
    assert snapshot_tree(folder) == before
    _assert_nothing_asked(*sources)


def test_cube_folder_holding_unrelated_files(sources: tuple[LocalCatalog, LocalEarthEngine], tmp_path: Path) -> None:
    """A folder named like the cube but without cube.json (and with other content) is not taken over."""
    folder = tmp_path / "data"
    (folder / DEM_32.key).mkdir(parents=True)
    (folder / DEM_32.key / "thesis.pdf").write_bytes(b"%PDF-1.7")
    before = snapshot_tree(folder)
    _expect(Bad("arcticdem", {}, DataDirError, "Move that folder away or pass another data_dir"), folder)
    assert snapshot_tree(folder) == before
    _assert_nothing_asked(*sources)


MARKERS: dict[str, tuple[bytes, str]] = {
    "other-product": (json.dumps({"product": "arcticdem-10m", "format": 1}).encode(), "'arcticdem-10m' format 1"),
    "other-format": (json.dumps({"product": "arcticdem-32m", "format": 99}).encode(), "format 99"),
    "garbage": (b"\x00\xffnot json", "does not hold a darts-aux cube"),
    "json-list": (b"[1, 2]", "not a darts-aux cube marker"),
}


@pytest.mark.parametrize("name", MARKERS, ids=list(MARKERS))
def test_cube_json_naming_something_else(name: str, sources: tuple[LocalCatalog, LocalEarthEngine],
                                         filled_copy: Path) -> None:
    """A cube folder whose cube.json names another product or format (or is not JSON) is refused before any read."""
    content, hint = MARKERS[name]
    (cube_paths(filled_copy, DEM_32).marker).write_bytes(content)
    sources[0].reset_log()
    before = snapshot_tree(filled_copy)
    error = _expect(Bad("arcticdem", {"geobox": OTHER_CHUNK}, DataDirError, hint), filled_copy)
    assert "another data_dir" in str(error)
    assert snapshot_tree(filled_copy) == before
    _assert_nothing_asked(*sources)


@pytest.mark.parametrize("persist", [True, False], ids=["persist", "lazy"])
def test_corrupt_manifest_segment(persist: bool, sources: tuple[LocalCatalog, LocalEarthEngine],
                                  filled_copy: Path) -> None:
    """Garbage in a manifest segment: ManifestError naming `darts-aux manifest rebuild`, nothing written or asked."""
    segments = cube_paths(filled_copy, DEM_32).manifest / "segments"
    segments.mkdir(parents=True, exist_ok=True)
    (segments / "x.parquet").write_bytes(b"PAR1 this is not parquet \x00\x01\x02" * 10)
    sources[0].reset_log()
    before = snapshot_tree(filled_copy)
    for geobox in (INSIDE, OTHER_CHUNK):  # a settled region and one that would need a fill
        _expect(Bad("arcticdem", {"geobox": geobox, "persist": persist}, ManifestError,
                    "run 'darts-aux manifest rebuild'"), filled_copy)
    assert snapshot_tree(filled_copy) == before
    _assert_nothing_asked(*sources)


# -- disk full -----------------------------------------------------------------------------------


def _manifest_rows(data_dir: Path) -> dict:
    return Manifest(cube_paths(data_dir, DEM_32).manifest, GRID_32).latest()


def _assert_manifest_claims_only_committed_snapshots(data_dir: Path) -> None:
    """Every manifest row that names a snapshot names one on the branch: no chunk is claimed without its pixels."""
    cube = Cube.open(data_dir, DEM_32)
    history = {snapshot.id for snapshot in cube.history()}
    for record in _manifest_rows(data_dir).values():
        assert record.snapshot_id is None or record.snapshot_id in history, record


def test_disk_full_during_commit(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    """A tmpfs with no room for a commit (an in-process fill keeps the download in memory): DiskFullError, the cube
    as it was, rerun fills."""
    with small_disk(tmp_path / "disk", "64m") as disk:
        data_dir = disk / "data"
        free_before = _free_bytes(disk)
        first = load_arcticdem(INSIDE, data_dir, 32)
        one_fill = free_before - _free_bytes(disk)  # what creating the cube and committing one chunk took
        assert one_fill > 2**20, "a 32 m chunk's objects take megabytes"
        tip = Cube.open(data_dir, DEM_32).snapshot_id()
        rows_before = _manifest_rows(data_dir)
        filler = disk / "filler"
        with open(filler, "wb") as handle:  # leave a quarter of what the first chunk took: too little for the next
            handle.write(bytes(_free_bytes(disk) - one_fill // 4))

        with pytest.raises(DiskFullError, match=r"the disk is full.*free space or choose another data_dir") as raised:
            load_arcticdem(OTHER_CHUNK, data_dir, 32)
        assert isinstance(raised.value, StoreError)
        chunk = GRID_32.chunks(roi_window(OTHER_CHUNK, DEM_32.extent))[0]
        assert f"writing '{DEM_32.key} {chunk}'" in str(raised.value), "it failed in the commit, after the download"
        assert "No space left on device" in str(raised.value)

        cube = Cube.open(data_dir, DEM_32)
        assert cube.snapshot_id() == tip, "nothing was committed"
        assert _manifest_rows(data_dir) == rows_before, "the manifest claims no chunk of the failed commit"
        _assert_manifest_claims_only_committed_snapshots(data_dir)
        use_catalog.reset_log()
        again = load_arcticdem(INSIDE, data_dir, 32)  # the previous snapshot is still read, from the cube alone
        np.testing.assert_array_equal(again.dem.values, first.dem.values)
        assert use_catalog.requests() == []

        filler.unlink()
        filled = load_arcticdem(OTHER_CHUNK, data_dir, 32)
        dem, mask = formula_oracle(use_catalog, 32, roi_window(OTHER_CHUNK, DEM_32.extent))
        np.testing.assert_array_equal(filled.dem.values, dem)
        np.testing.assert_array_equal(filled.datamask.values, mask)
        assert _manifest_rows(data_dir)[chunk].snapshot_id == Cube.open(data_dir, DEM_32).snapshot_id()
        _assert_manifest_claims_only_committed_snapshots(data_dir)


_LIMITED_LOAD = """
import json, resource, signal, sys
from odc.geo.geobox import GeoBox
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from darts_aux import DartsAuxError, load_arcticdem
try:
    load_arcticdem(GeoBox.from_bbox(tuple(json.loads(sys.argv[3])), "EPSG:3413", resolution=32), sys.argv[1], 32)
except DartsAuxError as error:
    print(json.dumps({"types": [c.__name__ for c in type(error).__mro__], "message": str(error)}))
    sys.exit(3)
"""


def test_file_size_limit_while_staging(use_catalog: LocalCatalog, prefect_server: None, tmp_path: Path) -> None:
    """RLIMIT_FSIZE (binds root too) in a spawned process filling through the Prefect flow, whose download tasks
    stage chunks on disk: the staged chunk hits EFBIG → DiskFullError, nothing claimed in the manifest, and a
    rerun without the limit completes."""
    from prefect.settings import PREFECT_API_URL

    data_dir = tmp_path / "data"
    env = {**os.environ, "DARTS_AUX_STAC_URL": use_catalog.stac_url, "DARTS_AUX_ORCHESTRATOR": "prefect",
           "PREFECT_API_URL": str(PREFECT_API_URL.value()), "DARTS_AUX_RETRIES": "0",
           "DARTS_AUX_DATA_DIR": str(data_dir)}
    limit = STAGED_CHUNK_BYTES // 2  # below the staged chunk, above every other file the fill writes
    result = subprocess.run([sys.executable, "-c", _LIMITED_LOAD, str(data_dir), str(limit), json.dumps(BBOX_A)],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 3, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"DiskFullError", "StoreError", "DartsAuxError"} <= set(outcome["types"])
    assert "the disk is full" in outcome["message"] and "free space or choose another data_dir" in outcome["message"]
    assert "File too large" in outcome["message"], "the staged chunk hit the limit"
    assert _manifest_rows(data_dir) == {}, "no chunk is claimed"
    _assert_manifest_claims_only_committed_snapshots(data_dir)

    reload_settings()
    ds = load_arcticdem(INSIDE, data_dir, 32)
    dem, _ = formula_oracle(use_catalog, 32, roi_window(INSIDE, DEM_32.extent))
    np.testing.assert_array_equal(ds.dem.values, dem)
    assert [r.status for r in _manifest_rows(data_dir).values()] == ["full"]


# -- the command line ----------------------------------------------------------------------------


def _bbox(bbox: tuple[float, ...]) -> list[str]:
    return ["--bbox", *(repr(float(v)) for v in bbox)]


def _cli_error(args: list[str], hint: str) -> str:
    """Run the CLI in-process; assert exit code 1 and one red `error:` line with the hint, and nothing else."""
    result = runner.invoke(app, args)
    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.stderr
    assert hint in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "hint"), [
    (["fetch", "arcticdem", *_bbox(BBOX_A), "--buffer", "1000000000"], "100000"),
    (["load", "arcticdem", *_bbox(BBOX_A), "--resolution", "7", "--out", "{tmp}/roi.tif"], "use one of 2, 10, 32"),
    (["fetch", "arcticdem", "--bbox", "-10", "-61", "10", "-60", "--crs", "EPSG:4326"], "outside the cube extent"),
    (["fetch", "arcticdem", "--bbox", "0", "80", "1", "81", "--crs", MARS],
     "pass a region (--bbox or --geojson) in an Earth CRS"),
], ids=["fetch-buffer-huge", "load-resolution-7", "fetch-southern-hemisphere", "fetch-crs-on-mars"])
def test_cli_bad_argument(args: list[str], hint: str, sources: tuple[LocalCatalog, LocalEarthEngine],
                          tmp_path: Path) -> None:
    data_dir = tmp_path / "never-created"
    _cli_error([a.replace("{tmp}", str(tmp_path)) for a in args] + ["--data-dir", str(data_dir)], hint)
    assert not data_dir.exists() and not (tmp_path / "roi.tif").exists()
    _assert_nothing_asked(*sources)


def test_cli_unknown_tcvis_edition(sources: tuple[LocalCatalog, LocalEarthEngine], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARTS_AUX_TCVIS_EDITION", "2099-2100")
    reload_settings()
    data_dir = tmp_path / "never-created"
    _cli_error(["fetch", "tcvis", "--bbox", "-150.3", "69.0", "-150.1", "69.1", "--data-dir", str(data_dir)],
               "unknown TCVIS edition '2099-2100'; use one of: users/ingmarnitze/TCTrend_SR_2000-2019_TCVIS")
    assert not data_dir.exists()
    _assert_nothing_asked(*sources)


def test_cli_fetch_into_a_folder_of_unrelated_files(sources: tuple[LocalCatalog, LocalEarthEngine],
                                                    tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "img_0001.jpg").write_bytes(b"\xff\xd8\xff")
    before = snapshot_tree(folder)
    _cli_error(["fetch", "arcticdem", *_bbox(BBOX_A), "--data-dir", str(folder)], "empty or new folder")
    assert snapshot_tree(folder) == before
    _assert_nothing_asked(*sources)


def test_cli_fetch_into_a_read_only_folder(sources: tuple[LocalCatalog, LocalEarthEngine], tmp_path: Path) -> None:
    with read_only_folder(tmp_path / "ro") as folder:
        before = snapshot_tree(folder)
        _cli_error(["fetch", "arcticdem", *_bbox(BBOX_A), "--data-dir", str(folder)], "writable data_dir")
        assert snapshot_tree(folder) == before
    _assert_nothing_asked(*sources)


def test_cli_load_with_a_corrupt_manifest(sources: tuple[LocalCatalog, LocalEarthEngine], filled_copy: Path,
                                          tmp_path: Path) -> None:
    segments = cube_paths(filled_copy, DEM_32).manifest / "segments"
    (segments / "x.parquet").write_bytes(b"garbage")
    sources[0].reset_log()
    before = snapshot_tree(filled_copy)
    out = tmp_path / "roi.nc"
    _cli_error(["load", "arcticdem", *_bbox(BBOX_A), "--data-dir", str(filled_copy), "--out", str(out)],
               "darts-aux manifest rebuild")
    assert snapshot_tree(filled_copy) == before and not out.exists()
    _assert_nothing_asked(*sources)


def test_cli_fetch_into_a_cube_of_another_product(sources: tuple[LocalCatalog, LocalEarthEngine],
                                                  filled_copy: Path) -> None:
    cube_paths(filled_copy, DEM_32).marker.write_text(json.dumps({"product": "tcvis-2000-2019", "format": 1}))
    sources[0].reset_log()
    before = snapshot_tree(filled_copy)
    _cli_error(["fetch", "arcticdem", *_bbox(BBOX_B), "--data-dir", str(filled_copy)], "use another data_dir")
    assert snapshot_tree(filled_copy) == before
    _assert_nothing_asked(*sources)
