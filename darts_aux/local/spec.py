"""What a local catalog contains: tiles per resolution, sparse data regions, held-back items.

The default catalog sits on PGC's real grid in Yakutia (around 61° N, 123° E), where every chosen
supertile exists in the real v4.1 index with > 96 % data. Rows 74 and up do not exist there (the
ArcticDEM coverage ends at 60° N), so the top edge (y = 3,300,000 m) of the 3 × 3 block is a "coast":
no tile beyond it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from rasterio.windows import Window

from darts_aux.local.tiles import BLOCK, Resolution, TileRef

BBox = tuple[float, float, float, float]
"""(xmin, ymin, xmax, ymax) in EPSG:3413 metres."""

BLOCK_ROWS = (71, 72, 73)
BLOCK_COLS = (46, 47, 48)
BLOCK_SUPERTILES: tuple[str, ...] = tuple(f"{r}_{c}" for r in BLOCK_ROWS for c in BLOCK_COLS)
"""The 3 × 3 block of supertiles (x 500 … 800 km, y 3000 … 3300 km)."""
CENTRE_SUPERTILE = "72_47"
BLOCK_BOUNDS: BBox = (500_000.0, 3_000_000.0, 800_000.0, 3_300_000.0)
"""Nominal extent of the 3 × 3 block."""
COAST_Y = 3_300_000.0
"""Top edge of the block: no tile exists above it (rows >= 74 are absent in the real index)."""
RING_SUPERTILES: tuple[str, ...] = (
    *(f"70_{c}" for c in range(45, 50)),
    *(f"{r}_45" for r in BLOCK_ROWS),
    *(f"{r}_49" for r in BLOCK_ROWS),
)
"""Neighbours of the block on its left, right and bottom sides (none above: the coast)."""
SUPERTILES: tuple[str, ...] = BLOCK_SUPERTILES + RING_SUPERTILES
"""All 20 supertiles of the default catalog at 10 and 32 m."""

SUPERTILE_CORNER: tuple[float, float] = (700_000.0, 3_200_000.0)
"""Corner where supertiles 72_47, 72_48, 73_47, 73_48 meet (inside the block); 10 m data lives here."""
SUBTILE_CORNER: tuple[float, float] = (550_000.0, 3_150_000.0)
"""Centre of supertile 72_46, where its four 2 m subtiles meet."""
SUBTILES_AT_SUBTILE_CORNER: tuple[str, ...] = ("72_46_1_1", "72_46_1_2", "72_46_2_1", "72_46_2_2")
SUBTILES_AT_SUPERTILE_CORNER: tuple[str, ...] = ("72_47_2_2", "72_48_2_1", "73_47_1_2", "73_48_1_1")
SUBTILES: tuple[str, ...] = SUBTILES_AT_SUBTILE_CORNER + SUBTILES_AT_SUPERTILE_CORNER
"""All eight 2 m tiles of the default catalog."""
HALF_REGION_2M = 3_000.0
"""Half edge of the 2 m data regions (6 km × 6 km around each corner)."""
HALF_REGION_10M = 10_000.0
"""Half edge of the 10 m data region (20 km × 20 km around SUPERTILE_CORNER)."""

REAL_BOUNDS: dict[str, BBox] = {
    "72_47_32m_v4.1": (599_904.0, 3_099_904.0, 700_096.0, 3_200_096.0),
    "73_49_32m_v4.1": (799_904.0, 3_199_904.0, 900_096.0, 3_300_096.0),
    "72_47_10m_v4.1": (599_900.0, 3_099_900.0, 700_100.0, 3_200_100.0),
    "73_48_1_1_2m_v4.1": (699_900.0, 3_199_900.0, 750_100.0, 3_250_100.0),
    "72_46_1_2_2m_v4.1": (549_900.0, 3_099_900.0, 600_100.0, 3_150_100.0),
}
"""Footprints of a few items as read from PGC's v4.1 mosaic index (pdemtools' GeoPackage)."""


def around(point: tuple[float, float], half: float) -> BBox:
    """Square bbox of half edge `half` centred on `point`."""
    x, y = point
    return (x - half, y - half, x + half, y + half)


@dataclass(frozen=True)
class CatalogSpec:
    """Which synthetic items a local catalog holds and publishes."""

    tiles_32m: tuple[str, ...] = ()
    """Tile ids `RR_CC` written in full at 32 m."""
    tiles_10m: tuple[str, ...] = ()
    """Tile ids `RR_CC` at 10 m; sparse: data only inside `regions_10m`."""
    tiles_2m: tuple[str, ...] = ()
    """Tile ids `RR_CC_r_c` at 2 m; sparse: data only inside `regions_2m`."""
    regions_10m: tuple[BBox, ...] = ()
    """EPSG:3413 boxes where 10 m tiles hold data (snapped out to whole 512-px blocks per tile)."""
    regions_2m: tuple[BBox, ...] = ()
    """EPSG:3413 boxes where 2 m tiles hold data (snapped out to whole 512-px blocks per tile)."""
    held_back: tuple[str, ...] = field(default=())
    """Item ids generated on disk but not published to the STAC API until `publish()`."""

    def __post_init__(self) -> None:
        for name in ("tiles_32m", "tiles_10m", "tiles_2m", "held_back"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("regions_10m", "regions_2m"):
            object.__setattr__(self, name, tuple(tuple(float(v) for v in r) for r in getattr(self, name)))
        known = set(self.item_ids())  # also validates every tile id
        unknown = [i for i in self.held_back if i not in known]
        if unknown:
            raise ValueError(f"held_back items not in the spec: {unknown}")

    def tiles(self, resolution: Resolution) -> tuple[TileRef, ...]:
        """TileRefs of one resolution, in spec order."""
        ids = {32: self.tiles_32m, 10: self.tiles_10m, 2: self.tiles_2m}[resolution]
        return tuple(TileRef.parse(t, resolution) for t in ids)

    def all_tiles(self) -> tuple[TileRef, ...]:
        """TileRefs of every resolution (32, 10, then 2 m)."""
        return tuple(t for res in (32, 10, 2) for t in self.tiles(res))

    def item_ids(self, resolution: Resolution | None = None) -> tuple[str, ...]:
        """Item ids on disk, of one resolution or all."""
        tiles = self.all_tiles() if resolution is None else self.tiles(resolution)
        return tuple(t.item_id for t in tiles)

    def published_item_ids(self, resolution: Resolution | None = None) -> tuple[str, ...]:
        """Item ids visible in the STAC API at start (all minus `held_back`)."""
        held = set(self.held_back)
        return tuple(i for i in self.item_ids(resolution) if i not in held)

    def regions(self, resolution: Resolution) -> tuple[BBox, ...] | None:
        """Data regions of a resolution; None means the tiles are written in full."""
        return {32: None, 10: self.regions_10m, 2: self.regions_2m}[resolution]

    def windows(self, tile: TileRef) -> tuple[Window, ...]:
        """Pixel windows of `tile` that hold data (block-aligned; the whole tile if not sparse)."""
        return data_windows(tile, self.regions(tile.resolution))

    def content(self) -> dict[str, object]:
        """What determines the files on disk (everything except `held_back`)."""
        return {
            "tiles": {"32": self.tiles_32m, "10": self.tiles_10m, "2": self.tiles_2m},
            "regions": {"10": self.regions_10m, "2": self.regions_2m},
        }

    def fingerprint(self) -> str:
        """Stable hash of `content()`; equal fingerprints mean identical files on disk."""
        text = json.dumps(self.content(), sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_held_back(self, item_ids: Iterable[str]) -> CatalogSpec:
        """The same catalog with other items held back (same files on disk)."""
        return replace(self, held_back=tuple(item_ids))


def data_windows(tile: TileRef, regions: Iterable[BBox] | None) -> tuple[Window, ...]:
    """Block-aligned pixel windows of `tile` covering each region (whole tile when regions is None)."""
    rows, cols = tile.shape
    if regions is None:
        return (Window(0, 0, cols, rows),)
    out: list[Window] = []
    for region in regions:
        w = _region_window(tile, region)
        if w is not None and w not in out:
            out.append(w)
    return tuple(out)


def _region_window(tile: TileRef, region: BBox) -> Window | None:
    """One region as a block-snapped window of `tile`, or None when they do not overlap."""
    rows, cols = tile.shape
    x0, _, _, y1 = tile.bounds
    res = tile.resolution
    c0 = max(0, math.floor((region[0] - x0) / res))
    c1 = min(cols, math.ceil((region[2] - x0) / res))
    r0 = max(0, math.floor((y1 - region[3]) / res))
    r1 = min(rows, math.ceil((y1 - region[1]) / res))
    if c0 >= c1 or r0 >= r1:
        return None
    c0, r0 = (c0 // BLOCK) * BLOCK, (r0 // BLOCK) * BLOCK
    c1, r1 = min(cols, -(-c1 // BLOCK) * BLOCK), min(rows, -(-r1 // BLOCK) * BLOCK)
    return Window(c0, r0, c1 - c0, r1 - r0)


def default_spec() -> CatalogSpec:
    """The demo/test catalog: 20 supertiles at 32 and 10 m, eight 2 m subtiles at two corners."""
    return CatalogSpec(
        tiles_32m=SUPERTILES,
        tiles_10m=SUPERTILES,
        tiles_2m=SUBTILES,
        regions_10m=(around(SUPERTILE_CORNER, HALF_REGION_10M),),
        regions_2m=(around(SUBTILE_CORNER, HALF_REGION_2M), around(SUPERTILE_CORNER, HALF_REGION_2M)),
    )
