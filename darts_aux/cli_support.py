"""What the `darts-aux` commands are made of: products and regions from options, a fill with a progress bar,
output files (GeoTIFF, NetCDF) and per-cube status and coverage maps.

Kept apart from `cli.py` so that the pure parts (regions, output kinds) are unit-tested without typer.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .errors import DartsAuxError, DataDirError, EmptyRegionError, InvalidRegionError, InvalidRequestError
from .extras import require_extras
from .products import Product, alphaearth, arcticdem, tcvis
from .region import (
    CLI_WORDS,
    RegionWords,
    check_bounds,
    check_crs,
    geobox_window,
    geojson_crs,
    geojson_document,
    geojson_shape,
)

if TYPE_CHECKING:
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from rich.console import Console
    from rich.table import Table

    from .claims import ClaimHolder
    from .cubes import CubeStatus
    from .fill import FillReport
    from .grid import PixelWindow
    from .location import DataLocation
    from .plan import FillPlan
    from .settings import Settings
    from .verify import CubeVerdict

BBox = tuple[float, float, float, float]
"""(min x, min y, max x, max y) in the region's CRS."""
ProductName = Literal["arcticdem", "tcvis"]
DEFAULT_ARCTICDEM_RESOLUTION = 32
GEOJSON_CRS = "EPSG:4326"
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")
GEOTIFF_SUFFIXES = (".tif", ".tiff")
"""xarray's NetCDF writers, in order of preference, with the module each needs."""
GEOTIFF_STRIP_ROWS = 2048


class CliInputError(InvalidRequestError):
    """A command-line option that cannot be used as given (region, CRS, GeoJSON file, output path)."""


class OutputError(DartsAuxError):
    """An output file could not be written."""


class NoDataDirError(DataDirError):
    """An inspecting command's data directory does not exist or holds no cube: a typo must not pass as 'empty'."""


# -- products ------------------------------------------------------------------------------------


def product_for(name: str, resolution: int | None, tcvis_edition: str, years: Sequence[int] | None = None) -> Product:
    """The product a command works on: ArcticDEM at `resolution` (default 32 m), TCVIS of the configured edition,
    or AlphaEarth (whose `--year`s are checked here, before anything is read)."""
    if years and name != "alphaearth":
        raise CliInputError(f"{name} has no years; drop --year (it is for alphaearth).")
    if name == "arcticdem":
        return arcticdem(DEFAULT_ARCTICDEM_RESOLUTION if resolution is None else resolution)
    if name == "tcvis":
        if resolution is not None:
            raise CliInputError("TCVIS has a single resolution (0.00027°, ~30 m); drop --resolution.")
        return tcvis(tcvis_edition)
    if name == "alphaearth":
        product = alphaearth()
        if resolution not in (None, product.resolution):
            raise CliInputError(f"AlphaEarth has a single resolution ({product.resolution:g} m); drop --resolution.")
        product.steps_for(years or None)  # UnknownTimeStepError (one line) for a year the collection lacks
        return product
    raise CliInputError(f"unknown product {name!r}; use arcticdem, tcvis or alphaearth.")


# -- regions -------------------------------------------------------------------------------------


def parse_crs(text: str) -> str:
    """A CRS given on the command line or in a GeoJSON file, normalised ('EPSG:n', else WKT)."""
    return check_crs(text, CLI_WORDS)


def check_bbox(bbox: object) -> BBox:
    """A --bbox of four finite values with min < max on both axes."""
    return check_bounds(bbox, CLI_WORDS)


