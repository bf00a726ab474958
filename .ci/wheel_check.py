"""Does the wheel install lean and work? Build it, install it alone into a fresh venv, and use it there.

    python .ci/wheel_check.py --python PYTHON_3_13 --project-python .venv-py313/bin/python [--keep DIR]

1. `uv build --wheel`; the wheel holds `darts_aux` and nothing else at the top level (no generic `flows`).
2. A fresh venv on `--python`, the wheel installed without extras or dependency groups.
3. No server-only or test-only package got in: none of SERVER_AND_TEST_ONLY, and every other package an extra or a
   dependency group names only if a runtime package requires it too (Prefect's server requires starlette and
   uvicorn); `flows` is not importable there, `darts_aux.flows` is.
4. The local catalog runs from the project's own environment (`--project-python -m darts_aux.local`).
5. In the venv, `load_arcticdem` of a 32 m region in-process (DARTS_AUX_ORCHESTRATOR=inline): its pixels equal
   the catalog's formula (darts_aux.local.expected_pixels, computed in the project's environment).
6. In the venv, the `fill-arcticdem` deployment's flow (loaded from its entrypoint) runs as a Prefect flow on
   Prefect's ephemeral server: completed, every chunk fetched and full, the pixels right again, its summary
   artifact without a coverage map (no matplotlib) and no quicklook written.
7. In the venv, doors that need an extra say which one in one line: `status --map`, `load --out x.nc`,
   `python -m darts_aux.local`.

Prints one line per step and a last line with the time; exits 1 on the first failure. Stdlib only; needs `uv`.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATALOG_ROOT = REPO / ".cache" / "local-catalog"  # the tests' catalog: built once, reused
LOAD_BOUNDS = (600_000.0, 3_150_000.0, 620_000.0, 3_170_000.0)
"""EPSG:3413, 625 × 625 px at 32 m; inside the default local catalog, with its holes and nodata."""
FLOW_BOUNDS = (650_000.0, 3_150_000.0, 690_000.0, 3_190_000.0)
"""EPSG:3413, another region for the flow run, so that it fetches chunks of its own."""
SERVER_AND_TEST_ONLY = ("rustac", "moto", "pytest", "pytest-timeout", "matplotlib", "h5netcdf", "h5py",
                        "prefect-dask", "distributed", "odc-stac")
"""Never in a plain install: the local catalog's STAC server, the tests' S3 server and runner, the extras' and
the benchmarks' packages."""
CATALOG_START_SECONDS = 600  # a first run builds the catalog's 48 tiles: minutes on 2 busy cores
PREFECT_ENV = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "DO_NOT_TRACK": "1", "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore"}


class CheckError(Exception):
    """One check failed; the message says which and why."""


def say(line: str) -> None:
    """One progress line, at once."""
    print(f"wheel check: {line}", flush=True)


