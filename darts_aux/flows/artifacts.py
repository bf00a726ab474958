"""Prefect artifacts of a fill: a table of its chunks and a markdown summary with the coverage map."""

from __future__ import annotations

import base64
import logging
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from darts_aux.extras import has_extra
from darts_aux.grid import window_bounds
from darts_aux.wording import plain_numbers

from .tasks import ChunkRun, FillOutcome

log = logging.getLogger(__name__)
MAP_MAX_CHUNKS = 400
"""Above this many chunks the summary skips the coverage map (matplotlib labels every chunk)."""
QUICKLOOK_DIR = "quicklooks"
ERROR_CHARS = 120
"""An error in the chunk table is cut to this many characters, so the table fits a 1600 px wide page."""


def artifact_keys(product: str) -> tuple[str, str]:
    """The keys of a product's chunk table and summary (the UI's Artifacts page lists their history).

    Prefect takes lower-case letters, digits and dashes in a key, so a time step's '@' and any '.' or '_' become '-'.
    """
    slug = re.sub(r"[^a-z0-9-]", "-", product.lower())
    return f"{slug}-chunks", f"{slug}-summary"


def chunk_table(outcome: FillOutcome) -> list[dict[str, Any]]:
    """One row per chunk, in chunk-id order: what the fill did, status after it, bytes read and seconds, items.

    The short columns come first and the item lists last, so a 1600 px wide page shows every number of a row.
    """
    return [_row(run) for run in sorted(outcome.chunks, key=lambda run: (run.chunk, run.region))]


def _row(run: ChunkRun) -> dict[str, Any]:
    record = run.record
    return {
        "chunk": str(run.chunk),
        "region": run.region,
        "action": run.action,
        "status": record.status if record else ("failed" if run.action == "failed" else "unknown"),
        "coverage": round(record.coverage, 4) if record else None,
        "new_items": len(run.new_items),
        "bytes": run.bytes_read,
        "seconds": round(run.seconds, 3),
        "error": _one_line(run.error),
        "items_failed": ", ".join(record.items_failed) if record else "",
        "items_applied": ", ".join(record.items_applied) if record else "",
    }


def _one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """An error as one short line, so the table stays readable (the run's log has the whole message)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def publish_fill_artifacts(outcome: FillOutcome) -> None:
    """Create the chunk table and the summary in the current flow run; a failure here only logs a warning."""
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:  # the flow body run through .fn(): no run to attach artifacts to
        return
    try:
        _publish(outcome)
    except Exception as error:  # noqa: BLE001 - artifacts are a view; the manifest is the record
        log.warning("could not publish the artifacts of the %s fill: %s", outcome.ctx.product.key, error)


def _publish(outcome: FillOutcome) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    product = outcome.ctx.product.key
    table_key, summary_key = artifact_keys(product)
    create_table_artifact(chunk_table(outcome), key=table_key,
                          description=f"{product}: every chunk of the fill, what was done to it and its status after")
    create_markdown_artifact(summary_markdown(outcome), key=summary_key,
                             description=f"{product}: fill summary and coverage map")


def summary_markdown(outcome: FillOutcome, with_map: bool = True) -> str:
    """The run's summary: source, regions, chunk counts, bytes and time, failures, the coverage map."""
    ctx, report = outcome.ctx, outcome.report
    product = ctx.product
    actions = Counter(run.action for run in outcome.chunks)
    statuses = Counter(run.record.status for run in outcome.chunks if run.record)
    lines = [
        f"# {product.key} fill",
        "",
        f"| cube | {product.key} |",
        "|---|---|",
        f"| source | {report.source} `{report.source_url}` (`{product.collection}`) |",
        f"| data dir | `{ctx.data_dir}` |",
    ]
    for label, window in outcome.windows:
        bounds = plain_numbers(window_bounds(product.extent, window))
        name = f"region {label}" if label else "region"
        lines.append(f"| {name} | rows {window.row0}–{window.row1}, cols {window.col0}–{window.col1} "
                     f"({bounds}, {product.extent.crs}) |")
    lines += [
        (f"| chunks | {report.chunks_total}: {actions['fetched']} fetched, {actions['reused']} reused (full), "
         f"{actions['rechecked']} rechecked (partial, nothing new), {actions['by another fill']} downloaded by "
         f"another fill while this one waited ({report.seconds_waiting:.1f} s), {actions['failed']} failed |"),
        f"| status after | {statuses['full']} full, {statuses['partial']} partial |",
        f"| read | {report.bytes_read / 1e6:,.1f} MB in {report.seconds:.1f} s |",
    ]
    if report.failures:
        lines += ["", "## Item reads that failed after retries (their chunks stay partial)", ""]
        lines += [f"- `{chunk}`: `{failure.item_id}` ({failure.reason})" for chunk, failure in report.failures[:20]]
    errors = [run for run in outcome.chunks if run.action == "failed"]
    if errors:
        lines += ["", "## Chunks whose task failed", ""]
        lines += [f"- `{run.chunk}`: {run.error}" for run in errors[:20]]
    map_lines = _coverage_map(outcome) if with_map else []
    if map_lines:
        lines += ["", *map_lines]
    picture = _data_quicklook(outcome) if with_map and product.quicklook_bands else []
    if picture:
        lines += ["", *picture]
    return "\n".join(lines) + "\n"


