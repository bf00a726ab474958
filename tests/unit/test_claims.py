"""Chunk claims: exclusive, refreshed while held, released by their owner only, taken over once stale."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from darts_aux.claims import ChunkClaims, live_claims
from darts_aux.grid import ChunkId

CHUNK = ChunkId(3, 4)


def _claim_file(folder: Path, chunk: ChunkId = CHUNK) -> Path:
    return folder / f"{chunk}.claim"


def test_a_claimed_chunk_names_its_holder_to_another_fill_until_released(tmp_path: Path) -> None:
    with ChunkClaims(tmp_path) as first, ChunkClaims(tmp_path) as second:
        assert first.claim(CHUNK) is None and first.held() == {CHUNK}
        body = json.loads(_claim_file(tmp_path).read_text())
        assert body["owner"] == first.owner and body["pid"] == os.getpid()
        assert body["chunk"] == str(CHUNK) == "r0003c0004"

        holder = second.claim(CHUNK)
        assert holder is not None and holder.owner == first.owner and holder.host == socket.gethostname()
        assert second.held() == frozenset() and first.claim(CHUNK) is None, "a fill may claim its own chunk again"
        second.release([CHUNK])  # not its claim: left alone
        assert _claim_file(tmp_path).exists() and second.holder(CHUNK) is not None

        first.release([CHUNK])
        assert not _claim_file(tmp_path).exists() and first.held() == frozenset()
        assert second.claim(CHUNK) is None and second.held() == {CHUNK}
    assert list(tmp_path.iterdir()) == [], "leaving the context released every claim and left no temporary file"


def test_a_claim_not_refreshed_for_a_lease_is_taken_over(tmp_path: Path) -> None:
    with ChunkClaims(tmp_path, lease=30) as gone, ChunkClaims(tmp_path, lease=30) as taker:
        assert gone.claim(CHUNK) is None
        old = time.time() - 31
        os.utime(_claim_file(tmp_path), (old, old))
        assert taker.claim(CHUNK) is None
        assert json.loads(_claim_file(tmp_path).read_text())["owner"] == taker.owner
        gone.release([CHUNK])
        assert _claim_file(tmp_path).exists(), "the first owner's release must not remove the new owner's claim"


def test_a_claim_of_a_process_gone_from_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True)
    body = {"chunk": str(CHUNK), "owner": "killed-fill", "host": socket.gethostname(),
            "pid": int(finished.stdout), "since": "2026-01-01T00:00:00+00:00"}
    _claim_file(tmp_path).write_text(json.dumps(body))
    with ChunkClaims(tmp_path, lease=3600) as claims:
        assert claims.holder(CHUNK) is None and not _claim_file(tmp_path).exists()
        assert claims.claim(CHUNK) is None


def test_a_live_process_on_another_host_keeps_its_claim(tmp_path: Path) -> None:
    body = {"chunk": str(CHUNK), "owner": "elsewhere", "host": "another-node", "pid": 1, "since": "2026-01-01T00:00:00"}
    _claim_file(tmp_path).write_text(json.dumps(body))
    with ChunkClaims(tmp_path, lease=3600) as claims:
        holder = claims.claim(CHUNK)
        assert holder is not None and holder.host == "another-node" and "another-node" in holder.describe()


def test_the_heartbeat_keeps_a_held_claim_fresh(tmp_path: Path) -> None:
    with ChunkClaims(tmp_path, lease=2) as holder, ChunkClaims(tmp_path, lease=2) as other:
        assert holder.claim(CHUNK) is None
        old = time.time() - 1.9
        os.utime(_claim_file(tmp_path), (old, old))
        time.sleep(0.8)  # the heartbeat runs every lease / 4 = 0.5 s
        assert time.time() - _claim_file(tmp_path).stat().st_mtime < 0.7
        time.sleep(1.0)
        assert other.claim(CHUNK) is not None, "a claim refreshed by its heartbeat never goes stale"


def test_a_claim_file_that_is_not_a_claim_counts_as_held_until_it_is_old(tmp_path: Path) -> None:
    _claim_file(tmp_path).write_text("{half")
    with ChunkClaims(tmp_path, lease=30) as claims:
        holder = claims.claim(CHUNK)
        assert holder is not None and holder.host == "an unknown host"
        old = time.time() - 60
        os.utime(_claim_file(tmp_path), (old, old))
        assert claims.claim(CHUNK) is None and claims.held() == {CHUNK}


def test_without_a_folder_every_chunk_is_free(tmp_path: Path) -> None:
    with ChunkClaims(None) as claims:
        assert not claims.enabled and claims.claim(CHUNK) is None and claims.holder(CHUNK) is None
        claims.release([CHUNK])
        assert claims.held() == frozenset()


@pytest.mark.parametrize("racers", [5])
def test_racing_claims_leave_exactly_one_owner(tmp_path: Path, racers: int) -> None:
    script = (
        "import sys, time; from pathlib import Path; from darts_aux.claims import ChunkClaims, live_claims; "
        "from darts_aux.grid import ChunkId; time.sleep(max(0, float(sys.argv[2]) - time.time())); "
        "c = ChunkClaims(Path(sys.argv[1])); print('won' if c.claim(ChunkId(3, 4)) is None else 'lost', flush=True); "
        "time.sleep(2)"
    )
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(start)], stdout=subprocess.PIPE,
                              text=True) for _ in range(racers)]
    outcomes = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert outcomes.count("won") == 1 and outcomes.count("lost") == racers - 1, outcomes


def test_live_claims_lists_what_running_fills_download_and_removes_nothing(tmp_path: Path) -> None:
    with ChunkClaims(tmp_path, lease=30) as first, ChunkClaims(tmp_path, lease=30) as second:
        assert first.claim(ChunkId(1, 1)) is None and second.claim(ChunkId(1, 2)) is None
        assert first.claim(ChunkId(1, 3)) is None
        old = time.time() - 31
        os.utime(_claim_file(tmp_path, ChunkId(1, 3)), (old, old))  # stale
        body = {"chunk": "r0001c0004", "owner": "gone", "host": socket.gethostname(), "pid": 2**22 + 7, "since": "x"}
        _claim_file(tmp_path, ChunkId(1, 4)).write_text(json.dumps(body))  # its process is gone
        live = live_claims(tmp_path, lease=30)
        assert sorted((c.chunk, c.owner) for c in live) == [(ChunkId(1, 1), first.owner), (ChunkId(1, 2), second.owner)]
        assert len(list(tmp_path.glob("*.claim"))) == 4
    assert live_claims(tmp_path / "missing") == []


def test_folders_made_for_claims_go_with_them_unless_something_else_moved_in(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "arcticdem-32m" / "claims"
    with ChunkClaims(folder) as claims:
        assert claims.claim(CHUNK) is None and folder.is_dir()
    assert not (tmp_path / "data").exists(), "a fill that committed nothing leaves the data directory as it was"

    with ChunkClaims(folder) as claims:
        assert claims.claim(CHUNK) is None
        (folder.parent / "cube.json").write_text("{}")  # the fill (or another) created the cube meanwhile
    assert not folder.exists() and (folder.parent / "cube.json").exists()


class _ReleasedWhileRead:
    """A claim whose read breaks off with a bare OSError because its owner releases it meanwhile, as a GET of an
    S3 object deleted under it can: here a folder in the claim's place (reading it fails) removed by that read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reads = 0

    def stat(self) -> os.stat_result:
        return self.path.stat()

    def read_text(self) -> str:
        self.reads += 1
        try:
            return self.path.read_text()
        finally:
            self.path.rmdir()


def test_a_claim_released_while_it_is_read_is_free_not_an_error(tmp_path: Path) -> None:
    from darts_aux.claims import _text_and_time

    path = _claim_file(tmp_path)
    path.mkdir()
    claim = _ReleasedWhileRead(path)
    assert _text_and_time(claim) is None  # type: ignore[arg-type]
    assert claim.reads == 1 and not path.exists()


def test_a_claim_that_cannot_be_read_at_all_is_a_store_error(tmp_path: Path) -> None:
    from darts_aux.claims import _text_and_time
    from darts_aux.errors import StoreError

    path = _claim_file(tmp_path)
    path.mkdir()  # stays: every read fails
    with pytest.raises(StoreError, match="cannot read the chunk claim"):
        _text_and_time(path, tries=2)
