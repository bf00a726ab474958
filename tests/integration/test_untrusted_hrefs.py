"""Catalogs and tile indexes are untrusted: an href that is not http(s):// or s3:// is refused before anything opens it.

Every case points at a real, valid COG (or item JSON) on the local disk, which a fill would happily read: the
refusal is a typed SourceDataError, nothing is written, and the file is never read (its access time, set before
its modification time so that any read moves it on this relatime file system, stays where it was). A COG server
that redirects to file:// or ftp:// is refused the same way; a redirect to another http URL still loads.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.errors import SourceDataError
from darts_aux.grid import roi_window
from darts_aux.local import LocalCatalog, TileRef
from darts_aux.local.stac_items import render_item, write_json, write_tile_index
from darts_aux.products import arcticdem
from darts_aux.settings import reload_settings

from ._faults import ServedItems, disk_state
from .conftest import CATALOG_ROOT, rasterio_mosaic

TILE = TileRef.parse("72_47_32m_v4.1")  # x 599,904–700,096 m, y 3,099,904–3,200,096 m
ROI = GeoBox.from_bbox((640_000, 3_150_000, 660_000, 3_170_000), "EPSG:3413", resolution=32)  # one chunk, one tile
Item = dict[str, Any]


class Watched:
    """A local copy of a file whose every read shows: its access time is set an hour before its modification time."""

    def __init__(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        stat = target.stat()
        os.utime(target, ns=(stat.st_mtime_ns - 3600 * 10**9, stat.st_mtime_ns))
        self.path = target
        self.atime = target.stat().st_atime_ns

    def untouched(self) -> bool:
        """Whether nothing read the file since it was made."""
        return self.path.stat().st_atime_ns == self.atime


class FtpListener:
    """A loopback TCP listener standing in for an FTP server: it counts the connections it gets."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.sendall(b"220 ready\r\n")
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def local_cog(tmp_path: Path) -> Watched:
    """The tile's real dem COG, copied outside any served folder."""
    return Watched(CATALOG_ROOT / TILE.asset_relpath("dem"), tmp_path / "private" / TILE.asset_relpath("dem"))


@pytest.fixture
def ftp() -> Iterator[FtpListener]:
    listener = FtpListener()
    yield listener
    listener.close()


def _with_dem_href(href: str) -> Callable[[str], list[Item]]:
    """Items: the tile's real item, its dem asset pointing at `href`."""
    def items(files_url: str) -> list[Item]:
        item = render_item(TILE, files_url)
        item["assets"]["dem"]["href"] = href
        return [item]
    return items


