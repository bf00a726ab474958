"""Chunk claims: a fill announces the chunks it is downloading, so other fills of the cube wait instead of
downloading them again.

A claim is a small file `<cube>/claims/<chunk>.claim`, created exclusively by the fill that takes the chunk (a
hard link on a local disk, a PUT with `If-None-Match: *` on object storage), refreshed by a heartbeat while that
fill runs and removed once the chunk's commit is done or has failed. A claim not refreshed for `lease` seconds,
or whose process is gone (same host), belongs to a fill that died and is taken over. Claims only save work: where
a fill cannot claim (a race, a wait that ran out) it downloads anyway, and the commit's merge keeps the pixels
right either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol

from .errors import StoreError
from .grid import ChunkId
from .location import DataLocation, S3Location

log = logging.getLogger(__name__)
CLAIMS_DIR = "claims"
DEFAULT_LEASE_SECONDS = 60.0
SUFFIX = ".claim"
CLAIM_READ_TRIES = 4
CLAIM_READ_PAUSE_SECONDS = 0.05
"""A claim's read is tried this often, pausing this long times the attempt between tries (see _text_and_time)."""


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


class ClaimFiles(Protocol):
    """The four things claims need of a folder: exclusive create, read with its age, refresh, remove."""

    def create(self, name: str, body: str) -> bool:
        """Put the file in place whole unless one has this name; False when one has."""

    def read(self, name: str) -> tuple[str, float] | None:
        """The file's text and last-modified time (epoch seconds); None when there is none."""

    def touch(self, name: str, body: str) -> None:
        """Mark the file as modified now."""

    def remove(self, name: str) -> None:
        """Delete the file (gone already: fine)."""

    def names(self) -> list[str]:
        """The claim files present."""

    def tidy(self) -> None:
        """Remove what creating claims left behind once no claim is left (empty folders)."""


