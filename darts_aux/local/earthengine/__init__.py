"""A loopback Earth Engine REST server for the unmodified `earthengine-api` client, with synthetic TCVIS data
and a stand-in for the AlphaEarth annual embeddings (`GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL`, module `alphaearth`).

    with LocalEarthEngine() as local_ee:
        ee.Initialize(credentials=google.auth.credentials.AnonymousCredentials(),
                      project=local_ee.project, url=local_ee.url)
        ee.data.computePixels({...})             # answered from `tcvis_pixels` or `alphaearth_pixels`

Names are imported lazily so that the server subprocess and `import darts_aux.local.earthengine` stay cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from darts_aux.local.earthengine.alphaearth import alphaearth_pixels
    from darts_aux.local.earthengine.engine import DEFAULT_PROJECT, LocalEarthEngine
    from darts_aux.local.earthengine.faults import Fault, FaultSettings
    from darts_aux.local.earthengine.grid import MAX_GRID_SIDE, MAX_REQUEST_BYTES, request_bytes
    from darts_aux.local.earthengine.tcvis import BANDS, EDITIONS, TCVIS_PIXEL, VALID, tcvis_pixels

_EXPORTS = {
    "alphaearth_pixels": "alphaearth",
    "LocalEarthEngine": "engine",
    "DEFAULT_PROJECT": "engine",
    "Fault": "faults",
    "FaultSettings": "faults",
    "MAX_GRID_SIDE": "grid",
    "MAX_REQUEST_BYTES": "grid",
    "request_bytes": "grid",
    "BANDS": "tcvis",
    "EDITIONS": "tcvis",
    "TCVIS_PIXEL": "tcvis",
    "VALID": "tcvis",
    "tcvis_pixels": "tcvis",
}
__all__ = [
    "BANDS",
    "DEFAULT_PROJECT",
    "EDITIONS",
    "MAX_GRID_SIDE",
    "MAX_REQUEST_BYTES",
    "TCVIS_PIXEL",
    "VALID",
    "Fault",
    "FaultSettings",
    "LocalEarthEngine",
    "alphaearth_pixels",
    "request_bytes",
    "tcvis_pixels",
]


def __getattr__(name: str) -> Any:
    """Import an exported name from its submodule on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'darts_aux.local.earthengine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"darts_aux.local.earthengine.{module}"), name)