def _load_refused(items: Callable[[str], list[Item]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                  **settings: str) -> tuple[SourceDataError, Path]:
    """Serve `items`, load the ROI in-process, return the SourceDataError raised and the data dir."""
    data_dir = tmp_path / "data"
    with ServedItems(tmp_path / "served", items, [CATALOG_ROOT]) as served:
        monkeypatch.setenv("DARTS_AUX_STAC_URL", served.stac_url)
        monkeypatch.setenv("DARTS_AUX_ORCHESTRATOR", "inline")
        for key, value in settings.items():
            monkeypatch.setenv(f"DARTS_AUX_{key.upper()}", value.replace("{files_url}", served.files_url))
        reload_settings()
        with pytest.raises(SourceDataError) as raised:
            load_arcticdem(ROI, data_dir, 32)
    return raised.value, data_dir


HREFS: dict[str, Callable[[Path, int], str]] = {
    "bare-path": lambda path, _: str(path),
    "file-url": lambda path, _: path.as_uri(),
    "vsicurl-file": lambda path, _: f"/vsicurl/{path.as_uri()}",
    "vsi-path": lambda path, _: f"/vsisubfile/0_,{path}",
    "ftp": lambda path, port: f"ftp://127.0.0.1:{port}/{path.name}",
    "no-host": lambda path, _: f"http:///{path}",
}


@pytest.mark.parametrize("kind", list(HREFS))
def test_an_asset_href_that_is_not_remote_is_refused_before_anything_opens_it(
    catalog: LocalCatalog, local_cog: Watched, ftp: FtpListener, kind: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    href = HREFS[kind](local_cog.path, ftp.port)
    error, data_dir = _load_refused(_with_dem_href(href), monkeypatch, tmp_path)
    assert error.source == "stac" and TILE.item_id in str(error) and "'dem' asset" in str(error)
    assert "not an http:// or https:// or s3:// URL" in str(error) and "DARTS_AUX_STAC_URL" in str(error)
    assert "\n" not in str(error)
    assert local_cog.untouched(), "the local COG was read"
    assert ftp.connections == 0, "the ftp host was contacted"
    assert disk_state(data_dir) is None, "something was written"


def test_a_tile_index_row_that_links_a_local_item_is_refused_before_it_is_read(
    catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """The index row's item link is a file:// URL of a real, valid item JSON (whose assets are served)."""
    item_file = tmp_path / "private" / TILE.item_relpath
    data_dir = tmp_path / "data"
    with ServedItems(tmp_path / "served", lambda _: [], [CATALOG_ROOT]) as served:
        write_json(item_file, render_item(TILE, served.files_url))
        stat = item_file.stat()
        os.utime(item_file, ns=(stat.st_mtime_ns - 3600 * 10**9, stat.st_mtime_ns))
        atime = item_file.stat().st_atime_ns
        write_tile_index(served.files_dir / "index.zip", [TILE], (tmp_path / "private").as_uri())
        for key, value in {"DISCOVERY": "tile-index", "TILE_INDEX_URL": served.files_url + "index.zip",
                           "ORCHESTRATOR": "inline"}.items():
            monkeypatch.setenv(f"DARTS_AUX_{key}", value)
        reload_settings()
        with pytest.raises(SourceDataError) as raised:
            load_arcticdem(ROI, data_dir, 32)
    error = raised.value
    assert error.source == "tile-index" and TILE.item_id in str(error) and "file://" in str(error)
    assert "DARTS_AUX_TILE_INDEX_URL" in str(error)
    assert item_file.stat().st_atime_ns == atime, "the local item JSON was read"
    assert not (data_dir / "arcticdem-32m").exists(), "a cube was written"


class Redirector:
    """A loopback HTTP server answering every request with 302 to `target(path)`; it logs the paths asked for."""

    def __init__(self, target: Callable[[str], str]) -> None:
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self._redirect()

            def do_GET(self) -> None:
                self._redirect()

            def _redirect(self) -> None:
                seen.append(self.path)
                self.send_response(302)
                self.send_header("Location", target(self.path))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("scheme", ["file", "ftp"])
def test_a_cog_server_redirecting_to_another_scheme_is_refused(
    catalog: LocalCatalog, local_cog: Watched, ftp: FtpListener, scheme: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Without the check GDAL follows the ftp:// redirect (libcurl allows it); file:// libcurl refuses itself."""
    target = local_cog.path.as_uri() if scheme == "file" else f"ftp://127.0.0.1:{ftp.port}/{local_cog.path.name}"
    redirector = Redirector(lambda _: target)
    try:
        error, data_dir = _load_refused(_with_dem_href(f"{redirector.url}/{TILE.asset_relpath('dem')}"),
                                        monkeypatch, tmp_path)
    finally:
        redirector.close()
    assert error.source == "cog" and f"redirects to a URL that points at '{scheme}://" in str(error)
    assert "not an http:// or https:// URL" in str(error)
    assert redirector.seen, "the COG server was asked"
    assert local_cog.untouched() and ftp.connections == 0
    assert not [row for row in _manifest_rows(data_dir)], "a chunk was recorded"


def test_a_redirect_to_another_http_server_still_loads_exactly(
    catalog: LocalCatalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    with ServedItems(tmp_path / "served", lambda _: [], [CATALOG_ROOT]) as files:
        redirector = Redirector(lambda path: files.files_url.rstrip("/") + path)
        try:
            def items(files_url: str) -> list[Item]:
                return [render_item(TILE, redirector.url)]

            with ServedItems(tmp_path / "catalog", items) as served:
                monkeypatch.setenv("DARTS_AUX_STAC_URL", served.stac_url)
                monkeypatch.setenv("DARTS_AUX_ORCHESTRATOR", "inline")
                reload_settings()
                ds = load_arcticdem(ROI, tmp_path / "data", 32)
        finally:
            redirector.close()
    assert redirector.seen, "the assets were asked for at the redirecting server"
    oracle = rasterio_mosaic(catalog, 32, roi_window(ROI, arcticdem(32).extent), [TILE])
    np.testing.assert_array_equal(ds.dem.values, oracle["dem"])
    np.testing.assert_array_equal(ds.datamask.values, oracle["datamask"])


def test_the_access_time_oracle_sees_a_read(local_cog: Watched) -> None:
    """The check the tests above rely on can fail: one read of the copy moves its access time."""
    assert local_cog.untouched()
    with rasterio.open(local_cog.path) as src:
        src.read(1, window=((0, 1), (0, 1)))
    assert not local_cog.untouched()


def _manifest_rows(data_dir: Path) -> list[Any]:
    from darts_aux.grid import ChunkGrid
    from darts_aux.manifest import Manifest
    from darts_aux.store import cube_paths

    product = arcticdem(32)
    paths = cube_paths(data_dir, product)
    if not Path(str(paths.manifest)).exists():
        return []
    return list(Manifest(paths.manifest, ChunkGrid(product)).latest(roi_window(ROI, product.extent)).values())
