"""coverage(): the manifest's latest rows as a GeoDataFrame; `darts-aux fetch --aoi` and `darts-aux status` on it."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import box
from typer.testing import CliRunner

from darts_aux import coverage
from darts_aux.cli import app
from darts_aux.errors import InvalidRequestError
from darts_aux.grid import ChunkGrid, ChunkId
from darts_aux.local import LocalCatalog
from darts_aux.manifest import Manifest
from darts_aux.products import arcticdem
from darts_aux.store import cube_paths

X0, Y0, SIDE = -4_000_096.0, 4_100_096.0, arcticdem(32).fill_chunk * 32.0
"""The 32 m cube's chunk grid from its published numbers (DESIGN §3): chunks of 1000 px, 32 km, from its corner."""
INSIDE = box(600_000, 3_200_000, 602_000, 3_202_000)  # chunk r0028c0143: inside the catalog, full of tiles
OUTSIDE = box(1_060_000, 2_310_000, 1_062_000, 2_312_000)  # chunk r0055c0158: no tile anywhere near


def chunk_box(row: int, col: int) -> shapely.Geometry:
    return box(X0 + col * SIDE, Y0 - (row + 1) * SIDE, X0 + (col + 1) * SIDE, Y0 - row * SIDE)


@pytest.fixture
def fetched(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> Path:
    """A 32 m cube filled by `darts-aux fetch arcticdem --aoi scenes.gpkg` (two footprints, in UTM)."""
    scenes = tmp_path / "scenes.gpkg"
    gpd.GeoDataFrame({"scene": ["a", "b"]}, geometry=[INSIDE, OUTSIDE], crs=3413).to_crs(32651).to_file(scenes)
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(app, ["fetch", "arcticdem", "--resolution", "32", "--aoi", str(scenes),
                                      "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "download arcticdem-32m" in result.output and "already full" in result.output
    return data_dir


def test_coverage_is_the_manifest_as_a_geodataframe(fetched: Path) -> None:
    frame = coverage(fetched, "arcticdem-32m")
    assert list(frame.columns) == ["chunk_id", "status", "items", "items_failed", "coverage", "checked_at",
                                   "snapshot_id", "note", "geometry"]
    assert frame.crs.to_epsg() == 3413 and list(frame.chunk_id) == ["r0028c0143", "r0055c0158"]
    assert list(frame.status) == ["full", "partial"]
    assert frame.geometry.iloc[0].equals(chunk_box(28, 143)) and frame.geometry.iloc[1].equals(chunk_box(55, 158))
    product = arcticdem(32)
    latest = Manifest(cube_paths(fetched, product).manifest, ChunkGrid(product)).latest()
    full, partial = latest[ChunkId(28, 143)], latest[ChunkId(55, 158)]
    assert frame["items"].iloc[0] == list(full.items_applied) and len(full.items_applied) >= 1
    assert frame["items"].iloc[1] == [] and frame.coverage.tolist() == [1.0, 0.0]
    assert frame.checked_at.tolist() == [full.checked_at, partial.checked_at]
    assert frame.snapshot_id.iloc[0] == full.snapshot_id and frame.snapshot_id.isna().tolist() == [False, True]


def test_coverage_clipped_to_an_aoi_adds_the_missing_chunks(fetched: Path) -> None:
    never_fetched = box(760_000, 3_200_000, 762_000, 3_202_000)  # chunk r0028c0148, east of INSIDE's
    aoi = gpd.GeoSeries([INSIDE, never_fetched], crs=3413).to_crs(4326)
    frame = coverage(fetched, "arcticdem-32m", aoi)
    assert list(frame.chunk_id) == ["r0028c0143", "r0028c0148"]
    assert list(frame.status) == ["full", "missing"] and frame.geometry.iloc[1].equals(chunk_box(28, 148))
    import matplotlib

    matplotlib.use("Agg")
    ax = frame.plot(column="status")  # the one-line map of a notebook
    assert sum(len(c.get_paths()) for c in ax.collections) == 2, "one patch per chunk"


def test_status_counts_the_same_rows(fetched: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--data-dir", str(fetched)])
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if "arcticdem-32m" in row)
    cells = [cell.strip() for cell in line.split("│")]
    assert cells[1:4] == ["arcticdem-32m", "1", "1"], "full, partial"


def test_coverage_of_a_cube_not_there_is_empty_and_a_bad_name_says_the_choices(tmp_path: Path) -> None:
    assert coverage(tmp_path, "tcvis").empty and not any(tmp_path.iterdir())
    with pytest.raises(InvalidRequestError, match="arcticdem-32m"):
        coverage(tmp_path, "arcticdem")


def test_fetch_aoi_refuses_a_second_region_and_a_file_without_crs(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes.geojson"
    gpd.GeoDataFrame(geometry=[INSIDE], crs=3413).to_crs(4326).to_file(scenes)
    result = CliRunner().invoke(app, ["fetch", "arcticdem", "--aoi", str(scenes), "--bbox", "0", "0", "1", "1"])
    assert result.exit_code == 1 and "not both" in result.output
    result = CliRunner().invoke(app, ["fetch", "arcticdem", "--aoi", str(tmp_path / "none.gpkg")])
    assert result.exit_code == 1 and "does not exist" in result.output
