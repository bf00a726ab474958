"""One region check, three doors: the same mistake raises the same error class from load_arcticdem, the CLI and the
fill flow; a flow run ends Failed with the message as its state message, one error log line and no traceback, and
asks the catalog nothing. Also: the prefetch flow without a regions file, and run names and log lines as prose."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from affine import Affine
from odc.geo.geobox import GeoBox
from typer.testing import CliRunner

from darts_aux import load_arcticdem
from darts_aux.cli import ProductName, _regions, app
from darts_aux.errors import (
    DartsAuxError,
    DataDirError,
    EmptyRegionError,
    InvalidBufferError,
    InvalidRegionError,
    OutsideExtentError,
)
from darts_aux.flows.arcticdem import fill_arcticdem
from darts_aux.local import LocalCatalog
from darts_aux.settings import reload_settings

BOX = (650_000.0, 3_150_000.0, 690_000.0, 3_190_000.0)
REVERSED = (690_000.0, 3_150_000.0, 650_000.0, 3_190_000.0)
OUTSIDE = (5_000_000.0, 5_000_000.0, 5_100_000.0, 5_100_000.0)
MARS = "IAU_2015:49900"
NAN = float("nan")
POINT = {"type": "Point", "coordinates": [123.0, 61.0]}


@dataclass(frozen=True)
class Mistake:
    """One mistake as each door takes it (None: the door cannot express it), and the error every door raises."""

    error: type[DartsAuxError]
    api: dict[str, Any] | None = None
    cli: dict[str, Any] | None = None
    flow: dict[str, Any] | None = None
    words: dict[str, str] = field(default_factory=dict)
    """A phrase each door's message must hold (the door's own argument name)."""


MISTAKES: dict[str, Mistake] = {
    "reversed-bounds": Mistake(
        EmptyRegionError, api={"geobox": GeoBox((0, 100), Affine(32, 0, 650_000, 0, -32, 3_190_000), "EPSG:3413")},
        cli={"bbox": REVERSED}, flow={"bounds": list(REVERSED)},
        words={"api": "non-empty geobox", "cli": "--bbox 690000 3150000 650000 3190000 is empty",
               "flow": "bounds 690000 3150000 650000 3190000 is empty"}),
    "outside-extent": Mistake(
        OutsideExtentError, api={"geobox": GeoBox.from_bbox(OUTSIDE, "EPSG:3413", resolution=32)},
        cli={"bbox": OUTSIDE}, flow={"bounds": list(OUTSIDE)},
        words={"api": "pass a geobox that overlaps it", "cli": "pass a region (--bbox or --geojson) that overlaps",
               "flow": "the region (5000000, 5000000, 5100000, 5100000 in EPSG:3413) lies outside the cube extent"}),
    "crs-on-mars": Mistake(
        InvalidRegionError, api={"geobox": GeoBox.from_bbox((10, 10, 11, 11), MARS, resolution=0.01)},
        cli={"bbox": (10.0, 10.0, 11.0, 11.0), "crs": MARS}, flow={"bounds": [10.0, 10.0, 11.0, 11.0], "crs": MARS},
        words={"api": "pass a geobox in an Earth CRS", "cli": "pass a region (--bbox or --geojson) in an Earth CRS",
               "flow": "pass bounds or a geometry in an Earth CRS"}),
    "latitude-over-90": Mistake(
        InvalidRegionError, api={"geobox": GeoBox.from_bbox((60, 85, 61, 91.5), "EPSG:4326", resolution=0.01)},
        cli={"bbox": (60.0, 85.0, 61.0, 91.5), "crs": "EPSG:4326"},
        flow={"bounds": [60.0, 85.0, 61.0, 91.5], "crs": "EPSG:4326"},
        words={"api": "give the geobox as", "cli": "give --bbox as (MINX MINY MAXX MAXY)",
               "flow": "give bounds as (left, bottom, right, top)"}),
    "unknown-crs": Mistake(
        InvalidRegionError, cli={"bbox": BOX, "crs": "EPSG:999999"}, flow={"bounds": list(BOX), "crs": "EPSG:999999"},
        words={"cli": "--crs: unknown CRS 'EPSG:999999'", "flow": "crs: unknown CRS 'EPSG:999999'"}),
    "non-finite-bounds": Mistake(
        EmptyRegionError, api={"geobox": GeoBox((100, 100), Affine(32, 0, NAN, 0, -32, 3_190_000), "EPSG:3413")},
        cli={"bbox": (650_000.0, NAN, 690_000.0, 3_190_000.0)},
        words={"api": "from finite coordinates", "cli": "--bbox 650000 nan 690000 3190000 has a value that is not"}),
    "negative-buffer": Mistake(
        InvalidBufferError, api={"buffer": -1}, cli={"bbox": BOX, "buffer": -1},
        words={"api": "buffer=-1 is negative", "cli": "--buffer=-1 is negative"}),
    "geojson-not-json": Mistake(
        InvalidRegionError, cli={"geojson": "{not json"}, flow={"geometry": "{not json"},
        words={"cli": "is not GeoJSON (not valid JSON", "flow": "geometry is not GeoJSON (not valid JSON"}),
    "geojson-point": Mistake(
        EmptyRegionError, cli={"geojson": json.dumps(POINT)}, flow={"geometry": POINT},
        words={"cli": "has no area", "flow": "has no area"}),
    "both-bounds-and-geometry": Mistake(
        InvalidRegionError, flow={"bounds": list(BOX), "geometry": POINT},
        words={"flow": "either bounds (with crs) or geometry, not both"}),
}
CASES = [(name, door) for name, mistake in MISTAKES.items() for door in ("api", "cli", "flow")
         if getattr(mistake, door) is not None]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory that must never be created (also DARTS_AUX_DATA_DIR, so no door reaches the user's)."""
    path = tmp_path / "never-created"
    monkeypatch.setenv("DARTS_AUX_DATA_DIR", str(path))
    reload_settings()
    return path


