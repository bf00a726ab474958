"""LocalCatalog: the synthetic ArcticDEM catalog served on loopback by rustac behind a logging gateway.

    with LocalCatalog(root) as cat:          # builds `root` once (cached), starts both servers
        Client.open(cat.stac_url).search(collections=[...], intersects=...)
        cat.requests("files")                # what the gateway saw

Processes: `rustac serve` (in-memory STAC API, on its own free port) and the gateway (uvicorn +
starlette, `python -m darts_aux.local.gateway`; the address clients see, on a free port or the `port`
given), both in their own sessions, stopped on `stop()`, on errors during `start()`, at interpreter exit,
and (Linux, main thread) when this process dies.
rustac has no transaction endpoint (POST /collections/{id}/items answers 405), so `publish()` starts a
new rustac with the larger item set, points the gateway at it, then stops the old one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from darts_aux.local import _procs
from darts_aux.local._server import LocalServer, read_request_log
from darts_aux.local.gateway import GatewayConfig, GatewayUrls, Upstream
from darts_aux.local.generate import BuildResult, build_catalog
from darts_aux.local.spec import CatalogSpec, default_spec
from darts_aux.local.stac_items import (
    TILE_INDEX_NAME,
    collection_relpath,
    render_collection,
    render_item,
    with_static_links,
    write_json,
    write_tile_index,
)
from darts_aux.local.synthetic import expected_pixels
from darts_aux.local.tiles import RESOLUTIONS, Resolution, TileRef

GDAL_HTTP_ENV: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.2",
}
"""GDAL settings for reading the catalog's COGs over HTTP (use with `rasterio.Env(**GDAL_HTTP_ENV)`)."""


