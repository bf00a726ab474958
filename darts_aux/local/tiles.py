"""PGC ArcticDEM v4.1 mosaic tile grid: ids, footprints, pixel grids and file layout of one tile."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

from rasterio.transform import Affine

Resolution = Literal[2, 10, 32]
"""Mosaic resolutions in metres; also the item-id suffix (`..._2m_v4.1`)."""

RESOLUTIONS: tuple[Resolution, ...] = (2, 10, 32)
GRID_ORIGIN = -4_000_000.0
"""x and y of the lower-left corner of supertile row 1, column 1 (EPSG:3413, metres)."""
SUPERTILE_SIZE = 100_000.0
"""Nominal edge of a supertile in metres; 2 m items are its four 50 km quarters."""
BUFFERS: dict[Resolution, float] = {2: 100.0, 10: 100.0, 32: 96.0}
"""How far each tile raster extends beyond its nominal square, per resolution (metres)."""
RELEASE = "v4.1"
EPSG = 3413
BLOCK = 512
"""COG block edge in pixels (PGC's COGs use 512)."""

_ID = re.compile(r"^(\d{2})_(\d{2})(?:_([12])_([12]))?(?:_(2|10|32)m_v4\.1)?$")


@dataclass(frozen=True, order=True)
class TileRef:
    """One mosaic item: supertile row/column (1-based), optional 2 m quarter, resolution."""

    row: int
    """Supertile row RR, counted from y = -4,000,000 m (1 = lowest 100 km band)."""
    col: int
    """Supertile column CC, counted from x = -4,000,000 m (1 = westmost 100 km band)."""
    resolution: Resolution
    sub_row: int | None = None
    """2 m only: 1 = lower (southern, smaller y) half, 2 = upper half of the supertile."""
    sub_col: int | None = None
    """2 m only: 1 = left (smaller x) half, 2 = right half of the supertile."""

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution}")
        quartered = self.sub_row is not None and self.sub_col is not None
        if quartered != (self.resolution == 2):
            raise ValueError("2 m items are quarters (sub_row/sub_col 1..2); 10/32 m items are not")
        if quartered and not ({self.sub_row, self.sub_col} <= {1, 2}):
            raise ValueError(f"sub_row/sub_col must be 1 or 2: {self}")

    @classmethod
    def parse(cls, name: str, resolution: Resolution | None = None) -> TileRef:
        """Parse an item id (`72_47_1_2_2m_v4.1`) or a tile id (`72_47`, `72_47_1_2`) plus resolution."""
        m = _ID.match(name)
        if m is None:
            raise ValueError(f"not an ArcticDEM v4.1 mosaic tile or item id: {name!r}")
        rr, cc, sr, sc, res = m.groups()
        if res is not None:
            if resolution is not None and int(res) != resolution:
                raise ValueError(f"{name!r} is not a {resolution} m id")
            resolution = cast(Resolution, int(res))
        if resolution is None:
            resolution = 2 if sr is not None else None
        if resolution is None:
            raise ValueError(f"{name!r} needs a resolution (10 or 32)")
        return cls(int(rr), int(cc), resolution, int(sr) if sr else None, int(sc) if sc else None)

    @property
    def supertile(self) -> str:
        """`RR_CC` of the enclosing 100 km supertile."""
        return f"{self.row:02d}_{self.col:02d}"

    @property
    def tile_id(self) -> str:
        """PGC `tile` column: `RR_CC` (10/32 m) or `RR_CC_r_c` (2 m)."""
        if self.resolution == 2:
            return f"{self.supertile}_{self.sub_row}_{self.sub_col}"
        return self.supertile

    @property
    def item_id(self) -> str:
        """STAC item id and PGC `dem_id`, e.g. `72_47_32m_v4.1`."""
        return f"{self.tile_id}_{self.resolution}m_{RELEASE}"

    @property
    def collection(self) -> str:
        """STAC collection id of this resolution."""
        return collection_id(self.resolution)

    @property
    def nominal_bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the tile square without buffer, EPSG:3413 metres."""
        x0 = GRID_ORIGIN + (self.col - 1) * SUPERTILE_SIZE
        y0 = GRID_ORIGIN + (self.row - 1) * SUPERTILE_SIZE
        if self.resolution != 2:
            return (x0, y0, x0 + SUPERTILE_SIZE, y0 + SUPERTILE_SIZE)
        half = SUPERTILE_SIZE / 2
        assert self.sub_row is not None and self.sub_col is not None
        xs = x0 + (self.sub_col - 1) * half
        ys = y0 + (self.sub_row - 1) * half
        return (xs, ys, xs + half, ys + half)

    @property
    def buffer(self) -> float:
        """Metres by which the raster extends beyond the nominal square on each side."""
        return BUFFERS[self.resolution]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the raster including its buffer."""
        x0, y0, x1, y1 = self.nominal_bounds
        b = self.buffer
        return (x0 - b, y0 - b, x1 + b, y1 + b)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the raster, e.g. (3131, 3131) at 32 m."""
        x0, y0, x1, y1 = self.bounds
        return (round((y1 - y0) / self.resolution), round((x1 - x0) / self.resolution))

    @property
    def transform(self) -> Affine:
        """North-up affine transform of the raster (pixel corner convention)."""
        x0, _, _, y1 = self.bounds
        return Affine(float(self.resolution), 0.0, x0, 0.0, -float(self.resolution), y1)

    @property
    def directory(self) -> str:
        """Relative directory holding this item's files, mirroring PGC's S3 layout."""
        return f"arcticdem/mosaics/{RELEASE}/{self.resolution}m/{self.supertile}"

    def asset_relpath(self, asset: str) -> str:
        """Relative path of one asset COG, e.g. `.../72_47_32m_v4.1_dem.tif`."""
        return f"{self.directory}/{self.item_id}_{asset}.tif"

    @property
    def item_relpath(self) -> str:
        """Relative path of the static item JSON."""
        return f"{self.directory}/{self.item_id}.json"


def collection_id(resolution: Resolution) -> str:
    """STAC collection id for a resolution, e.g. `arcticdem-mosaics-v4.1-32m`."""
    return f"arcticdem-mosaics-{RELEASE}-{resolution}m"


def tiles_of_supertile_2m(supertile: str) -> tuple[TileRef, ...]:
    """The four 2 m quarters of a supertile `RR_CC`, in (1,1), (1,2), (2,1), (2,2) order."""
    base = TileRef.parse(supertile, 10)
    return tuple(TileRef(base.row, base.col, 2, r, c) for r in (1, 2) for c in (1, 2))
