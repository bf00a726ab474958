"""Fills sharing a cube: chunks another fill holds are waited for, then only what it left is downloaded."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from darts_aux.claims import ChunkClaims
from darts_aux.fill import ChunkJob, FillContext
from darts_aux.grid import ChunkId
from darts_aux.location import as_location
from darts_aux.manifest import ChunkRecord, utc_now
from darts_aux.products import arcticdem
from darts_aux.settings import Settings
from darts_aux.sharing import fill_claims, run_shared


@dataclass(frozen=True)
class Tile:
    id: str


A, B, C = ChunkId(5, 5), ChunkId(5, 6), ChunkId(6, 5)
T1, T2 = Tile("t1"), Tile("t2")


def _ctx(tmp_path: Path, **settings: float) -> FillContext:
    return FillContext(arcticdem(32), tmp_path, Settings(data_dir=tmp_path, **settings))


def _jobs() -> list[ChunkJob]:
    return [ChunkJob(chunk, (T1, T2), (T1, T2)) for chunk in (A, B, C)]


def _other_fill_finishes(ctx: FillContext, other: ChunkClaims, record: ChunkRecord | None,
                         after: float) -> threading.Thread:
    """Another fill holding B: after `after` s it records B (if given) and lets go of its claim."""
    def finish() -> None:
        time.sleep(after)
        if record is not None:
            ctx.manifest().append([record])
        other.release([B])

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def _row(status: str, applied: tuple[str, ...]) -> ChunkRecord:
    return ChunkRecord(B, status, applied, (), 1.0 if status == "full" else 0.5, utc_now(), "snap")


def test_a_chunk_another_fill_completes_is_waited_for_and_not_downloaded(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    runs: list[list[ChunkId]] = []
    with ChunkClaims(fill_claims(ctx).folder) as other, fill_claims(ctx) as claims:
        assert other.claim(B) is None
        started = time.monotonic()
        finisher = _other_fill_finishes(ctx, other, _row("full", ("t1", "t2")), after=0.6)

        def run(jobs: list[ChunkJob]) -> None:
            runs.append([job.chunk for job in jobs])
            assert claims.held() >= {job.chunk for job in jobs}, "a fill downloads only chunks it holds"
            claims.release(job.chunk for job in jobs)

        shared = run_shared(ctx, claims, _jobs(), run)
        finisher.join()
    assert runs == [[A, C]] and shared.by_others == [B]
    assert 0 < shared.waited_seconds <= time.monotonic() - started and time.monotonic() - started >= 0.6, \
        "the fill returned only once the other fill had let go of the chunk"


def test_only_the_items_another_fill_left_out_are_downloaded(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    got: list[tuple[ChunkId, tuple[str, ...]]] = []
    with ChunkClaims(fill_claims(ctx).folder) as other, fill_claims(ctx) as claims:
        assert other.claim(B) is None
        finisher = _other_fill_finishes(ctx, other, _row("partial", ("t1",)), after=0.3)
        shared = run_shared(ctx, claims, _jobs(),
                            lambda jobs: got.extend((job.chunk, tuple(i.id for i in job.new_items)) for job in jobs))
        finisher.join()
    assert got == [(A, ("t1", "t2")), (C, ("t1", "t2")), (B, ("t2",))] and shared.by_others == []


def test_a_chunk_whose_other_fill_failed_before_recording_it_is_downloaded_whole(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    got: list[ChunkJob] = []
    with ChunkClaims(fill_claims(ctx).folder) as other, fill_claims(ctx) as claims:
        assert other.claim(B) is None
        finisher = _other_fill_finishes(ctx, other, None, after=0.3)
        run_shared(ctx, claims, _jobs(), got.extend)
        finisher.join()
    assert [job.chunk for job in got] == [A, C, B] and got[2] == _jobs()[1]


def test_a_fill_waits_no_longer_than_the_settings_allow(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx = _ctx(tmp_path, claim_wait_seconds=0.4)
    got: list[ChunkId] = []
    with ChunkClaims(fill_claims(ctx).folder) as other, fill_claims(ctx) as claims, caplog.at_level(logging.INFO):
        assert other.claim(B) is None  # held, and refreshed, all along
        started = time.monotonic()
        run_shared(ctx, claims, _jobs(), lambda jobs: got.extend(job.chunk for job in jobs))
        waited = time.monotonic() - started
        assert other.held() == {B}, "the other fill keeps its claim; this one downloaded the chunk without one"
    assert got == [A, C, B] and 0.4 <= waited < 3
    assert "is being downloaded by another fill" in caplog.text and "downloading it too" in caplog.text


def test_without_other_fills_every_chunk_runs_in_one_round(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    runs: list[list[ChunkId]] = []
    with fill_claims(ctx) as claims:
        shared = run_shared(ctx, claims, _jobs(), lambda jobs: runs.append([job.chunk for job in jobs]))
        assert claims.held() == {A, B, C}, "claims stay until their commits release them (or the fill ends)"
    assert runs == [[A, B, C]] and shared.by_others == [] and shared.waited_seconds == 0
    assert not (tmp_path / "arcticdem-32m").exists(), "the folders made for the claims are gone with them"


def test_a_cube_on_object_storage_keeps_its_claims_under_its_prefix(tmp_path: Path) -> None:
    ctx = FillContext(arcticdem(32), as_location("s3://bucket/cubes"), Settings(data_dir=tmp_path))
    claims = fill_claims(ctx)
    assert claims.enabled and str(claims.folder) == "s3://bucket/cubes/arcticdem-32m/claims"


def test_a_chunk_committed_by_another_fill_since_it_was_planned_is_not_downloaded(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    ctx.manifest().append([_row("full", ("t1", "t2"))])  # after this fill's discovery, before its claims
    runs: list[list[ChunkId]] = []
    with fill_claims(ctx) as claims:
        shared = run_shared(ctx, claims, _jobs(), lambda jobs: runs.append([job.chunk for job in jobs]))
        assert claims.held() == {A, C}, "the claim of the chunk found done is let go at once"
    assert runs == [[A, C]] and shared.by_others == [B]
