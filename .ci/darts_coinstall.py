"""Can darts-aux be installed where DARTS lives? Resolve it together with darts-nextgen's pins, against PyPI.

darts-nextgen pins Python 3.13 and its own ranges of dask, zarr, xarray and friends; a darts-aux whose bounds
exclude theirs cannot be added to a DARTS environment. This resolves `darts-aux @ file://<this checkout>` plus
the pins in .ci/darts_nextgen_pins.txt with `uv pip compile` for Python 3.13 on x86_64 manylinux, wheels only
(what a DARTS machine would install, nothing built from source), and fails when no such set exists.

    python .ci/darts_coinstall.py resolve [--python PATH] [--pins FILE] [--output FILE]
    python .ci/darts_coinstall.py shared RESOLVED VENV_PYTHON    # the resolved pins of packages VENV has

`shared` prints, as requirements, the resolved version of every package installed in a venv: installing them
turns darts-aux's own environment into the one it would have inside DARTS, for running its tests there.
Stdlib only; needs `uv` on PATH.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PINS = Path(__file__).with_name("darts_nextgen_pins.txt")
PYTHON_VERSION = "3.13"
PLATFORM = "x86_64-manylinux_2_28"
REPORTED = ("dask", "distributed", "zarr", "xarray", "numpy", "smart-geocubes", "icechunk", "rasterio", "odc-geo")
"""The packages whose resolved versions the check prints (darts-aux's own comes first)."""

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def canonical(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503): lower case, runs of `-_.` as one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pins: Path) -> str:
    """darts-aux from this checkout, then DARTS's pins (comments and blank lines dropped)."""
    lines = [line.strip() for line in pins.read_text().splitlines()]
    kept = [line for line in lines if line and not line.startswith("#")]
    return "\n".join([f"darts-aux @ {REPO.as_uri()}", *kept]) + "\n"


def compile_command(requirements_file: Path, python: str | None) -> list[str]:
    """`uv pip compile` for DARTS's platform; darts-aux's metadata re-read from this checkout every time."""
    command = ["uv", "pip", "compile", str(requirements_file), "--python-version", PYTHON_VERSION,
               "--python-platform", PLATFORM, "--only-binary", ":all:", "--refresh-package", "darts-aux",
               "--no-header", "--no-annotate", "--quiet"]
    return command + (["--python", python] if python else [])


def resolve(pins: Path, python: str | None) -> subprocess.CompletedProcess[str]:
    """Run the resolution; its stdout is the resolved set, one `name==version` a line."""
    with tempfile.TemporaryDirectory(prefix="darts-coinstall-") as tmp:
        requirements_file = Path(tmp) / "requirements.in"
        requirements_file.write_text(requirements(pins))
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        return subprocess.run(compile_command(requirements_file, python), capture_output=True, text=True, env=env)


def resolved_versions(compiled: str) -> dict[str, str]:
    """{canonical name: version} of the `name==version` lines of a compiled requirements text."""
    found = (_PIN.match(line) for line in compiled.splitlines())
    return {canonical(m.group(1)): m.group(2) for m in found if m}


def own_version() -> str:
    """darts-aux's version as this checkout declares it."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def report(compiled: str) -> list[str]:
    """One line per reported package, e.g. `resolved dask==2025.2.0`; raises when darts-aux is not in the set."""
    if not any(line.startswith("darts-aux @ ") for line in compiled.splitlines()):
        raise SystemExit("darts co-install: FAILED: the resolved set does not contain darts-aux")
    versions = resolved_versions(compiled)
    lines = [f"resolved darts-aux=={own_version()} (this checkout)"]
    return lines + [f"resolved {name}=={versions.get(name, 'absent')}" for name in REPORTED]


def run_resolve(args: argparse.Namespace) -> int:
    """The `resolve` command: print what resolved, or why nothing did; non-zero exit on failure."""
    done = resolve(args.pins, args.python)
    if done.returncode != 0:
        print(done.stderr.strip(), file=sys.stderr)
        print(f"darts co-install: FAILED: darts-aux cannot be installed with darts-nextgen's pins on Python "
              f"{PYTHON_VERSION} ({args.pins.name}); see the resolver's reason above")
        return 1
    if args.output:
        args.output.write_text(done.stdout)
    for line in report(done.stdout):
        print(line)
    count = len(resolved_versions(done.stdout)) + 1
    print(f"darts co-install: ok, {count} packages resolve together on Python {PYTHON_VERSION} ({PLATFORM})")
    return 0


def installed_names(venv_python: str) -> set[str]:
    """Canonical names of the distributions installed in the environment of that interpreter."""
    done = subprocess.run(["uv", "pip", "freeze", "--python", venv_python], capture_output=True, text=True,
                          check=True)
    return {canonical(re.split(r"[=@ ]", line, maxsplit=1)[0]) for line in done.stdout.splitlines() if line}


def run_shared(args: argparse.Namespace) -> int:
    """The `shared` command: the resolved pins of the packages the venv has (darts-aux itself left out)."""
    have = installed_names(args.venv_python) - {"darts-aux"}
    versions = resolved_versions(args.resolved.read_text())
    for name in sorted(have & versions.keys()):
        print(f"{name}=={versions[name]}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line: `resolve` and `shared`."""
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    res = commands.add_parser("resolve", help="resolve darts-aux with darts-nextgen's pins; fail if impossible")
    res.add_argument("--python", help="a Python 3.13 interpreter for uv to use (optional)")
    res.add_argument("--pins", type=Path, default=PINS, help="darts-nextgen's pins (default: %(default)s)")
    res.add_argument("--output", type=Path, help="write the resolved set here, one `name==version` a line")
    res.set_defaults(run=run_resolve)
    shared = commands.add_parser("shared", help="resolved pins of the packages a venv has, as requirements")
    shared.add_argument("resolved", type=Path, help="the file `resolve --output` wrote")
    shared.add_argument("venv_python", help="the interpreter of the venv to align")
    shared.set_defaults(run=run_shared)
    return top


def main() -> int:
    """Parse the command line and run the command."""
    args = parser().parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
