"""The `darts-aux` command line (typer + rich)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(help="Auxiliary rasters for Arctic remote sensing from self-filling Zarr datacubes.",
                  no_args_is_help=True, add_completion=False)
manifest_app = typer.Typer(help="Inspect and maintain the chunk manifests.", no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")
console = Console(width=None if Console().is_terminal else 110)

DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (default: DARTS_AUX_DATA_DIR).")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every step.")] = False) -> None:
    """Set up logging for every command."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])


@app.command()
def status(data_dir: DataDirOption = None) -> None:
    """Per cube: chunks full / partial, bytes on disk, last update."""
    from .cubes import cube_statuses
    from .settings import get_settings

    directory = data_dir or get_settings().data_dir
    table = Table(title=f"cubes in {directory}")
    for column in ("cube", "full", "partial", "bytes on disk", "last update"):
        table.add_column(column)
    for row in cube_statuses(directory):
        table.add_row(row.product, str(row.full), str(row.partial), f"{row.bytes_on_disk / 1e6:,.1f} MB",
                      row.last_update.isoformat(timespec="seconds") if row.last_update else "-")
    console.print(table)


@manifest_app.command("compact")
def manifest_compact(data_dir: DataDirOption = None) -> None:
    """Fold every cube's manifest segments into one file."""
    from .cubes import compact_all
    from .settings import get_settings

    for product, folded in compact_all(data_dir or get_settings().data_dir):
        console.print(f"{product}: folded {folded} files")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the quicklooks and the demo's data.")] = Path("demo-output"),
    inline: Annotated[bool, typer.Option(help="Run fills in-process instead of through Prefect.")] = False,
) -> None:
    """Start the embedded local catalog, fill and load two ArcticDEM regions, write quicklooks."""
    from .demo import run_demo

    run_demo(out, inline=inline, console=console)


if __name__ == "__main__":
    app()
