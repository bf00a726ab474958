"""A product's time axis in a loaded Dataset: the steps' cubes read over one window, stacked along `time`.

Each time step is a cube of its own (`Product.at`), so a load reads one Dataset per step over the same window and
stacks them here. The `time` coordinate holds each step's first day, so `ds.sel(time="2019")` picks a year.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .products import Product

if TYPE_CHECKING:
    import xarray as xr

TIME_DIM = "time"
"""Name of the time dimension and coordinate of a product with a time axis."""


def step_times(cubes: Sequence[Product]) -> np.ndarray:
    """The `time` coordinate of the steps' cubes: each step's first day (datetime64[ns])."""
    starts = [cube.step.start for cube in cubes if cube.step is not None]
    if len(starts) != len(cubes):
        raise ValueError("every cube stacked along time must be one time step's cube (Product.at)")
    return np.array(starts, dtype="datetime64[ns]")


def stack_steps(product: Product, datasets: Sequence[xr.Dataset], cubes: Sequence[Product]) -> xr.Dataset:
    """One Dataset of the steps' Datasets (same window), with a leading `time` dimension and the product's key.

    Numpy-backed variables are copied once into one array per variable; dask-backed ones stay lazy.
    """
    import xarray as xr

    stacked = xr.concat(list(datasets), dim=TIME_DIM, data_vars="all", coords="minimal", compat="override",
                        join="exact", combine_attrs="override")
    stacked = stacked.assign_coords({TIME_DIM: (TIME_DIM, step_times(cubes), {"long_name": "first day of the step"})})
    stacked.attrs.update(product=product.key, time_steps=[cube.step.label for cube in cubes if cube.step])
    return stacked
