"""PGC's real ArcticDEM v4.1 mosaic tile index, taken from the `pdemtools` wheel on the package registry.

pdemtools ships PGC's index as a GeoPackage inside its wheel. The wheel is downloaded once, without its
dependencies, by pip (the project's environment has none, so uv runs one), checked against the sha256 the
registry publishes for it, and the index is extracted into the repository's git-ignored `.cache/`. The version
is pinned: the file is test data, and a new release may carry a newer index.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

PDEMTOOLS_VERSION = "1.2.5"
WHEEL_NAME = f"pdemtools-{PDEMTOOLS_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "3ab16fd7055c193a85131d708189fc2ea23ceea7b0db05ed9addb5c28625e68d"
"""The wheel's sha256 as the registry's simple index lists it for pdemtools 1.2.5."""
INDEX_MEMBER = "pdemtools/mosaic_index/ArcticDEM_Mosaic_Index_v4_1_gpkg.gpkg"
DOWNLOAD_TIMEOUT = 300.0


class IndexUnavailableError(RuntimeError):
    """The real index could not be obtained; the message says why and what was tried."""


def real_index(cache_dir: Path) -> Path:
    """The GeoPackage of PGC's v4.1 mosaic tiles under `cache_dir`, downloaded and extracted on first use."""
    target = cache_dir / f"pdemtools-{PDEMTOOLS_VERSION}" / Path(INDEX_MEMBER).name
    if target.exists():
        return target
    wheel = cache_dir / WHEEL_NAME
    if not wheel.exists() or sha256_of(wheel) != WHEEL_SHA256:
        download_wheel(cache_dir)
    check_sha256(wheel)
    return extract_member(wheel, INDEX_MEMBER, target)


PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
                   "NO_PROXY")
_PROXIES_AT_START = {name: os.environ.get(name) for name in PROXY_VARIABLES}
"""The machine's own proxy settings, read when the tests are collected: the local Earth Engine fixture later points
https_proxy at itself (to catch the client's stray fetches), which must not reach the registry download."""


def registry_environment() -> dict[str, str]:
    """This process's environment with the machine's own proxy settings, for the download subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update({k: v for k, v in _PROXIES_AT_START.items() if v is not None})
    return env


def download_wheel(dest: Path) -> Path:
    """Download the pinned pdemtools wheel into `dest` with pip (no dependencies, hash required)."""
    dest.mkdir(parents=True, exist_ok=True)
    requirements = dest / "pdemtools-requirements.txt"
    requirements.write_text(f"pdemtools=={PDEMTOOLS_VERSION} --hash=sha256:{WHEEL_SHA256}\n", encoding="utf-8")
    cmd = [*pip_command(), "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "-r", str(requirements), "-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT, check=False,
                              env=registry_environment())
    except subprocess.TimeoutExpired as exc:
        raise IndexUnavailableError(
            f"pip download of pdemtools {PDEMTOOLS_VERSION} took over {exc.timeout:.0f} s") from exc
    wheel = dest / WHEEL_NAME
    if done.returncode != 0 or not wheel.exists():
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise IndexUnavailableError(
            f"could not download pdemtools {PDEMTOOLS_VERSION} from the package registry with "
            f"`{shlex.join(cmd)}` (exit {done.returncode}): {tail}")
    return wheel


def pip_command() -> list[str]:
    """pip of this interpreter when installed, else pip run by uv (`uv tool run`), which a clean machine has."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        raise IndexUnavailableError("neither pip nor uv is available to download pdemtools from the package registry")
    return [uv, "tool", "run", "--from", "pip", "pip"]


def check_sha256(wheel: Path) -> None:
    """Refuse a wheel whose sha256 is not the registry's."""
    digest = sha256_of(wheel)
    if digest != WHEEL_SHA256:
        raise IndexUnavailableError(f"{wheel} has sha256 {digest}, the registry lists {WHEEL_SHA256}")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_member(wheel: Path, member: str, target: Path) -> Path:
    """Extract one file of the wheel to `target` (written beside it, then renamed, so readers never see half)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
    partial.replace(target)
    return target
