"""Source kinds: how a product's declared `source` becomes the ChunkSource its fills read from.

The fill steps never look at a product's key: they ask `chunk_source`, which looks the declared kind up here.
"""

from __future__ import annotations

from collections.abc import Callable

from ..location import DataLocation
from ..products import Product, SourceKind
from ..retry import RetryPolicy
from ..settings import Settings
from .base import ChunkSource

SourceFactory = Callable[[Product, Settings, DataLocation, RetryPolicy], ChunkSource]


def _stac_cog(product: Product, settings: Settings, data_dir: DataLocation, policy: RetryPolicy) -> ChunkSource:
    from .stac_cog import StacCogSource

    return StacCogSource(product, settings, data_dir, policy)


def _earth_engine(product: Product, settings: Settings, data_dir: DataLocation, policy: RetryPolicy) -> ChunkSource:
    from .earth_engine import EarthEngineSource

    return EarthEngineSource(product, settings, policy)


FACTORIES: dict[SourceKind, SourceFactory] = {"stac-cog": _stac_cog, "earth-engine": _earth_engine}
"""Source kind → the factory of its ChunkSource (each imports its client libraries when first called)."""


def chunk_source(product: Product, settings: Settings, data_dir: DataLocation, policy: RetryPolicy) -> ChunkSource:
    """The ChunkSource of a product's declared source kind, configured from the settings."""
    return FACTORIES[product.source](product, settings, data_dir, policy)
