"""Getting PGC's real tile index: an unreachable registry or a wheel that is not the registry's fails loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from darts_aux.local._procs import free_port

from ._pgc_index import PDEMTOOLS_VERSION, WHEEL_NAME, IndexUnavailableError, check_sha256, download_wheel, real_index


def test_unreachable_registry_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No registry: an error naming the package, its version and pip's own last words, never a silent skip."""
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(IndexUnavailableError) as caught:
        download_wheel(tmp_path)
    message = str(caught.value)
    assert f"could not download pdemtools {PDEMTOOLS_VERSION} from the package registry" in message
    assert "pdemtools==1.2.5" in message  # pip's "No matching distribution found for …"
    assert not (tmp_path / WHEEL_NAME).exists()


def test_a_wheel_that_is_not_the_registrys_is_refused(pgc_index: Path, tmp_path: Path) -> None:
    """One byte changed in the cached wheel: its sha256 no longer matches the registry's and it is refused."""
    wheel = pgc_index.parents[1] / WHEEL_NAME
    tampered = tmp_path / WHEEL_NAME
    tampered.write_bytes(wheel.read_bytes() + b"\0")
    check_sha256(wheel)
    with pytest.raises(IndexUnavailableError, match="the registry lists"):
        check_sha256(tampered)


def test_index_is_extracted_once_and_reused(pgc_index: Path) -> None:
    """The cached GeoPackage is returned as is (no download); it is a GeoPackage (SQLite) file."""
    stamp = pgc_index.stat().st_mtime_ns
    assert real_index(pgc_index.parents[1]) == pgc_index
    assert pgc_index.stat().st_mtime_ns == stamp
    assert pgc_index.read_bytes()[:16] == b"SQLite format 3\0"
