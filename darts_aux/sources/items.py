"""Source tiles as value types: one STAC item (or tile-index row) → TileItem, validated against the cube grid."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import shapely
from affine import Affine
from shapely.geometry import Polygon, box

from ..errors import SourceDataError
from ..grid import ChunkGrid, ChunkId, PixelWindow, window_bounds
from ..products import Product
from .hrefs import checked_href

_ALIGN_TOLERANCE = 1e-6  # in pixels
ASSET_HINT = "point DARTS_AUX_STAC_URL at a catalog whose assets are COGs on http(s):// or s3://"


@dataclass(frozen=True)
class TileItem:
    """One source tile: its id, asset URLs and exact pixel grid (in the cube's CRS)."""

    id: str
    hrefs: Mapping[str, str]
    """Asset key → URL of a COG, for every variable's source asset."""
    transform: tuple[float, float, float, float, float, float]
    """GDAL-order affine (a, b, c, d, e, f) of the tile's top-left pixel corner."""
    shape: tuple[int, int]

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the tile raster."""
        a, _, c, _, e, f = self.transform
        rows, cols = self.shape
        return (c, f + e * rows, c + a * cols, f)

    @property
    def footprint(self) -> Polygon:
        """The tile raster's outline in the cube's CRS."""
        return box(*self.bounds)

    def window_on(self, product: Product) -> PixelWindow:
        """The cube pixels this tile covers (tile pixels coincide with cube pixels)."""
        a, _, c, _, _, f = self.transform
        extent = product.extent
        col0 = round((c - extent.x0) / a)
        row0 = round((extent.y0 - f) / a)
        return PixelWindow(row0, row0 + self.shape[0], col0, col0 + self.shape[1])


def tile_item_from_stac(item: Mapping[str, Any], product: Product) -> TileItem:
    """Validate a STAC item (dict) against the product and turn it into a TileItem.

    Its asset hrefs are untrusted: only http(s):// and s3:// URLs pass (see `hrefs`).
    """
    item_id = str(item.get("id", "<no id>"))
    props = item.get("properties", {})
    assets = item.get("assets", {})
    hrefs: dict[str, str] = {}
    for variable in product.variables:
        asset = assets.get(variable.source_asset)
        if not asset or not asset.get("href"):
            raise SourceDataError(
                f"STAC item {item_id} has no {variable.source_asset!r} asset; the catalog does not serve "
                f"ArcticDEM-shaped items — check DARTS_AUX_STAC_URL.",
                source="stac",
            )
        hrefs[variable.source_asset] = checked_href(asset["href"], f"STAC item {item_id}'s {variable.source_asset!r} "
                                                    f"asset", "stac", ASSET_HINT)
    first_asset = assets[product.variables[0].source_asset]
    fields = {**props, **{k: v for k, v in first_asset.items() if k.startswith("proj:")}}
    code = fields.get("proj:code") or (f"EPSG:{fields['proj:epsg']}" if fields.get("proj:epsg") else None)
    transform, shape = fields.get("proj:transform"), fields.get("proj:shape")
    if code is None or transform is None or shape is None:
        raise SourceDataError(
            f"STAC item {item_id} lacks proj:code/proj:transform/proj:shape; the projection extension is "
            f"needed to place tiles on the cube grid.",
            source="stac",
        )
    return checked_tile(item_id, hrefs, code, tuple(float(v) for v in transform[:6]),
                        (int(shape[0]), int(shape[1])), product)


def checked_tile(
    item_id: str,
    hrefs: Mapping[str, str],
    crs_code: str,
    transform: tuple[float, ...],
    shape: tuple[int, int],
    product: Product,
) -> TileItem:
    """A TileItem, after checking its CRS, pixel size and alignment match the cube exactly."""
    extent = product.extent
    if crs_code.upper() != extent.crs.upper():
        raise SourceDataError(
            f"item {item_id} is in {crs_code}, the cube in {extent.crs}, so it cannot be copied exactly; point "
            f"DARTS_AUX_STAC_URL at a catalog of {product.collection} items in {extent.crs}.",
            source="stac",
        )
    a, b, c, d, e, f = transform
    res = extent.resolution
    if b != 0 or d != 0 or not math.isclose(a, res) or not math.isclose(-e, res):
        raise SourceDataError(
            f"item {item_id} has pixel size ({a}, {e}), the {product.key} cube {res} m; point DARTS_AUX_STAC_URL "
            f"at a catalog whose {product.collection} items have {res} m pixels.",
            source="stac",
        )
    for offset in ((c - extent.x0) / res, (extent.y0 - f) / res):
        if abs(offset - round(offset)) > _ALIGN_TOLERANCE:
            raise SourceDataError(f"item {item_id} is not aligned to the {product.key} pixel grid; point "
                                  f"DARTS_AUX_STAC_URL at a catalog of PGC-gridded ArcticDEM mosaic items.",
                                  source="stac")
    return TileItem(item_id, dict(hrefs), (a, b, c, d, e, f), shape)


def assign_items(
    grid: ChunkGrid, chunks: Sequence[ChunkId], items: Iterable[TileItem]
) -> dict[ChunkId, tuple[TileItem, ...]]:
    """For each chunk, the items whose raster overlaps it, sorted by id (the mosaic order)."""
    ordered = sorted(items, key=lambda item: item.id)
    windows = [(item, item.window_on(grid.product)) for item in ordered]
    return {
        chunk: tuple(item for item, w in windows if not w.intersect(grid.window(chunk)).is_empty)
        for chunk in chunks
    }


def covered(grid: ChunkGrid, chunk: ChunkId, items: Iterable[TileItem]) -> shapely.Geometry:
    """The part of the chunk inside at least one item's raster, in the cube's CRS (pixel-exact rectangles)."""
    window = grid.window(chunk)
    parts = [item.window_on(grid.product).intersect(window) for item in items]
    boxes = [box(*window_bounds(grid.product.extent, part)) for part in parts if not part.is_empty]
    return shapely.union_all(boxes) if boxes else Polygon()


def coverage(grid: ChunkGrid, chunk: ChunkId, items: Iterable[TileItem]) -> float:
    """Fraction of the chunk's pixels inside at least one item's raster."""
    return float(covered(grid, chunk, items).area / grid.footprint(chunk).area)


def _pixel_box(window: PixelWindow) -> Polygon | None:
    return None if window.is_empty else box(window.col0, window.row0, window.col1, window.row1)
