"""The optional parts of darts-aux: which extra installs which modules, and one line saying which to install.

A plain `pip install darts-aux` loads and fills cubes and runs the flows. Pictures (`[viz]`), NetCDF output
(`[netcdf]`), the Dask and Ray task runners (`[dask]`, `[ray]`) and the embedded local services of the demo and
the tests (`[local]`) come with extras; a door that needs one checks for it first, before any work starts.
"""

from __future__ import annotations

from importlib.util import find_spec

from .errors import MissingExtraError

EXTRAS: dict[str, tuple[str, ...]] = {
    "local": ("rustac", "starlette", "uvicorn"),
    "viz": ("matplotlib",),
    "netcdf": ("h5netcdf", "h5py"),
    "dask": ("prefect_dask",),
    "ray": ("prefect_ray", "ray"),
}
"""The importable modules each extra of pyproject.toml installs."""


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here (found without importing them)."""
    return [module for module in EXTRAS[extra] if find_spec(module) is None]


def distribution(module: str) -> str:
    """The name pip installs `module` by (prefect_dask → prefect-dask)."""
    return module.replace("_", "-")


def has_extra(extra: str) -> bool:
    """Whether every module of `extra` is installed."""
    return not missing_modules(extra)


def require_extras(needed_by: str, *extras: str) -> None:
    """Raise MissingExtraError unless every module of `extras` is installed; `needed_by` names the door that asked.

    E.g. `require_extras("--map", "viz")`: "--map needs matplotlib, which is not installed: install darts-aux[viz]
    (pip install 'darts-aux[viz]')."
    """
    lacking = [extra for extra in extras if missing_modules(extra)]
    if not lacking:
        return
    packages = [distribution(module) for extra in lacking for module in missing_modules(extra)]
    names = ", ".join(packages[:-1]) + " and " + packages[-1] if len(packages) > 1 else packages[0]
    verb = "are" if len(packages) > 1 else "is"
    target = f"darts-aux[{','.join(lacking)}]"
    raise MissingExtraError(f"{needed_by} needs {names}, which {verb} not installed: install {target} "
                            f"(pip install '{target}').", extra=",".join(lacking))
