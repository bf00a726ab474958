"""Areas of interest for prefetches: any geometry input → the chunks the geometries themselves intersect.

A prefetch of a 300 km diagonal corridor or of fifty scattered scene footprints fills the chunks under them, not
the empty space of their bounding box. A GeoBox stands for a load of that geobox: its chunks are exactly those
`load_*` reads (the bounding box of its footprint in the cube's CRS), so an offline load of it finds them all.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import shapely
import shapely.affinity
from odc.geo import geom
from odc.geo.geobox import GeoBox

from .errors import EmptyRegionError, InvalidRegionError, OutsideExtentError
from .grid import ChunkGrid, ChunkId, PixelWindow
from .products import Product
from .validate import check_buffer, region_window

if TYPE_CHECKING:
    import geopandas as gpd
    from shapely.geometry.base import BaseGeometry

AOI = Union["gpd.GeoDataFrame", "gpd.GeoSeries", "BaseGeometry", geom.Geometry, GeoBox, Sequence[float]]
"""What a prefetch takes: a GeoDataFrame/GeoSeries (its CRS), a shapely geometry or a (minx, miny, maxx, maxy)
bbox (with `crs`), an odc-geo Geometry (its CRS) or an odc-geo GeoBox (the chunks a load of it reads)."""


def aoi_chunks(product: Product, aoi: Any, crs: Any = None, buffer: int = 0) -> list[ChunkId]:
    """The chunks of a product's cube an AOI needs, row-major; each AOI geometry padded by `buffer` cube pixels."""
    pixels = check_buffer(buffer)
    if isinstance(aoi, GeoBox):
        _no_second_crs(crs, aoi.crs)
        return ChunkGrid(product).chunks(region_window(product, aoi, pixels))
    shapes = [_to_cube_crs(product, g) for g in aoi_geometries(aoi, crs)]
    chunks = geometry_chunks(product, shapes, pixels * product.resolution)
    if not chunks:
        left, bottom, right, top = product.extent.bounds
        raise OutsideExtentError(f"the aoi lies outside the {product.key} cube's extent ({left:.6g}, {bottom:.6g}, "
                                 f"{right:.6g}, {top:.6g} in {product.extent.crs}); pass an aoi that overlaps it.")
    return chunks


def aoi_geometries(aoi: Any, crs: Any = None) -> list[geom.Geometry]:
    """The AOI as non-empty odc-geo Geometries, each with its CRS."""
    frame = _geopandas_geometries(aoi)
    if frame is not None:
        _no_second_crs(crs, frame.crs)
        if frame.crs is None:
            raise InvalidRegionError("the aoi GeoDataFrame/GeoSeries has no CRS; set one (e.g. .set_crs(4326)).")
        shapes = [g for g in frame.to_numpy() if g is not None and not g.is_empty]
        if not shapes:
            raise EmptyRegionError("the aoi GeoDataFrame/GeoSeries holds no geometry; pass at least one row.")
        return [geom.Geometry(g, frame.crs) for g in shapes]
    if isinstance(aoi, geom.Geometry):
        _no_second_crs(crs, aoi.crs)
        if aoi.crs is None:
            raise InvalidRegionError("the aoi Geometry has no CRS; build it with one, e.g. geom.box(..., crs=3413).")
        return [_non_empty(aoi)]
    if isinstance(aoi, shapely.Geometry):
        return [_non_empty(geom.Geometry(aoi, _required_crs(crs, "a shapely geometry")))]
    if _is_bbox(aoi):
        return [geom.box(*_checked_bbox(aoi), _required_crs(crs, "a bbox"))]
    raise InvalidRegionError(
        f"aoi must be a GeoDataFrame or GeoSeries, a shapely geometry or a (minx, miny, maxx, maxy) bbox with crs=, "
        f"an odc-geo Geometry or a GeoBox; got {type(aoi).__name__}."
    )