def canonical(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """`matplotlib>=3.9; extra == 'viz'` -> `matplotlib`."""
    return canonical(re.split(r"[\s\[<>=!~;(@]", requirement.strip(), maxsplit=1)[0])


def run(command: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; the caller reads the exit code."""
    return subprocess.run(command, capture_output=True, text=True, env=None if env is None else dict(env), cwd=cwd,
                          timeout=timeout, check=False)


def must(done: subprocess.CompletedProcess[str], what: str) -> str:
    """The command's stdout, or CheckError with the end of its output."""
    if done.returncode != 0:
        raise CheckError(f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


# -- 1. the wheel ------------------------------------------------------------------------------------


def build_wheel(out: Path) -> Path:
    """`uv build --wheel` of this checkout into `out`; the one wheel it wrote."""
    must(run(["uv", "build", "--wheel", "--out-dir", str(out), "--quiet"], cwd=REPO), "uv build --wheel")
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise CheckError(f"uv build wrote {len(wheels)} wheels into {out}")
    return wheels[0]


def check_top_level(wheel: Path) -> None:
    """The wheel installs `darts_aux` (and its .dist-info) and nothing else at the top of site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/", 1)[0] for name in archive.namelist()}
    others = sorted(top for top in tops if top != "darts_aux" and not top.endswith(".dist-info"))
    if others:
        raise CheckError(f"the wheel installs other top-level names besides darts_aux: {', '.join(others)}")
    say(f"{wheel.name}: darts_aux is its only top-level package")


# -- 2, 3. a fresh venv with the wheel alone -----------------------------------------------------------


def install(wheel: Path, python: str, venv: Path) -> Path:
    """A fresh venv on `python` with the wheel installed without extras or groups; the venv's interpreter."""
    must(run(["uv", "venv", "--python", python, "--quiet", str(venv)]), "uv venv")
    venv_python = venv / "bin" / "python"
    must(run(["uv", "pip", "install", "--python", str(venv_python), "--quiet", str(wheel)]), "uv pip install")
    return venv_python


def installed(venv_python: Path) -> dict[str, list[str]]:
    """{canonical name: unconditional requirements (canonical names)} of every distribution in the venv."""
    code = ("import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.requires or [] "
            "for d in m.distributions()}))")
    found = json.loads(must(run([str(venv_python), "-c", code]), "listing the venv's packages"))
    return {canonical(name): [requirement_name(r) for r in requires if "extra" not in r.partition(";")[2]]
            for name, requires in found.items()}


def optional_packages() -> set[str]:
    """Every package pyproject.toml names in an extra or a dependency group (darts-aux itself left out)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    named = [r for rs in project["project"].get("optional-dependencies", {}).values() for r in rs]
    named += [r for rs in project.get("dependency-groups", {}).values() for r in rs if isinstance(r, str)]
    return {requirement_name(r) for r in named} - {"darts-aux"}


def check_lean(packages: dict[str, list[str]]) -> None:
    """No server-only or test-only package; an extra's or group's package only if a runtime package needs it."""
    present = sorted(set(SERVER_AND_TEST_ONLY) & packages.keys())
    if present:
        raise CheckError(f"a plain install brought server-only or test-only packages: {', '.join(present)}")
    for name in sorted(optional_packages() & packages.keys()):
        requirers = sorted(other for other, requires in packages.items() if other != name and name in requires)
        if not requirers:
            raise CheckError(f"{name} is installed though only an extra or a dependency group asks for it")
        say(f"{name} is installed because {', '.join(requirers)} require{'s' if len(requirers) == 1 else ''} it")
    say(f"{len(packages)} packages installed, none of {', '.join(SERVER_AND_TEST_ONLY)}")


def check_import_names(venv_python: Path, cwd: Path) -> None:
    """`flows` is no importable top-level package in the venv; `darts_aux.flows.deployments` imports."""
    code = ("import importlib.util; import darts_aux.flows.deployments as d; "
            "print(importlib.util.find_spec('flows') is None, d.deployment_spec('fill-arcticdem').entrypoint)")
    absent, entrypoint = must(run([str(venv_python), "-c", code], cwd=cwd), "importing darts_aux.flows").split()
    if absent != "True":
        raise CheckError("`flows` is importable as a top-level package from the installed wheel")
    say(f"no top-level `flows`; the fill-arcticdem deployment's entrypoint is {entrypoint}")


# -- 4. the local catalog, from the project's environment -----------------------------------------------


@contextmanager
def local_catalog(project_python: str, log: Path) -> Iterator[dict[str, str]]:
    """`python -m darts_aux.local` in the project's env until the block ends; its exported DARTS_AUX_* settings."""
    with log.open("wb") as stderr:
        server = subprocess.Popen([project_python, "-m", "darts_aux.local", str(CATALOG_ROOT)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
    try:
        yield _exports(server, log)
    finally:
        _stop(server)


def _exports(server: subprocess.Popen[str], log: Path) -> dict[str, str]:
    """The `export NAME=VALUE` lines the catalog prints once it serves (STAC API and tile index URLs)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(server, lines), daemon=True).start()
    exports: dict[str, str] = {}
    deadline = time.monotonic() + CATALOG_START_SECONDS
    while len(exports) < 2:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
        except queue.Empty:
            line = ""
        if not line:
            raise CheckError(f"the local catalog did not start:\n{log.read_text()[-3000:]}")
        words = shlex.split(line)
        if words[:1] == ["export"] and "=" in words[1]:
            name, _, value = words[1].partition("=")
            exports[name] = value
    say(f"local catalog serving at {exports.get('DARTS_AUX_STAC_URL')}")
    return exports


def _read_lines(server: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    """Every stdout line of the catalog into `lines`, then "" when it closes its stdout."""
    assert server.stdout is not None
    for line in server.stdout:
        lines.put(line)
    lines.put("")


def _stop(server: subprocess.Popen[str]) -> None:
    """SIGTERM to the catalog's process group (it stops its servers), then wait."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# -- 5, 6. the library and a deployment's flow in the venv -----------------------------------------------

LOAD = """
import json, sys
import numpy as np
from odc.geo.geobox import GeoBox
from darts_aux import load_arcticdem
ds = load_arcticdem(GeoBox.from_bbox({bounds}, "EPSG:3413", resolution=32), {data_dir!r}, 32)
np.savez({out!r}, dem=ds.dem.values, datamask=ds.datamask.values, x=ds.x.values, y=ds.y.values)
print(json.dumps({{"shape": list(ds.dem.shape), "prefect": "prefect" in sys.modules}}))
"""

FLOW = """
import json
from pathlib import Path
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from darts_aux import coverage
from darts_aux.flows.deployments import deployment_spec
flow = deployment_spec("fill-arcticdem").load_flow()
state = flow(resolution=32, bounds={bounds}, data_dir={data_dir!r}, return_state=True)
report = state.result()
with get_client(sync_client=True) as client:
    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    artifacts = {{a.key: a.data for a in client.read_artifacts(flow_run_filter=run_filter)}}
statuses = sorted(set(coverage({data_dir!r}, "arcticdem-32m").status))
print(json.dumps({{"completed": state.is_completed(), "flow": flow.fn.__module__, "total": report.chunks_total,
                  "fetched": report.chunks_fetched, "statuses": statuses,
                  "summary": artifacts.get("arcticdem-32m-summary") or "",
                  "quicklooks": (Path({data_dir!r}) / "quicklooks").exists()}}))
"""

ORACLE = """
import json, sys
import numpy as np
from darts_aux.local import expected_pixels
got = np.load(sys.argv[1])
dem, datamask = expected_pixels(32, got["x"][None, :], got["y"][:, None])
np.testing.assert_array_equal(got["dem"], dem)
np.testing.assert_array_equal(got["datamask"], datamask)
print(json.dumps({"valid": int(np.isfinite(dem).sum()), "nodata": int(np.isnan(dem).sum())}))
"""


def venv_env(exports: Mapping[str, str], work: Path) -> dict[str, str]:
    """The environment of the venv's processes: the catalog's settings, its own Prefect home, nothing inherited
    that points darts-aux or Prefect elsewhere."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DARTS_AUX_", "PREFECT_", "VIRTUAL_ENV"))}
    return {**inherited, **exports, **PREFECT_ENV, "PREFECT_HOME": str(work / "prefect-home"),
            "DARTS_AUX_ORCHESTRATOR": "inline"}


def check_pixels(project_python: str, arrays: Path, what: str) -> None:
    """The arrays a load saved equal the catalog's formula (computed in the project's env, which has it)."""
    counts = json.loads(must(run([project_python, "-c", ORACLE, str(arrays)], cwd=REPO), f"{what}: the pixel check"))
    if counts["valid"] == 0:
        raise CheckError(f"{what}: the region has no valid pixel, so the check proves nothing")
    say(f"{what}: the pixels equal the catalog's formula ({counts['valid']} valid, {counts['nodata']} nodata)")


def check_load(venv_python: Path, project_python: str, env: Mapping[str, str], work: Path, bounds: tuple[float, ...],
               data_dir: Path, what: str) -> None:
    """load_arcticdem in the venv (in-process: no Prefect imported), then its pixels against the formula."""
    arrays = work / f"{what.replace(' ', '-')}.npz"
    code = LOAD.format(bounds=bounds, data_dir=str(data_dir), out=str(arrays))
    loaded = json.loads(must(run([str(venv_python), "-c", code], env=env, cwd=work), f"{what}: load_arcticdem"
                             ).splitlines()[-1])
    if loaded["prefect"]:
        raise CheckError(f"{what}: an inline load imported Prefect")
    say(f"{what}: load_arcticdem gave {loaded['shape'][0]} × {loaded['shape'][1]} px")
    check_pixels(project_python, arrays, what)


def check_flow(venv_python: Path, env: Mapping[str, str], work: Path, data_dir: Path) -> None:
    """The fill-arcticdem deployment's flow as a Prefect flow run in the venv: completed, chunks full, no map."""
    code = FLOW.format(bounds=list(FLOW_BOUNDS), data_dir=str(data_dir))
    started = time.monotonic()
    done = json.loads(must(run([str(venv_python), "-c", code], env=env, cwd=work, timeout=900),
                           "the fill-arcticdem flow run").splitlines()[-1])
    problems = [problem for problem, bad in [
        ("the run did not complete", not done["completed"]),
        (f"the flow came from {done['flow']}", done["flow"] != "darts_aux.flows.arcticdem"),
        (f"{done['fetched']} of {done['total']} chunks fetched", not 0 < done["fetched"] == done["total"]),
        (f"chunk statuses {done['statuses']}", done["statuses"] != ["full"]),
        ("no fill summary artifact", "# arcticdem-32m fill" not in done["summary"]),
        ("the summary has a coverage map without matplotlib", "data:image/png" in done["summary"]),
        ("a quicklook was written without matplotlib", done["quicklooks"]),
    ] if bad]
    if problems:
        raise CheckError("the fill-arcticdem flow run: " + "; ".join(problems))
    fetched = f"{done['fetched']} chunk{'s' if done['fetched'] != 1 else ''}"
    say(f"the fill-arcticdem flow run completed in {time.monotonic() - started:.0f} s: {fetched} fetched, all full; "
        "its summary has no coverage map")


# -- 7. doors that need an extra --------------------------------------------------------------------------


def check_extra_doors(venv: Path, env: Mapping[str, str], work: Path, data_dir: Path) -> None:
    """Each door that needs a missing extra exits with one line naming it, and no traceback."""
    bbox = [str(v) for v in LOAD_BOUNDS]
    doors = [
        ([str(venv / "bin" / "darts-aux"), "status", "--data-dir", str(data_dir), "--map", str(work / "map.png")],
         1, "darts-aux[viz]"),
        ([str(venv / "bin" / "darts-aux"), "load", "arcticdem", "--bbox", *bbox, "--resolution", "32",
          "--data-dir", str(data_dir), "--out", str(work / "dem.nc")], 1, "darts-aux[netcdf]"),
        ([str(venv / "bin" / "python"), "-m", "darts_aux.local", str(work / "catalog")], 2, "darts-aux[local]"),
    ]
    for command, code, extra in doors:
        done = run(command, env=env, cwd=work)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        if done.returncode != code or len(lines) != 1 or f"install {extra}" not in lines[0]:
            raise CheckError(f"`{' '.join(command[1:3])} …` without {extra} (exit {done.returncode}):\n"
                              f"{done.stderr[-2000:]}")
        say(f"without {extra}: {lines[0]}")


# -- main --------------------------------------------------------------------------------------------------


def check(python: str, project_python: str, work: Path) -> dict[str, float]:
    """Every check, in order; the seconds each part took."""
    seconds: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        seconds[name] = time.monotonic() - mark
        mark = time.monotonic()

    wheel = build_wheel(work / "dist")
    check_top_level(wheel)
    lap("build")
    venv_python = install(wheel, python, work / "venv")
    check_lean(installed(venv_python))
    check_import_names(venv_python, work)
    lap("install")
    with local_catalog(project_python, work / "catalog.log") as exports:
        lap("catalog")
        env = venv_env(exports, work)
        check_load(venv_python, project_python, env, work, LOAD_BOUNDS, work / "data-load", "inline load")
        lap("load")
        check_flow(venv_python, env, work, work / "data-flow")
        check_load(venv_python, project_python, env, work, FLOW_BOUNDS, work / "data-flow", "load after the flow")
        lap("flow")
    check_extra_doors(work / "venv", env, work, work / "data-load")
    lap("extras")
    return seconds


def main() -> int:
    """Parse the arguments, run every check in a scratch folder; 1 on the first failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="the interpreter of the fresh venv (Python 3.13)")
    parser.add_argument("--project-python", required=True,
                        help="an interpreter of the project's own environment (runs the local catalog, the oracle)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="darts-aux-wheel-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            seconds = check(args.python, args.project_python, work.resolve())
        except (CheckError, subprocess.TimeoutExpired) as error:
            print(f"wheel check: FAILED: {error}", flush=True)
            return 1
    parts = ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
    say(f"ok in {time.monotonic() - started:.0f} s ({parts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
