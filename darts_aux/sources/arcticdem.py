"""ArcticDEM's source: a 'stac-cog' product, read by the generic STAC + COG source."""

from __future__ import annotations

from .stac_cog import StacCogSource

ArcticDEMSource = StacCogSource
"""ArcticDEM cubes fill from PGC's STAC API (or tile index) with the generic STAC + COG source."""

__all__ = ["ArcticDEMSource"]