def geometry_chunks(product: Product, shapes: Sequence[shapely.Geometry], pad: float = 0.0) -> list[ChunkId]:
    """The chunks whose footprint shares area (or, for points and lines, any point) with one of the shapes.

    `shapes` are in the cube's CRS; each is grown by `pad` CRS units with square corners first. On the global
    lon/lat grid a shape east of 180° (or west of −180°) counts where the grid continues, across the antimeridian.
    """
    found: set[ChunkId] = set()
    for shape in shapes:
        grown = shape.buffer(pad, join_style="mitre") if pad else shape
        for part in _wrapped_copies(product, grown):
            found.update(_shape_chunks(product, part))
    return sorted(found)


def chunk_windows(product: Product, chunks: Sequence[ChunkId]) -> list[PixelWindow]:
    """Chunks as few cube windows: runs of neighbours along a row, runs of identical runs down the rows.

    A fill discovers one window at a time (one item search each); a window holds only the given chunks.
    """
    grid = ChunkGrid(product)
    rectangles: list[list[int]] = []  # [row0, row1, col0, col1], inclusive chunk indices
    open_by_cols: dict[tuple[int, int], list[int]] = {}
    for row, col0, col1 in _row_runs(chunks):
        rectangle = open_by_cols.get((col0, col1))
        if rectangle is not None and rectangle[1] == row - 1:
            rectangle[1] = row
            continue
        rectangle = [row, row, col0, col1]
        rectangles.append(rectangle)
        open_by_cols[(col0, col1)] = rectangle
    return [grid.covering([ChunkId(r0, c0), ChunkId(r1, c1)]) for r0, r1, c0, c1 in rectangles]


def _row_runs(chunks: Sequence[ChunkId]) -> list[tuple[int, int, int]]:
    """(row, first col, last col) of every run of neighbouring chunks in a row, row-major."""
    runs: list[tuple[int, int, int]] = []
    for chunk in sorted(set(chunks)):
        if runs and runs[-1][0] == chunk.row and runs[-1][2] == chunk.col - 1:
            runs[-1] = (chunk.row, runs[-1][1], chunk.col)
        else:
            runs.append((chunk.row, chunk.col, chunk.col))
    return runs


def _shape_chunks(product: Product, shape: shapely.Geometry) -> list[ChunkId]:
    """Chunks of the grid under one shape: candidates from its bounds, kept when they share area (or any point)."""
    grid, extent = ChunkGrid(product), product.extent
    side = grid.chunk * extent.resolution
    left, bottom, right, top = shape.bounds
    rows, cols = grid.shape
    row0, row1 = max(0, math.floor((extent.y0 - top) / side)), min(rows - 1, math.floor((extent.y0 - bottom) / side))
    col0, col1 = max(0, math.floor((left - extent.x0) / side)), min(cols - 1, math.floor((right - extent.x0) / side))
    if row1 < row0 or col1 < col0:
        return []
    candidates = [ChunkId(r, c) for r in range(row0, row1 + 1) for c in range(col0, col1 + 1)]
    footprints = np.array([grid.footprint(c) for c in candidates], dtype=object)
    hit = shapely.intersects(footprints, shape)
    if shapely.get_dimensions(shape) == 2:
        hit &= ~shapely.touches(footprints, shape)  # a polygon on a chunk border does not need the neighbour
    return [c for c, keep in zip(candidates, hit) if keep]


def _wrapped_copies(product: Product, shape: shapely.Geometry) -> list[shapely.Geometry]:
    """The shape, and on a global grid its copies one turn east and west (a box may continue past 180°)."""
    if not product.extent.wrap_x:
        return [shape]
    return [shape, shapely.affinity.translate(shape, -360.0), shapely.affinity.translate(shape, 360.0)]


