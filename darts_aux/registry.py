"""Every product darts-aux can serve: the built-in cubes, products registered at run time, and those of packages.

A package adds products without touching darts-aux by declaring an entry point in the group `darts_aux.products`
whose object is a callable returning a `Product` or a sequence of them:

    [project.entry-points."darts_aux.products"]
    permafrost = "my_package.products:declared"

The group is read once, on the first lookup (`product_by_key`, `known_products`), so importing darts-aux never
imports other packages. `register_product` adds one product in the running process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points
from threading import RLock

from .errors import InvalidRequestError
from .products import (
    ARCTICDEM_RESOLUTIONS,
    SOURCE_KINDS,
    STEP_SEPARATOR,
    TCVIS_EDITIONS,
    Product,
    alphaearth,
    arcticdem,
    tcvis,
)

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "darts_aux.products"
"""The entry-point group whose callables return products (a `Product` or a sequence of them)."""
_KEY = r"^[a-z0-9][a-z0-9._-]*$"
"""A product key: lower-case, path-safe (it names the cube's folder)."""


class UnknownProductError(InvalidRequestError):
    """No built-in, registered or installed product has the key asked for."""


class ProductDeclarationError(InvalidRequestError):
    """A declared product cannot be served as declared (bad key, grid, variables or source), or clashes with another."""


_registered: dict[str, Product] = {}
_entry_points_read = False
_reading = False
_lock = RLock()
"""Re-entrant: an entry point's callable may itself call `register_product` while the group is read."""


def builtin_products() -> list[Product]:
    """The cubes darts-aux declares itself: ArcticDEM at each resolution, TCVIS of each edition, AlphaEarth."""
    return [*(arcticdem(r) for r in ARCTICDEM_RESOLUTIONS), *(tcvis(e) for e in TCVIS_EDITIONS), alphaearth()]


def register_product(product: Product) -> Product:
    """Make a product known by its key in this process (loads, `coverage`, `status`, the `download_chunks` flow).

    Registering the same declaration again is a no-op; another product under a key already taken is refused.

    Args:
        product: The declaration (see darts_aux.products.Product and docs/adding-a-product.md).

    Returns:
        The product, so a declaration can be registered where it is made.

    Raises:
        ProductDeclarationError: The declaration cannot be served, or its key names another product.

    Example:
        >>> from darts_aux import load, register_product
        >>> register_product(my_product)  # doctest: +SKIP
        >>> ds = load(my_product.key, geobox, "/data/darts-aux")  # doctest: +SKIP
    """
    check_declaration(product)
    _read_entry_points()
    with _lock:
        _add(product, "register_product")
    return product


def known_products() -> list[Product]:
    """The built-in products, then registered and installed ones in the order they became known."""
    _read_entry_points()
    with _lock:
        return [*builtin_products(), *_registered.values()]


def product_by_key(key: str) -> Product:
    """The product whose key is `key` ('arcticdem-32m', 'tcvis-2000-2019', or a registered one).

    A key with a time step's label ('alphaearth-10m@2019') names the cube of that step.

    Raises:
        UnknownProductError: No product has that key; the message lists the known keys.
        UnknownTimeStepError: The product has no such time step.
    """
    base, separator, label = key.partition(STEP_SEPARATOR)
    for product in known_products():
        if product.key == base:
            return product.at(label) if separator else product
    keys = ", ".join(p.key for p in known_products())
    raise UnknownProductError(f"unknown product {key!r}; use one of {keys}, or register yours first "
                              f"(darts_aux.register_product or an entry point in {ENTRY_POINT_GROUP!r}).")


def check_declaration(product: object) -> None:
    """ProductDeclarationError unless `product` is a Product whose key, chunking, variables and source fit."""
    if not isinstance(product, Product):
        raise ProductDeclarationError(f"expected a darts_aux.products.Product, got {type(product).__name__}; "
                                      f"declare products with Product(...).")
    name = f"product {product.key!r}"
    if product.step is not None:
        raise ProductDeclarationError(f"{name} is the cube of one time step; declare the product itself (its steps "
                                      f"are reached with product.at(label)).")
    if not re.match(_KEY, product.key):
        raise ProductDeclarationError(f"{name}: the key names the cube's folder, so use lower-case letters, digits, "
                                      f"'.', '_' and '-' only.")
    if product.source not in SOURCE_KINDS:
        raise ProductDeclarationError(f"{name}: unknown source {product.source!r}; use one of "
                                      f"{', '.join(SOURCE_KINDS)}.")
    if product.read_chunk <= 0 or product.fill_chunk % product.read_chunk:
        raise ProductDeclarationError(f"{name}: read_chunk ({product.read_chunk}) must be positive and divide "
                                      f"fill_chunk ({product.fill_chunk}).")
    names = [v.name for v in product.variables]
    if not names or len(set(names)) != len(names):
        raise ProductDeclarationError(f"{name}: declare at least one variable, each with its own name.")
    if product.time_steps and product.source != "earth-engine":
        raise ProductDeclarationError(f"{name}: a time axis is served from Earth Engine collections (filtered by "
                                      f"date per step); declare source='earth-engine', or one product per step.")
    labels = [step.label for step in product.time_steps]
    if len(set(labels)) != len(labels) or not all(re.match(_KEY, x) for x in labels):
        raise ProductDeclarationError(f"{name}: time steps need distinct path-safe labels (lower-case letters, "
                                      f"digits, '.', '_', '-').")


def _add(product: Product, origin: str) -> None:
    """Record a product under its key (the lock held); the same declaration twice is fine, another is refused."""
    taken = next((p for p in [*builtin_products(), *_registered.values()] if p.key == product.key), None)
    if taken is not None and taken != product:
        raise ProductDeclarationError(f"product key {product.key!r} ({origin}) is already taken by another "
                                      f"declaration; give the product a key of its own.")
    _registered.setdefault(product.key, product)


def _read_entry_points() -> None:
    """Register the products of the `darts_aux.products` entry points, once per process.

    A failing entry point raises at every lookup until it is fixed; a lookup made by an entry point's own callable
    while the group is being read sees the products known so far.
    """
    global _entry_points_read, _reading
    with _lock:
        if _entry_points_read or _reading:
            return
        _reading = True
        try:
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                for product in _declared_by(entry):
                    check_declaration(product)
                    _add(product, f"entry point {entry.name} = {entry.value}")
            _entry_points_read = True
        finally:
            _reading = False


def _declared_by(entry: EntryPoint) -> Iterable[Product]:
    """The products an entry point's callable returns; a broken entry point raises naming it."""
    where = f"entry point {entry.name!r} = {entry.value!r} in group {ENTRY_POINT_GROUP!r}"
    try:
        declare: Callable[[], Product | Sequence[Product]] = entry.load()
        declared = declare()
        products = [declared] if isinstance(declared, Product) else list(declared)
    except Exception as error:
        raise ProductDeclarationError(f"{where} failed ({type(error).__name__}: {error}); fix or uninstall the "
                                      f"package that declares it.") from error
    log.debug("%s declares %s", where, ", ".join(p.key for p in products if isinstance(p, Product)))
    return products
