"""A product's time axis: steps are cubes of their own (key@label, folder key/label), chosen by label, checked."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from darts_aux.api import step_cubes
from darts_aux.cubes import present_products
from darts_aux.errors import UnknownTimeStepError
from darts_aux.flows.artifacts import artifact_keys
from darts_aux.products import ALPHAEARTH_BANDS, TimeStep, alphaearth, arcticdem, yearly_steps
from darts_aux.registry import ProductDeclarationError, check_declaration, product_by_key
from darts_aux.sources.gee import MAX_REQUEST_BYTES, _checked, request_pixel_bytes, row_bands_for
from darts_aux.store import Cube, cube_exists, cube_paths, foreign_entries


def test_each_step_is_a_cube_under_the_products_folder() -> None:
    product = alphaearth()
    assert [s.label for s in product.time_steps] == [str(y) for y in range(2017, 2026)]
    cube = product.at(2019)
    assert (cube.key, cube.folder, cube.base_key) == ("alphaearth-10m@2019", "alphaearth-10m/2019", "alphaearth-10m")
    assert cube.step == TimeStep("2019", "2019-01-01", "2020-01-01") and not cube.has_time_axis
    assert product_by_key("alphaearth-10m@2024") == product.at("2024")
    assert cube_paths("/data", cube).root == Path("/data/alphaearth-10m/2019")


def test_loads_choose_one_several_or_every_step_in_declared_order() -> None:
    product = alphaearth()
    assert [c.key for c in step_cubes(product, 2024)] == ["alphaearth-10m@2024"]
    assert [c.step.label for c in step_cubes(product, [2024, "2019"])] == ["2019", "2024"]
    assert len(step_cubes(product, None)) == 9
    assert step_cubes(arcticdem(32), None) == [arcticdem(32)]


@pytest.mark.parametrize(("product", "steps", "words"), [
    (alphaearth(), 2016, "no time step 2016; use one of 2017, 2018"),
    (alphaearth(), [], "no time step of alphaearth-10m asked for"),
    (arcticdem(32), 2019, "has no time axis"),
])
def test_steps_a_product_lacks_are_refused_in_one_line(product: object, steps: object, words: str) -> None:
    with pytest.raises(UnknownTimeStepError, match=words) as caught:
        step_cubes(product, steps)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_declarations_of_time_axes_are_checked() -> None:
    check_declaration(alphaearth())
    with pytest.raises(ProductDeclarationError, match="Earth Engine"):
        check_declaration(replace(arcticdem(32), time_steps=yearly_steps(2020, 2021)))
    with pytest.raises(ProductDeclarationError, match="distinct path-safe labels"):
        check_declaration(replace(alphaearth(), time_steps=(TimeStep("2019", "a", "b"),) * 2))
    with pytest.raises(ProductDeclarationError, match="the cube of one time step"):
        check_declaration(alphaearth().at(2019))


def test_64_float_bands_take_seven_requests_per_chunk_within_the_limit() -> None:
    product = alphaearth()
    value_bytes = [4] * len(ALPHAEARTH_BANDS) + [1]  # the bands and the `valid` band the source adds
    assert request_pixel_bytes(value_bytes) == 64 * 5 + 2
    parts = row_bands_for((product.fill_chunk, product.fill_chunk), value_bytes)
    assert len(parts) == 7 and parts[0][0] == 0 and parts[-1][1] == product.fill_chunk
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert all((b - a) * product.fill_chunk * request_pixel_bytes(value_bytes) <= MAX_REQUEST_BYTES for a, b in parts)
    assert max(b - a for a, b in parts) * product.fill_chunk > 140_000  # not split finer than the limit needs


def test_float64_answers_are_taken_only_when_float32_holds_them_exactly() -> None:
    exact = np.zeros((2, 2), dtype=[("A00", "f8"), ("valid", "u1")])
    exact["A00"] = np.float32(0.1)
    dtypes = {"A00": np.dtype("float32"), "valid": np.dtype("uint8")}
    assert _checked(exact, (2, 2), ["A00", "valid"], dtypes) is exact
    inexact = exact.copy()
    inexact["A00"] = 0.1
    from darts_aux.errors import SourceDataError

    with pytest.raises(SourceDataError, match="float64"):
        _checked(inexact, (2, 2), ["A00", "valid"], dtypes)


def test_step_cubes_are_found_in_a_data_directory(tmp_path: Path) -> None:
    cube = alphaearth().at(2019)
    Cube.open_or_create(tmp_path, cube)
    assert cube_exists(tmp_path, cube) and not cube_exists(tmp_path, alphaearth().at(2020))
    assert [p.key for p in present_products(tmp_path)] == ["alphaearth-10m@2019"]
    assert foreign_entries(tmp_path) == []


def test_artifact_keys_of_a_step_are_valid_prefect_keys() -> None:
    assert artifact_keys("alphaearth-10m@2019") == ("alphaearth-10m-2019-chunks", "alphaearth-10m-2019-summary")
    assert artifact_keys("arcticdem-32m") == ("arcticdem-32m-chunks", "arcticdem-32m-summary")
