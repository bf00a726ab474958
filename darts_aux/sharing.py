"""Fills sharing a cube: each chunk is downloaded by one fill while the others wait for it.

A fill claims the chunks it is about to download (`claims.ChunkClaims`), drops those another fill committed since
they were planned, downloads and commits the rest, then waits for the chunks other fills hold. When such a claim
goes (committed, failed, or its fill died), the chunk's manifest row says what the other fill applied; only the
items still missing are downloaded, and a chunk the other fill completed costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .claims import CLAIMS_DIR, ChunkClaims, ClaimHolder
from .grid import ChunkId
from .wording import plural

if TYPE_CHECKING:
    from .fill import ChunkJob, FillContext

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25
"""How often a waiting fill looks at the claims it waits for."""
PROGRESS_SECONDS = 15.0
"""How often a waiting fill logs what it is waiting for."""


@dataclass
class SharedFill:
    """What sharing did in one fill: the chunks other fills completed while this one waited, and for how long."""

    by_others: list[ChunkId] = field(default_factory=list)
    waited_seconds: float = 0.0


@dataclass(frozen=True)
class _Waiting:
    job: ChunkJob
    holder: ClaimHolder
    since: float


def fill_claims(ctx: FillContext) -> ChunkClaims:
    """The claims of one fill of `ctx`'s cube, in its `claims` folder (or prefix, on object storage)."""
    return ChunkClaims(ctx.paths.root / CLAIMS_DIR, ctx.settings.claim_lease_seconds)


def run_shared(ctx: FillContext, claims: ChunkClaims, jobs: Sequence[ChunkJob],
               run: Callable[[list[ChunkJob]], None]) -> SharedFill:
    """`run` the jobs whose chunks this fill could claim; wait for the others' and `run` what they left, in rounds.

    `run` must release each chunk's claim once its commit is done or failed (or leave it to the claims' exit).
    """
    shared = SharedFill()
    waiting: dict[ChunkId, _Waiting] = {}
    pending: list[ChunkJob] = list(jobs)
    forced: set[ChunkId] = set()
    while pending or waiting:
        mine = [job for job in pending if job.chunk in forced or not _wait_for(claims, job, waiting)]
        if mine and claims.enabled:  # another fill may have committed some since they were planned
            mine, done = _what_is_left(ctx, mine)
            claims.release(done)
            shared.by_others.extend(done)
        if mine:
            run(mine)
        if not waiting:
            break
        started = time.monotonic()
        free, late = _until_some_free(ctx, claims, waiting)
        shared.waited_seconds += time.monotonic() - started
        forced |= late
        pending, done = _what_is_left(ctx, [waiting.pop(chunk).job for chunk in free | late])
        shared.by_others.extend(done)
    return shared


def _wait_for(claims: ChunkClaims, job: ChunkJob, waiting: dict[ChunkId, _Waiting]) -> bool:
    """Claim the job's chunk; True (and noted in `waiting`) when another live fill holds it."""
    holder = claims.claim(job.chunk)
    if holder is None:
        return False
    earlier = waiting.get(job.chunk)
    waiting[job.chunk] = _Waiting(job, holder, earlier.since if earlier else time.monotonic())
    if earlier is None:
        log.info("chunk %s is being downloaded by %s; this fill waits for it", job.chunk, holder.describe())
    return True


def _until_some_free(ctx: FillContext, claims: ChunkClaims, waiting: dict[ChunkId, _Waiting]
                     ) -> tuple[set[ChunkId], set[ChunkId]]:
    """Block until some awaited claims are gone (free) or were awaited longer than the settings allow (late)."""
    limit = ctx.settings.claim_wait_seconds
    logged = time.monotonic()
    while True:
        now = time.monotonic()
        free = {chunk for chunk in waiting if claims.holder(chunk) is None}
        late = {chunk for chunk, w in waiting.items() if chunk not in free and now - w.since >= limit}
        for chunk in sorted(late, key=str):
            log.warning("chunk %s: waited %.0f s for %s (DARTS_AUX_CLAIM_WAIT_SECONDS); downloading it too",
                        chunk, now - waiting[chunk].since, waiting[chunk].holder.describe())
        if free or late:
            return free, late
        if now - logged >= PROGRESS_SECONDS:
            logged = now
            oldest = min(w.since for w in waiting.values())
            log.info("waiting for %s other fills are downloading (%s; longest %.0f s)", plural(len(waiting), "chunk"),
                     ", ".join(str(chunk) for chunk in list(waiting)[:5]), now - oldest)
        time.sleep(POLL_SECONDS)


def _what_is_left(ctx: FillContext, jobs: Sequence[ChunkJob]) -> tuple[list[ChunkJob], list[ChunkId]]:
    """After another fill let go of these chunks: the jobs with the items it did not apply, and the chunks it did."""
    if not jobs:
        return [], []
    latest = ctx.manifest().latest(ctx.grid.covering([job.chunk for job in jobs]))
    left, done = [], []
    for job in jobs:
        row = latest.get(job.chunk)
        applied = set(row.items_applied) if row else set()
        new = tuple(item for item in job.new_items if item.id not in applied)
        if row is not None and (row.status == "full" or not new):
            log.info("chunk %s was filled by another fill meanwhile (%s); nothing to download", job.chunk, row.status)
            done.append(job.chunk)
        else:
            left.append(replace(job, new_items=new) if row is not None else job)
    return left, done