def _to_cube_crs(product: Product, shape: geom.Geometry) -> shapely.Geometry:
    """A geometry in the cube's CRS (densified first, so straight edges follow their true curved path)."""
    target = product.extent.crs
    if shape.crs == target:
        return shape.geom
    try:
        projected = shape.to_crs(target, resolution="auto", wrapdateline=product.extent.wrap_x)
    except Exception as error:  # noqa: BLE001 - pyproj's many error kinds all mean the same to the caller
        raise InvalidRegionError(f"the aoi cannot be transformed from {shape.crs} to {target} ({error}); pass an "
                                 f"aoi in an Earth CRS such as EPSG:4326, EPSG:3413 or a UTM zone.") from None
    if projected.is_empty or not all(math.isfinite(v) for v in projected.boundingbox):
        raise EmptyRegionError(f"the aoi has no finite footprint in {target}; pass an aoi over the Arctic.")
    return projected.geom


def _geopandas_geometries(aoi: Any) -> Any:
    """The GeoSeries of a GeoDataFrame or GeoSeries (None for anything else; geopandas is never imported here)."""
    if "geopandas" not in sys.modules:
        return None
    import geopandas as gpd

    if isinstance(aoi, gpd.GeoDataFrame):
        return aoi.geometry
    return aoi if isinstance(aoi, gpd.GeoSeries) else None


def _no_second_crs(crs: Any, own: Any) -> None:
    """Refuse `crs=` that contradicts the CRS an AOI object carries itself."""
    if crs is None or own is None:
        return
    from pyproj import CRS

    if CRS.from_user_input(crs) != CRS.from_user_input(own):
        raise InvalidRegionError(f"crs={crs!r} contradicts the aoi's own CRS ({own}); drop crs= (it is for shapely "
                                 "geometries and bboxes only).")


def _required_crs(crs: Any, what: str) -> Any:
    if crs is None:
        raise InvalidRegionError(f"an aoi given as {what} needs crs=, e.g. crs='EPSG:4326' or crs='EPSG:3413'.")
    return crs


def _is_bbox(aoi: Any) -> bool:
    return (isinstance(aoi, (Sequence, np.ndarray)) and not isinstance(aoi, str) and len(aoi) == 4
            and all(isinstance(v, numbers.Real) for v in aoi))


def _checked_bbox(values: Sequence[float]) -> tuple[float, float, float, float]:
    left, bottom, right, top = (float(v) for v in values)
    if not all(math.isfinite(v) for v in (left, bottom, right, top)) or right <= left or top <= bottom:
        raise EmptyRegionError(f"the aoi bbox {tuple(values)} has no area: pass (minx, miny, maxx, maxy) with "
                               "maxx > minx and maxy > miny.")
    return left, bottom, right, top


def _non_empty(shape: geom.Geometry) -> geom.Geometry:
    if shape.is_empty:
        raise EmptyRegionError("the aoi geometry is empty; pass a geometry with a footprint.")
    return shape


AOI_FILE_SUFFIXES = (".gpkg", ".geojson", ".json", ".parquet", ".geoparquet", ".shp", ".fgb")


def read_aoi_file(path: str | Path) -> gpd.GeoDataFrame:
    """An AOI file (GeoPackage, GeoJSON, GeoParquet, Shapefile, FlatGeobuf) as a GeoDataFrame with a CRS and rows."""
    import geopandas as gpd

    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidRegionError(f"aoi file {path} does not exist; pass a .gpkg, .geojson or .parquet file.")
    suffix = path.suffix.lower()
    if suffix not in AOI_FILE_SUFFIXES:
        raise InvalidRegionError(f"aoi file {path} is not one of {', '.join(AOI_FILE_SUFFIXES)}; convert it to "
                                 ".gpkg, .geojson or .parquet.")
    try:
        frame = gpd.read_parquet(path) if suffix in (".parquet", ".geoparquet") else gpd.read_file(path)
    except Exception as error:  # noqa: BLE001 - pyogrio/pyarrow raise many kinds; each means an unreadable file
        raise InvalidRegionError(f"aoi file {path} cannot be read ({' '.join(str(error).split())[:200]}).") from None
    if frame.crs is None:
        raise InvalidRegionError(f"aoi file {path} declares no CRS; write it with one (GeoJSON is EPSG:4326).")
    return frame
