"""Chunk claims: a fill announces the chunks it is downloading, so other fills of the cube wait instead of
downloading them again.

A claim is a small file `<cube>/claims/<chunk>.claim`, created exclusively (O_EXCL) by the fill that takes the
chunk, refreshed by a heartbeat while that fill runs and removed once the chunk's commit is done or has failed.
A claim not refreshed for `lease` seconds, or whose process is gone (same host), belongs to a fill that died and
is taken over. Claims only save work: where a fill cannot claim (a cube on object storage, a race, a wait that
ran out) it downloads anyway, and the commit's merge keeps the pixels right either way.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from .grid import ChunkId

log = logging.getLogger(__name__)
CLAIMS_DIR = "claims"
DEFAULT_LEASE_SECONDS = 60.0
SUFFIX = ".claim"


@dataclass(frozen=True)
class ClaimHolder:
    """Who holds a chunk's claim: the fill's token, its host and process, and since when (UTC, ISO 8601)."""

    chunk: ChunkId
    owner: str
    host: str
    pid: int
    since: str

    def describe(self) -> str:
        """'another fill (host h, pid 12, since 10:01:02 UTC)' for logs."""
        return f"another fill (host {self.host}, pid {self.pid}, since {self.since[11:19]} UTC)"


class ChunkClaims:
    """The claims one fill holds in one cube's claims folder (None: claims are off, every chunk is free).

    Use as a context manager: while open, a heartbeat thread refreshes the held claims every lease / 4 seconds;
    on exit every claim still held is released.
    """

    def __init__(self, folder: Path | None, lease: float = DEFAULT_LEASE_SECONDS) -> None:
        self.folder = folder
        self.lease = lease
        self.owner = uuid.uuid4().hex
        self._held: set[ChunkId] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def claim(self, chunk: ChunkId) -> ClaimHolder | None:
        """Take the chunk's claim: None when it is ours now (or claims are off), else the live fill holding it."""
        if self.folder is None:
            return None
        for _ in range(3):  # free → create; stale → remove and create again; a racing fill may win either
            if self._create(chunk):
                return None
            holder = self.holder(chunk)
            if holder is not None:
                return holder
        log.warning("chunk %s: its claim keeps changing hands; downloading it without one", chunk)
        return None

    def holder(self, chunk: ChunkId) -> ClaimHolder | None:
        """The live fill (other than this one) holding the chunk's claim; None when free, ours, or stale (removed)."""
        if self.folder is None:
            return None
        path = self._path(chunk)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        try:
            holder = _parse(chunk, path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:  # not a claim darts-aux wrote: stale once it is old
            log.debug("chunk %s: unreadable claim (%s)", chunk, error)
            holder = ClaimHolder(chunk, "", "an unknown host", 0, datetime.fromtimestamp(
                stat.st_mtime, timezone.utc).isoformat(timespec="seconds"))
        if holder.owner == self.owner:
            return None
        if time.time() - stat.st_mtime > self.lease or _dead_here(holder):
            what = holder.describe()
            log.warning("chunk %s: the claim of %s is stale (not refreshed for %.0f s or its process is gone); "
                        "taking the chunk over", chunk, what, time.time() - stat.st_mtime)
            path.unlink(missing_ok=True)
            return None
        return holder

    def release(self, chunks: Iterable[ChunkId]) -> None:
        """Give up the claims of these chunks (their commit is done or failed); others' claims are left alone."""
        if self.folder is None:
            return
        for chunk in chunks:
            with self._guard:
                if chunk not in self._held:
                    continue
                self._held.discard(chunk)
            path = self._path(chunk)
            try:
                if _parse(chunk, path.read_text()).owner == self.owner:
                    path.unlink(missing_ok=True)
            except (OSError, ValueError):
                continue  # gone, or taken over by another fill after a stale period: not ours to remove

    def held(self) -> frozenset[ChunkId]:
        """The chunks this fill holds claims on."""
        with self._guard:
            return frozenset(self._held)

    def __enter__(self) -> ChunkClaims:
        if self.folder is not None:
            self._heartbeat = threading.Thread(target=self._beat, name="claim-heartbeat", daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        self.release(self.held())

    def _create(self, chunk: ChunkId) -> bool:
        """Put the chunk's claim file in place whole (written aside, then hard-linked: never over another's)."""
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"chunk": str(chunk), "owner": self.owner, "host": socket.gethostname(),
                           "pid": os.getpid(), "since": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        aside = self.folder / f".{chunk}.{self.owner}.tmp"
        aside.write_text(body)
        try:
            os.link(aside, self._path(chunk))
        except FileExistsError:
            return False
        finally:
            aside.unlink(missing_ok=True)
        with self._guard:
            self._held.add(chunk)
        return True

    def _beat(self) -> None:
        """Refresh every held claim until the fill ends (a claim removed meanwhile is simply not refreshed)."""
        while not self._stop.wait(self.lease / 4):
            for chunk in self.held():
                try:
                    os.utime(self._path(chunk))
                except OSError:
                    continue

    def _path(self, chunk: ChunkId) -> Path:
        assert self.folder is not None
        return self.folder / f"{chunk}{SUFFIX}"


def _parse(chunk: ChunkId, text: str) -> ClaimHolder:
    """A claim file's holder; ValueError when the file is not a whole claim."""
    try:
        data = json.loads(text)
        return ClaimHolder(chunk, str(data["owner"]), str(data["host"]), int(data["pid"]), str(data["since"]))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"not a claim: {text[:80]!r}") from error


def _dead_here(holder: ClaimHolder) -> bool:
    """True when the holder ran on this host and its process no longer exists."""
    if holder.host != socket.gethostname():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