def _api(args: dict[str, Any], data_dir: Path) -> None:
    load_arcticdem(**({"geobox": GeoBox.from_bbox(BOX, "EPSG:3413", resolution=32), "data_dir": data_dir,
                       "resolution": 32, "buffer": 0} | args))


def _cli(args: dict[str, Any], data_dir: Path) -> None:
    """The CLI's own region step (what `darts-aux fetch` runs before anything else)."""
    geojson = None
    if "geojson" in args:
        geojson = data_dir.parent / "roi.geojson"
        geojson.write_text(args["geojson"])
    _regions(ProductName("arcticdem"), args.get("bbox"), args.get("crs"), geojson, 32, args.get("buffer", 0),
             str(data_dir), None)  # --data-dir arrives as text


def _flow_logs(flow_run_id: Any) -> list[Any]:
    """The run's log records as the Prefect API keeps them (the handler's queue flushed first)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        return client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))


@pytest.mark.parametrize(("name", "door"), CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_the_same_mistake_raises_the_same_error_at_every_door(
    name: str, door: str, use_catalog: LocalCatalog, inline: None, prefect_server: None, data_dir: Path
) -> None:
    mistake = MISTAKES[name]
    args = getattr(mistake, door)
    if door == "flow":
        state = fill_arcticdem(**({"resolution": 32, "data_dir": str(data_dir)} | args), return_state=True)
        assert state.is_failed(), state
        with pytest.raises(DartsAuxError) as raised:
            state.result()
        assert state.message == str(raised.value), "the darts-aux message is the state message"
        logs = _flow_logs(state.state_details.flow_run_id)
        errors = [log.message for log in logs if log.level >= logging.ERROR]
        assert errors == [str(raised.value)], "one error line: the message"
        assert not any("Traceback" in log.message for log in logs)
        assert "geobox" not in state.message and "--" not in state.message, "the flow's own words"
    else:
        with pytest.raises(DartsAuxError) as raised:
            (_api if door == "api" else _cli)(args, data_dir)
    assert type(raised.value) is mistake.error, raised.value
    assert mistake.words[door] in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not data_dir.exists()
    assert use_catalog.requests() == [], "no request reached the catalog"


def test_the_cli_prints_the_region_mistake_in_its_option_words(use_catalog: LocalCatalog, inline: None,
                                                               data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["fetch", "arcticdem", "--bbox", *map(str, REVERSED), "--data-dir",
                                      str(data_dir)])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: --bbox 690000 3150000 650000 3190000 is empty"), result.stderr
    assert not data_dir.exists() and use_catalog.requests() == []


@pytest.mark.parametrize(("parameters", "field"), [
    ({"resolution": 5, "bounds": list(BOX)}, "resolution"),
    ({"resolution": 32, "bounds": [650_000.0, 3_150_000.0, 690_000.0]}, "bounds"),
    ({"resolution": 32, "bounds": [650_000.0, NAN, 690_000.0, 3_190_000.0]}, "bounds"),
    ({"resolution": 32, "bounds": list(BOX), "buffer": -1}, "buffer"),
], ids=["resolution-5", "three-bounds", "nan-bounds", "negative-buffer"])
def test_flow_parameters_are_typed(parameters: dict[str, Any], field: str) -> None:
    """Prefect validates parameters against these types before a run starts (and the API against the schema)."""
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match=field):
        fill_arcticdem.validate_parameters(parameters)
    schema = fill_arcticdem.parameters.model_dump()
    assert schema["properties"]["resolution"].get("enum") == [2, 10, 32]
    assert schema["properties"]["buffer"]["minimum"] == 0


def test_flow_name_is_the_window_it_fills(use_catalog: LocalCatalog, inline: None, prefect_server: None,
                                          data_dir: Path) -> None:
    """Reversed bounds used to name the run '-40×40 km' and fill nothing; now the name says the region is unusable."""
    from prefect.client.orchestration import get_client

    state = fill_arcticdem(32, REVERSED, str(data_dir), return_state=True)
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).name == "arcticdem-32m (region not usable)"


# -- prefetch-regions without a regions file ----------------------------------------------------------


def test_prefetch_without_a_regions_file_completes_and_says_so(
    use_catalog: LocalCatalog, inline: None, prefect_server: None, tmp_path: Path
) -> None:
    from darts_aux.flows.prefetch import prefetch_regions

    data_dir = tmp_path / "data"
    state = prefetch_regions(data_dir=str(data_dir), return_state=True)
    assert state.is_completed(), state
    assert state.result() == {}
    messages = [log.message for log in _flow_logs(state.state_details.flow_run_id)]
    assert f"nothing to prefetch: no regions file at {data_dir / 'regions.geojson'}" in messages
    assert use_catalog.requests() == []


def test_prefetch_with_a_missing_regions_file_given_fails_with_the_reason(
    use_catalog: LocalCatalog, inline: None, prefect_server: None, tmp_path: Path
) -> None:
    from darts_aux.flows.prefetch import prefetch_regions

    missing = tmp_path / "campaign.geojson"
    state = prefetch_regions(regions=str(missing), data_dir=str(tmp_path / "data"), return_state=True)
    assert state.is_failed()
    assert state.message.startswith(f"regions file {missing} does not exist; pass `regions`")
    with pytest.raises(DataDirError):
        state.result()
    logs = _flow_logs(state.state_details.flow_run_id)
    assert [log.message for log in logs if log.level >= logging.ERROR] == [state.message]
