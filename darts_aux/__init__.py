"""darts-aux: auxiliary rasters for Arctic remote sensing from self-filling Zarr datacubes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DartsAuxError

__all__ = ["DartsAuxError", "load_arcticdem", "load_tcvis"]

if TYPE_CHECKING:
    from .api import load_arcticdem, load_tcvis


def __getattr__(name: str) -> Any:
    """Import the API lazily so that `import darts_aux` stays cheap."""
    if name in ("load_arcticdem", "load_tcvis"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'darts_aux' has no attribute {name!r}")