class LocalClaimFiles:
    """Claims in a local (or network-mounted) folder: written aside, then hard-linked (never over another's).

    The folders it had to create are removed again by `tidy` once empty, so a fill that wrote nothing else (a source
    rejected before any commit) leaves the data directory as it found it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._made: list[Path] = []

    def create(self, name: str, body: str) -> bool:
        for _ in range(3):  # another fill may remove the emptied folder between our mkdir and our write
            self._make_folder()
            aside = self.folder / f".{name}.{uuid.uuid4().hex}.tmp"
            try:
                aside.write_text(body)
            except FileNotFoundError:
                continue
            try:
                os.link(aside, self.folder / name)
            except FileExistsError:
                return False
            finally:
                aside.unlink(missing_ok=True)
            return True
        raise FileNotFoundError(f"could not create {self.folder}")

    def tidy(self) -> None:
        for made in reversed(self._made):  # deepest first; a folder that is not empty (a cube, others' claims) stays
            try:
                made.rmdir()
            except OSError:
                break
        self._made.clear()

    def _make_folder(self) -> None:
        missing = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._made.extend(p for p in reversed(missing) if p not in self._made)

    def read(self, name: str) -> tuple[str, float] | None:
        return _text_and_time(self.folder / name)

    def touch(self, name: str, body: str) -> None:
        os.utime(self.folder / name)

    def remove(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        return sorted(path.name for path in self.folder.glob(f"*{SUFFIX}")) if self.folder.is_dir() else []


@dataclass(frozen=True)
class S3ClaimFiles:
    """Claims under an S3 prefix: a conditional PUT creates, a PUT refreshes (the object's time is the server's)."""

    folder: S3Location

    def create(self, name: str, body: str) -> bool:
        return (self.folder / name).create_exclusive(body.encode())

    def read(self, name: str) -> tuple[str, float] | None:
        return _text_and_time(self.folder / name)

    def touch(self, name: str, body: str) -> None:
        # only while the object is still our claim: a single-part PUT's ETag is the MD5 of its bytes
        (self.folder / name).overwrite_if_unchanged(body.encode(), hashlib.md5(body.encode()).hexdigest())

    def remove(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        return sorted(path.name for path in self.folder.glob(f"*{SUFFIX}"))

    def tidy(self) -> None:
        return  # a prefix is no object: nothing is left once the claims are deleted


def _text_and_time(path: DataLocation, tries: int = CLAIM_READ_TRIES) -> tuple[str, float] | None:
    """A file's (or object's) text and last-modified time; None when it is gone.

    A claim released while it is read can break the read off on object storage (a bare OSError, not "not
    found"), so a failed read is tried again: by then the claim is usually gone. StoreError if it keeps failing.
    """
    for attempt in range(1, tries + 1):
        try:
            modified = path.stat().st_mtime
            return path.read_text(), modified
        except FileNotFoundError:
            return None
        except OSError as error:
            if attempt == tries:
                raise StoreError(f"cannot read the chunk claim {path} ({error}); "
                                 "check the data_dir's storage") from error
            log.debug("reading the claim %s failed (%s); trying again", path, error)
            time.sleep(CLAIM_READ_PAUSE_SECONDS * attempt)
    return None


def claim_files(folder: DataLocation) -> ClaimFiles:
    """The claim files of a local folder or an S3 prefix."""
    return S3ClaimFiles(folder) if isinstance(folder, S3Location) else LocalClaimFiles(folder)


class ChunkClaims:
    """The claims one fill holds in one cube's claims folder (None: claims are off, every chunk is free).

    Use as a context manager: while open, a heartbeat thread refreshes the held claims every lease / 4 seconds;
    on exit every claim still held is released.
    """

    def __init__(self, folder: DataLocation | None, lease: float = DEFAULT_LEASE_SECONDS) -> None:
        self.folder = folder
        self.files = claim_files(folder) if folder is not None else None
        self.lease = lease
        self.owner = uuid.uuid4().hex
        self._held: dict[ChunkId, str] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.files is not None

    def claim(self, chunk: ChunkId) -> ClaimHolder | None:
        """Take the chunk's claim: None when it is ours now (or claims are off), else the live fill holding it."""
        if self.files is None:
            return None
        for _ in range(3):  # free → create; stale → remove and create again; a racing fill may win either
            body = self._body(chunk)
            if self.files.create(_name(chunk), body):
                with self._guard:
                    self._held[chunk] = body
                return None
            holder = self.holder(chunk)
            if holder is not None:
                return holder
        log.warning("chunk %s: its claim keeps changing hands; downloading it without one", chunk)
        return None

    def holder(self, chunk: ChunkId) -> ClaimHolder | None:
        """The live fill (other than this one) holding the chunk's claim; None when free, ours, or stale (removed)."""
        if self.files is None:
            return None
        found = self.files.read(_name(chunk))
        if found is None:
            return None
        text, modified = found
        try:
            holder = _parse(chunk, text)
        except ValueError as error:  # not a claim darts-aux wrote: stale once it is old
            log.debug("chunk %s: unreadable claim (%s)", chunk, error)
            since = datetime.fromtimestamp(modified, UTC).isoformat(timespec="seconds")
            holder = ClaimHolder(chunk, "", "an unknown host", 0, since)
        if holder.owner == self.owner:
            return None
        age = time.time() - modified
        if age > self.lease or _dead_here(holder):
            log.warning("chunk %s: the claim of %s is stale (not refreshed for %.0f s or its process is gone); "
                        "taking the chunk over", chunk, holder.describe(), age)
            self.files.remove(_name(chunk))
            return None
        return holder

    def release(self, chunks: Iterable[ChunkId]) -> None:
        """Give up the claims of these chunks (their commit is done or failed); others' claims are left alone."""
        if self.files is None:
            return
        for chunk in chunks:
            with self._guard:
                if self._held.pop(chunk, None) is None:
                    continue
            found = self.files.read(_name(chunk))
            try:
                if found is not None and _parse(chunk, found[0]).owner == self.owner:
                    self.files.remove(_name(chunk))
            except (OSError, ValueError):
                continue  # taken over by another fill after a stale period: not ours to remove

    def held(self) -> frozenset[ChunkId]:
        """The chunks this fill holds claims on."""
        with self._guard:
            return frozenset(self._held)

    def __enter__(self) -> ChunkClaims:
        if self.files is not None:
            self._heartbeat = threading.Thread(target=self._beat, name="claim-heartbeat", daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        self.release(self.held())
        if self.files is not None:
            self.files.tidy()

    def _body(self, chunk: ChunkId) -> str:
        return json.dumps({"chunk": str(chunk), "owner": self.owner, "host": socket.gethostname(),
                           "pid": os.getpid(), "since": datetime.now(UTC).isoformat(timespec="seconds")})

    def _beat(self) -> None:
        """Refresh every held claim until the fill ends (a claim removed meanwhile is simply not refreshed)."""
        files = self.files
        if files is None:  # claims are off: none is ever held
            return
        while not self._stop.wait(self.lease / 4):
            with self._guard:
                held = dict(self._held)
            for chunk, body in held.items():
                try:
                    files.touch(_name(chunk), body)
                except OSError as error:
                    log.debug("chunk %s: claim not refreshed (%s)", chunk, error)


def live_claims(folder: DataLocation, lease: float = DEFAULT_LEASE_SECONDS) -> list[ClaimHolder]:
    """The claims in a folder held by running fills (stale ones are skipped, not removed): what is downloading now."""
    files, live = claim_files(folder), []
    for name in files.names():
        found = files.read(name)
        if found is None or time.time() - found[1] > lease:
            continue
        try:
            holder = _parse(ChunkId.parse(name.removesuffix(SUFFIX)), found[0])
        except ValueError:
            continue
        if not _dead_here(holder):
            live.append(holder)
    return live


def _name(chunk: ChunkId) -> str:
    return f"{chunk}{SUFFIX}"


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