def read_geojson(path: Path) -> tuple[BBox, str | None]:
    """Bounding box of a GeoJSON geometry, Feature or FeatureCollection, and the CRS its `crs` member names."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CliInputError(f"cannot read the GeoJSON file {path}: {error.strerror or error}.") from None
    except UnicodeDecodeError as error:
        raise InvalidRegionError(f"--geojson {path} is not GeoJSON (not valid JSON: {_first_line(error)}).") from None
    words = _file_words(path)
    document = geojson_document(text, words)
    left, bottom, right, top = (float(v) for v in geojson_shape(document, words).bounds)
    bounds = (left, bottom, right, top)
    if not all(math.isfinite(v) for v in bounds) or bounds[0] >= bounds[2] or bounds[1] >= bounds[3]:
        raise EmptyRegionError(f"the geometry in --geojson {path} has no area (bounding box {_fmt(bounds)}); "
                               f"give a polygon.")
    return bounds, geojson_crs(document, words)


def _file_words(path: Path) -> RegionWords:
    """The CLI's words, naming the GeoJSON file as given."""
    from dataclasses import replace

    return replace(CLI_WORDS, geometry=f"--geojson {path}")


def region_geobox(product: Product, *, bbox: BBox | None, crs: str | None, geojson: Path | None) -> GeoBox:
    """The region of a command as a GeoBox: --bbox in --crs (default: the cube's CRS), or a GeoJSON file's bounding box.

    The CRS of a GeoJSON file is its `crs` member, else --crs, else EPSG:4326. The region is checked against the
    cube here, as every door checks it (darts_aux.region), so a mistake is told in the options' words.
    """
    if (bbox is None) == (geojson is None):
        raise InvalidRegionError("give the region either as --bbox MINX MINY MAXX MAXY or as --geojson FILE "
                                 "(one of them).")
    given_crs = parse_crs(crs) if crs is not None else None
    if geojson is not None:
        box, file_crs = read_geojson(geojson)
        if file_crs is not None and given_crs is not None and file_crs != given_crs:
            raise InvalidRegionError(f"--geojson {geojson} says its CRS is {file_crs} but --crs is {given_crs}; "
                                     f"drop --crs.")
        geobox = bbox_geobox(product, box, file_crs or given_crs or GEOJSON_CRS)
    else:
        geobox = bbox_geobox(product, check_bbox(bbox), given_crs or product.extent.crs)
    geobox_window(product, geobox, 0, CLI_WORDS)
    return geobox


def bbox_geobox(product: Product, bbox: BBox, crs: str) -> GeoBox:
    """A GeoBox over a bbox: at the product's resolution in the product's CRS, else exactly the box.

    Either way the load takes the box's footprint to the cube grid and snaps it outward to whole cube pixels.
    """
    from odc.geo.geobox import GeoBox

    if parse_crs(crs) == parse_crs(product.extent.crs):
        return GeoBox.from_bbox(bbox, crs, resolution=product.resolution)
    return GeoBox.from_bbox(bbox, crs, tight=True, shape=(1, 1))


# -- fills ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """A command's region resolved against a cube."""

    product: Product
    data_dir: DataLocation
    window: PixelWindow

    @property
    def chunk_count(self) -> int:
        from .grid import ChunkGrid

        return len(ChunkGrid(self.product).chunks(self.window))


def resolve_region(product: Product, geobox: GeoBox, data_dir: str | os.PathLike[str] | None, buffer: int,
                   settings: Settings) -> Region:
    """Data directory and cube window of a region (the same steps `load_*` takes; nothing is written)."""
    from .validate import region_window

    return Region(product, command_data_dir(data_dir, settings), region_window(product, geobox, buffer, CLI_WORDS))


def fetch_region(region: Region, settings: Settings, console: Console) -> tuple[FillReport, bool]:
    """Fill the region's chunks unless the manifest says they are settled; (report, whether a fill ran).

    Fills go through `api.fill`, so Prefect or in-process runs stay as configured. Everything that can fail
    before the first download (the data directory, the Prefect API) is checked before the progress bar, so it
    fails with one line; a data directory that does not exist yet is created, and the console says so.
    """
    from .api import fill, is_settled
    from .fill import FillReport
    from .store import check_writable

    started = time.perf_counter()
    if is_settled(region.data_dir, region.product, region.window, settings):
        count = region.chunk_count
        report = FillReport(region.product.key, chunks_total=count, chunks_reused=count,
                            seconds=time.perf_counter() - started)
        return report, False
    check_writable(region.data_dir, region.product)
    check_orchestrator(settings)
    create_data_dir(region.data_dir, console)
    from .grid import ChunkGrid
    from .progress import ChunkProgress, run_with_progress

    progress = ChunkProgress(region.data_dir, region.product, ChunkGrid(region.product).chunks(region.window))
    report = run_with_progress(lambda: fill(region.data_dir, region.product, region.window, settings), progress,
                               f"filling {region.product.key}", console)
    return report, True


