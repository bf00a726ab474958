"""The embedded local ArcticDEM catalog: synthetic v4.1 mosaic tiles on PGC's grid, a real STAC API
(`rustac serve`) and a byte-range file server on loopback, for the demo and the tests.

Names are imported lazily so that the gateway subprocess and `import darts_aux.local` stay cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from darts_aux.local.catalog import GDAL_HTTP_ENV, LocalCatalog
    from darts_aux.local.generate import BuildResult, build_catalog
    from darts_aux.local.spec import CatalogSpec, default_spec
    from darts_aux.local.synthetic import expected_pixels, hole_mask, terrain
    from darts_aux.local.tiles import TileRef

_EXPORTS = {
    "LocalCatalog": "catalog",
    "GDAL_HTTP_ENV": "catalog",
    "build_catalog": "generate",
    "BuildResult": "generate",
    "CatalogSpec": "spec",
    "default_spec": "spec",
    "expected_pixels": "synthetic",
    "hole_mask": "synthetic",
    "terrain": "synthetic",
    "TileRef": "tiles",
}
__all__ = [
    "GDAL_HTTP_ENV",
    "BuildResult",
    "CatalogSpec",
    "LocalCatalog",
    "TileRef",
    "build_catalog",
    "default_spec",
    "expected_pixels",
    "hole_mask",
    "terrain",
]


def __getattr__(name: str) -> Any:
    """Import an exported name from its submodule on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'darts_aux.local' has no attribute {name!r}")
    return getattr(importlib.import_module(f"darts_aux.local.{module}"), name)
