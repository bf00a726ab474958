"""Tile discovery from PGC's mosaic tile index (a zip of GeoParquet), fetched once into the data dir.

With a data dir on object storage the index is kept in the local user cache instead (geopandas reads it from
local files), one folder per index URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
import zipfile
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import SourceDataError, SourceUnavailableError
from ..location import DataLocation, S3Location
from ..products import Product
from ..retry import RetryPolicy, is_transient
from ..wording import plural
from .hrefs import HTTP_SCHEMES, checked_href
from .items import TileItem, tile_item_from_stac

log = logging.getLogger(__name__)
STAC_BROWSER_MARKER = "#/external/"
INDEX_HINT = "point DARTS_AUX_TILE_INDEX_URL at PGC's mosaic tile index, whose rows link http(s):// STAC items"
UNPACKED = "index"
"""The unpacked index's folder inside the tile-index folder (renamed into place whole)."""


def item_json_url(url: str) -> str:
    """The JSON URL behind a tile index's item link (PGC lists STAC-browser links)."""
    if STAC_BROWSER_MARKER in url:
        return "https://" + url.split(STAC_BROWSER_MARKER, 1)[1]
    return url


def index_folder(data_dir: DataLocation, url: str) -> Path:
    """Where the unpacked index lives: `<data_dir>/tile-index`, or for an s3:// data dir
    `$XDG_CACHE_HOME/darts-aux/tile-index/<hash of the URL>` (`~/.cache` when unset)."""
    if not isinstance(data_dir, S3Location):
        return Path(data_dir) / "tile-index"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "darts-aux" / "tile-index" / hashlib.sha256(url.encode()).hexdigest()[:16]


class TileIndexSource:
    """Finds tiles in the GeoParquet tile index, then fetches only the intersecting items' JSON."""

    def __init__(self, url: str, data_dir: DataLocation, policy: RetryPolicy, timeout: float = 30.0) -> None:
        self.url = url
        self.folder = index_folder(data_dir, url)
        self.policy = policy
        self.timeout = timeout

    def search(self, product: Product, bounds: tuple[float, float, float, float]) -> list[TileItem]:
        """Items of the product's resolution whose footprint intersects `bounds` (EPSG:3413)."""
        from shapely.geometry import box

        frame = self._index(product)
        hits = frame[frame.intersects(box(*bounds))]
        urls = [checked_href(item_json_url(u), f"the tile index row of {dem_id}", "tile-index", INDEX_HINT,
                             HTTP_SCHEMES) for u, dem_id in zip(hits["s3url"], hits["dem_id"])]
        items = [tile_item_from_stac(self.policy.call(partial(self._get_json, u), what=f"item {u}"), product)
                 for u in urls]
        log.info("tile index: %s of %s intersect the request", plural(len(items), "item"), product.collection)
        return items

    def _index(self, product: Product) -> Any:
        """The index rows of one resolution, as a GeoDataFrame in EPSG:3413."""
        import geopandas as gpd
        import pandas as pd

        folder = self._fetch_once()
        frames = [gpd.read_parquet(p) for p in sorted(folder.glob("**/*.parquet"))]
        if not frames:
            raise SourceDataError(f"the tile index {self.url} holds no GeoParquet file.", source="tile-index")
        frame = pd.concat(frames, ignore_index=True).to_crs(product.extent.crs)
        suffix = f"_{int(product.resolution)}m_v4.1"
        return frame[frame["dem_id"].str.endswith(suffix)]

    def _fetch_once(self) -> Path:
        """The unpacked index, downloaded and unpacked unless a previous call (any process) already did.

        Each process unpacks into its own folder and renames it into place, so racing processes (jobs sharing a
        data dir or the user cache) never read a half-unpacked index; the loser's copy is dropped.
        """
        unpacked, done = self.folder / UNPACKED, self.folder / ".complete"
        if done.exists():
            return unpacked
        work = self.folder / f"fetching-{uuid.uuid4().hex}"
        work.mkdir(parents=True)
        try:
            archive = work / "index.zip"
            self.policy.call(lambda: self._download(archive), what=f"tile index {self.url}")
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(work / UNPACKED)
            try:
                os.rename(work / UNPACKED, unpacked)
            except OSError:
                if not unpacked.is_dir():  # not another process's finished copy: a real failure
                    raise
            done.write_text(json.dumps({"url": self.url}))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return unpacked

    def _download(self, target: Path) -> None:
        import httpx

        try:
            with httpx.stream("GET", self.url, timeout=self.timeout, follow_redirects=True) as response:
                response.raise_for_status()
                with open(target, "wb") as handle:
                    for block in response.iter_bytes():
                        handle.write(block)
        except httpx.HTTPError as error:
            self._raise(error)

    def _get_json(self, url: str) -> dict[str, Any]:
        import httpx

        try:
            response = httpx.get(url, timeout=self.timeout, follow_redirects=True)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPError as error:
            self._raise(error)
            raise  # unreachable: _raise always raises

    def _raise(self, error: Exception) -> None:
        if is_transient(error) or isinstance(error, httpx_transport_errors()):
            raise error
        raise SourceUnavailableError(f"the tile index source failed: {error}; check DARTS_AUX_TILE_INDEX_URL.",
                                     source="tile-index") from error


def httpx_transport_errors() -> tuple[type[Exception], ...]:
    """httpx errors that a retry may fix."""
    import httpx

    return (httpx.TransportError,)