def check_orchestrator(settings: Settings) -> None:
    """Fail at once (OrchestratorUnavailableError) when fills go through a Prefect API that does not answer."""
    from .api import use_prefect

    if use_prefect(settings):
        from .orchestrator import check_prefect_api, prefect_api_url

        check_prefect_api(prefect_api_url())


def plan_region(region: Region, settings: Settings) -> FillPlan:
    """What a fetch of the region would do, from the manifest alone (no source is asked, nothing is written)."""
    from .plan import fill_plan
    from .store import check_cube_folder

    check_cube_folder(region.data_dir, region.product)  # the same refusal a fetch would meet, without its write probe
    return fill_plan(region.data_dir, region.product, region.window, settings.revisit_days * 86400)


def plan_lines(plan: FillPlan, region: Region) -> list[str]:
    """The plan as printed by `fetch --dry-run`: counts, bytes, where the chunks lie, the grid's offset."""
    left, bottom, right, top = plan.chunk_bounds()
    unit = "°" if region.product.extent.wrap_x else " m"
    lines = [plan.summary(),
             f"the chunks cover x {_plain(left, unit)} … {_plain(right, unit)} and y {_plain(bottom, unit)} … "
             f"{_plain(top, unit)} ({region.product.extent.crs})"]
    note = plan.grid_note()
    if note:
        lines.append(note)
    exists = region.data_dir.is_dir()
    where = f"{region.data_dir}" if exists else f"{region.data_dir} does not exist yet (a fetch creates it)"
    lines.append(f"dry run: nothing was downloaded or written; data directory {where}")
    return lines


def _plain(value: float, unit: str) -> str:
    """A coordinate as a plain number: metres to the metre with thousands separators, degrees to 1e-6."""
    return f"{value:,.6f}°" if unit == "°" else f"{value:,.0f}{unit}"


def summary_table(report: FillReport, region: Region, filled: bool, command: str = "fetch") -> Table:
    """One row: chunks fetched / reused / rechecked / downloaded by other fills meanwhile, MB read, seconds.

    Titled by the command that ran (`fetch` or `load`).
    """
    from rich.table import Table

    rows, cols = region.window.shape
    caption = (f"window {cols:,} × {rows:,} px of {region.product.key} ({region.product.extent.crs}) in "
               f"{region.data_dir}; " + ("filled" if filled else "settled in the cube: no fill started"))
    table = Table(title=f"{command} {region.product.key}", caption=caption)
    for column in ("cube", "chunks", "fetched", "reused", "rechecked", "by others", "MB read", "seconds"):
        table.add_column(column, justify="left" if column == "cube" else "right")
    table.add_row(region.product.key, str(report.chunks_total), str(report.chunks_fetched), str(report.chunks_reused),
                  str(report.chunks_rechecked), str(report.chunks_by_others), f"{report.bytes_read / 1e6:,.1f}",
                  f"{report.seconds:.1f}")
    return table


# -- data directories ----------------------------------------------------------------------------


