"""The local Earth Engine's pieces without a server: expression graphs, grids and limits, fault settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from darts_aux.local.earthengine.errors import EEError
from darts_aux.local.earthengine.expression import Image, Raster, evaluate, evaluate_image, render
from darts_aux.local.earthengine.faults import Fault, FaultInjector, FaultSettings
from darts_aux.local.earthengine.grid import MAX_REQUEST_BYTES, PixelGrid, request_bytes
from darts_aux.local.earthengine.tcvis import BANDS, EDITIONS, TCVIS_PIXEL, tcvis_pixels

P = TCVIS_PIXEL
ED = EDITIONS[0]


NODE_KINDS = {"constantValue", "valueReference", "functionInvocationValue", "argumentReference", "arrayValue"}


def node(value: Any) -> dict[str, Any]:
    """A ValueNode as is, anything else wrapped as a constantValue."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in NODE_KINDS:
        return value
    return {"constantValue": value}


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """A functionInvocationValue node; plain Python arguments become constantValue nodes."""
    return {"functionInvocationValue": {"functionName": name, "arguments": {k: node(v) for k, v in arguments.items()}}}


def expr(node: dict[str, Any]) -> dict[str, Any]:
    """A one-node expression graph."""
    return {"values": {"0": node}, "result": "0"}


def mosaic(edition: str = ED) -> dict[str, Any]:
    return call("ImageCollection.mosaic", collection=call("ImageCollection.load", id=edition))


RASTER_GRID = PixelGrid(40, 30, P, 600_000 * P, -P, 250_170 * P)
"""About half of this grid is lake in the first edition."""


def pixels(node: dict[str, Any], band_ids: list[str] | None = None) -> np.ndarray:
    """Evaluate and render a node on a small grid with lakes."""
    bands = evaluate_image(expr(node), band_ids)
    return render(bands, Raster(RASTER_GRID.lon(), RASTER_GRID.lat()))


def oracle() -> dict[str, np.ndarray]:
    return tcvis_pixels(ED, RASTER_GRID.lon(), RASTER_GRID.lat())


# -- expressions ------------------------------------------------------------------------------------------


def test_value_references_are_shared() -> None:
    graph = {
        "values": {
            "m": mosaic(),
            "0": call("Image.addBands", dstImg={"valueReference": "m"}, srcImg={"valueReference": "m"}),
        },
        "result": "0",
    }
    image = evaluate(graph)
    assert isinstance(image, Image)
    assert image.names == [*BANDS, *(f"{b}_1" for b in BANDS)]


def test_select_by_name_regex_index_and_new_names() -> None:
    assert evaluate(expr(call("Image.select", input=mosaic(), bandSelectors=["TC._slope"]))).names == list(BANDS)
    assert evaluate(expr(call("Image.select", input=mosaic(), bandSelectors=[2, "TCB_slope"]))).names == [
        "TCW_slope",
        "TCB_slope",
    ]
    renamed = evaluate(expr(call("Image.select", input=mosaic(), bandSelectors=["TCG_slope"], newNames=["g"])))
    assert renamed.names == ["g"]
    with pytest.raises(EEError, match=r"Image.select: Pattern 'nope' did not match any bands.") as info:
        evaluate(expr(call("Image.select", input=mosaic(), bandSelectors=["nope"])))
    assert info.value.status == 400


def test_the_project_expression_renders_the_oracle() -> None:
    graph = {
        "values": {
            "img": call("Image.select", input=mosaic(), bandSelectors=list(BANDS)),
            "0": call(
                "Image.addBands",
                dstImg={"valueReference": "img"},
                srcImg=call(
                    "Image.rename",
                    input=call(
                        "Image.toUint8",
                        value=call(
                            "Image.mask",
                            image=call("Image.select", input={"valueReference": "img"}, bandSelectors=["TCB_slope"]),
                        ),
                    ),
                    names=["valid"],
                ),
            ),
        },
        "result": "0",
    }
    out = render(evaluate_image(graph, None), Raster(RASTER_GRID.lon(), RASTER_GRID.lat()))
    expected = oracle()
    assert out.dtype.names == (*BANDS, "valid")
    for band, values in expected.items():
        np.testing.assert_array_equal(out[band], values)
    assert 0 < expected["valid"].sum() < expected["valid"].size


