"""What every pixel source gives the fill steps: items per chunk, a chunk's pixels, the part of a chunk covered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import shapely

from ..grid import ChunkId, PixelWindow
from ..products import Product


class SourceItem(Protocol):
    """One unit of source data that can be merged into chunks (a tile, an image)."""

    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class ItemFailure:
    """An item that could not be read, and why."""

    item_id: str
    reason: str
    transient: bool
    source: str = ""
    """Which server failed ('cog' for a tile's file server); empty: the product's source itself."""


@dataclass
class ChunkPixels:
    """A chunk's pixels from the items read, plus what was applied and what failed."""

    arrays: dict[str, np.ndarray]
    applied: list[str] = field(default_factory=list)
    failed: list[ItemFailure] = field(default_factory=list)
    pixels_read: int = 0
    seconds: float = 0.0


class ChunkSource(Protocol):
    """A product's source as the fill steps use it; ArcticDEM (STAC + COG) and TCVIS (Earth Engine) implement it."""

    name: str
    """Short source name for errors and logs ('stac', 'earthengine', …)."""
    url: str
    """Where the source lives, for messages."""

    def items(self, chunks: Sequence[ChunkId]) -> dict[ChunkId, tuple[SourceItem, ...]]:
        """The items over each chunk, in merge order (one search for all chunks)."""
        ...

    def fetch(self, chunk: ChunkId, items: Sequence[SourceItem]) -> ChunkPixels:
        """Read the chunk's pixels of `items`; per-item failures are listed, not raised, where partial makes sense."""
        ...

    def covered(self, chunk: ChunkId, items: Sequence[SourceItem]) -> shapely.Geometry:
        """The part of the chunk (in the cube's CRS) that `items` cover; the manifest keeps its union."""
        ...


def empty_chunk(product: Product, window: PixelWindow) -> dict[str, np.ndarray]:
    """Arrays of a chunk's shape holding only fill values."""
    return {v.name: np.full(window.shape, v.fill_value, dtype=v.dtype) for v in product.variables}