def command_data_dir(data_dir: str | os.PathLike[str] | None, settings: Settings) -> DataLocation:
    """The data directory of a command: --data-dir (a folder or s3://bucket/prefix), else DARTS_AUX_DATA_DIR.

    Checked as the command line names it (a file where a folder belongs is refused); not created.
    """
    from .api import resolve_data_dir
    from .location import is_s3_url

    if data_dir is None:
        return resolve_data_dir(None, settings)
    data_dir = os.fspath(data_dir)
    if not data_dir.strip():
        raise CliInputError("--data-dir is empty; give a folder or an s3://bucket/prefix URL.")
    local = Path(data_dir).expanduser()
    if not is_s3_url(data_dir) and local.exists() and not local.is_dir():
        raise CliInputError(f"--data-dir {local} is a file; give a folder (or an s3://bucket/prefix URL).")
    return resolve_data_dir(data_dir, settings)


def data_dir_words(data_dir: str | None, directory: DataLocation) -> str:
    """How the command line named the data directory: '--data-dir X', 'DARTS_AUX_DATA_DIR=X' or the default."""
    if data_dir is not None:
        return f"--data-dir {directory}"
    if os.environ.get("DARTS_AUX_DATA_DIR"):
        return f"DARTS_AUX_DATA_DIR={directory}"
    return f"the default data directory {directory}"


def inspected_data_dir(data_dir: str | None, settings: Settings) -> DataLocation:
    """The data directory of an inspecting command (status, verify, manifest): it must exist and hold a cube.

    A typo in a cron check must fail, not report an empty directory as sound.
    """
    from .cubes import present_products

    directory = command_data_dir(data_dir, settings)
    named = data_dir_words(data_dir, directory)
    advice = "pass the data directory that holds the cubes with --data-dir (or set DARTS_AUX_DATA_DIR)"
    if not directory.is_dir():
        raise NoDataDirError(f"{named} does not exist; {advice}. 'darts-aux fetch' creates a new one.")
    if next(iter(present_products(directory)), None) is None:
        raise NoDataDirError(f"{named} holds no darts-aux cube; {advice}.")
    return directory


def create_data_dir(directory: DataLocation, console: Console) -> None:
    """Create a data directory a fill is about to write into, and say so in one line (nothing when it exists)."""
    from .location import S3Location

    if directory.is_dir():
        return
    if isinstance(directory, S3Location):
        console.print(f"new data directory {directory}: this fill creates it", markup=False, highlight=False)
        return
    directory.mkdir(parents=True, exist_ok=True)
    console.print(f"created data directory {directory}", markup=False, highlight=False)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 chunk', '2 chunks', '1,024 files': a count and its noun in agreement."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


# -- output files --------------------------------------------------------------------------------


def output_kind(path: Path) -> Literal["netcdf", "geotiff"]:
    """What an --out path asks for, by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in NETCDF_SUFFIXES:
        return "netcdf"
    if suffix in GEOTIFF_SUFFIXES:
        return "geotiff"
    raise CliInputError(f"--out {path}: the name must end in .nc (NetCDF) or .tif (GeoTIFF).")


def check_output(path: Path, steps: int | None = None) -> Literal["netcdf", "geotiff"]:
    """Fail before any fill when the output cannot be written: suffix, writer, folder, time steps (one per GeoTIFF)."""
    kind = output_kind(path)
    if kind == "netcdf":
        require_extras(f"--out {path}", "netcdf")
    if kind == "geotiff" and steps is not None and steps != 1:
        raise CliInputError(f"--out {path}: a GeoTIFF holds one year ({steps} asked for); pass one --year, or write "
                            f"a .nc file.")
    if path.is_dir():
        raise CliInputError(f"--out {path} is a directory; give a file name.")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise CliInputError(f"--out {path}: {folder} is not a directory.")
    return kind


def write_output(dataset: xr.Dataset, path: Path) -> str:
    """Write the dataset as NetCDF or GeoTIFF by the path's suffix; returns a one-line description."""
    kind = output_kind(path)
    if kind == "geotiff" and "time" in dataset.dims:  # one step (check_output): its day becomes a file tag
        dataset = dataset.isel(time=0).assign_attrs(time=str(dataset.time.values[0])[:10]).drop_vars("time")
    with _atomic(path) as tmp:
        if kind == "netcdf":
            write_netcdf(dataset, tmp)
        else:
            write_geotiff(dataset, tmp)
    geobox = dataset.odc.geobox
    names = ", ".join(map(str, dataset.data_vars))
    what = "NetCDF" if kind == "netcdf" else f"GeoTIFF ({geotiff_dtype(dataset)}, one band per variable)"
    crs = f"EPSG:{geobox.crs.epsg}" if geobox.crs.epsg is not None else "a CRS without EPSG code"
    return f"wrote {path}: {what}: {names}; {geobox.width} × {geobox.height} px, {crs}"


