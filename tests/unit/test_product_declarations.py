"""Products are declarations: what the code once read from a product's key is declared, and products are added
by registering them or through a package's entry point, never by changing darts-aux."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load, registry
from darts_aux.api import product_named
from darts_aux.cli_support import region_geobox
from darts_aux.cube_coverage import product_named as cube_named
from darts_aux.cubes import known_products
from darts_aux.errors import InvalidRequestError, InvalidResolutionError
from darts_aux.location import as_location
from darts_aux.products import (
    ARCTICDEM_RESOLUTIONS,
    TCVIS_EDITIONS,
    Codec,
    Extent,
    Product,
    Variable,
    arcticdem,
    arcticdem_resolution,
    tcvis,
)
from darts_aux.registry import ProductDeclarationError, UnknownProductError, product_by_key, register_product
from darts_aux.retry import RetryPolicy
from darts_aux.settings import get_settings
from darts_aux.sources.earth_engine import EarthEngineSource
from darts_aux.sources.kinds import chunk_source
from darts_aux.sources.stac_cog import StacCogSource

STAC_URL = "http://127.0.0.1:9/stac/"


def custom(key: str = "test-utm51-10m", **changes: object) -> Product:
    """A product of another CRS and dtype, with no mask asset, declared here only."""
    product = Product(
        key=key,
        extent=Extent("EPSG:32651", 300_000.0, 7_900_000.0, 10.0, (20_000, 20_000)),
        fill_chunk=1000,
        read_chunk=500,
        variables=(Variable("elevation", "int16", -32768, "elevation", -32768, Codec("zstd", 3)),),
        collection="test-elevation",
        stac_url=STAC_URL,
    )
    return replace(product, **changes)


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the registry as it was, and reads the entry points afresh."""
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    monkeypatch.setattr(registry, "_entry_points_read", False)


# -- the built-in declarations ----------------------------------------------------------------------------------


def test_builtin_products_declare_their_source_kind_family_and_title() -> None:
    for resolution in ARCTICDEM_RESOLUTIONS:
        product = arcticdem(resolution)
        assert (product.source, product.family, product.stac_url) == ("stac-cog", "arcticdem", None)
        assert product.display_name == f"ArcticDEM v4.1 mosaic, {resolution} m"
        assert arcticdem_resolution(product) == resolution
    for edition in TCVIS_EDITIONS:
        product = tcvis(edition)
        assert (product.source, product.family) == ("earth-engine", "tcvis")
        assert product.display_name.startswith("TCVIS Tasseled-Cap trends ")


def test_the_arcticdem_resolution_comes_from_the_declaration_not_the_key() -> None:
    with pytest.raises(InvalidResolutionError, match="not an ArcticDEM cube"):
        arcticdem_resolution(custom(key="arcticdem-10m-copy", extent=arcticdem(10).extent))
    assert arcticdem_resolution(replace(arcticdem(10), key="renamed")) == 10


def test_a_product_without_family_or_title_is_shown_by_its_key() -> None:
    product = custom()
    assert (product.source, product.family, product.display_name) == ("stac-cog", None, "test-utm51-10m")


# -- sources by declared kind -----------------------------------------------------------------------------------


def test_the_source_follows_the_declared_kind_and_stac_api(tmp_path: Path) -> None:
    settings = get_settings()
    data_dir = as_location(tmp_path)
    policy = registry_policy()
    own = chunk_source(custom(), settings, data_dir, policy)
    assert isinstance(own, StacCogSource) and (own.name, own.url) == ("stac", STAC_URL)
    dem = chunk_source(arcticdem(32), settings, data_dir, policy)
    assert isinstance(dem, StacCogSource) and dem.url == settings.stac_url
    assert isinstance(chunk_source(tcvis(), settings, data_dir, policy), EarthEngineSource)


def test_a_product_with_its_own_stac_api_ignores_the_tile_index_setting(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from darts_aux.settings import reload_settings

    monkeypatch.setenv("DARTS_AUX_DISCOVERY", "tile-index")
    reload_settings()
    settings = get_settings()
    own = chunk_source(custom(), settings, as_location(tmp_path), registry_policy())
    dem = chunk_source(arcticdem(32), settings, as_location(tmp_path), registry_policy())
    assert isinstance(own, StacCogSource) and (own.name, own.url) == ("stac", STAC_URL)
    assert isinstance(dem, StacCogSource) and (dem.name, dem.url) == ("tile-index", settings.tile_index_url)


def registry_policy() -> RetryPolicy:
    return RetryPolicy(0, 0.0, 0.0)


# -- the registry -----------------------------------------------------------------------------------------------


def test_a_registered_product_is_found_by_key_and_listed_after_the_builtin_ones() -> None:
    product = register_product(custom())
    assert product_by_key("test-utm51-10m") is product
    assert cube_named("test-utm51-10m", TCVIS_EDITIONS[0]) is product
    assert product_named("test-utm51-10m") is product
    keys = [p.key for p in known_products()]
    assert keys[:3] == ["arcticdem-2m", "arcticdem-10m", "arcticdem-32m"] and keys[-1] == "test-utm51-10m"
    assert register_product(custom()) == product, "the same declaration again is a no-op"
    assert [p.key for p in known_products()].count("test-utm51-10m") == 1


def test_builtin_keys_and_the_tcvis_alias_resolve() -> None:
    assert product_by_key("arcticdem-32m") == arcticdem(32)
    assert product_by_key("tcvis-2003-2022") == tcvis("2003-2022")
    assert product_named("tcvis") == tcvis(get_settings().tcvis_edition)


def test_a_taken_key_is_refused() -> None:
    register_product(custom())
    with pytest.raises(ProductDeclarationError, match="already taken"):
        register_product(custom(collection="another"))
    with pytest.raises(ProductDeclarationError, match="already taken"):
        register_product(custom(key="arcticdem-32m"))


@pytest.mark.parametrize(("changes", "said"), [
    ({"key": "Has Spaces"}, "path-safe|lower-case"),
    ({"key": "../escape"}, "lower-case"),
    ({"read_chunk": 300}, "divide fill_chunk"),
    ({"variables": ()}, "at least one variable"),
    ({"source": "ftp-dump"}, "unknown source"),
])
def test_a_declaration_that_cannot_be_served_is_refused(changes: dict[str, object], said: str) -> None:
    with pytest.raises(ProductDeclarationError, match=said):
        register_product(custom(**changes))


def test_only_products_are_registered() -> None:
    with pytest.raises(ProductDeclarationError, match="expected a darts_aux.products.Product"):
        register_product("test-utm51-10m")  # type: ignore[arg-type]


def test_an_unknown_key_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownProductError, match="unknown product 'nope'; use one of arcticdem-2m, "):
        product_by_key("nope")
    with pytest.raises(UnknownProductError, match="unknown cube 'nope'"):
        cube_named("nope", TCVIS_EDITIONS[0])
    geobox = GeoBox.from_bbox((600_000, 3_150_000, 610_000, 3_160_000), "EPSG:3413", resolution=32)
    with pytest.raises(UnknownProductError):
        load("nope", geobox, tmp_path / "data")
    with pytest.raises(InvalidRequestError, match="a Product or a product key"):
        load(32, geobox, tmp_path / "data")  # type: ignore[arg-type]
    assert not (tmp_path / "data").exists(), "nothing was written"


