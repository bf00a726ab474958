"""darts-aux: auxiliary rasters for Arctic remote sensing from self-filling Zarr datacubes.

The public API (documented in darts_aux.api): `load_arcticdem`, `load_tcvis`, `load_alphaearth` read a region
(offline too); `load` reads any product, built-in or added with `register_product` (darts_aux.registry) or by an
installed package's entry point; `download_arcticdem`, `download_tcvis`, `download_alphaearth` prefetch an area
of interest; `coverage` shows what a cube holds.
Every name is imported on first use, so `import darts_aux` stays cheap and never imports Prefect.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import DartsAuxError, OfflineError

__all__ = [
    "DartsAuxError",
    "DownloadReport",
    "OfflineError",
    "coverage",
    "download_alphaearth",
    "download_arcticdem",
    "download_tcvis",
    "load",
    "load_alphaearth",
    "load_arcticdem",
    "load_tcvis",
    "register_product",
]

if TYPE_CHECKING:
    from .api import (
        coverage,
        download_alphaearth,
        download_arcticdem,
        download_tcvis,
        load,
        load_alphaearth,
        load_arcticdem,
        load_tcvis,
    )
    from .download import DownloadReport
    from .registry import register_product

_LAZY = {
    "coverage": "api",
    "download_alphaearth": "api",
    "download_arcticdem": "api",
    "download_tcvis": "api",
    "load_alphaearth": "api",
    "load_arcticdem": "api",
    "load": "api",
    "load_tcvis": "api",
    "register_product": "registry",
    "DownloadReport": "download",
}


def __getattr__(name: str) -> Any:
    """Import the API lazily so that `import darts_aux` stays cheap."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'darts_aux' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    """The public names beside the module's own attributes (for tab completion)."""
    return sorted({*globals(), *__all__})
