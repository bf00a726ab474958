"""Offline loads: what the cube holds is read with no connection to any source; a chunk never fetched fails at once.

Every offline load here runs under a socket guard that refuses every connection (on S3: every one but the object
store's), and the local servers' own logs must stay empty.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from typer.testing import CliRunner

import darts_aux
from darts_aux import OfflineError, load_arcticdem, load_tcvis
from darts_aux.cli import app
from darts_aux.errors import InvalidRequestError
from darts_aux.grid import ChunkGrid, roi_window
from darts_aux.local import LocalCatalog
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.location import as_location
from darts_aux.manifest import Manifest, utc_now
from darts_aux.products import arcticdem, tcvis
from darts_aux.settings import reload_settings
from darts_aux.store import cube_paths

from ._s3 import S3Server, s3_data_dir, s3_server  # noqa: F401 - fixtures
from .conftest import formula_oracle, point_at
from .test_tcvis import BANDS, ROI_4_CHUNKS
from .test_tcvis import oracle as tcvis_oracle

DEM = arcticdem(32)
GRID = ChunkGrid(DEM)
# Across the catalog's coast (y = 3,300,096 m is a 32 m chunk border; no tile lies north of it) and the chunk
# border x = 639,904 m: two chunks full of tiles, two partial with no data at all (chunk rows 24–25, columns
# 144–145; a 32 m chunk is 32 km across).
COAST = GeoBox.from_bbox((630_000, 3_290_000, 650_000, 3_310_000), "EPSG:3413", resolution=32)
# The same two columns one chunk row further south (row 26: y 3,236,096 … 3,268,096 m): chunks the prefetch never
# touched, x 607,904 … 671,904 m.
SOUTH = GeoBox.from_bbox((630_000, 3_240_000, 650_000, 3_260_000), "EPSG:3413", resolution=32)
SOUTH_CHUNKS_BBOX = "607904 3236096 671904 3268096"


@dataclass
class Guard:
    """Connections attempted while the guard was up (all refused unless allowed)."""

    attempts: list[object]


@contextmanager
def no_network(monkeypatch: pytest.MonkeyPatch, allowed_port: int | None = None) -> Iterator[Guard]:
    """Refuse every socket connection (even loopback) and DNS lookup, except to `allowed_port` on loopback."""
    guard = Guard([])
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if allowed_port is not None and isinstance(address, tuple) and address[1] == allowed_port:
            return real_connect(self, address)
        guard.attempts.append(address)
        raise ConnectionRefusedError(f"offline test guard: connection to {address!r} refused")

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        guard.attempts.append(host)
        raise socket.gaierror(socket.EAI_NONAME, f"offline test guard: no lookup of {host!r}")

    with monkeypatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        if allowed_port is None:
            patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield guard


@dataclass(frozen=True)
class Prefetched:
    """A 32 m cube filled online over COAST, and what that online load returned."""

    data_dir: Path
    online: xr.Dataset


@pytest.fixture(scope="module")
def prefetched(catalog: LocalCatalog, tmp_path_factory: pytest.TempPathFactory) -> Prefetched:
    data_dir = tmp_path_factory.mktemp("offline") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DARTS_AUX_STAC_URL", catalog.stac_url)
        patch.setenv("DARTS_AUX_ORCHESTRATOR", "inline")
        reload_settings()
        online = load_arcticdem(COAST, data_dir, 32)
    reload_settings()
    latest = Manifest(cube_paths(data_dir, DEM).manifest, GRID).latest()
    assert sorted(r.status for r in latest.values()) == ["full", "full", "partial", "partial"]
    return Prefetched(data_dir, online)


@pytest.fixture
def expired(use_catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch) -> LocalCatalog:
    """Partial chunks are never settled (revisit 0 days): an online load would search for them again."""
    point_at(use_catalog, monkeypatch, revisit_days="0", orchestrator="inline")
    return use_catalog


def test_offline_load_reads_full_and_partial_chunks_without_any_connection(
        prefetched: Prefetched, expired: LocalCatalog, monkeypatch: pytest.MonkeyPatch) -> None:
    with no_network(monkeypatch) as guard:
        ds = load_arcticdem(COAST, prefetched.data_dir, 32, offline=True)
    assert guard.attempts == [] and expired.requests() == []
    xr.testing.assert_identical(ds, prefetched.online)
    dem, mask = formula_oracle(expired, 32, roi_window(COAST, DEM.extent))
    np.testing.assert_array_equal(ds.dem.values, dem)
    np.testing.assert_array_equal(ds.datamask.values, mask)
    north = ds.dem.sel(y=slice(3_310_000, 3_300_200))
    assert north.size and np.isnan(north.values).all(), "no data north of the coast: NaN, as online"
    assert ds.dem.dtype == np.float32 and np.isfinite(ds.dem.values).mean() > 0.3


def test_offline_from_the_environment(prefetched: Prefetched, expired: LocalCatalog,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARTS_AUX_OFFLINE", "1")
    reload_settings()
    with no_network(monkeypatch) as guard:
        ds = load_arcticdem(COAST, prefetched.data_dir, 32, persist=False)
        with pytest.raises(OfflineError):
            load_arcticdem(SOUTH, prefetched.data_dir, 32)
    assert guard.attempts == [] and expired.requests() == []
    np.testing.assert_array_equal(ds.dem.values, prefetched.online.dem.values)


def test_missing_chunks_fail_at_once_naming_the_command_and_the_call_that_prefetch_them(
        prefetched: Prefetched, expired: LocalCatalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data_dir = tmp_path / "copy"
    shutil.copytree(prefetched.data_dir, data_dir)
    before = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*"))
    both = GeoBox.from_bbox((630_000, 3_240_000, 650_000, 3_310_000), "EPSG:3413", resolution=32)  # COAST + SOUTH
    with no_network(monkeypatch) as guard, pytest.raises(OfflineError) as raised:
        load_arcticdem(both, data_dir, 32, offline=True)
    assert guard.attempts == [] and expired.requests() == []
    assert sorted(p.relative_to(data_dir) for p in data_dir.rglob("*")) == before, "nothing is written"
    message = str(raised.value)
    assert raised.value.missing == 2 and message.startswith("2 of 6 chunks of the arcticdem-32m cube")
    assert "\n" not in message
    command = message.split("`")[1]
    call = message.split("`")[3]
    assert command == (f"darts-aux fetch arcticdem --resolution 32 --bbox {SOUTH_CHUNKS_BBOX} "
                       f"--crs EPSG:3413 --data-dir {data_dir}")
    assert call == (f"download_arcticdem(({SOUTH_CHUNKS_BBOX.replace(' ', ', ')}), {str(data_dir)!r}, 32, "
                    "crs='EPSG:3413')")

    result = CliRunner().invoke(app, shlex.split(command)[1:])  # the command as printed prefetches the chunks
    assert result.exit_code == 0, result.output
    assert expired.requests("files")
    expired.reset_log()
    with no_network(monkeypatch) as guard:
        ds = load_arcticdem(both, data_dir, 32, offline=True)
    assert guard.attempts == [] and expired.requests() == []
    dem, _ = formula_oracle(expired, 32, roi_window(both, DEM.extent))
    np.testing.assert_array_equal(ds.dem.values, dem)


def test_the_python_call_in_the_message_prefetches_too(prefetched: Prefetched, expired: LocalCatalog,
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    with pytest.raises(OfflineError) as raised:
        load_arcticdem(COAST, data_dir, 32, offline=True)
    assert raised.value.missing == 4 and not data_dir.exists(), "an offline load creates nothing"
    call = str(raised.value).split("`")[3]
    report = eval(call, {"download_arcticdem": darts_aux.download_arcticdem})
    assert report.chunks_fetched == 2 and report.chunks_partial == 2 and not report.failures
    expired.reset_log()
    with no_network(monkeypatch) as guard:
        ds = load_arcticdem(COAST, data_dir, 32, offline=True)
    assert guard.attempts == [] and expired.requests() == []
    xr.testing.assert_identical(ds, prefetched.online)


@contextmanager
def read_only_copy(source: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of a data directory that really refuses writes: a remounted read-only tmpfs as root, else 0o555."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if os.geteuid() != 0:
        shutil.copytree(source, mount / "data")
        subprocess.run(["chmod", "-R", "a-w", str(mount)], check=True)
        try:
            yield mount / "data"
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(mount)], check=True)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)], check=True)
    try:
        shutil.copytree(source, mount / "data")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount / "data"
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_offline_load_on_a_read_only_data_dir(prefetched: Prefetched, expired: LocalCatalog,
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with read_only_copy(prefetched.data_dir, tmp_path) as data_dir:
        with pytest.raises(OSError):
            (data_dir / "probe").write_bytes(b"x")
        with no_network(monkeypatch) as guard:
            ds = load_arcticdem(COAST, data_dir, 32, offline=True)
            with pytest.raises(OfflineError, match="1 of 1 chunk of the arcticdem-32m cube"):
                load_arcticdem(GeoBox.from_bbox((680_000, 3_115_000, 690_000, 3_125_000), "EPSG:3413",
                                                resolution=32), data_dir, 32, offline=True)  # inside r0030c0146
    assert guard.attempts == [] and expired.requests() == []
    xr.testing.assert_identical(ds, prefetched.online)


def test_offline_load_of_a_cube_on_s3(expired: LocalCatalog, s3_server: S3Server, s3_data_dir: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    online = load_arcticdem(COAST, s3_data_dir, 32)
    expired.reset_log()
    port = int(s3_server.endpoint.rsplit(":", 1)[1])
    with no_network(monkeypatch, allowed_port=port) as guard:
        ds = load_arcticdem(COAST, s3_data_dir, 32, offline=True)
        with pytest.raises(OfflineError) as raised:
            load_arcticdem(SOUTH, s3_data_dir, 32, offline=True)
    assert guard.attempts == [] and expired.requests() == []
    xr.testing.assert_identical(ds, online)
    assert f"--data-dir {s3_data_dir}" in str(raised.value)
    assert f"download_arcticdem(({SOUTH_CHUNKS_BBOX.replace(' ', ', ')}), '{s3_data_dir}', 32" in str(raised.value)
    assert len(Manifest(cube_paths(as_location(s3_data_dir), DEM).manifest, GRID).latest()) == 4


def test_offline_tcvis_reads_the_cube_and_names_download_tcvis(use_earth_engine: LocalEarthEngine, inline: None,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    product = tcvis()
    online = load_tcvis(ROI_4_CHUNKS, tmp_path)
    use_earth_engine.reset_log()
    with no_network(monkeypatch) as guard:
        ds = load_tcvis(ROI_4_CHUNKS, tmp_path, offline=True)
        beyond = GeoBox.from_bbox((179.5, 65.9, 180.5, 66.1), "EPSG:4326", resolution=0.001)
        with pytest.raises(OfflineError) as raised:
            load_tcvis(beyond, tmp_path, offline=True)
    assert guard.attempts == [] and use_earth_engine.requests() == []
    xr.testing.assert_identical(ds, online)
    expected = tcvis_oracle(product, roi_window(ROI_4_CHUNKS, product.extent))
    for name in BANDS:
        np.testing.assert_array_equal(ds[name].values, expected[name], err_msg=name)
    message = str(raised.value)
    needed = len(ChunkGrid(product).chunks(roi_window(beyond, product.extent)))
    assert needed >= 2 and raised.value.missing == needed
    assert message.startswith(f"{needed} of {needed} chunks of the tcvis-2000-2019 cube")
    command, call = message.split("`")[1], message.split("`")[3]
    assert command.startswith("darts-aux fetch tcvis --bbox ") and " --crs EPSG:4326 " in command
    left, bottom, right, top = (float(v) for v in command.split()[4:8])
    assert left < 179.5 and 180.5 < right < 182, "the box of the missing chunks continues past 180°, as --bbox takes it"
    assert call == f"download_tcvis(({left!r}, {bottom!r}, {right!r}, {top!r}), {str(tmp_path)!r}, crs='EPSG:4326')"


@pytest.mark.parametrize("value", ["false", 1, None])
def test_offline_must_be_a_bool(value: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="offline must be True"):
        load_arcticdem(COAST, tmp_path, 32, offline=value)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


def test_a_chunk_whose_reads_failed_counts_as_missing(prefetched: Prefetched, expired: LocalCatalog,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Its gaps are not the source's 'no data': an offline load must not return them as such."""
    data_dir = tmp_path / "copy"
    shutil.copytree(prefetched.data_dir, data_dir)
    manifest = Manifest(cube_paths(data_dir, DEM).manifest, GRID)
    full = next(r for r in manifest.latest().values() if r.status == "full")
    manifest.append([replace(full, status="partial", items_failed=("72_47_32m_v4.1",), checked_at=utc_now())])
    with no_network(monkeypatch) as guard, pytest.raises(OfflineError) as raised:
        load_arcticdem(COAST, data_dir, 32, offline=True)
    assert guard.attempts == [] and expired.requests() == []
    assert raised.value.missing == 1 and str(raised.value).startswith("1 of 4 chunks")
