"""The `darts-aux` command line (typer + rich).

Every command has `--help`. Errors darts-aux raises on purpose (DartsAuxError: bad input, an unreachable
source, …) end the command with one red line on stderr and exit code 1; usage errors (an unknown
option or product) are typer's, with exit code 2.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from .errors import DartsAuxError

if TYPE_CHECKING:
    # typer runs on its own copy of click: its commands are given that click's contexts and parameters
    from typer._click import Context, Parameter


def _plain_flags(params: list[Parameter]) -> list[Parameter]:
    """The parameters, with on/off flags shown without a value placeholder in --help (no `<bool>`)."""
    for param in params:
        if getattr(param, "is_flag", False):  # options only (typer's own click, so no isinstance test)
            param.metavar = ""
    return params


class _Command(TyperCommand):
    """A command whose --help shows flags as flags."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _plain_flags(super().get_params(ctx))


class _Group(TyperGroup):
    """A group of commands whose --help shows flags as flags."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _plain_flags(super().get_params(ctx))


class _Commands(_Group):
    """The root group: a DartsAuxError from any command becomes one red line and exit code 1.

    With --verbose the traceback is printed above that line.
    """

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except DartsAuxError as error:
            if ctx.params.get("verbose"):
                err_console.print_exception()
            print_error(error)
            raise typer.Exit(1) from None


app = typer.Typer(cls=_Commands, help="Auxiliary rasters for Arctic remote sensing from self-filling Zarr datacubes.",
                  no_args_is_help=True, add_completion=False)
manifest_app = typer.Typer(cls=_Group, help="Inspect and maintain the chunk manifests.", no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")
console = Console(width=None if Console().is_terminal else 110)
err_console = Console(stderr=True, soft_wrap=True)


class ProductName(StrEnum):
    """The products a region can be fetched or loaded from."""

    arcticdem = "arcticdem"
    tcvis = "tcvis"
    alphaearth = "alphaearth"


DataDirOption = Annotated[str | None, typer.Option(
    "--data-dir", metavar="PATH", show_default=False,
    help="Data directory: a folder, or s3://bucket/prefix (default: DARTS_AUX_DATA_DIR).")]
ProductArgument = Annotated[ProductName, typer.Argument(
    help="arcticdem (EPSG:3413, 2/10/32 m), tcvis (EPSG:4326) or alphaearth (EPSG:3413, 10 m, per year).",
    show_default=False)]
BBoxOption = Annotated[tuple[float, float, float, float] | None, typer.Option(
    "--bbox", metavar="MINX MINY MAXX MAXY",
    help="Region as a box in --crs. Across the antimeridian, continue past 180 (179.5 … 180.5).")]
CrsOption = Annotated[str | None, typer.Option(
    "--crs", help="CRS of --bbox (default EPSG:3413 for arcticdem and alphaearth, EPSG:4326 for tcvis); of a "
                  "--geojson file "
                  "without a 'crs' member (default EPSG:4326).")]
GeoJsonOption = Annotated[Path | None, typer.Option(
    "--geojson", help="Region as the bounding box of a GeoJSON geometry, Feature or FeatureCollection "
                      "(CRS from its 'crs' member, else --crs, else EPSG:4326).")]
ResolutionOption = Annotated[int | None, typer.Option(
    "--resolution", help="ArcticDEM resolution in metres: 2, 10 or 32 (default 32). Not for tcvis.")]
BufferOption = Annotated[int, typer.Option("--buffer", help="Cube pixels added around the region on every side.")]
YearOption = Annotated[list[int] | None, typer.Option(
    "--year", help="AlphaEarth year (2017-2025); repeat for several (default: every year). Only for alphaearth.")]
AoiOption = Annotated[Path | None, typer.Option(
    "--aoi", help="Region as a file of geometries (.gpkg, .geojson, .parquet; any CRS, many rows): only the chunks "
                  "the geometries themselves intersect are filled, as download_arcticdem / download_tcvis do.")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every step.")] = False) -> None:
    """Set up logging for every command."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])


def print_error(error: BaseException) -> None:
    """One red line on stderr (no markup is read from the message)."""
    message = " ".join(str(error).split()) or type(error).__name__
    err_console.print(Text.assemble(("error: ", "bold red"), (message, "red")))


