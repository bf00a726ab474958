"""Does uv.lock install from wheels on every supported Python? One check per compiled package and Python version.

A package locked without a wheel for some CPython would be built from source on that Python (or fail to), which
is what breaks an install where DARTS lives (Python 3.13). For each locked package that has no pure-Python wheel,
this looks for an x86_64 manylinux wheel that CPython 3.11, 3.12 and 3.13 can install: its own `cpXY` tag, a
stable-ABI (`abi3`) wheel built for an older one, or a `py3-none` wheel that uses no Python ABI at all.
Windows-only packages (pywin32 and the like) are skipped.

    python .ci/lock_wheels.py [uv.lock]
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

SUPPORTED = ((3, 11), (3, 12), (3, 13))
WINDOWS_ONLY = ("win32", "win_amd64", "win_arm64")


def wheel_tags(filename: str) -> tuple[set[str], set[str], set[str]]:
    """The (python, abi, platform) tag sets of a wheel file name (compressed sets such as `cp311.cp312` split)."""
    python, abi, platform = filename.removesuffix(".whl").split("-")[-3:]
    return set(python.split(".")), set(abi.split(".")), set(platform.split("."))


def linux_x86_64(platforms: set[str]) -> bool:
    """Whether a glibc x86_64 machine installs the wheel (manylinux; musllinux does not count)."""
    return any(p.startswith("manylinux") and p.endswith("x86_64") for p in platforms)


def installs_on(filename: str, version: tuple[int, int]) -> bool:
    """Whether CPython `version` on x86_64 manylinux installs this wheel."""
    pythons, abis, platforms = wheel_tags(filename)
    if "any" in platforms:
        return True
    if not linux_x86_64(platforms):
        return False
    own = f"cp{version[0]}{version[1]}"
    if own in pythons and own in abis:
        return True
    if "py3" in pythons and "none" in abis:  # a binary that loads no Python ABI (ruff's, watchdog's): any CPython 3
        return True
    stable = [p for p in pythons if p.startswith("cp3") and "abi3" in abis]
    return any(int(p[3:]) <= version[1] for p in stable)


def windows_only(filenames: list[str]) -> bool:
    """Whether every wheel of a package is for Windows (a dependency only Windows installs)."""
    return all(wheel_tags(f)[2] <= set(WINDOWS_ONLY) for f in filenames)


def missing(lock: dict) -> list[str]:
    """`name version: no wheel for Python X.Y` for each locked package and supported Python without one."""
    gaps = []
    for package in lock["package"]:
        filenames = [w["url"].rsplit("/", 1)[-1] for w in package.get("wheels", [])]
        if "registry" not in package.get("source", {}) or (filenames and windows_only(filenames)):
            continue  # the project itself, or a Windows-only package
        for version in SUPPORTED:
            if not any(installs_on(f, version) for f in filenames):
                gaps.append(f"{package['name']} {package['version']}: no wheel for Python {version[0]}.{version[1]}")
    return gaps


def main() -> int:
    """Check the lock; print each gap and fail, or one line saying how many packages were checked."""
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "uv.lock")
    lock = tomllib.loads(path.read_text())
    gaps = missing(lock)
    for gap in gaps:
        print(f"lock wheels: {gap}")
    versions = ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED)
    if gaps:
        print(f"lock wheels: FAILED: {len(gaps)} gaps in {path.name}")
        return 1
    print(f"lock wheels: ok, every package locked from PyPI installs from a wheel on "
          f"Python {versions} (x86_64 manylinux)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