class LocalCatalog(GatewayUrls, LocalServer):
    """A running (or startable) local catalog: STAC API under `stac_url`, COGs under `files_url`.

    Two processes: the gateway (the server this class starts and watches, see LocalServer) and rustac behind it,
    restarted whenever an item is published.
    """

    run_prefix = "darts-aux-local-"

    def __init__(
        self,
        root: Path | str,
        spec: CatalogSpec | None = None,
        *,
        startup_timeout: float = 30.0,
        port: int | None = None,
    ) -> None:
        super().__init__(startup_timeout, port)
        self.root = Path(root)
        self.spec = default_spec() if spec is None else spec
        self.build: BuildResult | None = None
        self._published: set[str] = set(self.spec.published_item_ids())
        self._rustac: subprocess.Popen[bytes] | None = None
        self._generation = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> LocalCatalog:
        """Build the catalog if needed, render per-run JSON, start rustac and the gateway, wait healthy."""
        if not self.running:
            self.check_port()
            self.build = build_catalog(self.root, self.spec)
        return super().start()

    def _start_server(self, attempt: int) -> None:
        """rustac with this run's items (their hrefs carry the gateway's port), then the gateway."""
        _procs.stop(self._rustac)
        self._port = self._choose_port()
        self._write_static_files()
        self._rustac = self._start_rustac()
        self._start_gateway(attempt)

    def stop(self) -> None:
        """Stop both servers (whole process groups) and delete the per-run directory; idempotent."""
        _procs.stop(self._rustac)
        self._rustac = None
        super().stop()

    def __repr__(self) -> str:
        state = self.base_url if self.running else "stopped"
        return f"LocalCatalog({str(self.root)!r}, {len(self._published)} published, {state})"

    # -- URLs and paths ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` of the gateway."""
        return self.url

    @property
    def tile_index_path(self) -> Path:
        """Local path of the served `ArcticDEM_Mosaic_Index_latest_gpqt.zip` (published items only)."""
        return self._files_dir / TILE_INDEX_NAME

    @property
    def tile_index_url(self) -> str:
        """URL of the GeoParquet tile index zip."""
        return self.files_url + TILE_INDEX_NAME

    def item_url(self, item_id: str) -> str:
        """URL of an item's static JSON (404 while the item is held back)."""
        return self.files_url + TileRef.parse(item_id).item_relpath

    def asset_url(self, item_id: str, asset: str = "dem") -> str:
        """URL of one asset COG (served whether or not the item is published)."""
        return self.files_url + TileRef.parse(item_id).asset_relpath(asset)

    def asset_path(self, item_id: str, asset: str = "dem") -> Path:
        """Local path of one asset COG."""
        return self.root / TileRef.parse(item_id).asset_relpath(asset)

    # -- request log -------------------------------------------------------------------------------

    def requests(self, upstream: Upstream | None = None) -> list[dict[str, Any]]:
        """Logged requests, oldest first: time, upstream, method, path (+query), range, status, bytes, seconds."""
        records = read_request_log(self.log_path)
        return [r for r in records if upstream is None or r["upstream"] == upstream]

    def reset_log(self) -> None:
        """Forget all logged requests."""
        self.log_path.write_text("", encoding="utf-8")

    # -- publication -------------------------------------------------------------------------------

    def published(self) -> tuple[str, ...]:
        """Item ids currently visible in the STAC API, in spec order."""
        return tuple(i for i in self.spec.item_ids() if i in self._published)

    def unpublished(self) -> tuple[str, ...]:
        """Held-back item ids not yet published, in spec order."""
        return tuple(i for i in self.spec.item_ids() if i not in self._published)

    def publish(self, item_id: str) -> None:
        """Make a held-back item visible: STAC API, static JSON and tile index; the gateway stays up."""
        if item_id not in self.spec.item_ids():
            raise KeyError(f"{item_id} is not an item of this catalog")
        if item_id in self._published:
            return
        self._published.add(item_id)
        if not self.running:
            return
        self._write_static_files()
        old = self._rustac
        self._rustac = self._start_rustac()
        time.sleep(0.2)  # let requests already forwarded to the old server finish
        _procs.stop(old)

    # -- oracle ------------------------------------------------------------------------------------

    def expected_pixels(
        self, resolution: Resolution, x: npt.ArrayLike, y: npt.ArrayLike, *, items: Collection[str] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
        """The formula oracle over the published items (or `items`): (dem with NaN, datamask)."""
        chosen = set(self.published()) if items is None else set(items)
        return expected_pixels(resolution, x, y, self.spec, items=chosen)

    # -- internals ---------------------------------------------------------------------------------

    @property
    def _files_dir(self) -> Path:
        """Per-run directory served before the tile tree: item JSON, collections, tile index."""
        return self._require_run_dir() / "files"

    def _require_run_dir(self) -> Path:
        if self._run_dir is None:
            raise RuntimeError("LocalCatalog is not running; call start() first")
        return self._run_dir

    def _published_tiles(self, resolution: Resolution | None = None) -> list[TileRef]:
        tiles = self.spec.all_tiles() if resolution is None else self.spec.tiles(resolution)
        return [t for t in tiles if t.item_id in self._published]

    def _write_static_files(self) -> None:
        """Render the static item/collection JSON and the tile index for the published items."""
        files = self._files_dir
        for tile in self._published_tiles():
            item = render_item(tile, self.files_url)
            write_json(files / tile.item_relpath, with_static_links(item, self.files_url, tile))
        for res in RESOLUTIONS:
            items = [render_item(t, self.files_url) for t in self._published_tiles(res)]
            write_json(files / collection_relpath(res), render_collection(res, items))
        files.mkdir(parents=True, exist_ok=True)
        write_tile_index(self.tile_index_path, self._published_tiles(), self.files_url)

    def _rustac_inputs(self, generation_dir: Path) -> list[str]:
        """Collection files, then one FeatureCollection per resolution, for `rustac serve`."""
        hrefs: list[str] = []
        batches: list[Path] = []
        for res in RESOLUTIONS:
            items = [render_item(t, self.files_url) for t in self._published_tiles(res)]
            col_path = generation_dir / f"collection-{res}m.json"
            write_json(col_path, render_collection(res, items))
            hrefs.append(str(col_path))
            if items:
                batch = generation_dir / f"items-{res}m.json"
                write_json(batch, {"type": "FeatureCollection", "features": items})
                batches.append(batch)
        return hrefs + [str(b) for b in batches]

    def _start_rustac(self) -> subprocess.Popen[bytes]:
        """Start rustac on a fresh port with the published items, wait for it, point the gateway at it."""
        run_dir = self._require_run_dir()
        self._generation += 1
        gen_dir = run_dir / "stac" / f"gen-{self._generation}"
        inputs = self._rustac_inputs(gen_dir)
        for attempt in range(3):
            port = _procs.free_port()
            url = f"http://{_procs.LOOPBACK}:{port}"
            log = run_dir / f"rustac-{self._generation}-{attempt}.log"
            cmd = [rustac_executable(), "serve", "--addr", url, "--bind", f"{_procs.LOOPBACK}:{port}", *inputs]
            proc = _procs.spawn(cmd, log)
            try:
                _procs.wait_healthy(url + "/", proc, log, self.startup_timeout)
            except _procs.ServerStartError:
                _procs.stop(proc)
                if attempt == 2:
                    raise
                continue
            write_json(run_dir / "stac_upstream.json", {"url": url})
            return proc
        raise AssertionError("unreachable")

    def _start_gateway(self, attempt: int) -> None:
        """Start the gateway subprocess on the chosen port and wait for /healthz and the STAC root."""
        run_dir = self._require_run_dir()
        config = GatewayConfig(
            host=_procs.LOOPBACK,
            port=self.port,
            file_dirs=(str(self._files_dir), str(self.root.resolve())),
            upstream_file=str(run_dir / "stac_upstream.json"),
            log_path=str(self.log_path),
            parent_pid=os.getpid(),
        )
        config_path = run_dir / "gateway.json"
        config.dump(config_path)
        log = run_dir / f"gateway-{attempt}.log"
        proc = _procs.spawn([sys.executable, "-m", "darts_aux.local.gateway", str(config_path)], log)
        try:
            _procs.wait_healthy(f"{self.base_url}/healthz", proc, log, self.startup_timeout, own_answer=True)
            _procs.wait_healthy(self.stac_url, proc, log, self.startup_timeout)
        except BaseException:
            _procs.stop(proc)
            raise
        self._proc = proc
        self.reset_log()


def rustac_executable() -> str:
    """The `rustac` console script of this environment (next to the interpreter), else from PATH."""
    beside = Path(sys.executable).with_name("rustac")
    if beside.exists():
        return str(beside)
    found = shutil.which("rustac")
    if found is None:
        raise FileNotFoundError("the rustac console script is not installed (pip package rustac)")
    return found
