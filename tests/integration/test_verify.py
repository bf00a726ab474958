"""`darts-aux verify`: full chunks must be backed by the store's history and read back; `--repair` re-opens them."""

from __future__ import annotations

from pathlib import Path

from odc.geo.geobox import GeoBox
from typer.testing import CliRunner

from darts_aux import load_arcticdem
from darts_aux.cli import app
from darts_aux.grid import ChunkGrid, ChunkId
from darts_aux.local import LocalCatalog
from darts_aux.manifest import ChunkRecord, Manifest, utc_now
from darts_aux.products import arcticdem
from darts_aux.store import cube_paths
from darts_aux.verify import verify_cube

PRODUCT = arcticdem(32)
GRID = ChunkGrid(PRODUCT)
ROI = GeoBox.from_bbox((785_000, 3_130_000, 810_000, 3_155_000), "EPSG:3413", resolution=32)  # 4 chunks


def _verify(data_dir: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["verify", "--data-dir", str(data_dir), *extra])
    return result.exit_code, result.output


def test_a_sound_cube_verifies(use_catalog: LocalCatalog, inline: None, tmp_path: Path) -> None:
    load_arcticdem(ROI, tmp_path, 32)
    code, output = _verify(tmp_path)
    assert code == 0, output
    assert "arcticdem-32m: 4 chunks checked, all present and readable" in output


def test_a_full_row_without_pixels_is_found_and_repaired(use_catalog: LocalCatalog, inline: None,
                                                        tmp_path: Path) -> None:
    load_arcticdem(ROI, tmp_path, 32)
    manifest = Manifest(cube_paths(tmp_path, PRODUCT).manifest, GRID)
    ghost = ChunkId(10, 10)
    manifest.append([ChunkRecord(ghost, "full", ("70_45_32m_v4.1",), (), 1.0, utc_now(), "NOSUCHSNAPSHOT")])
    verdict = verify_cube(tmp_path, PRODUCT)
    assert [(p.chunk, p.repairable) for p in verdict.problems] == [(ghost, True)]

    code, output = _verify(tmp_path)
    assert code == 1 and "r0010c0010" in output and "--repair" in output
    code, output = _verify(tmp_path, "--repair")
    assert code == 0, output
    row = manifest.latest()[ghost]
    assert row.status == "partial" and row.items_applied == () and "verify" in row.note
    assert verify_cube(tmp_path, PRODUCT).ok


def test_a_row_claiming_items_the_store_never_committed(use_catalog: LocalCatalog, inline: None,
                                                        tmp_path: Path) -> None:
    load_arcticdem(ROI, tmp_path, 32)
    manifest = Manifest(cube_paths(tmp_path, PRODUCT).manifest, GRID)
    chunk, row = next(iter(manifest.latest().items()))
    manifest.append([ChunkRecord(chunk, "full", (*row.items_applied, "99_99_32m_v4.1"), (), 1.0, utc_now(),
                                 row.snapshot_id)])
    problems = verify_cube(tmp_path, PRODUCT).problems
    assert len(problems) == 1 and "99_99_32m_v4.1" in problems[0].problem
    _verify(tmp_path, "--repair")
    repaired = manifest.latest()[chunk]
    assert repaired.status == "partial" and repaired.items_applied == row.items_applied


def test_a_chunk_whose_bytes_are_damaged_is_unreadable(use_catalog: LocalCatalog, inline: None,
                                                       tmp_path: Path) -> None:
    load_arcticdem(ROI, tmp_path, 32)
    chunk_files = sorted((cube_paths(tmp_path, PRODUCT).repo / "chunks").iterdir(), key=lambda p: p.stat().st_size)
    damaged = chunk_files[-1]
    damaged.write_bytes(b"\0" * 64)
    verdict = verify_cube(tmp_path, PRODUCT)
    assert len(verdict.problems) == 1 and not verdict.problems[0].repairable
    assert "unreadable" in verdict.problems[0].problem
    code, output = _verify(tmp_path, "--repair")
    assert code == 1 and "fetch the region again" in output