@app.command(cls=_Command)
def fetch(
    product: ProductArgument,
    bbox: BBoxOption = None,
    crs: CrsOption = None,
    geojson: GeoJsonOption = None,
    resolution: ResolutionOption = None,
    buffer: BufferOption = 0,
    data_dir: DataDirOption = None,
    aoi: AoiOption = None,
    year: YearOption = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan (chunks, how many are full, what a fill would read) and stop: no source "
                          "is asked, nothing is written.")] = False,
) -> None:
    """Fill the cube's chunks over a region (nothing is loaded) and print what was fetched.

    Chunks the manifest lists as settled are not searched again; the others are filled through Prefect or in-process, as DARTS_AUX_ORCHESTRATOR says, with a progress bar of chunks. A data directory that does not exist yet is created.
    """  # noqa: E501 - the help text keeps its line breaks, so a paragraph is one line
    from .cli_support import fetch_region, plan_lines, plan_region, summary_table

    if aoi is not None:
        if dry_run:
            from .cli_support import CliInputError

            raise CliInputError("--dry-run plans a --bbox or --geojson region; --aoi has no plan yet: drop --dry-run.")
        _fetch_aoi(product, aoi, resolution, buffer, data_dir, bbox is not None or geojson is not None, year)
        return

    regions, settings = _regions(product, bbox, crs, geojson, resolution, buffer, data_dir, year)
    if dry_run:
        for region in regions:
            for line in plan_lines(plan_region(region, settings), region):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    reports = []
    for region in regions:
        report, filled = fetch_region(region, settings, err_console)
        console.print(summary_table(report, region, filled))
        reports.append(report)
    for report in reports:
        report.raise_for_failures()


@app.command(cls=_Command)
def load(
    product: ProductArgument,
    out: Annotated[Path, typer.Option("--out", help="Output file: .nc (NetCDF, xarray) or .tif (multi-band GeoTIFF).",
                                      show_default=False)],
    bbox: BBoxOption = None,
    crs: CrsOption = None,
    geojson: GeoJsonOption = None,
    resolution: ResolutionOption = None,
    buffer: BufferOption = 0,
    data_dir: DataDirOption = None,
    year: YearOption = None,
) -> None:
    """Load a region (filling missing chunks first) and write it to a file.

    The file holds the cube's own grid over the region (EPSG:3413 or EPSG:4326, no resampling).

    NetCDF (.nc): the xarray Dataset as load_arcticdem / load_tcvis return it (written with h5netcdf).

    GeoTIFF (.tif): one file, one band per variable, band descriptions = variable names. ArcticDEM's uint8 datamask is stored as float32 beside dem (exact; band tag source_dtype=uint8) with nodata NaN; TCVIS bands stay uint8 with no nodata value (0 is a real value there: see the valid band).
    """  # noqa: E501 - the help text keeps its line breaks, so a paragraph is one line
    from .api import read_dataset
    from .cli_support import check_output, fetch_region, summary_table, write_output

    regions, settings = _regions(product, bbox, crs, geojson, resolution, buffer, data_dir, year)
    check_output(out, steps=len(regions) if product is ProductName.alphaearth else None)
    reports = []
    for region in regions:
        report, filled = fetch_region(region, settings, err_console)
        if filled:
            console.print(summary_table(report, region, filled, command="load"))
        reports.append(report)
    for report in reports:
        report.raise_for_failures()
    datasets = [read_dataset(region.data_dir, region.product, region.window, persist=False) for region in regions]
    if product is ProductName.alphaearth:
        from .products import alphaearth
        from .timeaxis import stack_steps

        console.print(write_output(stack_steps(alphaearth(), datasets, [r.product for r in regions]), out))
        return
    console.print(write_output(datasets[0], out))


@app.command(cls=_Command)
def status(
    data_dir: DataDirOption = None,
    map_: Annotated[Path | None, typer.Option(
        "--map", help="Also write each cube's coverage map (chunks by status): --map out.png writes "
                      "out-<cube>.png per cube, e.g. out-arcticdem-32m.png.")] = None,
) -> None:
    """Per cube: chunks full / partial, chunks being downloaded now (by which fills), bytes on disk, last update.

    Exit code 1 when the data directory does not exist or holds no cube.
    """
    from .cli_support import check_map_path, inspected_data_dir, status_table, write_coverage_maps
    from .cubes import cube_statuses
    from .settings import get_settings

    if map_ is not None:
        check_map_path(map_)
    settings = get_settings()
    directory = inspected_data_dir(data_dir, settings)
    rows = cube_statuses(directory, settings.claim_lease_seconds)
    console.print(status_table(rows, directory))
    if map_ is not None:
        for path in write_coverage_maps(rows, map_):
            console.print(f"wrote {path}", markup=False, highlight=False)


