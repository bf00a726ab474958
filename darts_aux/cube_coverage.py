"""What a cube holds, as data: the manifest's latest rows as a GeoDataFrame of chunk footprints.

`darts-aux status` counts these rows; a notebook plots them (`coverage(...).plot(column="status")`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .grid import ChunkGrid, ChunkId, PixelWindow
from .location import DataLocation
from .manifest import SCHEMA, Manifest, latest_columns
from .products import Product, tcvis
from .store import check_cube_folder, cube_exists, cube_paths

if TYPE_CHECKING:
    import geopandas as gpd
    import pyarrow as pa

COLUMNS = ("chunk_id", "status", "items", "items_failed", "coverage", "checked_at", "snapshot_id", "note",
           "geometry")
"""The columns of a coverage frame, in order; `geometry` is the chunk's footprint in the cube's CRS."""
MISSING = "missing"
"""Status of a chunk an AOI needs that the manifest has no row for (never fetched)."""


def product_named(name: str | Product, tcvis_edition: str) -> Product:
    """A cube by its key ('arcticdem-32m', 'tcvis-2000-2019', a registered one), or 'tcvis' for `tcvis_edition`."""
    if isinstance(name, Product):
        return name
    if name == "tcvis":
        return tcvis(tcvis_edition)
    from .registry import UnknownProductError, product_by_key

    try:
        return product_by_key(name)
    except UnknownProductError:
        raise UnknownProductError(f"unknown cube {name!r}; pass one of {', '.join(_keys())} (or 'tcvis' for the "
                                  f"edition in DARTS_AUX_TCVIS_EDITION).") from None


def _keys() -> list[str]:
    from .registry import known_products

    return [product.key for product in known_products()]


def coverage_frame(data_dir: DataLocation, product: Product, aoi: Any = None, crs: Any = None) -> gpd.GeoDataFrame:
    """The latest manifest row of every chunk (of the AOI's chunks, adding never-fetched ones as 'missing').

    For a product with a time axis: one row per (chunk, step), the step's label in a `step` column.
    """
    import geopandas as gpd

    if product.has_time_axis:
        return _steps_frame(data_dir, product, aoi, crs)
    check_cube_folder(data_dir, product)
    if aoi is None:
        return gpd.GeoDataFrame(_columns(latest_table(data_dir, product)), geometry="geometry", crs=product.extent.crs)
    from .aoi import aoi_chunks

    wanted = aoi_chunks(product, aoi, crs)
    # only the rows around the AOI: at full coverage the whole manifest has millions of rows
    table = latest_table(data_dir, product, ChunkGrid(product).covering(wanted)) if wanted else SCHEMA.empty_table()
    frame = gpd.GeoDataFrame(_columns(table), geometry="geometry", crs=product.extent.crs)
    frame = frame[frame.chunk_id.isin({str(c) for c in wanted})]
    return _with_missing(frame, product, wanted)


def _steps_frame(data_dir: DataLocation, product: Product, aoi: Any, crs: Any) -> gpd.GeoDataFrame:
    """Every step's coverage rows, stacked in step order, with a `step` column (its label)."""
    import geopandas as gpd
    import pandas as pd

    frames = []
    for step in product.time_steps:
        frame = coverage_frame(data_dir, product.at(step.label), aoi, crs)
        frames.append(frame.assign(step=step.label))
    both = pd.concat(frames, ignore_index=True)
    return gpd.GeoDataFrame(both, geometry="geometry", crs=product.extent.crs)


def latest_table(data_dir: DataLocation, product: Product, window: PixelWindow | None = None,
                 columns: Sequence[str] | None = None) -> pa.Table:
    """The manifest's latest rows, of the chunks touching `window` when given, in `columns` and those that pick the
    latest row when given (empty when there is no cube yet)."""
    if not cube_exists(data_dir, product):
        empty = SCHEMA.empty_table()
        return empty if columns is None else empty.select(latest_columns(columns))
    return Manifest(cube_paths(data_dir, product).manifest, ChunkGrid(product)).latest_table(window, columns)


def _columns(table: pa.Table) -> dict[str, Any]:
    """The frame's columns from the Arrow table: lists as lists, WKB as shapely geometries."""
    import shapely

    return {
        "chunk_id": table.column("chunk_id").to_pylist(),
        "status": table.column("status").to_pylist(),
        "items": table.column("items_applied").to_pylist(),
        "items_failed": table.column("items_failed").to_pylist(),
        "coverage": table.column("coverage").to_numpy(),
        "checked_at": table.column("checked_at").to_pandas(),
        "snapshot_id": table.column("snapshot_id").to_pylist(),
        "note": table.column("note").to_pylist(),
        "geometry": shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False)),
    }


def _with_missing(frame: gpd.GeoDataFrame, product: Product, wanted: list[ChunkId]) -> gpd.GeoDataFrame:
    """The frame plus one 'missing' row per wanted chunk without a manifest row, ordered by chunk id."""
    import geopandas as gpd
    import pandas as pd

    have = set(frame.chunk_id)
    absent = [c for c in wanted if str(c) not in have]
    if not absent:
        return frame.sort_values("chunk_id").reset_index(drop=True)
    grid = ChunkGrid(product)
    rows = gpd.GeoDataFrame({
        "chunk_id": [str(c) for c in absent], "status": MISSING, "items": [[] for _ in absent],
        "items_failed": [[] for _ in absent], "coverage": 0.0,
        "checked_at": pd.Series(pd.NaT, index=range(len(absent)), dtype=frame.checked_at.dtype),
        "snapshot_id": None, "note": None, "geometry": [grid.footprint(c) for c in absent],
    }, geometry="geometry", crs=frame.crs)
    both = pd.concat([frame, rows], ignore_index=True) if len(frame) else rows
    return gpd.GeoDataFrame(both, geometry="geometry", crs=product.extent.crs).sort_values(
        "chunk_id").reset_index(drop=True)
