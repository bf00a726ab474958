"""ArcticDEM tile discovery: one STAC item search (pystac-client) or PGC's GeoParquet tile index."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from odc.geo.geom import Geometry
from shapely.geometry import MultiPolygon, box, mapping

from ..errors import SourceDataError, SourceUnavailableError
from ..products import Product
from ..retry import RetryPolicy, is_transient
from ..wording import plural
from .items import TileItem, tile_item_from_stac

log = logging.getLogger(__name__)


class ItemSource(Protocol):
    """Finds the source tiles of a product that intersect a box of the cube's CRS."""

    def search(self, product: Product, bounds: tuple[float, float, float, float]) -> list[TileItem]: ...


def search_geometry(bounds: tuple[float, float, float, float], crs: str) -> dict[str, Any]:
    """A lon/lat GeoJSON (Multi)Polygon of a polar-stereographic box, split at the antimeridian and the pole."""
    left, bottom, right, top = bounds
    xs = [left, right] if not left < 0 < right else [left, 0.0, right]
    ys = [bottom, top] if not bottom < 0 < top else [bottom, 0.0, top]
    parts = [box(x0, y0, x1, y1) for x0, x1 in zip(xs, xs[1:]) for y0, y1 in zip(ys, ys[1:])]
    side = max(right - left, top - bottom)
    lonlat = [Geometry(p, crs).to_crs("EPSG:4326", resolution=side / 64, wrapdateline=True) for p in parts]
    polygons = [poly for g in lonlat for poly in getattr(g.geom, "geoms", [g.geom])]
    return mapping(MultiPolygon(polygons))


class StacApiSource:
    """Item search on a STAC API (PGC's by default) with pystac-client; one search per call, all pages."""

    def __init__(self, url: str, policy: RetryPolicy, timeout: float = 30.0) -> None:
        self.url = url
        self.policy = policy
        self.timeout = timeout

    def search(self, product: Product, bounds: tuple[float, float, float, float]) -> list[TileItem]:
        """Every item of the product's collection intersecting `bounds` (cube CRS)."""
        geometry = search_geometry(bounds, product.extent.crs)
        found = self._search(product.collection, geometry)  # each request of the search is retried
        items = [tile_item_from_stac(item, product) for item in found]
        log.info("STAC search in %s found %s", product.collection, plural(len(items), "item"))
        return items

    def _search(self, collection: str, geometry: dict[str, Any]) -> list[dict[str, Any]]:
        from pystac_client import Client
        from pystac_client.exceptions import APIError

        from .stac_io import RetryingStacApiIO

        try:
            client = Client.open(self.url, stac_io=RetryingStacApiIO(self.policy, self.timeout))
            search = client.search(collections=[collection], intersects=geometry, limit=100)
            return list(search.items_as_dicts())
        except APIError as error:
            status = getattr(error, "status_code", None)
            if (status is not None and (status == 429 or status >= 500)) or (status is None and is_transient(error)):
                raise
            if status is None:
                raise SourceUnavailableError(
                    f"the STAC API at {self.url} could not be reached ({error}); check DARTS_AUX_STAC_URL "
                    f"and the network.", source="stac") from error
            raise SourceDataError(
                f"the STAC API at {self.url} rejected the search of {collection!r}: {error}", source="stac"
            ) from error
        except Exception as error:
            if is_transient(error):
                raise
            raise SourceUnavailableError(
                f"the STAC API at {self.url} could not be used ({type(error).__name__}: {error}); "
                f"check DARTS_AUX_STAC_URL and the network.",
                source="stac",
            ) from error


def search_or_raise(
    source: ItemSource, product: Product, bounds: tuple[float, float, float, float], url: str
) -> list[TileItem]:
    """Run a search; a transient failure that outlived its retries becomes SourceUnavailableError."""
    try:
        return source.search(product, bounds)
    except (SourceDataError, SourceUnavailableError):
        raise
    except Exception as error:
        if is_transient(error):
            raise SourceUnavailableError(
                f"the tile catalog at {url} kept failing ({error}); try again later or check DARTS_AUX_STAC_URL.",
                source="stac",
            ) from error
        raise


def dedupe(items: Sequence[TileItem]) -> list[TileItem]:
    """Items by id, first occurrence kept (paged searches may repeat an item)."""
    seen: dict[str, TileItem] = {}
    for item in items:
        seen.setdefault(item.id, item)
    return list(seen.values())
