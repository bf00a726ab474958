"""A product darts-aux does not know, declared here only, served for real on loopback and loaded exactly.

The product: a STAC collection of single-band int16 COGs in UTM zone 51N (EPSG:32651) at 10 m, without a mask
asset (no data is the COGs' nodata, −32768). Two adjacent 1,000² px tiles with 100 px buffers that overlap like
PGC's are written with rasterio and served by rustac (STAC API) behind the project's logging byte-range gateway.
The product is added once through `register_product` in this process, and once through an entry point of a
temporary installed distribution in a fresh interpreter; both loads equal an independent rasterio mosaic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load, register_product
from darts_aux.local import _procs
from darts_aux.local._server import LocalServer, read_request_log
from darts_aux.local.catalog import rustac_executable
from darts_aux.local.gateway import GatewayConfig, GatewayUrls
from darts_aux.local.stac_items import write_json
from darts_aux.products import Codec, Extent, Product, Variable
from darts_aux.settings import reload_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CRS = "EPSG:32651"
PIXEL = 10.0
X0, Y0 = 300_000.0, 7_900_000.0
"""Top-left corner of the product's grid (UTM 51N, about 71° N 120° E)."""
NODATA = -32768
COLLECTION = "test-utm51-elevation"
CORE, BUFFER = 1000, 100
TILES = {"tile-a": (5000, 5000), "tile-b": (5000, 6000)}
"""Item id → (row, col) of its core's top-left pixel on the product grid; the rasters add BUFFER on every side."""
REGION = (4850, 6150, 4850, 7150)
"""(row0, row1, col0, col1) of the region loaded: across both tiles and past their outer edges."""


def utm_product(stac_url: str) -> Product:
    """The declaration a user writes: grid, chunking, one variable without a mask asset, and the STAC API."""
    return Product(
        key="test-utm51-10m",
        extent=Extent(CRS, X0, Y0, PIXEL, (20_000, 20_000)),
        fill_chunk=1000,
        read_chunk=500,
        variables=(Variable("elevation", "int16", NODATA, "elevation", NODATA, Codec("zstd", 3)),),
        collection=COLLECTION,
        source="stac-cog",
        stac_url=stac_url,
        title="Test elevation, UTM 51N, 10 m",
    )


def declared_products() -> list[Product]:
    """The entry point's callable: the product, its STAC API read from the environment."""
    return [utm_product(os.environ["TEST_CUSTOM_PRODUCT_STAC_URL"])]


# -- the source: COG tiles, STAC items, served on loopback ------------------------------------------------------


def tile_pixels(item_id: str) -> np.ndarray:
    """A tile's int16 pixels: a formula of the product-grid pixel, per-tile offset, and a few nodata holes."""
    row0, col0 = TILES[item_id]
    rows = np.arange(row0 - BUFFER, row0 + CORE + BUFFER)[:, None]
    cols = np.arange(col0 - BUFFER, col0 + CORE + BUFFER)[None, :]
    offset = 1 if item_id == "tile-b" else 0  # the overlap differs between the tiles: the mosaic order shows
    pixels = ((rows * 7 + cols * 13) % 20_000 - 10_000 + offset).astype("int16")
    size = pixels.shape[0]
    for r, c in ((40, 40), (500, 700), (600, size - 150), (size - 60, 1150)):  # one hole inside the overlap
        pixels[r:r + 30, c:c + 45] = NODATA
    return pixels


def write_tile(path: Path, item_id: str) -> None:
    """The tile as a COG: LZW, 256 px blocks, nodata −32768, on the product's grid."""
    import rasterio
    import rasterio.shutil
    from affine import Affine

    row0, col0 = TILES[item_id]
    pixels = tile_pixels(item_id)
    transform = Affine(PIXEL, 0, X0 + (col0 - BUFFER) * PIXEL, 0, -PIXEL, Y0 - (row0 - BUFFER) * PIXEL)
    profile = {"driver": "GTiff", "width": pixels.shape[1], "height": pixels.shape[0], "count": 1, "dtype": "int16",
               "crs": CRS, "transform": transform, "nodata": NODATA}
    plain = path.with_suffix(".plain.tif")
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(pixels, 1)
    rasterio.shutil.copy(plain, path, driver="COG", COMPRESS="LZW", BLOCKSIZE="256")
    plain.unlink()


def stac_item(item_id: str, files_url: str) -> dict[str, Any]:
    """The item of a tile: lon/lat footprint, projection fields (proj:code/shape/transform), one COG asset."""
    from odc.geo.geom import box

    row0, col0 = TILES[item_id]
    left, top = X0 + (col0 - BUFFER) * PIXEL, Y0 - (row0 - BUFFER) * PIXEL
    size = CORE + 2 * BUFFER
    footprint = box(left, top - size * PIXEL, left + size * PIXEL, top, CRS).to_crs("EPSG:4326")
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
        "id": item_id,
        "collection": COLLECTION,
        "geometry": footprint.json,
        "bbox": list(footprint.boundingbox),
        "properties": {"datetime": "2024-01-01T00:00:00Z", "proj:code": CRS, "proj:shape": [size, size],
                       "proj:transform": [PIXEL, 0.0, left, 0.0, -PIXEL, top]},
        "links": [],
        "assets": {"elevation": {"href": f"{files_url}tiles/{item_id}.tif", "roles": ["data"],
                                 "type": "image/tiff; application=geotiff; profile=cloud-optimized"}},
    }


