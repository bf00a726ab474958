"""Earth Engine products as a ChunkSource: an ImageCollection mosaicked (per time step), fetched for exactly each chunk.

The declaration says everything this source needs: the collection (`Product.collection`), the bands (each variable's
`source_asset`), their types, and for a product with a time axis the step's dates (the collection is filtered to
them before the mosaic). Validity comes from the mask of the first band: a `valid` band (1 where the source has
data) is always requested beside the bands; masked pixels get each variable's fill value, and a variable named
`valid` stores the band itself. TCVIS (three uint8 bands plus `valid`) and AlphaEarth (64 float32 bands, NaN where
masked, one cube per year) are both served by it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from ..errors import SourceDataError
from ..grid import ChunkGrid, ChunkId
from ..products import VALID_VARIABLE, Product, Variable
from ..retry import RetryPolicy
from ..settings import Settings
from .base import ChunkPixels, SourceItem
from .gee import PixelGrid, compute_pixels, initialise, row_bands_for


@dataclass(frozen=True)
class ImageItem:
    """An Earth Engine mosaic (a collection, or one time step of it): the single item over every chunk."""

    id: str


def source_bands(product: Product) -> list[str]:
    """The collection's bands the product copies, in declaration order (without the derived `valid`)."""
    return [v.source_asset for v in product.variables if v.source_asset != VALID_VARIABLE]


def mosaic_expression(product: Product) -> Any:
    """The product's mosaic (of its time step, when it is one step's cube) with its bands plus `valid`."""
    import ee

    collection = ee.ImageCollection(product.collection)
    if product.step is not None:
        collection = collection.filterDate(product.step.start, product.step.end)
    bands = source_bands(product)
    image = collection.mosaic().select(bands)
    valid = image.select(bands[0]).mask().toUint8().rename(VALID_VARIABLE)
    if any(v.quantisation is not None for v in product.variables):
        image = image.toFloat()  # codes' values as float32: half the bytes of double, and still exact (Quantisation)
    return image.addBands(valid)


def requested_dtype(variable: Variable) -> np.dtype[Any]:
    """The type a variable's band is asked for: float32 for de-quantised codes, else the cube's own type."""
    return np.dtype(np.float32) if variable.quantisation is not None else np.dtype(variable.dtype)


def item_id(product: Product) -> str:
    """What the manifest records as applied: the collection, with the time step's label ('…/ANNUAL@2019')."""
    return product.collection if product.step is None else f"{product.collection}@{product.step.label}"


class EarthEngineSource:
    """Chunks from Earth Engine's computePixels: exact chunk grids, split to fit the request limits, stitched."""

    name = "earthengine"

    def __init__(self, product: Product, settings: Settings, policy: RetryPolicy) -> None:
        self.product = product
        self.grid = ChunkGrid(product)
        self.settings = settings
        self.policy = policy
        self.url = settings.ee_url
        self.bands = [*source_bands(product), VALID_VARIABLE]
        declared = {v.source_asset: requested_dtype(v) for v in product.variables}
        self.dtypes = {band: declared.get(band, np.dtype(np.uint8)) for band in self.bands}
        self.item = item_id(product)

    def items(self, chunks: Sequence[ChunkId]) -> dict[ChunkId, tuple[SourceItem, ...]]:
        """Every chunk gets the mosaic (Earth Engine has the whole globe)."""
        return {chunk: (ImageItem(self.item),) for chunk in chunks}

    def fetch(self, chunk: ChunkId, items: Sequence[SourceItem]) -> ChunkPixels:
        """The chunk in as few requests as fit the limits, in parallel (at most the in-flight cap at once).

        All requests succeed or this raises: a chunk is never stored from part of its requests.
        """
        started = time.perf_counter()
        initialise(self.settings)
        window = self.grid.window(chunk)
        extent = self.product.extent
        grid = PixelGrid(extent.crs, extent.x0 + window.col0 * extent.resolution,
                         extent.y0 - window.row0 * extent.resolution, extent.resolution, window.shape)
        expression = mosaic_expression(self.product)
        parts = row_bands_for(window.shape, [self.dtypes[band].itemsize for band in self.bands])
        workers = min(len(parts), max(1, self.settings.ee_max_in_flight))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="computePixels") as pool:
            answers = list(pool.map(
                lambda rows: compute_pixels(expression, grid.rows(*rows), self.bands, self.policy, self.dtypes), parts))
        arrays = {v.name: np.empty(window.shape, dtype=v.dtype) for v in self.product.variables}
        valid = np.empty(window.shape, dtype=np.uint8)
        for (row0, row1), answer in zip(parts, answers, strict=True):
            valid[row0:row1] = answer[VALID_VARIABLE]
            for variable in self.product.variables:
                arrays[variable.name][row0:row1] = self._stored(variable, answer, valid[row0:row1] != 0)
        masked = valid == 0
        for variable in self.product.variables:
            arrays[variable.name][masked] = variable.fill_value
        return ChunkPixels(arrays, applied=[self.item], pixels_read=window.shape[0] * window.shape[1],
                           seconds=time.perf_counter() - started)

    def _stored(self, variable: Variable, answer: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """A band of an answer as the cube stores it: as it is, or as its int8 codes (SourceDataError if not codes)."""
        values = answer[variable.source_asset]
        if variable.quantisation is None:
            return values
        try:
            return variable.quantisation.encode(values, valid)
        except ValueError as error:
            raise SourceDataError(f"Earth Engine's band {variable.source_asset} of {self.product.collection} holds "
                                  f"values that are not its published codes ({error}); the cube stores codes only, "
                                  f"so nothing was written.", source="earthengine") from error

    def covered(self, chunk: ChunkId, items: Sequence[SourceItem]) -> shapely.Geometry:
        """Earth Engine serves the whole chunk: all of it once the mosaic is applied, else nothing."""
        applied = any(item.id == self.item for item in items)
        return self.grid.footprint(chunk) if applied else shapely.Polygon()
