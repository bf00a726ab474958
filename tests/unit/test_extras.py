"""The optional parts of darts-aux: pyproject's extras and darts_aux.extras agree, and a door whose extra is not
installed says in one line which extra to install, before any work starts.

"Not installed" is `sys.modules[name] = None` here (an import of it fails, `find_spec` finds nothing); the wheel
check in .ci/ runs the same doors in a venv where these packages are really absent.
"""

from __future__ import annotations

import logging
import re
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from darts_aux.cli import app
from darts_aux.errors import MissingExtraError
from darts_aux.extras import EXTRAS, has_extra, missing_modules, require_extras
from darts_aux.flows.artifacts import summary_markdown  # imports Prefect, whose logging setup precedes caplog's
from darts_aux.flows.runners import fill_task_runner
from darts_aux.settings import get_settings

from .test_prose import _outcome

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
runner = CliRunner()


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make `modules` look uninstalled for the rest of the test."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0]


def test_the_extras_of_pyproject_install_the_modules_darts_aux_checks_for() -> None:
    declared = PYPROJECT["project"]["optional-dependencies"]
    assert {extra: sorted(_requirement_name(r).replace("-", "_") for r in requirements)
            for extra, requirements in declared.items()} == {extra: sorted(m) for extra, m in EXTRAS.items()}
    runtime = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not runtime & {"rustac", "starlette", "uvicorn", "matplotlib", "h5netcdf", "h5py", "prefect-dask",
                           "prefect-ray", "ray"}


def test_the_dev_group_installs_every_extra() -> None:
    dev = PYPROJECT["dependency-groups"]["dev"]
    assert "darts-aux[local,viz,netcdf,dask,ray]" in dev
    assert all(has_extra(extra) for extra in EXTRAS), {extra: missing_modules(extra) for extra in EXTRAS}


def test_one_missing_module_names_its_package_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "prefect_dask")
    assert missing_modules("dask") == ["prefect_dask"] and not has_extra("dask")
    with pytest.raises(MissingExtraError) as raised:
        require_extras("DARTS_AUX_TASK_RUNNER=dask", "dask")
    assert str(raised.value) == ("DARTS_AUX_TASK_RUNNER=dask needs prefect-dask, which is not installed: install "
                                 "darts-aux[dask] (pip install 'darts-aux[dask]').")
    assert raised.value.extra == "dask" and isinstance(raised.value, ImportError)


def test_modules_of_two_extras_are_named_together(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "uvicorn", "rustac", "matplotlib")
    with pytest.raises(MissingExtraError, match=re.escape(
            "darts-aux demo needs rustac, uvicorn and matplotlib, which are not installed: install "
            "darts-aux[local,viz] (pip install 'darts-aux[local,viz]').")):
        require_extras("darts-aux demo", "local", "viz", "netcdf")


# -- the doors ------------------------------------------------------------------------------------------


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def test_load_to_netcdf_without_the_netcdf_extra_stops_before_any_fill(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    _hide(monkeypatch, "h5netcdf")
    out = tmp_path / "dem.nc"
    result = runner.invoke(app, ["load", "arcticdem", "--bbox", "600000", "3150000", "610000", "3160000",
                                 "--resolution", "32", "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    assert result.exit_code == 1
    assert _one_error_line(result.stderr).endswith(
        f"--out {out} needs h5netcdf, which is not installed: install darts-aux[netcdf] "
        "(pip install 'darts-aux[netcdf]').")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing fetched, nothing written"


def test_status_map_without_the_viz_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide(monkeypatch, "matplotlib")
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path), "--map", str(tmp_path / "map.png")])
    assert result.exit_code == 1
    assert _one_error_line(result.stderr).endswith(
        f"--map {tmp_path / 'map.png'} needs matplotlib, which is not installed: install darts-aux[viz] "
        "(pip install 'darts-aux[viz]').")


def test_demo_without_the_local_extra_starts_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide(monkeypatch, "rustac")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 1
    assert _one_error_line(result.stderr).endswith(
        "darts-aux demo needs rustac, which is not installed: install darts-aux[local] "
        "(pip install 'darts-aux[local]').")
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("prog", ["darts_aux.local", "darts_aux.local.earthengine"])
def test_the_local_servers_without_the_local_extra_exit_with_one_line(
        prog: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import importlib

    main = importlib.import_module(f"{prog}.__main__").main
    _hide(monkeypatch, "starlette", "uvicorn")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert _one_error_line(capsys.readouterr().err) == (
        f"error: python -m {prog} needs starlette and uvicorn, which are not installed: install darts-aux[local] "
        "(pip install 'darts-aux[local]').")
    assert list(tmp_path.iterdir()) == [], "no catalog built"


def test_the_dask_task_runner_without_the_dask_extra_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "prefect_dask")
    with pytest.raises(MissingExtraError, match=r"^DARTS_AUX_TASK_RUNNER=dask needs prefect-dask, .*darts-aux\[dask\]"):
        fill_task_runner(get_settings().model_copy(update={"task_runner": "dask"}))


def test_the_fill_summary_omits_the_map_without_the_viz_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    outcome = _outcome(tmp_path)
    _hide(monkeypatch, "matplotlib")
    with caplog.at_level(logging.INFO, logger="darts_aux"):
        markdown = summary_markdown(outcome)
    assert markdown == summary_markdown(outcome, with_map=False), "the summary as it is without a map, word for word"
    assert [r.getMessage() for r in caplog.records] == [
        "the arcticdem-32m fill's summary has no coverage map: matplotlib is not installed (darts-aux[viz] draws it)"]
    assert not (tmp_path / "quicklooks").exists()