@manifest_app.command("compact", cls=_Command)
def manifest_compact(data_dir: DataDirOption = None) -> None:
    """Fold every cube's manifest segments into one GeoParquet file (exit code 1 when there is no cube)."""
    from .cli_support import counted, inspected_data_dir
    from .cubes import compact_all
    from .settings import get_settings

    for product, folded in compact_all(inspected_data_dir(data_dir, get_settings())):
        console.print(f"{product}: folded {counted(folded, 'file')} into one" if folded
                      else f"{product}: one file already, nothing to fold")


@manifest_app.command("rebuild", cls=_Command)
def manifest_rebuild(data_dir: DataDirOption = None) -> None:
    """Rebuild every cube's manifest from the store's own commit history (e.g. after the manifest was lost)."""
    from .cli_support import counted, inspected_data_dir
    from .cubes import rebuild_all
    from .settings import get_settings

    for product, chunks in rebuild_all(inspected_data_dir(data_dir, get_settings())):
        console.print(f"{product}: {counted(chunks, 'chunk')} recorded from the store's history")


@app.command(cls=_Command)
def verify(
    data_dir: DataDirOption = None,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Mark chunks the store does not back as partial, so the next load fetches them.")] = False,
) -> None:
    """Check that every chunk the manifest calls full is in the store's history and reads back whole.

    Exit code 0 when every cube is sound, 1 when a problem is left (listed, with what to do) or the data directory does not exist or holds no cube.
    """  # noqa: E501 - the help text keeps its line breaks, so a paragraph is one line
    from .cli_support import inspected_data_dir, verify_with_progress
    from .settings import get_settings

    if not verify_with_progress(inspected_data_dir(data_dir, get_settings()), repair, console):
        raise typer.Exit(1)


@app.command(cls=_Command)
def serve(data_dir: DataDirOption = None) -> None:
    """Start the Prefect deployments' schedules in this process (runs until stopped with Ctrl+C)."""
    from .cli_support import command_data_dir
    from .settings import get_settings

    directory = None if data_dir is None else str(command_data_dir(data_dir, get_settings()))
    try:
        from .flows.deployments import serve_all
    except ImportError as error:
        from .cli_support import CliInputError

        raise CliInputError(f"cannot serve the deployments: darts_aux.flows.deployments does not import "
                            f"({error}); reinstall darts-aux with its dependencies (uv sync).") from None
    serve_all(directory)


@app.command(cls=_Command)
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the quicklooks and the demo's data.")] = Path("demo-output"),
    inline: Annotated[bool, typer.Option(help="Run fills in-process instead of through Prefect.")] = False,
) -> None:
    """Start the embedded local catalog and Earth Engine stand-in, fill and load ArcticDEM, TCVIS and AlphaEarth regions, write quicklooks.

    Two ArcticDEM regions (32 m and 2 m) and one TCVIS region are each loaded twice: filled from the local services, then served from the cubes.
    """  # noqa: E501 - the help text keeps its line breaks, so a paragraph is one line
    from .demo import run_demo
    from .extras import require_extras

    require_extras("darts-aux demo", "local", "viz")
    run_demo(out, inline=inline, console=console)


def _fetch_aoi(product: ProductName, aoi: Path, resolution: int | None, buffer: int, data_dir: str | None,
               other_region: bool, years: list[int] | None) -> None:
    """`fetch --aoi FILE`: download_arcticdem / download_tcvis over the file's geometries, then the report."""
    from .aoi import read_aoi_file
    from .api import download_product
    from .cli_support import CliInputError, product_for
    from .download import report_table
    from .settings import get_settings

    if other_region:
        raise CliInputError("give the region as --aoi, or as --bbox / --geojson, not both.")
    cube = product_for(product.value, resolution, get_settings().tcvis_edition, years)
    report = download_product(cube, read_aoi_file(aoi), data_dir, None, buffer, None, steps=years)
    console.print(report_table(report, data_dir or get_settings().data_dir))
    report.raise_for_failures()


def _regions(product: ProductName, bbox: tuple[float, float, float, float] | None, crs: str | None,
             geojson: Path | None, resolution: int | None, buffer: int, data_dir: str | None,
             years: list[int] | None) -> tuple[list[Any], Any]:
    """The cube window of a command's region in each cube it reads (one per year for alphaearth), and the settings."""
    from .api import step_cubes
    from .cli_support import product_for, region_geobox, resolve_region
    from .settings import get_settings

    settings = get_settings()
    declared = product_for(product.value, resolution, settings.tcvis_edition, years)
    geobox = region_geobox(declared, bbox=bbox, crs=crs, geojson=geojson)
    cubes = step_cubes(declared, years or None)
    return [resolve_region(cube, geobox, data_dir, buffer, settings) for cube in cubes], settings


if __name__ == "__main__":
    app()