def stac_collection(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The collection, its extent the union of the items' bboxes."""
    boxes = np.asarray([item["bbox"] for item in items])
    return {
        "type": "Collection", "stac_version": "1.1.0", "id": COLLECTION, "description": "Test elevation tiles.",
        "license": "CC0-1.0", "links": [],
        "extent": {"spatial": {"bbox": [[*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0)]]},
                   "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]}},
    }


class ServedCollection(GatewayUrls, LocalServer):
    """One STAC collection on loopback: rustac serves the items, the project's gateway serves the COGs and logs."""

    run_prefix = "darts-aux-custom-product-"

    def __init__(self, root: Path) -> None:
        super().__init__(startup_timeout=60.0)
        self.root = root
        self._rustac: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return self.url

    def _start_server(self, attempt: int) -> None:
        """rustac with the items (their hrefs carry the gateway's port), then the gateway over the tile folder."""
        assert self._run_dir is not None
        _procs.stop(self._rustac)
        self._port = self._choose_port()
        items = [stac_item(item_id, self.files_url) for item_id in TILES]
        write_json(self._run_dir / "collection.json", stac_collection(items))
        write_json(self._run_dir / "items.json", {"type": "FeatureCollection", "features": items})
        stac_port = _procs.free_port()
        stac_url = f"http://{_procs.LOOPBACK}:{stac_port}"
        log = self._run_dir / f"rustac-{attempt}.log"
        self._rustac = _procs.spawn([rustac_executable(), "serve", "--addr", stac_url, "--bind",
                                     f"{_procs.LOOPBACK}:{stac_port}", str(self._run_dir / "collection.json"),
                                     str(self._run_dir / "items.json")], log)
        _procs.wait_healthy(stac_url + "/", self._rustac, log, self.startup_timeout)
        write_json(self._run_dir / "stac_upstream.json", {"url": stac_url})
        config = GatewayConfig(host=_procs.LOOPBACK, port=self.port, file_dirs=(str(self.root),),
                               upstream_file=str(self._run_dir / "stac_upstream.json"), log_path=str(self.log_path),
                               parent_pid=os.getpid())
        config.dump(self._run_dir / "gateway.json")
        self._launch("darts_aux.local.gateway", self._run_dir / "gateway.json", "/healthz", attempt)

    def stop(self) -> None:
        _procs.stop(self._rustac)
        self._rustac = None
        super().stop()

    def requests(self) -> list[dict[str, Any]]:
        """What the gateway logged (STAC searches and COG range reads), oldest first."""
        return read_request_log(self.log_path)

    def reset_log(self) -> None:
        self.log_path.write_text("", encoding="utf-8")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedCollection]:
    """The two tiles written once and served for the module."""
    root = tmp_path_factory.mktemp("custom-product")
    (root / "tiles").mkdir()
    for item_id in TILES:
        write_tile(root / "tiles" / f"{item_id}.tif", item_id)
    with ServedCollection(root) as server:
        yield server


# -- the oracle and the region ----------------------------------------------------------------------------------


def region_geobox() -> GeoBox:
    """REGION as a GeoBox in the product's CRS and pixel grid."""
    row0, row1, col0, col1 = REGION
    bbox = (X0 + col0 * PIXEL, Y0 - row1 * PIXEL, X0 + col1 * PIXEL, Y0 - row0 * PIXEL)
    return GeoBox.from_bbox(bbox, CRS, resolution=PIXEL)


def rasterio_mosaic(root: Path) -> np.ndarray:
    """Independent oracle: rasterio.merge of the COG files over REGION, tiles in id order, first valid pixel wins."""
    import rasterio
    from rasterio.merge import merge

    row0, row1, col0, col1 = REGION
    bounds = (X0 + col0 * PIXEL, Y0 - row1 * PIXEL, X0 + col1 * PIXEL, Y0 - row0 * PIXEL)
    sources = [rasterio.open(root / "tiles" / f"{item_id}.tif") for item_id in sorted(TILES)]
    try:
        mosaic, _ = merge(sources, bounds=bounds, res=PIXEL, nodata=NODATA, method="first")
    finally:
        for src in sources:
            src.close()
    return mosaic[0]


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The products a test registers are forgotten after it (other modules list the known cubes)."""
    from darts_aux import registry

    monkeypatch.setattr(registry, "_registered", dict(registry._registered))


@pytest.fixture
def inline_fills(fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fills run in-process."""
    monkeypatch.setenv("DARTS_AUX_ORCHESTRATOR", "inline")
    reload_settings()


