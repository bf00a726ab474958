"""The `revisit_partial_chunks` flow: search the catalog again for every partial chunk and merge what arrived."""

from __future__ import annotations

from collections import defaultdict

from prefect import flow, get_run_logger

from darts_aux.cubes import present_products
from darts_aux.fill import FillContext, FillReport
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow
from darts_aux.settings import get_settings
from darts_aux.wording import plural

from .artifacts import publish_fill_artifacts
from .cubes import resolve_data_dir
from .runners import fill_task_runner
from .tasks import FillOutcome, fill_windows


def _flow_run_name() -> str:
    """'revisit-partial data': what runs, on which data directory."""
    from prefect.runtime import flow_run

    return f"revisit-partial {resolve_data_dir(flow_run.parameters.get('data_dir')).name}"


@flow(name="revisit_partial_chunks", flow_run_name=_flow_run_name, task_runner=fill_task_runner(get_settings()))
def revisit_partial_chunks(data_dir: str | None = None) -> dict[str, FillReport]:
    """For each cube in the data directory, search the source again for every `partial` chunk and fill what arrived.

    Partial chunks are grouped into rectangles of partial chunks (one item search each); chunks the manifest
    does not list are never touched. Chunks with nothing new get their `checked_at` refreshed. Returns a report
    per cube that had partial chunks; raises the first chunk error after every cube was tried.
    """
    logger = get_run_logger()
    settings = get_settings()
    directory = resolve_data_dir(data_dir)
    outcomes: list[FillOutcome] = []
    for product in present_products(directory):
        ctx = FillContext(product, directory, settings)
        partial = ctx.manifest().chunks_with_status("partial")
        if not partial:
            logger.info("%s: no partial chunk", product.key)
            continue
        windows = partial_windows(ctx.grid, partial)
        logger.info("%s: %s in %s", product.key, plural(len(partial), "partial chunk"), plural(len(windows), "window"))
        outcome = fill_windows(ctx, [(_label(ctx.grid, w), w) for w in windows])
        publish_fill_artifacts(outcome)
        outcomes.append(outcome)
    for outcome in outcomes:
        outcome.raise_first_error()
    return {outcome.ctx.product.key: outcome.report for outcome in outcomes}


def partial_windows(grid: ChunkGrid, chunks: list[ChunkId]) -> list[PixelWindow]:
    """Cover the chunks with pixel windows that hold only those chunks: row runs merged into rectangles."""
    by_row: dict[int, list[int]] = defaultdict(list)
    for chunk in chunks:
        by_row[chunk.row].append(chunk.col)
    runs: list[tuple[int, int, int]] = []  # (row, first col, last col)
    for row in sorted(by_row):
        cols = sorted(set(by_row[row]))
        start = prev = cols[0]
        for col in cols[1:]:
            if col != prev + 1:
                runs.append((row, start, prev))
                start = col
            prev = col
        runs.append((row, start, prev))
    rectangles: list[list[int]] = []  # [first row, last row, first col, last col]
    open_by_cols: dict[tuple[int, int], list[int]] = {}
    for row, col0, col1 in runs:
        rect = open_by_cols.get((col0, col1))
        if rect is not None and rect[1] == row - 1:
            rect[1] = row
        else:
            rect = [row, row, col0, col1]
            rectangles.append(rect)
            open_by_cols[(col0, col1)] = rect
    windows = []
    for row0, row1, col0, col1 in rectangles:
        first, last = grid.window(ChunkId(row0, col0)), grid.window(ChunkId(row1, col1))
        windows.append(PixelWindow(first.row0, last.row1, first.col0, last.col1))
    return windows


def _label(grid: ChunkGrid, window: PixelWindow) -> str:
    chunks = grid.chunks(window)
    return str(chunks[0]) if len(chunks) == 1 else f"{chunks[0]}…{chunks[-1]}"