def write_netcdf(dataset: xr.Dataset, path: Path) -> None:
    """xarray's NetCDF of the dataset (variables, odc-geo coordinates, `spatial_ref` grid mapping), compressed."""
    encoding = {name: {"compression": "gzip", "compression_opts": 4} for name in dataset.data_vars}
    dataset.to_netcdf(path, engine="h5netcdf", encoding=encoding)


def geotiff_dtype(dataset: xr.Dataset) -> np.dtype:
    """The one dtype of a multi-band GeoTIFF: the smallest that holds every variable exactly
    (uint8 + float32 → float32)."""
    return np.result_type(*(v.dtype for v in dataset.data_vars.values()))


def write_geotiff(dataset: xr.Dataset, path: Path) -> None:
    """A multi-band GeoTIFF: one band per variable (description = name), the cube grid's CRS and transform.

    Variables of different dtypes share the smallest dtype that holds them all exactly (ArcticDEM's uint8
    `datamask` is stored as float32 beside `dem`; the band's tag `source_dtype` keeps the original). Float
    files have nodata NaN; integer files (TCVIS) have none, because 0 is a real value there (see `valid`).
    Written in strips of rows, so a large region is never held in memory whole.
    """
    import rasterio
    import rasterio.crs

    geobox = dataset.odc.geobox
    dtype = geotiff_dtype(dataset)
    floating = np.issubdtype(dtype, np.floating)
    crs = (rasterio.crs.CRS.from_epsg(geobox.crs.epsg) if geobox.crs.epsg is not None
           else rasterio.crs.CRS.from_wkt(geobox.crs.to_wkt()))
    profile = {
        "driver": "GTiff", "width": geobox.width, "height": geobox.height, "count": len(dataset.data_vars),
        "dtype": dtype.name, "crs": crs, "transform": geobox.affine, "nodata": float("nan") if floating else None,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        "predictor": 3 if floating else 2, "BIGTIFF": "IF_SAFER",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(**{k: str(v) for k, v in dataset.attrs.items()})
        for band, (name, variable) in enumerate(dataset.data_vars.items(), start=1):
            dst.set_band_description(band, name)
            dst.update_tags(band, source_dtype=str(variable.dtype))
            data = variable.data
            for row0 in range(0, geobox.height, GEOTIFF_STRIP_ROWS):
                row1 = min(row0 + GEOTIFF_STRIP_ROWS, geobox.height)
                strip = np.asarray(data[row0:row1]).astype(dtype, copy=False)
                dst.write(strip, band, window=((row0, row1), (0, geobox.width)))


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Write to a temporary name beside `path`, rename into place on success, remove it on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error}") from None
    except Exception as error:
        import rasterio.errors

        if isinstance(error, rasterio.errors.RasterioError):
            raise OutputError(f"cannot write {path}: {_first_line(error)}") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


# -- status and coverage maps --------------------------------------------------------------------


def coverage_map_path(out: Path, product: Product) -> Path:
    """Where a cube's coverage map goes: `--map out.png` → `out-<cube>.png`, one PNG per cube."""
    return out.with_name(f"{out.stem}-{product.key}{out.suffix}")


def check_map_path(out: Path) -> Path:
    """A --map path, refused before anything is read unless it names a PNG."""
    if out.suffix.lower() != ".png":
        raise CliInputError(f"--map {out}: the name must end in .png (one PNG per cube gets a suffix).")
    require_extras(f"--map {out}", "viz")
    return out


