"""PGC-shaped STAC collections, items and the GeoParquet tile index for a served local catalog.

Item JSON carries absolute asset hrefs, so it is rendered when the file server's URL is known.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from rasterio.warp import transform as warp_transform
from shapely.geometry import MultiPolygon, Polygon, box, mapping
from shapely.ops import unary_union

from darts_aux.local.generate import ASSETS
from darts_aux.local.tiles import EPSG, RELEASE, Resolution, TileRef, collection_id

STAC_VERSION = "1.1.0"
PROJ_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
DATETIME = {"start_datetime": "2007-01-01T00:00:00Z", "end_datetime": "2022-12-31T00:00:00Z"}
TILE_INDEX_NAME = "ArcticDEM_Mosaic_Index_latest_gpqt.zip"
"""File name of PGC's GeoParquet mosaic index download."""
EDGE_POINTS = 16
"""Points per tile edge when densifying footprints into lon/lat."""


def footprint_lonlat(tile: TileRef) -> Polygon | MultiPolygon:
    """Tile extent (with buffer) as a densified lon/lat polygon, split at the antimeridian if needed."""
    x0, y0, x1, y1 = tile.bounds
    t = np.linspace(0.0, 1.0, EDGE_POINTS, endpoint=False)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t, np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1), y1 - (y1 - y0) * t])
    lon, lat = warp_transform(f"EPSG:{EPSG}", "EPSG:4326", xs.tolist(), ys.tolist())
    lon_a = np.asarray(lon)
    if lon_a.max() - lon_a.min() <= 180.0:
        return Polygon(zip(lon_a.round(7), np.round(lat, 7), strict=True))
    shifted = Polygon(zip(np.where(lon_a < 0, lon_a + 360.0, lon_a), lat, strict=True))
    east = shifted.intersection(box(-180.0, -90.0, 180.0, 90.0))
    west = shifted.intersection(box(180.0, -90.0, 540.0, 90.0))
    west = Polygon([(x - 360.0, y) for x, y in west.exterior.coords]) if not west.is_empty else west
    merged = unary_union([g for g in (east, west) if not g.is_empty])
    return merged if isinstance(merged, MultiPolygon) else MultiPolygon([merged])


def render_item(tile: TileRef, files_url: str) -> dict[str, Any]:
    """The STAC item of a tile, with projection-extension v2 fields and absolute asset hrefs."""
    geom = footprint_lonlat(tile)
    rows, cols = tile.shape
    t = tile.transform
    base = files_url.rstrip("/")
    assets = {
        fmt.name: {
            "href": f"{base}/{tile.asset_relpath(fmt.name)}",
            "type": COG_TYPE,
            "title": {"dem": "DEM", "datamask": "Valid data mask"}.get(fmt.name, fmt.name),
            "roles": ["data"],
            "nodata": fmt.nodata if fmt.dtype.startswith("float") else int(fmt.nodata),
            "data_type": fmt.dtype,
        }
        for fmt in ASSETS
    }
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [PROJ_EXT],
        "id": tile.item_id,
        "collection": tile.collection,
        "geometry": mapping(geom),
        "bbox": [round(v, 7) for v in geom.bounds],
        "properties": {
            "title": tile.item_id,
            "datetime": DATETIME["end_datetime"],
            **DATETIME,
            "gsd": float(tile.resolution),
            "proj:code": f"EPSG:{EPSG}",
            "proj:shape": [rows, cols],
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "proj:bbox": list(tile.bounds),
            "release_version": RELEASE.lstrip("v"),
        },
        "links": [],
        "assets": assets,
    }


def with_static_links(item: dict[str, Any], files_url: str, tile: TileRef) -> dict[str, Any]:
    """A copy of `item` with self/collection links to its static JSON (the S3-style copy)."""
    base = files_url.rstrip("/")
    links = [
        {"rel": "self", "href": f"{base}/{tile.item_relpath}", "type": "application/geo+json"},
        {"rel": "collection", "href": f"{base}/{collection_relpath(tile.resolution)}", "type": "application/json"},
    ]
    return {**item, "links": links}


def collection_relpath(resolution: Resolution) -> str:
    """Relative path of a collection's static JSON."""
    return f"arcticdem/mosaics/{RELEASE}/{resolution}m/{collection_id(resolution)}.json"


def render_collection(resolution: Resolution, items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A collection whose spatial extent is the union of its items' bboxes (whole world when empty)."""
    bboxes = [i["bbox"] for i in items]
    if bboxes:
        arr = np.asarray(bboxes)
        extent = [float(arr[:, 0].min()), float(arr[:, 1].min()), float(arr[:, 2].max()), float(arr[:, 3].max())]
    else:
        extent = [-180.0, -90.0, 180.0, 90.0]
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [PROJ_EXT],
        "id": collection_id(resolution),
        "title": f"ArcticDEM Mosaics, {RELEASE}, {resolution} m (synthetic local copy)",
        "description": "Synthetic ArcticDEM mosaic tiles on PGC's grid, served on loopback for demos and tests.",
        "license": "CC-BY-4.0",
        "extent": {
            "spatial": {"bbox": [extent]},
            "temporal": {"interval": [[DATETIME["start_datetime"], DATETIME["end_datetime"]]]},
        },
        "links": [],
    }


def tile_index_frame(tiles: Iterable[TileRef], files_url: str) -> dict[Resolution, gpd.GeoDataFrame]:
    """PGC mosaic-index rows (the GeoPackage's columns) per resolution, geometry in EPSG:3413."""
    base = files_url.rstrip("/")
    rows: dict[Resolution, list[dict[str, Any]]] = {}
    for tile in tiles:
        rows.setdefault(tile.resolution, []).append(
            {
                "dem_id": tile.item_id,
                "tile": tile.tile_id,
                "supertile": tile.supertile,
                "gsd": float(tile.resolution),
                "epsg": EPSG,
                "release_ver": RELEASE.lstrip("v"),
                "fileurl": f"{base}/{tile.asset_relpath('dem')}",
                "s3url": f"{base}/{tile.item_relpath}",
                "geometry": MultiPolygon([box(*tile.bounds)]),
            }
        )
    return {res: gpd.GeoDataFrame(r, geometry="geometry", crs=f"EPSG:{EPSG}") for res, r in rows.items()}


def tile_index_member(resolution: Resolution) -> str:
    """Name of one resolution's GeoParquet inside the zip (the GeoPackage's layer name)."""
    return f"ArcticDEM_Mosaic_Index_{RELEASE.replace('.', '_')}_{resolution}m.parquet"


def write_tile_index(path: Path, tiles: Iterable[TileRef], files_url: str) -> Path:
    """Write the zip of one GeoParquet per resolution, named like PGC's download; returns `path`."""
    frames = tile_index_frame(tiles, files_url)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for res, frame in sorted(frames.items()):
            buf = io.BytesIO()
            frame.to_parquet(buf, index=False)
            zf.writestr(tile_index_member(res), buf.getvalue())
    tmp.replace(path)
    return path


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (readers never see a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, separators=(",", ":")))
    tmp.replace(path)