QUICKLOOK_MAX_PIXELS = 1000
"""The data quicklook shows at most this many pixels per side (every n-th pixel of the fill's first region)."""


def _data_quicklook(outcome: FillOutcome) -> list[str]:
    """The product's quicklook bands (e.g. three embedding axes) over the fill's first region as an RGB picture."""
    ctx = outcome.ctx
    if not outcome.windows or not has_extra("viz") or not any(run.record for run in outcome.chunks):
        return []
    try:
        png = render_data_quicklook_png(ctx.data_dir, ctx.product, outcome.windows[0][1])
    except Exception as error:  # noqa: BLE001 - the summary stands without its picture
        log.warning("quicklook of the %s fill failed: %s", ctx.product.key, error)
        return [f"Quicklook unavailable: {error}"]
    encoded = base64.b64encode(png).decode("ascii")
    bands = "/".join(ctx.product.quicklook_bands)
    return [f"![{bands} as RGB](data:image/png;base64,{encoded})", "",
            f"Quicklook: {bands} as red/green/blue, each stretched between its 2nd and 98th percentile; masked grey."]


def render_data_quicklook_png(data_dir: Any, product: Any, window: Any) -> bytes:
    """The quicklook bands of a window of the cube (offline read, thinned to QUICKLOOK_MAX_PIXELS), as PNG bytes."""
    from darts_aux.api import read_dataset
    from darts_aux.quicklook import write_embedding_png

    dataset = read_dataset(data_dir, product, window, persist=False)[list(product.quicklook_bands)]
    step = max(1, -(-max(window.shape) // QUICKLOOK_MAX_PIXELS))
    dataset = dataset.isel({dim: slice(None, None, step) for dim in dataset.dims})
    with tempfile.TemporaryDirectory(prefix="darts-aux-quicklook-") as tmp:
        title = f"{product.key}: {'/'.join(product.quicklook_bands)} as RGB"
        return write_embedding_png(dataset, product.quicklook_bands, Path(tmp) / "quicklook.png", title).read_bytes()


def _coverage_map(outcome: FillOutcome) -> list[str]:
    """The map of the fill's chunks by status: embedded as a data URI, and saved under data_dir/quicklooks."""
    chunks = sorted({run.chunk for run in outcome.chunks if run.record})
    if not chunks:
        return ["No chunk of this fill is in the manifest: no coverage map."]
    if len(chunks) > MAP_MAX_CHUNKS:
        return [f"{len(chunks)} chunks: too many for a labelled coverage map; see `darts-aux status`."]
    if not has_extra("viz"):
        log.info("the %s fill's summary has no coverage map: matplotlib is not installed (darts-aux[viz] draws it)",
                 outcome.ctx.product.key)
        return []
    try:
        png = render_fill_coverage_png(outcome, chunks)
    except Exception as error:  # noqa: BLE001 - the summary stands without its picture
        log.warning("coverage map of the %s fill failed: %s", outcome.ctx.product.key, error)
        return [f"Coverage map unavailable: {error}"]
    encoded = base64.b64encode(png).decode("ascii")
    lines = [f"![coverage of the fill's chunks by status](data:image/png;base64,{encoded})", ""]
    path = save_quicklook(outcome.ctx.data_dir, outcome.ctx.product.key, png)
    if path is None:
        return [*lines, "Coverage map (full: green, partial: orange)."]
    return [*lines, f"Coverage map (full: green, partial: orange): `{path}`"]


def render_fill_coverage_png(outcome: FillOutcome, chunks: list[Any]) -> bytes:
    """The manifest rows of `chunks` drawn by darts_aux.quicklook, as PNG bytes."""
    from darts_aux.cube_coverage import coverage_frame
    from darts_aux.quicklook import plot_coverage

    ctx = outcome.ctx
    frame = coverage_frame(ctx.data_dir, ctx.product)
    frame = frame[frame.chunk_id.isin({str(c) for c in chunks})]
    with tempfile.TemporaryDirectory(prefix="darts-aux-coverage-") as tmp:
        png = plot_coverage(frame, Path(tmp) / "coverage.png", f"{ctx.product.key}: the fill's chunks by status")
        return png.read_bytes()


def save_quicklook(data_dir: object, key: str, png: bytes) -> Path | None:
    """Keep the map under data_dir/quicklooks/<time>-<cube>-coverage.png; on object storage only in the artifact."""
    if not isinstance(data_dir, Path):
        return None
    out_dir = data_dir / QUICKLOOK_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{key}-coverage.png"
    path.write_bytes(png)
    return path