def write_coverage_maps(statuses: list[CubeStatus], out: Path) -> list[Path]:
    """One coverage PNG per cube with manifest rows (chunks coloured by status)."""
    from .quicklook import write_coverage_png

    check_map_path(out)
    mapped = [s for s in statuses if s.manifest_files and s.full + s.partial]
    if not mapped:
        raise CliInputError("no cube in the data directory has manifest rows yet: nothing to map. "
                            "Fetch a region first.")
    written = []
    for status in mapped:
        path = coverage_map_path(out, status.product)
        title = f"{status.product.key}: {status.full} full, {status.partial} partial chunks"
        with _atomic(path) as tmp:
            write_coverage_png(list(status.manifest_files), tmp, title)
        written.append(path)
    return written


# -- small things --------------------------------------------------------------------------------


def _fmt(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:.10g}" for v in values)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


# -- verify ------------------------------------------------------------------------------------


def verify_with_progress(directory: DataLocation, repair: bool, console: Console) -> bool:
    """Verify every cube with a progress bar, print what is wrong and what to do; True when all is sound."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from .verify import verify_all

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"))
    with Progress(*columns, console=console, transient=False) as progress:

        def bar(product: Product) -> Callable[[int, int], None]:
            task = progress.add_task(f"verifying {product.key}", total=None)
            return lambda done, total: progress.update(task, completed=done, total=total)

        verdicts = verify_all(directory, bar)
    return all([_report_verdict(directory, verdict, repair, console) for verdict in verdicts])


def _report_verdict(directory: DataLocation, verdict: CubeVerdict, repair: bool, console: Console) -> bool:
    """Print one cube's verdict and what to do (repairing when asked); True when the cube is sound after it."""
    from .verify import repair as repair_cube

    key = verdict.product.key
    if verdict.ok:
        console.print(f"{key}: {counted(verdict.checked, 'chunk')} checked, all present and readable")
        return True
    for problem in verdict.problems:
        console.print(f"{key} {problem.chunk} ({problem.status}): {problem.problem}",
                      style="red", markup=False, highlight=False)
    fixed = repair_cube(directory, verdict) if repair else 0
    unreadable = [p for p in verdict.problems if not p.repairable]
    if fixed:
        console.print(f"{key}: {counted(fixed, 'chunk')} marked partial; the next load fetches "
                      f"{'it' if fixed == 1 else 'them'} again")
    elif any(p.repairable for p in verdict.problems):
        console.print(f"{key}: run 'darts-aux verify --repair' to mark them partial, "
                      "so the next load fetches them again")
    if unreadable:
        console.print(f"{key}: {counted(len(unreadable), 'chunk')} cannot be read back; move "
                      f"{key}/ aside and fetch the region again")
    return not unreadable and fixed == len(verdict.problems)


def status_table(rows: Sequence[CubeStatus], directory: DataLocation) -> Table:
    """One row per cube: chunks full and partial, downloading now, bytes on disk, last update."""
    from rich.table import Table

    table = Table(title=f"cubes in {directory}")
    for column in ("cube", "full", "partial", "downloading", "bytes on disk", "last update"):
        table.add_column(column, justify="left" if column in ("cube", "downloading", "last update") else "right")
    for row in rows:
        table.add_row(row.product.key, f"{row.full:,}", f"{row.partial:,}", downloading_cell(row.downloading),
                      f"{row.bytes_on_disk / 1e6:,.1f} MB",
                      row.last_update.isoformat(timespec="seconds") if row.last_update else "-")
    return table


def downloading_cell(claims: Sequence[ClaimHolder]) -> str:
    """'0', or '3 (host a pid 12, host b pid 7)': chunks being downloaded and the fills downloading them."""
    if not claims:
        return "0"
    fills = sorted({f"{claim.host} pid {claim.pid}" for claim in claims})
    more = f", +{len(fills) - 3}" if len(fills) > 3 else ""
    return f"{len(claims)} ({', '.join(fills[:3])}{more})"
