"""The datasets as data: extents, chunking, variables, fills and where each comes from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from affine import Affine

from .errors import InvalidResolutionError

ArcticDEMResolution = Literal[2, 10, 32]
ARCTICDEM_RESOLUTIONS: tuple[int, ...] = (2, 10, 32)
ARCTICDEM_CRS = "EPSG:3413"


@dataclass(frozen=True)
class Codec:
    """A chunk compressor: blosc (lz4 or zstd, with shuffle) or plain zstd."""

    name: Literal["blosc-lz4", "blosc-zstd", "zstd"]
    level: int
    shuffle: Literal["shuffle", "bitshuffle", "noshuffle"] = "shuffle"


@dataclass(frozen=True)
class Variable:
    """One cube variable and the source asset it is copied from."""

    name: str
    dtype: str
    fill_value: float | int
    """Value of pixels without data in the cube (NaN for floats: 0 m is a real elevation)."""
    source_asset: str
    source_nodata: float | int
    codec: Codec


@dataclass(frozen=True)
class Extent:
    """A pixel grid: CRS, top-left corner, pixel size and shape (rows, cols)."""

    crs: str
    x0: float
    y0: float
    resolution: float
    shape: tuple[int, int]

    @property
    def affine(self) -> Affine:
        """Pixel → CRS transform of the grid's top-left pixel corner."""
        return Affine(self.resolution, 0.0, self.x0, 0.0, -self.resolution, self.y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        rows, cols = self.shape
        return (self.x0, self.y0 - rows * self.resolution, self.x0 + cols * self.resolution, self.y0)


@dataclass(frozen=True)
class Product:
    """A cube: its grid, how it is chunked, its variables and its source collection."""

    key: str
    """Short, path-safe name, e.g. 'arcticdem-32m'; also the cube's folder name."""
    extent: Extent
    fill_chunk: int
    """Pixels per side of the unit of download, commit and completeness: an aligned block of zarr chunks."""
    read_chunk: int
    """Pixels per side of a zarr chunk: the unit a read decodes (divides fill_chunk)."""
    variables: tuple[Variable, ...]
    collection: str

    @property
    def resolution(self) -> float:
        """Pixel size in CRS units."""
        return self.extent.resolution


_NAN = float("nan")  # one object, so that equal products compare equal
_DEM_CODEC = Codec("blosc-lz4", 5, "shuffle")
_MASK_CODEC = Codec("blosc-lz4", 5, "noshuffle")  # one-byte values: shuffling is a no-op, bitshuffle slows decoding
_FILL_CHUNK = 4000
_READ_CHUNK = 1000


def _arcticdem_variables() -> tuple[Variable, ...]:
    return (
        Variable("dem", "float32", _NAN, "dem", -9999.0, _DEM_CODEC),
        Variable("datamask", "uint8", 0, "datamask", 0, _MASK_CODEC),
    )


def _arcticdem_extent(resolution: int) -> Extent:
    """The 100 km tile grid plus the tiles' buffer (100 m; 96 m at 32 m), so cube and tile pixels coincide."""
    buffer = 96.0 if resolution == 32 else 100.0
    left, bottom = -4_000_000.0 - buffer, -3_400_000.0 - buffer
    right, top = 3_400_000.0 + buffer, 4_100_000.0 + buffer
    shape = (round((top - bottom) / resolution), round((right - left) / resolution))
    return Extent(ARCTICDEM_CRS, left, top, float(resolution), shape)


def arcticdem(resolution: int) -> Product:
    """The ArcticDEM v4.1 mosaic cube at 2, 10 or 32 m."""
    if isinstance(resolution, bool) or resolution not in ARCTICDEM_RESOLUTIONS:
        raise InvalidResolutionError(
            f"ArcticDEM has no {resolution!r} m product; use one of {', '.join(map(str, ARCTICDEM_RESOLUTIONS))}."
        )
    return Product(
        key=f"arcticdem-{resolution}m",
        extent=_arcticdem_extent(resolution),
        fill_chunk=_FILL_CHUNK,
        read_chunk=_READ_CHUNK,
        variables=_arcticdem_variables(),
        collection=f"arcticdem-mosaics-v4.1-{resolution}m",
    )