# -- entry points -----------------------------------------------------------------------------------------------


def installed(site: Path, name: str, module_source: str, entry: str) -> None:
    """A distribution as an installer leaves it: its module and a dist-info with METADATA and entry_points.txt."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[darts_aux.products]\n{entry}\n")


DECLARING_MODULE = """
    from darts_aux.products import Codec, Extent, Product, Variable

    def one():
        return Product("pkg-one", Extent("EPSG:32633", 0.0, 8_000_000.0, 30.0, (1000, 1000)), 500, 500,
                       (Variable("b1", "uint16", 0, "b1", 0, Codec("zstd", 3)),), "pkg-collection")

    def several():
        return [Product(f"pkg-{n}", Extent("EPSG:32633", 0.0, 8_000_000.0, 30.0, (1000, 1000)), 500, 500,
                        (Variable("b1", "uint16", 0, "b1", 0, Codec("zstd", 3)),), "pkg-collection") for n in (2, 3)]
"""


def test_entry_points_add_products_on_the_first_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed(tmp_path / "a", "pkg_products_a", DECLARING_MODULE, "one = pkg_products_a:one")
    installed(tmp_path / "b", "pkg_products_b", DECLARING_MODULE, "several = pkg_products_b:several")
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))

    assert product_by_key("pkg-one").extent.crs == "EPSG:32633"
    assert {"pkg-one", "pkg-2", "pkg-3"} <= {p.key for p in known_products()}
    assert product_by_key("pkg-3").variables[0].dtype == "uint16"


def test_a_broken_entry_point_is_named_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed(tmp_path, "pkg_broken", "def declared():\n    raise RuntimeError('no grid yet')\n",
              "broken = pkg_broken:declared")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ProductDeclarationError, match=r"entry point 'broken' = 'pkg_broken:declared' in group "
                                                      r"'darts_aux.products' failed \(RuntimeError: no grid yet\); "
                                                      r"fix or uninstall"):
        product_by_key("arcticdem-32m")


def test_an_entry_point_may_register_its_products_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = DECLARING_MODULE + """
    from darts_aux import register_product

    def registering():
        return register_product(one())
    """
    installed(tmp_path, "pkg_registering", module, "registering = pkg_registering:registering")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert product_by_key("pkg-one").collection == "pkg-collection"


def test_an_entry_point_returning_something_else_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed(tmp_path, "pkg_wrong", "def declared():\n    return ['not a product']\n", "wrong = pkg_wrong:declared")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ProductDeclarationError, match="expected a darts_aux.products.Product, got str"):
        known_products()


# -- the command line -------------------------------------------------------------------------------------------


def test_a_bbox_without_crs_is_read_in_the_products_crs() -> None:
    product = custom()
    bbox = (349_000.0, 7_839_000.0, 371_500.0, 7_851_500.0)
    geobox = region_geobox(product, bbox=bbox, crs=None, geojson=None)
    assert geobox.crs == "EPSG:32651" and geobox.resolution.x == 10
    assert tuple(geobox.boundingbox) == bbox
    assert region_geobox(tcvis(), bbox=(-150.1, 70.0, -149.9, 70.1), crs=None, geojson=None).crs == "EPSG:4326"
    assert region_geobox(arcticdem(32), bbox=(600_000, 3_150_000, 610_000, 3_160_000), crs=None,
                         geojson=None).crs == "EPSG:3413"


def test_declarations_made_twice_are_equal_though_their_fill_value_is_nan() -> None:
    from dataclasses import replace

    first, second = arcticdem(2), arcticdem(2)
    assert first == second and hash(first) == hash(second) and {first: 1}[second] == 1
    dem = first.variables[0]
    fresh_nan = replace(dem, fill_value=float("nan"))  # another NaN object
    assert fresh_nan == dem and hash(fresh_nan) == hash(dem)
    assert replace(dem, fill_value=0.0) != dem
