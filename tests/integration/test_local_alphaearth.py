"""The local Earth Engine's AlphaEarth stand-in through the unmodified `earthengine-api` client.

Every pixel is checked against `Oracle`, a straight per-pixel re-implementation of the formula documented in
`darts_aux.local.earthengine.alphaearth` (pure Python integers and `math`, one pixel and band at a time), and the
pixel centres of grids in other CRSs come from GDAL (`rasterio.warp.transform`), not from the server's pyproj.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import ee
import google.auth.credentials
import numpy as np
import pytest
from rasterio.warp import transform as gdal_transform

from darts_aux.local.earthengine import MAX_REQUEST_BYTES, LocalEarthEngine, request_bytes
from darts_aux.local.earthengine import alphaearth as ae

MASK64 = (1 << 64) - 1
WEIGHTS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
BANDS = [f"A{i:02d}" for i in range(64)]


def mix(*parts: int) -> int:
    """splitmix64's finaliser folded over the parts, in unbounded Python integers masked to 64 bits."""
    acc = 0
    for part, weight in zip(parts, WEIGHTS):
        acc ^= ((part & MASK64) * weight) & MASK64
        acc = ((acc ^ (acc >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        acc = ((acc ^ (acc >> 27)) * 0x94D049BB133111EB) & MASK64
        acc ^= acc >> 31
    return acc


def centred_bytes(word: int) -> int:
    """Sum of the four top bytes of a 64-bit word minus 510."""
    return sum((word >> (56 - 8 * i)) & 0xFF for i in range(4)) - 510


class Oracle:
    """The stand-in formula, one native pixel (k, j) at a time."""

    @staticmethod
    def valid(year: int, k: int, j: int) -> bool:
        x, y = (k + 0.5) * 10.0, (j + 0.5) * 10.0
        if x * x + y * y < 650_000.0**2:
            return False
        if mix(k // 16_384, j // 16_384, year, ae.TILE_SALT) % 8 == 0:
            return False
        ck, cj = k // 157, j // 157
        cell = mix(ck, cj, ae.LAKE_SALT)
        if (cell >> 60) % 4 == 0:
            return True
        radius = 4 + mix(ck, cj, year, ae.LAKE_SALT) % 37
        ox = 40 + ((cell >> 8) & 0xFFFF) % (157 - 80)
        oy = 40 + ((cell >> 24) & 0xFFFF) % (157 - 80)
        dx, dy = k - ck * 157 - ox, j - cj * 157 - oy
        return dx * dx + dy * dy > radius * radius

    @staticmethod
    @functools.cache
    def table_codes(year: int, klass: int, variant: int) -> tuple[int, ...]:
        components = [
            2 * centred_bytes(mix(klass, b, ae.CLASS_SALT))
            + centred_bytes(mix((year * 256 + klass) * 64 + variant, b, ae.NOISE_SALT))
            for b in range(64)
        ]
        norm = math.sqrt(float(sum(c * c for c in components)))
        return tuple(int(math.copysign(min(round(math.sqrt(abs(c) / norm) * 127.5), 126), c)) for c in components)

    @staticmethod
    @functools.cache
    def jitter(row: int) -> tuple[int, ...]:
        return tuple((mix(row, b, ae.JITTER_SALT) >> 56) % 3 - 1 for b in range(64))

    @classmethod
    def codes(cls, year: int, k: int, j: int) -> list[int] | None:
        """The 64 int8 codes of native pixel (k, j) in `year`, or None where it has no data."""
        if not cls.valid(year, k, j):
            return None
        klass = mix(k // 23, j // 23, ae.CLASS_SALT) % 256
        word = mix(k, j, year, ae.VARIANT_SALT)
        base, jitter = cls.table_codes(year, klass, word % 64), cls.jitter((word >> 32) % 4096)
        return [q + d for q, d in zip(base, jitter)]

    @classmethod
    def pixels(cls, year: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values (h, w, 64), 0.0 where masked, and the valid mask at EPSG:3413 points (x, y), both (h, w)."""
        values = np.zeros((*x.shape, 64), dtype=np.float64)
        valid = np.zeros(x.shape, dtype=bool)
        for index in np.ndindex(x.shape):
            codes = cls.codes(year, math.floor(x[index] / 10.0), math.floor(y[index] / 10.0))
            if codes is not None:
                valid[index] = True
                values[index] = [math.copysign((q / 127.5) ** 2, q) for q in codes]
        return values, valid


# -- grids ------------------------------------------------------------------------------------------------------


def grid(x0: float, y0: float, width: int, height: int, scale: float = 10.0, crs: str = "EPSG:3413") -> dict[str, Any]:
    """A north-up grid with its top-left corner at (x0, y0)."""
    return {
        "dimensions": {"width": width, "height": height},
        "affineTransform": {"scaleX": scale, "shearX": 0, "translateX": x0, "shearY": 0, "scaleY": -scale,
                            "translateY": y0},
        "crsCode": crs,
    }


def centres_3413(g: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """EPSG:3413 coordinates of the grid's pixel centres, (h, w) each; other CRSs through GDAL."""
    a, d = g["affineTransform"], g["dimensions"]
    x = a["translateX"] + (np.arange(d["width"]) + 0.5) * a["scaleX"]
    y = a["translateY"] + (np.arange(d["height"]) + 0.5) * a["scaleY"]
    xx, yy = np.meshgrid(x, y)
    if g["crsCode"] == "EPSG:3413":
        return xx, yy
    tx, ty = gdal_transform(g["crsCode"], "EPSG:3413", xx.ravel().tolist(), yy.ravel().tolist())
    return np.asarray(tx).reshape(xx.shape), np.asarray(ty).reshape(xx.shape)


LAKE_GRID = grid(-1_953_950.0, 762_400.0, 24, 20)
"""480 px on the ArcticDEM 10 m grid with lakes of different sizes in 2017, 2021 and 2025."""
TILE_EDGE_X = -10 * ae.TILE * 10.0
"""x of the border between missing-tile cells -11 and -10 (cell -10, 2 has no data in 2021, cell -11, 2 has)."""
TILE_GRID = grid(TILE_EDGE_X - 120.0, 400_000.0, 24, 10)
UTM_GRID = grid(450_015.0, 7_210_015.0, 20, 15, scale=30.0, crs="EPSG:32606")
"""300 px of 30 m in UTM zone 6N (interior Alaska), not aligned to the native grid."""
GEOGRAPHIC_GRID = grid(-150.0, 70.0, 20, 15, scale=0.0002, crs="EPSG:4326")


# -- client ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ee(earth_engine: LocalEarthEngine) -> Iterator[LocalEarthEngine]:
    """The session's local Earth Engine with the unmodified client initialised against it."""
    ee.Reset()  # a client initialised earlier in the session would skip the algorithms fetch
    ee.Initialize(credentials=google.auth.credentials.AnonymousCredentials(), project=earth_engine.project,
                  url=earth_engine.url)
    yield earth_engine
    ee.Reset()


@pytest.fixture()
def fresh(local_ee: LocalEarthEngine) -> LocalEarthEngine:
    """Healthy server, empty request log."""
    local_ee.clear_faults()
    local_ee.reset_log()
    return local_ee


def annual(year: int) -> ee.Image:
    """The year's mosaic as a loader asks for it: filterDate over the calendar year, mosaic, the 64 bands."""
    return ee.ImageCollection(ae.COLLECTION).filterDate(f"{year}-01-01", f"{year + 1}-01-01").mosaic().select(BANDS)


def with_valid(image: ee.Image) -> ee.Image:
    """The bands plus a 0/1 `valid` band from A00's mask, as the TCVIS path carries its mask."""
    return image.addBands(image.select("A00").mask().toUint8().rename("valid"))


def compute(expression: ee.Image, g: dict[str, Any]) -> np.ndarray:
    """`ee.data.computePixels` as the project calls it (.npy answer)."""
    return ee.data.computePixels({"expression": expression, "fileFormat": "NUMPY_NDARRAY", "grid": g})


def stacked(answer: np.ndarray) -> np.ndarray:
    """The 64 band fields of a structured answer as one (h, w, 64) array."""
    return np.stack([answer[b] for b in BANDS], axis=-1)


# -- tests ----------------------------------------------------------------------------------------------------


def test_years_on_the_native_grid_are_the_formula(fresh: LocalEarthEngine) -> None:
    x, y = centres_3413(LAKE_GRID)
    answers = {}
    for year in (2017, 2021, 2025):
        got = compute(with_valid(annual(year)), LAKE_GRID)
        assert got.shape == (20, 24)
        assert got.dtype == np.dtype([*((b, "<f8") for b in BANDS), ("valid", "u1")])
        expected, valid = Oracle.pixels(year, x, y)
        np.testing.assert_array_equal(stacked(got), expected, err_msg=str(year))
        np.testing.assert_array_equal(got["valid"] == 1, valid, err_msg=str(year))
        answers[year] = (stacked(got), valid)

    masks = [valid for _, valid in answers.values()]
    assert all(0 < m.sum() < m.size for m in masks)  # holes in every year …
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])  # … that differ
    for values, valid in answers.values():
        norms = np.linalg.norm(values[valid], axis=-1)
        assert np.abs(norms - 1.0).max() <= ae.UNIT_TOLERANCE
        assert (values[~valid] == 0.0).all()  # masked: every band 0, which no unit vector is
    both = masks[0] & masks[2]
    assert (answers[2017][0][both] != answers[2025][0][both]).any(axis=-1).mean() > 0.95  # years differ
    values, valid = answers[2021]
    pairs = valid[:, 1:] & valid[:, :-1]  # horizontal neighbours that both have data
    assert (values[:, 1:][pairs] != values[:, :-1][pairs]).any(axis=-1).mean() > 0.95  # a one-pixel shift shows
    assert (values[valid][:, 0] != values[valid][:, 1]).mean() > 0.9  # so does a band swap

    requests = fresh.compute_requests()
    assert [(r["status"], r["grid"]) for r in requests] == [(200, {"width": 24, "height": 20})] * 3


def test_a_tile_without_data_in_one_year(fresh: LocalEarthEngine) -> None:
    x, y = centres_3413(TILE_GRID)
    east = x >= TILE_EDGE_X
    for year in (2017, 2021):
        got = compute(with_valid(annual(year)), TILE_GRID)
        expected, valid = Oracle.pixels(year, x, y)
        np.testing.assert_array_equal(stacked(got), expected)
        np.testing.assert_array_equal(got["valid"] == 1, valid)
        if year == 2021:
            assert not valid[east].any() and valid[~east].mean() > 0.9
        else:
            assert valid.mean() > 0.9
    assert len(fresh.compute_requests()) == 2


@pytest.mark.parametrize("g", [UTM_GRID, GEOGRAPHIC_GRID], ids=["utm-6n-30m", "wgs84"])
def test_other_crs_takes_the_native_pixel_under_each_centre(fresh: LocalEarthEngine, g: dict[str, Any]) -> None:
    got = compute(with_valid(annual(2020)), g)
    expected, valid = Oracle.pixels(2020, *centres_3413(g))
    np.testing.assert_array_equal(stacked(got), expected)
    np.testing.assert_array_equal(got["valid"] == 1, valid)
    assert valid.mean() > 0.5
    (request,) = fresh.compute_requests()
    assert request["status"] == 200 and request["grid"] == g["dimensions"]


@pytest.mark.parametrize(
    "collection",
    [
        lambda c: c.filterDate("2020-01-01"),  # a 1 ms range at the image's start, as smart-geocubes asks
        lambda c: c.filter(ee.Filter.calendarRange(2020, 2020, "year")),
        lambda c: c.filter(ee.Filter.date(ee.Date.fromYMD(2020, 1, 1), ee.Date.fromYMD(2020, 1, 1).advance(1, "year"))),
        lambda c: c.filterDate("2019-06-01", "2020-06-01"),  # holds only the image that starts on 2020-01-01
        lambda c: c.filterDate(ee.Date(1577836800000), 1577836800001),
    ],
    ids=["one-date", "calendar-range", "from-ymd-advance", "mid-year-window", "millis"],
)
def test_ways_to_ask_for_one_year(fresh: LocalEarthEngine, collection: Any) -> None:
    g = grid(-1_953_950.0, 762_400.0, 8, 6)
    got = compute(collection(ee.ImageCollection(ae.COLLECTION)).mosaic().select(BANDS), g)
    np.testing.assert_array_equal(stacked(got), Oracle.pixels(2020, *centres_3413(g))[0])


@pytest.mark.parametrize("year", [2016, 2026])
def test_a_year_without_images_has_no_bands(fresh: LocalEarthEngine, year: int) -> None:
    with pytest.raises(ee.EEException, match=r"Image\.select: Pattern 'A00' did not match any bands\."):
        compute(annual(year), LAKE_GRID)
    assert [r["status"] for r in fresh.compute_requests()] == [400]


def test_float32_answer_holds_the_same_codes(fresh: LocalEarthEngine) -> None:
    as_double = stacked(compute(annual(2019), LAKE_GRID))
    as_float = stacked(compute(annual(2019).toFloat(), LAKE_GRID))
    assert as_float.dtype == np.float32
    codes = ae.quantise(as_double)
    np.testing.assert_array_equal(ae.quantise(as_float), codes)
    np.testing.assert_array_equal(ae.dequantise(codes), as_double)  # int8 storage is exact w.r.t. the source


def server_side_codes(year: int) -> ee.Image:
    """The int8 codes computed by Earth Engine (-128 where masked): 2 request bytes a band and pixel instead of 9."""
    image = annual(year)
    codes = image.abs().sqrt().multiply(127.5).round().multiply(image.signum()).toInt8()
    return codes.unmask(-128, False)


def test_codes_computed_server_side_are_the_int8_codes(fresh: LocalEarthEngine) -> None:
    x, y = centres_3413(LAKE_GRID)
    got = compute(server_side_codes(2021), LAKE_GRID)
    assert got.dtype == np.dtype([(b, "i1") for b in BANDS])
    expected = np.full((*x.shape, 64), ae.NODATA_CODE, dtype=np.int8)
    for index in np.ndindex(x.shape):
        codes = Oracle.codes(2021, math.floor(x[index] / 10.0), math.floor(y[index] / 10.0))
        if codes is not None:
            expected[index] = codes
    np.testing.assert_array_equal(stacked(got), expected)
    assert (expected == ae.NODATA_CODE).all(axis=-1).any()  # the grid has masked pixels
    assert request_bytes(1000, 1000 // 3 + 1, [1] * 64) <= MAX_REQUEST_BYTES  # a 1000² chunk in 3 requests


def test_request_above_48_mib_is_refused_with_earth_engines_words(fresh: LocalEarthEngine) -> None:
    per_pixel = 64 * (8 + 1) + (1 + 1)  # 64 double bands and the uint8 `valid` band, each with its mask byte
    assert request_bytes(1, 1, [8] * 64 + [1]) == per_pixel == 578
    rows = MAX_REQUEST_BYTES // (per_pixel * 300)  # 290 rows of 300 px fit, 291 do not
    too_tall = grid(-1_953_950.0, 762_400.0, 300, rows + 1)
    with pytest.raises(ee.EEException) as info:
        compute(with_valid(annual(2022)), too_tall)
    total = 300 * (rows + 1) * per_pixel
    assert str(info.value) == f"Total request size ({total} bytes) must be less than or equal to 50331648 bytes."
    assert int(info.value.__context__.resp.status) == 400  # type: ignore[union-attr]
    got = compute(with_valid(annual(2022)), grid(-1_953_950.0, 762_400.0, 300, rows))
    assert got.shape == (rows, 300)
    assert [r["status"] for r in fresh.compute_requests()] == [400, 200]
