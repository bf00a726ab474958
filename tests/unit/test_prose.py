"""Log lines, messages and artifacts read as prose: plurals agree, numbers are plain, no raw reprs, tables read well."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from darts_aux.fill import FillContext, FillReport
from darts_aux.flows.artifacts import ERROR_CHARS, chunk_table, summary_markdown
from darts_aux.flows.failures import UserErrorTracebacks, is_user_error
from darts_aux.flows.tasks import ChunkRun, FillOutcome
from darts_aux.grid import ChunkGrid, ChunkId, PixelWindow
from darts_aux.manifest import ChunkRecord, utc_now
from darts_aux.products import arcticdem
from darts_aux.settings import get_settings
from darts_aux.wording import plain, plain_numbers, plural

DEM = arcticdem(32)


@pytest.mark.parametrize(("count", "text"), [(0, "0 items"), (1, "1 item"), (2, "2 items")])
def test_plural(count: int, text: str) -> None:
    assert plural(count, "item") == text
    assert plural(count, "partial chunk") == text.replace("item", "partial chunk")


@pytest.mark.parametrize(("value", "text"), [(3_149_984.0, "3149984"), (-4_000_096.0, "-4000096"),
                                             (123.25, "123.25"), (0.00026949458523585647, "0.0002694946"),
                                             (1e-7, "1e-07")])
def test_plain_numbers_are_never_in_exponent_form_for_coordinates(value: float, text: str) -> None:
    assert plain(value) == text
    assert plain_numbers((650_000.0, 3_149_984.0)) == "650000, 3149984"


def test_a_pixel_window_prints_as_prose() -> None:
    window = PixelWindow(10, 20, 30, 45)
    assert f"{window}" == "rows 10–20, cols 30–45"
    assert "PixelWindow(" not in "filled %s" % window  # noqa: UP031 - %-formatting is what logging does


def _outcome(tmp_path: Path) -> FillOutcome:
    grid = ChunkGrid(DEM)
    window = grid.covering([ChunkId(5, 29), ChunkId(6, 30)])
    ctx = FillContext(DEM, tmp_path, get_settings())
    report = FillReport(DEM.key, "stac", "http://127.0.0.1:1/stac", chunks_total=4, chunks_fetched=3)

    def record(chunk: ChunkId) -> ChunkRecord:
        return ChunkRecord(chunk, "full", ("70_47_32m_v4.1",), (), 1.0, utc_now(), None)

    runs = [ChunkRun(ChunkId(6, 30), "fetched", record(ChunkId(6, 30))),
            ChunkRun(ChunkId(5, 29), "fetched", record(ChunkId(5, 29))),
            ChunkRun(ChunkId(6, 29), "failed", None, error="SourceUnavailableError: the catalog\nstayed down " * 20),
            ChunkRun(ChunkId(5, 30), "reused", record(ChunkId(5, 30)))]
    return FillOutcome(ctx, report, [("", window)], runs)


def test_the_chunk_table_is_sorted_by_chunk_and_its_errors_are_one_short_line(tmp_path: Path) -> None:
    table = chunk_table(_outcome(tmp_path))
    assert [row["chunk"] for row in table] == ["r0005c0029", "r0005c0030", "r0006c0029", "r0006c0030"]
    error = table[2]["error"]
    assert "\n" not in error and len(error) == ERROR_CHARS and error.endswith("…")
    assert error.startswith("SourceUnavailableError: the catalog stayed down")


def test_the_summary_has_no_empty_header_and_plain_bounds(tmp_path: Path) -> None:
    markdown = summary_markdown(_outcome(tmp_path), with_map=False)
    lines = markdown.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| cube | arcticdem-32m |" and table[1] == "|---|---|"
    assert not any(line.replace("|", "").strip() == "" for line in table if line != "|---|---|")
    region = next(line for line in table if line.startswith("| region"))
    assert "e+0" not in markdown
    left = DEM.extent.x0 + 29 * DEM.fill_chunk * 32
    top = DEM.extent.y0 - 5 * DEM.fill_chunk * 32
    assert f"({plain(left)}, " in region and f", {plain(top)}, EPSG:3413)" in region, region
    assert all(float(v).is_integer() for v in (left, top)), "32 m chunk edges are whole metres"


def test_user_error_tracebacks_are_dropped_others_kept() -> None:
    from darts_aux.errors import EmptyRegionError, SourceUnavailableError

    quiet = UserErrorTracebacks()

    def record(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "Engine execution exited", None,
                                 (type(error), error, None))

    assert is_user_error(EmptyRegionError("x"))
    assert quiet.filter(record(EmptyRegionError("bounds are empty"))) is False
    assert quiet.filter(record(SourceUnavailableError("down", source="stac"))) is True
    assert quiet.filter(record(RuntimeError("a bug"))) is True
    plain_line = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "bounds are empty", None, None)
    assert quiet.filter(plain_line) is True


def test_the_chunk_table_puts_its_numbers_before_the_item_lists(tmp_path: Path) -> None:
    columns = list(chunk_table(_outcome(tmp_path))[0])
    assert columns[:9] == ["chunk", "region", "action", "status", "coverage", "new_items", "bytes", "seconds", "error"]
    assert columns[9:] == ["items_failed", "items_applied"]
