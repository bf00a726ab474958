"""TCVIS as a ChunkSource: one Earth Engine image per edition, a chunk fetched for exactly its grid."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from ..grid import ChunkGrid, ChunkId
from ..products import VALID_VARIABLE, Product
from ..retry import RetryPolicy
from ..settings import Settings
from .base import ChunkPixels, SourceItem
from .gee import PixelGrid, compute_pixels, initialise, row_bands


@dataclass(frozen=True)
class ImageItem:
    """An Earth Engine image (here: one TCVIS edition's mosaic), the single item over every TCVIS chunk."""

    id: str


def tcvis_expression(edition: str) -> Any:
    """The edition's mosaic with its three trend bands plus `valid` (1 where the source has data, else 0)."""
    import ee

    image = ee.ImageCollection(edition).mosaic().select(["TCB_slope", "TCG_slope", "TCW_slope"])
    valid = image.select("TCB_slope").mask().toUint8().rename(VALID_VARIABLE)
    return image.addBands(valid)


class TCVISSource:
    """TCVIS from Earth Engine's computePixels: exact chunk grids, split to fit the request limits, stitched."""

    name = "earthengine"

    def __init__(self, product: Product, settings: Settings, policy: RetryPolicy) -> None:
        self.product = product
        self.grid = ChunkGrid(product)
        self.settings = settings
        self.policy = policy
        self.url = settings.ee_url

    def items(self, chunks: Sequence[ChunkId]) -> dict[ChunkId, tuple[SourceItem, ...]]:
        """Every chunk gets the edition's image (Earth Engine has the whole globe)."""
        return {chunk: (ImageItem(self.product.collection),) for chunk in chunks}

    def fetch(self, chunk: ChunkId, items: Sequence[SourceItem]) -> ChunkPixels:
        """The chunk in as few requests as fit the limits, in parallel; all succeed or this raises."""
        started = time.perf_counter()
        initialise(self.settings)
        window = self.grid.window(chunk)
        extent = self.product.extent
        grid = PixelGrid(extent.crs, extent.x0 + window.col0 * extent.resolution,
                         extent.y0 - window.row0 * extent.resolution, extent.resolution, window.shape)
        bands = [v.source_asset for v in self.product.variables]
        expression = tcvis_expression(self.product.collection)
        parts = row_bands(window.shape, len(bands))
        with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="computePixels") as pool:
            answers = list(pool.map(lambda rows: compute_pixels(expression, grid.rows(*rows), bands, self.policy),
                                    parts))
        arrays = {v.name: np.empty(window.shape, dtype=v.dtype) for v in self.product.variables}
        for (row0, row1), answer in zip(parts, answers):
            for variable in self.product.variables:
                arrays[variable.name][row0:row1] = answer[variable.source_asset]
        masked = arrays[VALID_VARIABLE] == 0
        for variable in self.product.variables:
            arrays[variable.name][masked] = variable.fill_value
        return ChunkPixels(arrays, applied=[self.product.collection], pixels_read=window.shape[0] * window.shape[1],
                           seconds=time.perf_counter() - started)

    def covered(self, chunk: ChunkId, items: Sequence[SourceItem]) -> shapely.Geometry:
        """Earth Engine serves the whole chunk: all of it once the edition is applied, else nothing."""
        applied = any(item.id == self.product.collection for item in items)
        return self.grid.footprint(chunk) if applied else shapely.Polygon()
