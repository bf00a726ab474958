"""Earth Engine's .npy answers read as views of their bytes: the same arrays np.load gives, damage refused."""

from __future__ import annotations

import io

import numpy as np
import pytest

from darts_aux.sources.gee import npy_array

TCVIS_DTYPE = np.dtype([("TCB_slope", "u1"), ("TCG_slope", "u1"), ("TCW_slope", "u1"), ("valid", "u1")])


def _npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=True)
    return buffer.getvalue()


def _structured(shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(7)
    array = np.empty(shape, TCVIS_DTYPE)
    for name in TCVIS_DTYPE.names or ():
        array[name] = rng.integers(0, 256, shape, dtype=np.uint8)
    return array


@pytest.mark.parametrize("version", [None, (1, 0), (2, 0)])
def test_a_structured_answer_equals_np_load(version: tuple[int, int] | None) -> None:
    array = _structured((37, 53))
    data = _npy(array, version)
    got = npy_array(data)
    expected = np.load(io.BytesIO(data))
    assert got.dtype == expected.dtype == TCVIS_DTYPE and got.shape == expected.shape == (37, 53)
    assert np.array_equal(got, expected) and np.array_equal(got, array)
    assert not got.flags.writeable  # a view of the answer's bytes, not a copy


def test_fortran_order_is_kept() -> None:
    array = np.asfortranarray(np.arange(12, dtype="<f4").reshape(3, 4))
    got = npy_array(_npy(array))
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"<html>Service unavailable</html>", "magic"),
        (_npy(_structured((20, 20)))[:-1], "smaller"),
        (_npy(np.array([{"a": 1}], dtype=object)), "objects"),
        ({"not": "bytes"}, "bytes of an .npy file"),
    ],
    ids=["not-npy", "cut-short", "objects", "not-bytes"],
)
def test_damaged_answers_raise_value_error(data: object, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        npy_array(data)
