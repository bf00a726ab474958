"""A 'stac-cog' product as a ChunkSource: tiles found by one STAC search (or the tile index), read as COG windows.

Each variable's pixels come from its `source_asset` COG of every tile; pixels equal to the COG's nodata (or the
variable's `source_nodata` when the file declares none) become the cube's fill value, so a tile needs no mask
asset. ArcticDEM is such a product.
"""

from __future__ import annotations

from collections.abc import Sequence

import shapely

from ..grid import ChunkGrid, ChunkId, window_bounds
from ..location import DataLocation
from ..products import Product
from ..retry import RetryPolicy
from ..settings import Settings
from .base import ChunkPixels, SourceItem
from .cog import read_chunk
from .items import TileItem, assign_items, covered
from .stac import ItemSource, StacApiSource, search_or_raise


class StacCogSource:
    """Tiles of one product's STAC collection: from the product's own STAC API, else the configured catalog."""

    def __init__(self, product: Product, settings: Settings, data_dir: DataLocation, policy: RetryPolicy) -> None:
        self.product = product
        self.grid = ChunkGrid(product)
        self.settings = settings
        self.policy = policy
        self.data_dir = data_dir
        self.tile_index = product.stac_url is None and settings.discovery == "tile-index"
        self.name = "tile-index" if self.tile_index else "stac"
        self.url = settings.tile_index_url if self.tile_index else (product.stac_url or settings.stac_url)

    def _catalog(self) -> ItemSource:
        if self.tile_index:
            from .tile_index import TileIndexSource

            return TileIndexSource(self.settings.tile_index_url, self.data_dir, self.policy,
                                   self.settings.http_timeout_seconds)
        return StacApiSource(self.url, self.policy, self.settings.http_timeout_seconds)

    def items(self, chunks: Sequence[ChunkId]) -> dict[ChunkId, tuple[SourceItem, ...]]:
        """One search over the chunks' bounding box, then items assigned to chunks by their pixel windows."""
        union = self.grid.covering(chunks)
        found = search_or_raise(self._catalog(), self.product, window_bounds(self.product.extent, union), self.url)
        return dict(assign_items(self.grid, chunks, found))

    def fetch(self, chunk: ChunkId, items: Sequence[SourceItem]) -> ChunkPixels:
        """Windowed range reads of each tile's part of the chunk, mosaicked in item-id order."""
        tiles = [item for item in items if isinstance(item, TileItem)]
        return read_chunk(self.grid, chunk, tiles, self.policy, self.settings.http_timeout_seconds,
                          str(self.data_dir))

    def covered(self, chunk: ChunkId, items: Sequence[SourceItem]) -> shapely.Geometry:
        """The part of the chunk inside the tiles' rasters."""
        return covered(self.grid, chunk, [item for item in items if isinstance(item, TileItem)])