def test_mask_is_float_and_valid_everywhere() -> None:
    bands = evaluate_image(expr(call("Image.mask", image=mosaic())), None)
    assert [b.dtype for b in bands] == [np.dtype(np.float32)] * 3
    out = pixels(call("Image.mask", image=mosaic()))
    np.testing.assert_array_equal(out["TCB_slope"], oracle()["valid"].astype(np.float32))


def test_update_mask_and_unmask() -> None:
    never = call("Image.constant", value=0)
    out = pixels(call("Image.updateMask", image=mosaic(), mask=never))
    assert all((out[b] == 0).all() for b in BANDS)
    filled = pixels(call("Image.unmask", input=call("Image.select", input=mosaic(), bandSelectors=["TCW_slope"])))
    np.testing.assert_array_equal(filled["TCW_slope"], oracle()["TCW_slope"])  # masked values were 0 anyway
    out = pixels(call("Image.unmask", input=mosaic(), value=call("Image.constant", value=300)))
    assert out.dtype["TCB_slope"] == np.dtype(np.uint16)
    valid = oracle()["valid"] == 1
    assert (out["TCB_slope"][~valid] == 300).all()


def test_add_bands_overwrite_and_band_ids() -> None:
    valid = call(
        "Image.rename", input=call("Image.select", input=mosaic(), bandSelectors=["TCB_slope"]), names=["TCG_slope"]
    )
    image = evaluate(expr(call("Image.addBands", dstImg=mosaic(), srcImg=valid, overwrite=True)))
    assert image.names == list(BANDS)
    out = pixels(call("Image.addBands", dstImg=mosaic(), srcImg=valid, overwrite=True), band_ids=["TCG_slope"])
    np.testing.assert_array_equal(out["TCG_slope"], oracle()["TCB_slope"])