# -- the tests --------------------------------------------------------------------------------------------------


def test_a_registered_product_loads_every_pixel_as_rasterio_mosaics_its_tiles(
        served: ServedCollection, inline_fills: None, tmp_path: Path) -> None:
    product = register_product(utm_product(served.stac_url))
    expected = rasterio_mosaic(served.root)
    assert (expected == NODATA).any() and (expected != NODATA).any()  # holes and the outer margin, and data
    served.reset_log()

    dataset = load(product.key, region_geobox(), tmp_path / "data")

    row0, row1, col0, col1 = REGION
    assert dataset.elevation.dtype == np.int16
    assert dataset.elevation.shape == (row1 - row0, col1 - col0)
    np.testing.assert_array_equal(dataset.elevation.values, expected)
    assert dataset.odc.crs == CRS
    assert float(dataset.x[0]) == X0 + (col0 + 0.5) * PIXEL and float(dataset.y[0]) == Y0 - (row0 + 0.5) * PIXEL
    first = served.requests()
    assert any(r["upstream"] == "stac" for r in first) and any(r["upstream"] == "files" for r in first)

    served.reset_log()
    again = load(product, region_geobox(), tmp_path / "data")
    np.testing.assert_array_equal(again.elevation.values, expected)
    assert served.requests() == []


def test_the_registered_product_is_known_to_status(served: ServedCollection, inline_fills: None,
                                                    tmp_path: Path) -> None:
    from darts_aux.cubes import cube_statuses, known_products
    from darts_aux.location import as_location

    product = register_product(utm_product(served.stac_url))
    assert product in known_products()
    load(product, region_geobox(), tmp_path / "data")
    statuses = {status.product.key: status for status in cube_statuses(as_location(tmp_path / "data"))}
    assert list(statuses) == [product.key]
    assert statuses[product.key].full + statuses[product.key].partial == 12  # 3 × 4 fill chunks of 1000² px


def test_offline_a_never_fetched_region_names_the_load_that_prefetches_it(served: ServedCollection,
                                                                         inline_fills: None, tmp_path: Path) -> None:
    from darts_aux.errors import OfflineError

    product = register_product(utm_product(served.stac_url))
    served.reset_log()
    hint = (f"with `load('test-utm51-10m', GeoBox.from_bbox((340000, 7830000, 380000, 7860000), 'EPSG:32651', "
            f"resolution=10), '{tmp_path / 'data'}')`, then load again.")
    with pytest.raises(OfflineError, match="12 of 12 chunks of the test-utm51-10m cube") as raised:
        load(product, region_geobox(), tmp_path / "data", offline=True)
    assert str(raised.value).endswith(hint)
    assert served.requests() == []


def test_through_prefect_a_registered_product_fills_with_the_download_chunks_flow(
        served: ServedCollection, fresh_registry: None, forget_new_flow_runs: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    product = register_product(utm_product(served.stac_url))

    dataset = load(product, region_geobox(), tmp_path / "data")

    np.testing.assert_array_equal(dataset.elevation.values, rasterio_mosaic(served.root))
    with get_client(sync_client=True) as client:
        names = [run.name for run in client.read_flow_runs()]
    assert f"download {product.key}: 12 chunks in 1 window" in names


ENTRY_POINT_MODULE = """
from tests.integration.test_custom_product import declared_products
"""
CHILD = """
import json, sys
import numpy as np
from darts_aux import load
from darts_aux.registry import known_products
from tests.integration.test_custom_product import region_geobox
keys = [p.key for p in known_products()]
dataset = load("test-utm51-10m", region_geobox(), sys.argv[1])
np.save(sys.argv[2], dataset.elevation.values)
print(json.dumps({"keys": keys, "product": dataset.attrs["product"]}))
"""


def installed_distribution(site: Path) -> None:
    """A distribution as an installer leaves it: a module and a dist-info with METADATA and entry_points.txt."""
    (site / "custom_products.py").write_text(ENTRY_POINT_MODULE)
    info = site / "custom_products-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: custom-products\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [darts_aux.products]
        utm51 = custom_products:declared_products
        """))


def test_an_installed_package_adds_the_product_through_its_entry_point(served: ServedCollection,
                                                                       tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    installed_distribution(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)]),
           "TEST_CUSTOM_PRODUCT_STAC_URL": served.stac_url, "DARTS_AUX_ORCHESTRATOR": "inline",
           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    out = tmp_path / "elevation.npy"
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "data"), str(out)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["keys"][-1] == "test-utm51-10m" and "arcticdem-32m" in seen["keys"]
    assert seen["product"] == "test-utm51-10m"
    np.testing.assert_array_equal(np.load(out), rasterio_mosaic(served.root))