def test_to_uint8_clamps() -> None:
    out = pixels(call("Image.toUint8", value=call("Image.constant", value=-5)))
    assert out.dtype["constant"] == np.dtype(np.uint8) and (out["constant"] == 0).all()


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (
            call("ImageCollection.mosaic", collection=call("ImageCollection.load", id="a/b")),
            "ImageCollection asset 'a/b' not found",
        ),
        (call("Image.load", id=ED), f"Image.load: Asset '{ED}' is not an Image."),
        (call("Image.reduceRegion", image=mosaic()), "does not implement the algorithm 'Image.reduceRegion'"),
        (call("Image.rename", input=mosaic(), names=["a"]), "Image.rename: Can't rename 3 bands to 1 names."),
        (call("ImageCollection.load", id=ED), "must evaluate to an Image, not ImageCollection"),
        ({"argumentReference": "x"}, "does not evaluate argumentReference"),
    ],
)
def test_bad_expressions_are_400(node: dict[str, Any], message: str) -> None:
    with pytest.raises(EEError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")) as info:
        evaluate_image(expr(node), None)
    assert info.value.status == 400
    assert info.value.body()["error"]["status"] == "INVALID_ARGUMENT"


def test_cyclic_references_are_rejected() -> None:
    with pytest.raises(EEError, match="cyclic"):
        evaluate({"values": {"0": {"valueReference": "1"}, "1": {"valueReference": "0"}}, "result": "0"})


# -- grids and limits -------------------------------------------------------------------------------------


def grid_json(**affine: float) -> dict[str, Any]:
    transform = {"scaleX": P, "translateX": 10.0, "scaleY": -P, "translateY": 70.0, **affine}
    return {"dimensions": {"width": 3, "height": 2}, "affineTransform": transform, "crsCode": "EPSG:4326"}


def test_grid_centres() -> None:
    g = PixelGrid.from_request(grid_json())
    np.testing.assert_allclose(g.lon(), 10.0 + np.array([0.5, 1.5, 2.5]) * P)
    np.testing.assert_allclose(g.lat()[:, 0], 70.0 - np.array([0.5, 1.5]) * P)
    assert PixelGrid.from_request({**grid_json(), "dimensions": {"width": "3", "height": "2"}}).width == 3


@pytest.mark.parametrize(
    "bad",
    [
        {**grid_json(), "crsCode": "EPSG:999999"},
        {**grid_json(), "crsCode": "UTM:6N"},
        {k: v for k, v in grid_json().items() if k != "crsCode"},
        {**grid_json(), "crsWkt": "GEOGCS[...]"},
        grid_json(shearX=0.1),
        grid_json(scaleX=0.0),
        {**grid_json(), "dimensions": {"width": 0, "height": 2}},
        {**grid_json(), "affineTransform": None},
        None,
    ],
)
def test_bad_grids_are_400(bad: Any) -> None:
    with pytest.raises(EEError) as info:
        PixelGrid.from_request(bad)
    assert info.value.status == 400


def test_size_limit_boundary() -> None:
    assert request_bytes(2896, 2896, [1, 1, 1]) <= MAX_REQUEST_BYTES < request_bytes(2897, 2896, [1, 1, 1])
    PixelGrid(2048, 3072, P, 0, -P, 70).check_size([1, 1, 1, 1])
    with pytest.raises(
        EEError, match=r"^Total request size \(50348032 bytes\) must be less than or equal to 50331648 bytes\.$"
    ):
        PixelGrid(2048, 3073, P, 0, -P, 70).check_size([1, 1, 1, 1])
    with pytest.raises(EEError, match=r"Pixel grid dimensions \(1x32769\)"):
        PixelGrid(1, 32_769, P, 0, -P, 70).check_size([1])


# -- fault settings ---------------------------------------------------------------------------------------


def test_fault_forms() -> None:
    assert Fault.parse(503) == Fault(503)
    assert Fault.parse("truncate") == Fault(200, None, True)
    assert Fault.parse({"status": 500, "message": "boom"}) == Fault(500, "boom")
    for bad in (200, "x", {"status": 503, "colour": 1}, True):
        with pytest.raises(ValueError):
            Fault.parse(bad)
    for fault in (Fault(503), Fault(200, None, True), Fault(429, "slow down")):
        assert Fault.parse(fault.to_json()) == fault


def test_injector_order_script_then_random() -> None:
    injector = FaultInjector()
    injector.configure({"script": [429, 503], "probability": 1.0, "statuses": [500], "seed": 3})
    assert [injector.draw() for _ in range(3)] == [
        (Fault(429), "script"),
        (Fault(503), "script"),
        (Fault(500), "random"),
    ]
    injector.configure({"probability": 0.0})
    assert injector.draw() == (None, None)
    injector.configure({"max_in_flight": 2})
    assert not injector.over_cap(1) and injector.over_cap(2)
    injector.clear()
    assert injector.settings == FaultSettings() and not injector.over_cap(100)


def test_random_draws_follow_the_seed() -> None:
    def draws() -> list[Any]:
        injector = FaultInjector()
        injector.configure({"probability": 0.5, "statuses": [500, 503], "seed": 11})
        return [injector.draw()[0] for _ in range(30)]

    first = draws()
    assert first == draws() and None in first and Fault(500) in first and Fault(503) in first


@pytest.mark.parametrize(
    "bad", [{"probability": 2}, {"delay": -1}, {"max_in_flight": 0}, {"statuses": [200]}, {"colour": "red"}]
)
def test_bad_settings(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultInjector().configure(bad)
